"""Encoder exports: sentence embeddings in, the way the checkpoint pools, equal to the model's."""

import json

import numpy as np
import pytest
import tensorflow as tf

from distil_tf import load_model
from distil_tf.export import export_model, warmup
from distil_tf.export.exporter import read_embedding_config, signature_names
from distil_tf.models import Encoder, TaskModel, save_model

MAX_SEQUENCE_LENGTH = 64


def _encoder(tokenizer, architecture="bert", pooling="mean", normalize=True, seed=4):
    tf.keras.utils.set_random_seed(seed)
    encoder = Encoder(
        architecture, vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
        hidden_dim=16, intermediate_dim=32, max_sequence_length=MAX_SEQUENCE_LENGTH,
        mlm_head=True, pooling=pooling, normalize_embeddings=normalize,
    )
    encoder(encoder.dummy_inputs())
    return encoder


@pytest.fixture(scope="module")
def encoder_export(tmp_path_factory, bert_tokenizer):
    """A tiny BERT encoder (real vocabulary, mean pooling, normalized) and its version 1."""
    directory = tmp_path_factory.mktemp("embedding")
    save_model(_encoder(bert_tokenizer), directory / "encoder", bert_tokenizer)
    version_dir = export_model(directory / "encoder", directory / "base", max_sequence_length=MAX_SEQUENCE_LENGTH)
    return directory, load_model(directory / "encoder"), version_dir, tf.saved_model.load(str(version_dir))


def _training_features(tokenizer, texts):
    """Packed `[CLS] text [SEP]` ids by keras-hub's packer, an independent reference (padded to the length)."""
    import keras_hub

    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=MAX_SEQUENCE_LENGTH, start_value=tokenizer.token_to_id("[CLS]"),
        end_value=tokenizer.token_to_id("[SEP]"), pad_value=tokenizer.token_to_id("[PAD]"))
    token_ids, segment_ids = packer(tokenizer(tf.constant(texts)))
    return {"token_ids": tf.cast(token_ids, tf.int32), "segment_ids": tf.cast(segment_ids, tf.int32),
            "padding_mask": tf.cast(token_ids != tokenizer.token_to_id("[PAD]"), tf.int32)}


def test_layout_signatures_and_recorded_pooling(encoder_export):
    _, _, version_dir, loaded = encoder_export
    assert signature_names(version_dir) == ["embed_ids", "serving_default"]
    assert read_embedding_config(version_dir) == {
        "pooling": "mean", "normalize": True, "max_sequence_length": MAX_SEQUENCE_LENGTH,
        "hidden_dim": 16, "graph": "default",
    }
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert list(outputs) == ["embedding"] and outputs["embedding"].shape.as_list() == [None, 16]
    # Batch 1, batch 4, an empty text and the ids signature all replay.
    assert warmup.verify_warmup_requests(version_dir) == 4


