"""`export --format hf`: transformers loads every export with our numbers; load_model reads it back exactly.

Tiny random models (hidden 32, 2 layers, the 99-token test vocabulary).
Parity is against `transformers` itself (the test extra), in float32: the
logits and every hidden state at real (non-pad) positions within 1e-4.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.export.ecosystem import export_to_format
from distil_tf.export.hf_format import load_hf_task_model
from distil_tf.models import Encoder, TaskModel, init_student_from_teacher, load_model, save_model
from distil_tf.text import load_tokenizer

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TOLERANCE = 1e-4
# Batch of 2 `[2, 7]`: a padded row and a full one; ids from the tiny vocabulary.
TOKEN_IDS = np.array([[7, 10, 12, 13, 8, 0, 0], [7, 20, 21, 22, 8, 24, 8]], dtype=np.int32)
PADDING_MASK = (TOKEN_IDS != 0).astype(np.int32)
SEGMENT_IDS = np.array([[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1]], dtype=np.int32)
REAL = PADDING_MASK.astype(bool)


def _inputs(architecture):
    inputs = {"token_ids": TOKEN_IDS, "padding_mask": PADDING_MASK}
    if architecture == "bert":
        inputs["segment_ids"] = SEGMENT_IDS
    return inputs


def _hf_outputs(hf_model, architecture):
    kwargs = dict(input_ids=torch.tensor(TOKEN_IDS, dtype=torch.long),
                  attention_mask=torch.tensor(PADDING_MASK, dtype=torch.long), output_hidden_states=True)
    if architecture == "bert":
        kwargs["token_type_ids"] = torch.tensor(SEGMENT_IDS, dtype=torch.long)
    with torch.no_grad():
        return hf_model.eval()(**kwargs)


def _max_error(reference, ours, where=REAL):
    return float(np.abs(np.asarray(reference) - np.asarray(ours))[where].max())


def _export(tmp_path, model, tokenizer, provenance=None, name="model"):
    source = tmp_path / name
    save_model(model, source, tokenizer, provenance=provenance or {})
    out = tmp_path / f"{name}_hf"
    message = export_to_format(source, out, "hf")
    return out, message


def _encoder(architecture, mlm_head=True, seed=0, **kwargs):
    tf.keras.utils.set_random_seed(seed)
    encoder = Encoder(architecture, vocabulary_size=99, num_layers=2, num_heads=4, hidden_dim=32,
                      intermediate_dim=37, max_sequence_length=64, mlm_head=mlm_head, **kwargs)
    encoder(encoder.dummy_inputs())
    return encoder


@pytest.fixture(scope="module")
def tokenizer(tiny_vocab_file):
    return load_tokenizer(tiny_vocab_file)


def _check_hidden_states(reference, ours):
    assert len(reference.hidden_states) == len(ours["hidden_states"])
    for layer, (theirs, mine) in enumerate(zip(reference.hidden_states, ours["hidden_states"])):
        assert _max_error(theirs.numpy(), mine) < TOLERANCE, f"hidden state {layer}"


def _check_round_trip_exact(exported, original):
    """load_model(HF dir) has the original's weights bit for bit, and its outputs."""
    reloaded = load_model(exported)
    assert reloaded.get_config() | {"name": None} == original.get_config() | {"name": None}
    # A BertForMaskedLM without a recorded pooling stores no pooler (see
    # hf_format); its pooler is re-initialized on load and compared nowhere.
    skip_pooler = original.architecture == "bert" and original.mlm_head is not None and original.pooling is None
    for ours, back in zip(original.backbone.weights, reloaded.backbone.weights):
        if skip_pooler and "pooled_dense" in ours.path:
            continue
        np.testing.assert_array_equal(back.numpy(), ours.numpy(), err_msg=ours.path)
    if original.mlm_head is not None:
        for ours, back in zip(original.mlm_head.weights, reloaded.mlm_head.weights):
            np.testing.assert_array_equal(back.numpy(), ours.numpy(), err_msg=ours.path)
    inputs = _inputs(original.architecture)
    for key in ("sequence_output", "mlm_logits", "pooled_output"):
        if key in original(inputs) and (key != "pooled_output" or original.pooling is not None):
            np.testing.assert_array_equal(reloaded(inputs)[key].numpy(), original(inputs)[key].numpy())


# --- Encoders -----------------------------------------------------------------


