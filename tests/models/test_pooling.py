"""Pooling that fits the checkpoint: the math, where it is read from, and who honours it."""

import json
import shutil

import keras
import numpy as np
import pytest

from distil_tf import load_model, load_tokenizer
from distil_tf.models import Encoder, TaskModel, init_student_from_teacher, save_model
from distil_tf.models import pooling as pooling_lib
from distil_tf.models.student_init import write_student

ST_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def _pooling_config(mode):
    modes = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
    return {"word_embedding_dimension": 32, **{f"pooling_mode_{name}": name == mode for name in modes}}


def _sentence_transformers_dir(source, target, mode="mean_tokens", modules=ST_MODULES):
    """A copy of a Hugging Face BERT directory laid out as sentence-transformers saves it."""
    shutil.copytree(source, target)
    if modules is not None:
        (target / "modules.json").write_text(json.dumps(modules))
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(json.dumps(_pooling_config(mode)))
    return target


def _inputs():
    # Row 1 has two pads: mean pooling must ignore them.
    token_ids = np.array([[6, 12, 30, 40, 7], [6, 41, 7, 0, 0]], "int32")
    return {"token_ids": token_ids, "padding_mask": (token_ids != 0).astype("int32")}


# --- The math --------------------------------------------------------------


def test_pool_matches_numpy():
    rng = np.random.default_rng(0)
    sequence = rng.normal(size=(2, 5, 4)).astype("float32")  # [batch, seq, hidden]
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")
    mean = np.asarray(pooling_lib.pool(sequence, mask, "mean"))
    np.testing.assert_allclose(mean[0], sequence[0].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(mean[1], sequence[1, :3].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(pooling_lib.pool(sequence, mask, "cls")), sequence[:, 0])
    dense = keras.layers.Dense(4, activation="tanh")
    dense.build((None, 4))
    kernel, bias = (np.asarray(weight) for weight in dense.weights)
    np.testing.assert_allclose(
        np.asarray(pooling_lib.pool(sequence, mask, "cls_pooler", dense)),
        np.tanh(sequence[:, 0] @ kernel + bias), rtol=1e-5, atol=1e-6,
    )


def test_l2_normalize_gives_unit_norms_and_keeps_zero_finite():
    vectors = np.array([[3.0, 4.0], [0.0, 0.0]], "float32")
    normalized = np.asarray(pooling_lib.l2_normalize(vectors))
    np.testing.assert_allclose(normalized, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


def test_cls_pooler_needs_bert_and_names_are_checked():
    with pytest.raises(ValueError, match="pooler"):
        Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                intermediate_dim=16, pooling="cls_pooler")
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pooling_lib.validate_pooling("max", "bert")


# --- Read from the checkpoint ----------------------------------------------


def test_sentence_transformers_dir_pools_mean_and_normalizes_like_the_reference(tmp_path, tiny_hf_bert_model):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    directory = _sentence_transformers_dir(tiny_hf_bert_model, tmp_path / "st")
    encoder = load_model(directory)
    assert (encoder.pooling, encoder.normalize_embeddings) == ("mean", True)

    # sentence-transformers' Pooling(mean) + Normalize on Hugging Face's own outputs.
    reference = transformers.BertModel.from_pretrained(directory).eval()
    inputs = _inputs()
    mask = torch.tensor(inputs["padding_mask"].astype("int64"))
    with torch.no_grad():
        hidden = reference(input_ids=torch.tensor(inputs["token_ids"].astype("int64")),
                           attention_mask=mask).last_hidden_state
    summed = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    expected = torch.nn.functional.normalize(summed, dim=-1).numpy()
    embedding = np.asarray(encoder.embed(inputs))
    np.testing.assert_allclose(embedding, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-6)


def test_pooling_read_without_modules_json_and_for_cls(tmp_path, tiny_hf_bert_model):
    bare = load_model(_sentence_transformers_dir(tiny_hf_bert_model, tmp_path / "bare", modules=None))
    assert (bare.pooling, bare.normalize_embeddings) == ("mean", False)
    cls = load_model(_sentence_transformers_dir(tiny_hf_bert_model, tmp_path / "cls", mode="cls_token"))
    assert (cls.pooling, cls.normalize_embeddings) == ("cls", True)


def test_unsupported_pooling_mode_is_one_clear_error(tmp_path, tiny_hf_bert_model):
    directory = _sentence_transformers_dir(tiny_hf_bert_model, tmp_path / "max", mode="max_tokens")
    with pytest.raises(ValueError, match=r"1_Pooling/config.json: pooling pooling_mode_max_tokens is not supported"):
        load_model(directory)


def test_checkpoints_without_sentence_transformers_files(tiny_hf_bert_model, tiny_hf_bert_mlm, tiny_hf_distilbert_mlm):
    # A BertModel's trained pooler is its sentence vector; a BertForMaskedLM
    # has no pooler weights and DistilBERT no pooler: nothing is known.
    assert load_model(tiny_hf_bert_model).pooling == "cls_pooler"
    assert load_model(tiny_hf_bert_mlm).pooling is None
    assert load_model(tiny_hf_distilbert_mlm).pooling is None
    with pytest.raises(ValueError, match="no known pooling"):
        load_model(tiny_hf_distilbert_mlm).embed(_inputs())


def test_pooling_is_recorded_in_the_model_directory(tmp_path, tiny_hf_bert_model):
    encoder = load_model(_sentence_transformers_dir(tiny_hf_bert_model, tmp_path / "st"))
    save_model(encoder, tmp_path / "saved", load_tokenizer(tiny_hf_bert_model))
    config = json.loads((tmp_path / "saved" / "config.json").read_text())["distil_tf"]["model"]["config"]
    assert (config["pooling"], config["normalize_embeddings"]) == ("mean", True)
    reloaded = load_model(tmp_path / "saved")
    np.testing.assert_allclose(np.asarray(reloaded.embed(_inputs())), np.asarray(encoder.embed(_inputs())), atol=1e-6)


# --- Honoured by task heads and students ------------------------------------


def test_task_head_uses_the_recorded_pooling(tmp_path, tiny_hf_bert_model):
    encoder = load_model(_sentence_transformers_dir(tiny_hf_bert_model, tmp_path / "st"))
    model = TaskModel.from_encoder(encoder, "classification", num_classes=3)
    assert model.pooling == "mean"
    inputs = _inputs()
    sequence = model.encoder(inputs)["sequence_output"]
    expected = model.classifier(pooling_lib.pool(sequence, inputs["padding_mask"], "mean"))
    np.testing.assert_allclose(np.asarray(model(inputs)["logits"]), np.asarray(expected), atol=1e-6)
    # The pooler would give other logits: the head really reads the mean.
    pooler_logits = model.classifier(model.encoder(inputs)["pooled_output"])
    assert np.max(np.abs(np.asarray(pooler_logits) - np.asarray(expected))) > 1e-3
    save_model(model, tmp_path / "task", load_tokenizer(tiny_hf_bert_model))
    assert load_model(tmp_path / "task").pooling == "mean"


def test_task_model_configs_without_pooling_keep_the_reference_heads(tiny_hf_bert_model):
    # Directories written before pooling was recorded load as they were trained.
    model = TaskModel.from_encoder(load_model(tiny_hf_bert_model), "regression")
    config = model.get_config()
    config.pop("pooling")
    config["encoder"]["config"].pop("pooling")
    assert TaskModel.from_config(config).pooling == "cls_pooler"
    distilbert = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                         intermediate_dim=16)
    assert TaskModel(distilbert, "regression").pooling == "cls"


def test_student_carries_the_teachers_pooling(tmp_path, tiny_hf_bert_model):
    teacher = load_model(_sentence_transformers_dir(tiny_hf_bert_model, tmp_path / "st"))
    student, _ = init_student_from_teacher(teacher, layer_map=[1])
    assert (student.pooling, student.normalize_embeddings) == ("mean", True)
    # BERT's pooler does not exist in a DistilBERT student: nothing recorded.
    pooler_student, _ = init_student_from_teacher(load_model(tiny_hf_bert_model), layer_map=[1])
    assert pooler_student.pooling is None
    # From a fine-tuned task model, the head's pooling is the one carried.
    task = TaskModel.from_encoder(load_model(tiny_hf_bert_model), "regression", pooling="cls")
    save_model(task, tmp_path / "task", load_tokenizer(tiny_hf_bert_model))
    written, _ = write_student(tmp_path / "task", tmp_path / "student", layer_map=[0])
    assert written.pooling == "cls" and load_model(tmp_path / "student").pooling == "cls"