def test_served_embeddings_are_unit_norm_and_equal_the_model(encoder_export, bert_tokenizer, stsb_pairs):
    _, model, _, loaded = encoder_export
    texts = [text for pair in stsb_pairs for text in pair]  # 24 real sentences
    served = loaded.signatures["serving_default"](text=tf.constant(texts))["embedding"].numpy()
    assert served.shape == (24, 16) and served.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, rtol=1e-5)
    # The Keras model on training's own tokenization and packing.
    expected = model.embed(_training_features(bert_tokenizer, texts)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
    # Distinct sentences get distinct embeddings (the pooling is not constant).
    assert np.max(np.abs(served[0] - served[2])) > 1e-2


def test_embed_ids_equals_text_in(encoder_export, bert_tokenizer, stsb_pairs):
    _, _, _, loaded = encoder_export
    texts = [pair[0] for pair in stsb_pairs]
    features = _training_features(bert_tokenizer, texts)
    by_ids = loaded.signatures["embed_ids"](
        token_ids=features["token_ids"], padding_mask=features["padding_mask"],
        segment_ids=features["segment_ids"],
    )["embedding"].numpy()
    by_text = loaded.signatures["serving_default"](text=tf.constant(texts))["embedding"].numpy()
    np.testing.assert_allclose(by_ids, by_text, atol=1e-6)


def test_empty_text_is_the_embedding_of_cls_sep(encoder_export, bert_tokenizer):
    _, model, _, loaded = encoder_export
    served = loaded.signatures["serving_default"](text=tf.constant(["", "a man is dancing."]))["embedding"].numpy()
    ids = np.array([[bert_tokenizer.token_to_id("[CLS]"), bert_tokenizer.token_to_id("[SEP]")]], "int32")
    expected = model.embed({"token_ids": ids, "padding_mask": np.ones_like(ids)}).numpy()
    np.testing.assert_allclose(served[:1], expected, atol=1e-5)
    assert np.all(np.isfinite(served))


def test_pooling_and_normalization_overrides(encoder_export):
    directory, model, _, _ = encoder_export
    version_dir = export_model(directory / "encoder", directory / "base", pooling="cls_pooler", normalize=False,
                               max_sequence_length=MAX_SEQUENCE_LENGTH, warmup=False)
    assert version_dir.name == "2"
    assert read_embedding_config(version_dir)["pooling"] == "cls_pooler"
    served = tf.saved_model.load(str(version_dir)).signatures["embed_ids"](
        token_ids=tf.constant([[101, 2023, 102]]), padding_mask=tf.constant([[1, 1, 1]]),
        segment_ids=tf.constant([[0, 0, 0]]),
    )["embedding"].numpy()
    inputs = {"token_ids": np.array([[101, 2023, 102]], "int32"), "padding_mask": np.ones((1, 3), "int32")}
    np.testing.assert_allclose(served, model.embed(inputs, pooling="cls_pooler", normalize=False).numpy(), atol=1e-5)
    # tanh pooler outputs are in (-1, 1) and not unit-normalized here.
    assert abs(float(np.linalg.norm(served)) - 1.0) > 1e-2


def test_encoder_without_known_pooling_is_refused(tmp_path, bert_tokenizer):
    save_model(_encoder(bert_tokenizer, "distilbert", pooling=None, normalize=False), tmp_path / "e", bert_tokenizer)
    with pytest.raises(ValueError, match=r"no known pooling .*--pooling cls\|mean"):
        export_model(tmp_path / "e", tmp_path / "base")
    assert not (tmp_path / "base" / "1").exists()
    with pytest.raises(ValueError, match="needs BERT's pooler"):
        export_model(tmp_path / "e", tmp_path / "base", pooling="cls_pooler")


def test_pooling_flags_are_refused_for_task_models(tmp_path, bert_tokenizer):
    model = TaskModel.from_encoder(_encoder(bert_tokenizer), "regression", task_name="glue/stsb")
    save_model(model, tmp_path / "task", bert_tokenizer)
    with pytest.raises(ValueError, match="apply to encoder exports"):
        export_model(tmp_path / "task", tmp_path / "base", normalize=True)
    assert json.loads((tmp_path / "task" / "config.json").read_text())["distil_tf"]["model"]["config"]["pooling"] == "mean"


def test_a_distilbert_student_exports_its_two_input_embed_ids(tmp_path, bert_tokenizer, stsb_pairs):
    """A student cut from a BERT teacher is DistilBERT (no segment ids): `embed_ids` takes two inputs."""
    save_model(_encoder(bert_tokenizer, "distilbert", seed=5), tmp_path / "student", bert_tokenizer)
    version_dir = export_model(tmp_path / "student", tmp_path / "base", max_sequence_length=MAX_SEQUENCE_LENGTH)
    loaded = tf.saved_model.load(str(version_dir))
    texts = [pair[0] for pair in stsb_pairs[:4]]
    features = _training_features(bert_tokenizer, texts)
    by_ids = loaded.signatures["embed_ids"](token_ids=features["token_ids"],
                                            padding_mask=features["padding_mask"])["embedding"].numpy()
    by_text = loaded.signatures["serving_default"](text=tf.constant(texts))["embedding"].numpy()
    np.testing.assert_allclose(by_ids, by_text, atol=1e-6)
    assert sorted(loaded.signatures["embed_ids"].structured_input_signature[1]) == ["padding_mask", "token_ids"]