def test_student_with_folded_token_type_exports_as_distilbert_for_masked_lm(tmp_path, tiny_hf_bert_mlm, tokenizer):
    # A real student: layers [0, 3] of a BERT teacher whose token-type rows are
    # large, folded into the position table. DistilBertForMaskedLM computes
    # LayerNorm(word + position) from the same tables, so it matches exactly.
    teacher = load_model(tiny_hf_bert_mlm)
    student, _ = init_student_from_teacher(teacher, layer_map=[0, 3])
    out, message = _export(tmp_path, student, tokenizer, {"kind": "student", "token_type_folded": True})
    assert "DistilBertForMaskedLM" in message
    assert sorted(path.name for path in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer_config.json", "vocab.txt"]
    hf_model = transformers.AutoModelForMaskedLM.from_pretrained(out)
    assert type(hf_model).__name__ == "DistilBertForMaskedLM"
    # The decoder is tied on load, not stored: it must be the word table.
    np.testing.assert_array_equal(hf_model.vocab_projector.weight.detach().numpy(),
                                  student.token_embedding.embeddings.numpy())
    reference, ours = _hf_outputs(hf_model, "distilbert"), student(_inputs("distilbert"))
    assert _max_error(reference.logits.numpy(), ours["mlm_logits"]) < TOLERANCE
    _check_hidden_states(reference, ours)
    _check_round_trip_exact(out, student)
    assert "folded into the position embeddings" in (out / "README.md").read_text()


def test_student_matches_its_teacher_on_single_segment_inputs_after_export(tmp_path, tiny_hf_bert_mlm, tokenizer):
    # The fold is exact only for token type 0: a student keeping every teacher
    # layer, exported to HF, gives the HF teacher's logits on one-segment input.
    teacher_hf = transformers.BertForMaskedLM.from_pretrained(tiny_hf_bert_mlm).eval()
    student, _ = init_student_from_teacher(load_model(tiny_hf_bert_mlm), layer_map=[0, 1, 2, 3])
    out, _ = _export(tmp_path, student, tokenizer)
    student_hf = transformers.DistilBertForMaskedLM.from_pretrained(out).eval()
    ids, mask = torch.tensor(TOKEN_IDS, dtype=torch.long), torch.tensor(PADDING_MASK, dtype=torch.long)
    with torch.no_grad():
        expected = teacher_hf(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits
        got = student_hf(input_ids=ids, attention_mask=mask).logits
    assert _max_error(expected.numpy(), got.numpy()) < TOLERANCE


def test_bare_distilbert_encoder_with_mean_pooling_exports_sentence_transformers_modules(tmp_path, tokenizer):
    encoder = _encoder("distilbert", mlm_head=False, pooling="mean", normalize_embeddings=True)
    out, message = _export(tmp_path, encoder, tokenizer)
    assert "DistilBertModel" in message
    modules = json.loads((out / "modules.json").read_text())
    assert [module["type"].rsplit(".", 1)[1] for module in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True and pooling["pooling_mode_cls_token"] is False
    hf_model = transformers.AutoModel.from_pretrained(out)
    reference, ours = _hf_outputs(hf_model, "distilbert"), encoder(_inputs("distilbert"))
    assert _max_error(reference.last_hidden_state.numpy(), ours["sequence_output"]) < TOLERANCE
    _check_hidden_states(reference, ours)
    reloaded = load_model(out)
    assert (reloaded.pooling, reloaded.normalize_embeddings) == ("mean", True)
    _check_round_trip_exact(out, encoder)
    np.testing.assert_array_equal(reloaded.embed(_inputs("distilbert")).numpy(),
                                  encoder.embed(_inputs("distilbert")).numpy())


def test_mean_pooled_export_loads_in_sentence_transformers_with_our_embeddings(tmp_path, tokenizer):
    # The modules.json written for the pooling is sentence-transformers' own
    # layout: its loader rebuilds Transformer -> Pooling(mean) -> Normalize.
    sentence_transformers = pytest.importorskip("sentence_transformers")
    encoder = _encoder("distilbert", mlm_head=False, pooling="mean", normalize_embeddings=True, seed=9)
    out, _ = _export(tmp_path, encoder, tokenizer)
    model = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    sentences = ["this movie was great fun!", "it was not good, and very boring."]
    theirs = model.encode(sentences)  # [2, 32], unit norm
    for sentence, embedding in zip(sentences, theirs):
        ids = [6] + [int(token) for token in np.asarray(tokenizer([sentence])[0])] + [7]
        inputs = {"token_ids": np.array([ids], np.int32), "padding_mask": np.ones((1, len(ids)), np.int32)}
        ours = encoder.embed(inputs).numpy()[0]
        assert np.abs(embedding - ours).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(theirs, axis=1), 1.0, rtol=1e-5)


def test_bert_teacher_exports_as_bert_for_masked_lm_with_segments(tmp_path, tokenizer):
    encoder = _encoder("bert", mlm_head=True, seed=3, hidden_activation="gelu_approximate")
    out, message = _export(tmp_path, encoder, tokenizer)
    assert "BertForMaskedLM" in message
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_act"] == "gelu_new" and config["type_vocab_size"] == 2
    hf_model = transformers.BertForMaskedLM.from_pretrained(out)
    reference, ours = _hf_outputs(hf_model, "bert"), encoder(_inputs("bert"))
    assert _max_error(reference.logits.numpy(), ours["mlm_logits"]) < TOLERANCE
    _check_hidden_states(reference, ours)
    _check_round_trip_exact(out, encoder)


def test_bert_without_mlm_head_exports_as_bert_model_with_its_pooler(tmp_path, tiny_hf_bert_model, tokenizer):
    encoder = load_model(tiny_hf_bert_model)  # pooling "cls_pooler", trained-pooler weights
    out, message = _export(tmp_path, encoder, tokenizer)
    assert "BertModel" in message
    hf_model = transformers.BertModel.from_pretrained(out)
    reference, ours = _hf_outputs(hf_model, "bert"), encoder(_inputs("bert"))
    assert _max_error(reference.pooler_output.numpy(), ours["pooled_output"], where=slice(None)) < TOLERANCE
    _check_hidden_states(reference, ours)
    _check_round_trip_exact(out, encoder)
    assert load_model(out).pooling == "cls_pooler"


def test_exported_tokenizer_loads_in_transformers_with_our_ids(tmp_path, tokenizer):
    out, _ = _export(tmp_path, _encoder("distilbert"), tokenizer)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert type(hf_tokenizer).__name__.startswith("DistilBertTokenizer")
    sentence = "This movie was not boring, it was great fun!"
    ours = [int(token) for token in np.asarray(tokenizer([sentence])[0])]
    assert len(ours) == 11 and 5 not in ours  # every word is in the vocabulary (5 is [UNK])
    assert hf_tokenizer(sentence, add_special_tokens=False)["input_ids"] == ours
    assert hf_tokenizer(sentence)["input_ids"] == [6] + ours + [7]  # [CLS] ... [SEP]
    assert json.loads((out / "special_tokens_map.json").read_text())["mask_token"] == "[MASK]"


# --- Task models ----------------------------------------------------------------


def _task_model(architecture, head_type, seed=0, **kwargs):
    encoder = _encoder(architecture, mlm_head=False, seed=seed)
    return TaskModel.from_encoder(encoder, head_type, task_name="tiny", **kwargs)


@pytest.mark.parametrize("architecture", ["distilbert", "bert"])
def test_classifier_exports_with_labels_and_logits(tmp_path, tokenizer, architecture):
    model = _task_model(architecture, "classification", seed=5, num_classes=3,
                        label_names=["negative", "neutral", "positive"])
    out, message = _export(tmp_path, model, tokenizer)
    class_name = {"distilbert": "DistilBertForSequenceClassification", "bert": "BertForSequenceClassification"}
    assert class_name[architecture] in message
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert type(hf_model).__name__ == class_name[architecture]
    assert hf_model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    reference, ours = _hf_outputs(hf_model, architecture), model(_inputs(architecture))
    assert _max_error(reference.logits.numpy(), ours["logits"], where=slice(None)) < TOLERANCE
    _check_hidden_states(reference, model.encoder(_inputs(architecture)))
    # load_model reads the encoder back (heads stay HF-only): exact.
    reloaded = load_model(out)
    np.testing.assert_array_equal(reloaded(_inputs(architecture))["sequence_output"].numpy(),
                                  model.encoder(_inputs(architecture))["sequence_output"].numpy())


def test_regression_head_exports_as_one_label_regression(tmp_path, tokenizer):
    model = _task_model("distilbert", "regression", seed=6)
    out, _ = _export(tmp_path, model, tokenizer)
    hf_model = transformers.DistilBertForSequenceClassification.from_pretrained(out)
    assert hf_model.config.problem_type == "regression" and hf_model.config.num_labels == 1
    reference = _hf_outputs(hf_model, "distilbert").logits.numpy()[:, 0]
    assert _max_error(reference, model(_inputs("distilbert"))["logits"], where=slice(None)) < TOLERANCE


def test_span_model_exports_as_question_answering_raw_at_padding(tmp_path, tokenizer):
    model = _task_model("distilbert", "span", seed=7)
    out, message = _export(tmp_path, model, tokenizer)
    assert "DistilBertForQuestionAnswering" in message
    hf_model = transformers.DistilBertForQuestionAnswering.from_pretrained(out)
    reference, ours = _hf_outputs(hf_model, "distilbert"), model(_inputs("distilbert"))
    for name in ("start", "end"):
        theirs, mine = getattr(reference, f"{name}_logits").numpy(), ours[f"{name}_logits"].numpy()
        assert _max_error(theirs, mine) < TOLERANCE
        # Padding: ours is HF's plus the -1e4 mask (float32 spacing at 1e4 is ~1e-3).
        np.testing.assert_allclose(mine[~REAL], theirs[~REAL] - 1e4, atol=2e-3)
    assert "padding positions are raw" in (out / "README.md").read_text()


@pytest.mark.parametrize("architecture, head_type, kwargs", [
    ("distilbert", "classification", {"num_classes": 3, "label_names": ["a", "b", "c"]}),
    ("distilbert", "classification", {"num_classes": 2}),
    ("bert", "classification", {"num_classes": 2, "label_names": ["negative", "positive"]}),
    ("distilbert", "regression", {}),
    ("distilbert", "span", {}),
    ("bert", "span", {}),
])
def test_task_model_round_trip_through_hf_is_exact(tmp_path, tokenizer, architecture, head_type, kwargs):
    model = _task_model(architecture, head_type, seed=11, **kwargs)
    out, _ = _export(tmp_path, model, tokenizer)
    back = load_hf_task_model(out)
    head_fields = ("head_type", "num_classes", "task_name", "label_names", "classifier_dropout", "pooling")
    assert {key: back.get_config()[key] for key in head_fields} == {key: model.get_config()[key] for key in head_fields}
    expected, got = model(_inputs(architecture)), back(_inputs(architecture))
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)


def test_reading_a_bare_encoder_as_a_task_model_is_refused(tmp_path, tokenizer):
    out, _ = _export(tmp_path, _encoder("distilbert"), tokenizer)
    with pytest.raises(ValueError, match="DistilBertForMaskedLM is not a task head distil-tf reads"):
        load_hf_task_model(out)


# --- Refusals -------------------------------------------------------------------


def _no_leftovers(parent):
    return sorted(path.name for path in parent.iterdir() if "tmp" in path.name or path.name.startswith("."))


@pytest.mark.parametrize("architecture, pooling", [("distilbert", "mean"), ("bert", "cls"), ("bert", "mean")])
def test_classifier_pooling_hf_cannot_express_is_refused(tmp_path, tokenizer, architecture, pooling):
    model = _task_model(architecture, "classification", num_classes=2, pooling=pooling)
    source = tmp_path / "model"
    save_model(model, source, tokenizer)
    out = tmp_path / "exports" / "hf"
    with pytest.raises(ValueError, match=f"pools with '{pooling}'.*not exported"):
        export_to_format(source, out, "hf")
    assert not out.exists()
    assert _no_leftovers(out.parent) == []


def test_existing_output_directory_is_refused_and_kept(tmp_path, tokenizer):
    source = tmp_path / "model"
    save_model(_encoder("distilbert"), source, tokenizer)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        export_to_format(source, out, "hf")
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


def test_model_without_tokenizer_is_refused(tmp_path, tokenizer):
    source = tmp_path / "model"
    save_model(_encoder("distilbert"), source, tokenizer)
    (source / "vocab.txt").unlink()
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="no tokenizer in"):
        export_to_format(source, out, "hf")
    assert not out.exists()
    assert _no_leftovers(tmp_path) == []


def test_an_inherited_head_without_a_pre_classifier_is_refused(tmp_path, tiny_hf_bert_mlm):
    from distil_tf import load_model
    from distil_tf.export.hf_format import check_reference_head_layers
    from distil_tf.export.keras_hub_format import write_keras_hub_export
    from distil_tf.models import TaskModel
    from distil_tf.models.student_init import student_task_model
    from distil_tf.text import load_tokenizer

    teacher = TaskModel.from_encoder(load_model(tiny_hf_bert_mlm), "classification", num_classes=2,
                                     task_name="glue/sst2", pooling="cls")
    student, _, head = student_task_model(teacher, num_layers=2)
    assert head == "inherited from the teacher" and student.pre_classifier is None
    with pytest.raises(ValueError, match="distilbert classifier has no pre-classifier .* Hugging Face's"):
        check_reference_head_layers(student, "Hugging Face")
    with pytest.raises(ValueError, match="unlike keras-hub's distilbert classifier"):
        write_keras_hub_export(student, load_tokenizer(tiny_hf_bert_mlm), tmp_path / "kh")
