"""`export --format keras-hub`: keras-hub's own `from_preset` loads the export offline, same outputs within 1e-5.

Tiny random models (hidden 32, 2 layers, the 99-token test vocabulary).
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_hub

from distil_tf.export.ecosystem import export_to_format
from distil_tf.models import Encoder, TaskModel, load_model, save_model
from distil_tf.text import load_tokenizer

TOLERANCE = 1e-5
# `[2, 7]`: [CLS]=6 ... [SEP]=7 in the tiny vocabulary, one padded row.
TOKEN_IDS = np.array([[6, 10, 12, 13, 7, 0, 0], [6, 20, 21, 22, 7, 24, 7]], dtype=np.int32)
PADDING_MASK = (TOKEN_IDS != 0).astype(np.int32)
SEGMENT_IDS = np.array([[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1]], dtype=np.int32)
SENTENCES = ["this movie was great fun!", "it was not good, and very boring."]


@pytest.fixture(scope="module")
def tokenizer(tiny_vocab_file):
    return load_tokenizer(tiny_vocab_file)


def _encoder(architecture, mlm_head=False, seed=0, **kwargs):
    tf.keras.utils.set_random_seed(seed)
    encoder = Encoder(architecture, vocabulary_size=99, num_layers=2, num_heads=4, hidden_dim=32,
                      intermediate_dim=37, max_sequence_length=64, mlm_head=mlm_head, **kwargs)
    encoder(encoder.dummy_inputs())
    return encoder


def _export(tmp_path, model, tokenizer, name="model"):
    source = tmp_path / name
    save_model(model, source, tokenizer)
    out = tmp_path / f"{name}_keras_hub"
    return out, export_to_format(source, out, "keras-hub")


def _inputs(architecture):
    inputs = {"token_ids": TOKEN_IDS, "padding_mask": PADDING_MASK}
    if architecture == "bert":
        inputs["segment_ids"] = SEGMENT_IDS
    return inputs


def _max_error(reference, ours):
    return float(np.abs(np.asarray(reference) - np.asarray(ours)).max())


def test_student_exports_as_distilbert_backbone_preset_without_its_mlm_head(tmp_path, tokenizer):
    student = _encoder("distilbert", mlm_head=True)
    out, message = _export(tmp_path, student, tokenizer)
    assert "DistilBertBackbone preset (backbone only, no MLM head)" in message
    backbone = keras_hub.models.DistilBertBackbone.from_preset(str(out))
    theirs = backbone(_inputs("distilbert")).numpy()  # [2, 7, 32]
    ours = student(_inputs("distilbert"))["sequence_output"].numpy()
    assert theirs.shape == (2, 7, 32)
    assert _max_error(theirs, ours) < TOLERANCE
    assert "masked-LM head is not included" in (out / "README.md").read_text()
    # keras-hub's tokenizer from the preset: our ids on ordinary sentences.
    keras_tokenizer = keras_hub.models.DistilBertTokenizer.from_preset(str(out))
    for sentence in SENTENCES:
        assert np.asarray(keras_tokenizer(sentence)).tolist() == np.asarray(tokenizer([sentence])[0]).tolist()
    # load_model reads keras-hub presets too: the same backbone outputs exactly.
    reloaded = load_model(out)
    np.testing.assert_array_equal(reloaded(_inputs("distilbert"))["sequence_output"].numpy(), ours)


def test_distilbert_classifier_exports_as_text_classifier_preset(tmp_path, tokenizer):
    model = TaskModel.from_encoder(_encoder("distilbert", seed=4), "classification", num_classes=3,
                                   task_name="tiny", label_names=["negative", "neutral", "positive"])
    out, message = _export(tmp_path, model, tokenizer)
    assert "DistilBertTextClassifier preset" in message
    classifier = keras_hub.models.DistilBertTextClassifier.from_preset(str(out))
    theirs = classifier(_inputs("distilbert")).numpy()  # [2, 3]
    assert theirs.shape == (2, 3)
    assert _max_error(theirs, model(_inputs("distilbert"))["logits"]) < TOLERANCE
    # Raw text through keras-hub's own preprocessor (packed to 64) vs ours.
    packed = classifier.preprocessor(SENTENCES)
    ours = model({"token_ids": packed["token_ids"], "padding_mask": packed["padding_mask"]})["logits"].numpy()
    assert packed["token_ids"].shape == (2, 64)
    assert _max_error(classifier.predict(SENTENCES, verbose=0), ours) < TOLERANCE
    assert "0 = negative, 1 = neutral, 2 = positive" in (out / "README.md").read_text()


def test_bert_classifier_with_keras_hub_gelu_exports_as_bert_text_classifier(tmp_path, tokenizer):
    encoder = _encoder("bert", seed=8, hidden_activation="gelu_approximate")
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="tiny")
    out, _ = _export(tmp_path, model, tokenizer)
    classifier = keras_hub.models.BertTextClassifier.from_preset(str(out))
    assert _max_error(classifier(_inputs("bert")).numpy(), model(_inputs("bert"))["logits"]) < TOLERANCE


def _refused(tmp_path, model, tokenizer, match):
    source = tmp_path / "model"
    save_model(model, source, tokenizer)
    out = tmp_path / "exports" / "preset"
    with pytest.raises(ValueError, match=match):
        export_to_format(source, out, "keras-hub")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no staging directory left behind


def test_bert_with_exact_gelu_is_refused(tmp_path, tokenizer):
    # A BERT teacher from a Hugging Face checkpoint: keras-hub's BertBackbone
    # would load it with the tanh GELU.
    _refused(tmp_path, _encoder("bert", hidden_activation="gelu"), tokenizer,
             "always uses 'gelu_approximate' GELU but this model uses 'gelu'")


@pytest.mark.parametrize("head_type, kwargs, match", [
    ("span", {}, "no task for a span head"),
    ("regression", {}, "no task for a regression head"),
    ("classification", {"num_classes": 2, "pooling": "mean"}, "pools with 'mean'.*not exported"),
])
def test_heads_keras_hub_cannot_represent_are_refused(tmp_path, tokenizer, head_type, kwargs, match):
    model = TaskModel.from_encoder(_encoder("distilbert"), head_type, task_name="tiny", **kwargs)
    _refused(tmp_path, model, tokenizer, match)
