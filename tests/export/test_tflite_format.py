"""`export --format tflite`: fp32 and int8 TFLite models run under ai-edge-litert on real SST-2 sentences.

Tiny random models (1 layer, hidden 16) over the real bert-base-uncased
vocabulary (fixtures in `tests/export/conftest.py`). The reference is the
Keras model the SavedModel export is built from (its own tests hold the
SavedModel to it): fp32 within 1e-4; int8 dynamic-range within 5% relative
L2 error (random tiny weights; the accuracy cost on a trained model is for
SST-2 dev, measured by hand).
"""

import json

import numpy as np
import pytest

from distil_tf.export import tflite_format
from distil_tf.export.ecosystem import export_to_format
from distil_tf.models import Encoder, save_model

pytest.importorskip("ai_edge_litert")

SEQUENCE_LENGTH = 32
FP32_TOLERANCE = 1e-4
INT8_RELATIVE_TOLERANCE = 0.05


def _export(tmp_path, model, tokenizer, name):
    source = tmp_path / name
    save_model(model, source, tokenizer)
    out = tmp_path / f"{name}_tflite"
    message = export_to_format(source, out, "tflite", sequence_length=SEQUENCE_LENGTH)
    return out, message


def _compare(out, model, feature_batches, output_names):
    """Max fp32 error and max int8 relative L2 error over the batches, per output."""
    runners = {name: tflite_format.interpreter(out / name)
               for name in (tflite_format.FP32_FILE, tflite_format.INT8_FILE)}
    fp32_error, int8_relative = 0.0, 0.0
    for features in feature_batches:
        expected = model(features)
        if not isinstance(expected, dict):
            expected = {"embedding": expected}
        for output in output_names:
            reference = np.asarray(expected[output])
            fp32 = tflite_format.run(runners[tflite_format.FP32_FILE], features)[output]
            int8 = tflite_format.run(runners[tflite_format.INT8_FILE], features)[output]
            assert fp32.shape == reference.shape
            if output.endswith("_logits"):
                # Span logits: real positions only; padding carries -1e4,
                # where float32's spacing is ~1e-3.
                real = features["padding_mask"].astype(bool)
                fp32, int8, reference = fp32[real], int8[real], reference[real]
            fp32_error = max(fp32_error, float(np.abs(fp32 - reference).max()))
            int8_relative = max(int8_relative,
                                float(np.linalg.norm(int8 - reference) / np.linalg.norm(reference)))
    return fp32_error, int8_relative


def test_classifier_tflite_matches_keras_on_sst2_sentences(tmp_path, task_model_builder, bert_tokenizer,
                                                           sst2_sentences):
    model = task_model_builder(bert_tokenizer, "distilbert", "classification", "glue/sst2",
                               ["negative", "positive"], seed=3)
    out, message = _export(tmp_path, model, bert_tokenizer, "sst2")
    assert f"[1, {SEQUENCE_LENGTH}] ids in" in message
    spec = json.loads((out / tflite_format.SPEC_FILE).read_text())
    assert spec["inputs"] == {"token_ids": [1, 32], "padding_mask": [1, 32]}
    assert spec["outputs"] == ["logits"] and spec["label_names"] == ["negative", "positive"]
    assert (out / "vocab.txt").read_text().splitlines() == bert_tokenizer.get_vocabulary()
    # Dynamic-range int8 stores the weights in a quarter of the bytes.
    sizes = {name: (out / name).stat().st_size for name in (tflite_format.FP32_FILE, tflite_format.INT8_FILE)}
    assert sizes[tflite_format.INT8_FILE] < 0.35 * sizes[tflite_format.FP32_FILE]
    batches = []
    for sentence in sst2_sentences[:8]:
        packed = tflite_format.pack_for_tflite(bert_tokenizer, sentence, SEQUENCE_LENGTH)
        assert packed["token_ids"].shape == (1, SEQUENCE_LENGTH) and packed["token_ids"][0, 0] == 101
        batches.append({name: packed[name] for name in ("token_ids", "padding_mask")})
    fp32_error, int8_relative = _compare(out, model, batches, ["logits"])
    assert fp32_error < FP32_TOLERANCE
    assert int8_relative < INT8_RELATIVE_TOLERANCE


def test_bert_span_model_tflite_takes_segment_ids(tmp_path, task_model_builder, bert_tokenizer, sst2_sentences):
    model = task_model_builder(bert_tokenizer, "bert", "span", "squad", seed=4)
    out, _ = _export(tmp_path, model, bert_tokenizer, "span")
    spec = json.loads((out / tflite_format.SPEC_FILE).read_text())
    assert sorted(spec["inputs"]) == ["padding_mask", "segment_ids", "token_ids"]
    batches = [tflite_format.pack_for_tflite(bert_tokenizer, "what is it about?", SEQUENCE_LENGTH,
                                             text_pair=sentence) for sentence in sst2_sentences[:3]]
    assert batches[0]["segment_ids"].max() == 1  # the pair is really packed as two segments
    fp32_error, _ = _compare(out, model, batches, ["start_logits", "end_logits"])
    assert fp32_error < FP32_TOLERANCE


def test_mean_pooled_encoder_tflite_returns_its_embedding(tmp_path, bert_tokenizer, sst2_sentences):
    encoder = Encoder("distilbert", vocabulary_size=bert_tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                      hidden_dim=16, intermediate_dim=32, max_sequence_length=64, mlm_head=True,
                      pooling="mean", normalize_embeddings=True)
    encoder(encoder.dummy_inputs())
    out, _ = _export(tmp_path, encoder, bert_tokenizer, "encoder")
    assert "masked-LM head is not part of the TFLite model" in (out / "README.md").read_text()
    batches = []
    for sentence in sst2_sentences[:4]:
        packed = tflite_format.pack_for_tflite(bert_tokenizer, sentence, SEQUENCE_LENGTH)
        batches.append({name: packed[name] for name in ("token_ids", "padding_mask")})
    fp32_error, int8_relative = _compare(out, encoder.embed, batches, ["embedding"])
    assert fp32_error < FP32_TOLERANCE
    assert int8_relative < INT8_RELATIVE_TOLERANCE


def test_classification_accuracy_counts_the_tflite_models_predictions(tmp_path, task_model_builder, bert_tokenizer,
                                                                     sst2_sentences):
    model = task_model_builder(bert_tokenizer, "distilbert", "classification", "glue/sst2",
                               ["negative", "positive"], seed=5)
    out, _ = _export(tmp_path, model, bert_tokenizer, "accuracy")
    sentences = sst2_sentences[:8]
    expected = []
    for sentence in sentences:
        packed = tflite_format.pack_for_tflite(bert_tokenizer, sentence, SEQUENCE_LENGTH)
        logits = model({name: packed[name] for name in ("token_ids", "padding_mask")})["logits"]
        expected.append(int(np.argmax(logits[0])))
    # Labels chosen so that exactly the first three agree with the model.
    labels = [label if index < 3 else 1 - label for index, label in enumerate(expected)]
    accuracy, predictions = tflite_format.classification_accuracy(
        out / tflite_format.FP32_FILE, bert_tokenizer, sentences, labels, SEQUENCE_LENGTH)
    assert predictions.tolist() == expected
    assert accuracy == 3 / 8


def test_tflite_export_serves_what_was_trained_imdb_length_cleaning_and_head_tail(
        tmp_path, task_model_builder, bert_tokenizer):
    """No length flag: the trained length and the trained cleaning/truncation, the SavedModel signatures' ids."""
    import tensorflow as tf

    from distil_tf.export import create_export_module
    from distil_tf.text.preprocessing import PreprocessingConfig

    trained = PreprocessingConfig(48, truncation="head_tail", head_length=16, clean_line_breaks=True)
    model = task_model_builder(bert_tokenizer, "distilbert", "classification", "imdb", ["neg", "pos"], seed=6)
    source = tmp_path / "imdb"
    save_model(model, source, bert_tokenizer, provenance={"kind": "finetuned", "task": "imdb", "max_seq_length": 48,
                                                            "preprocessing": trained.to_dict()})
    out = tmp_path / "imdb_tflite"
    assert "[1, 48] ids in" in export_to_format(source, out, "tflite")
    spec = json.loads((out / tflite_format.SPEC_FILE).read_text())
    assert spec["sequence_length"] == 48 and spec["preprocessing"] == trained.to_dict()
    review = ("An opening that drags.<br /><br />" + "Then the middle works well enough, " * 12
              + "<br />and the ending is a real surprise.")
    packed = tflite_format.pack_for_tflite(bert_tokenizer, review, 48, preprocessing=spec["preprocessing"])
    served = create_export_module(model, bert_tokenizer, max_sequence_length=48, preprocessing=trained).pack(
        tf.constant([review]))
    np.testing.assert_array_equal(packed["token_ids"], served["token_ids"].numpy())
    vocabulary = bert_tokenizer.get_vocabulary()
    tokens = [vocabulary[index] for index in packed["token_ids"][0]]
    # Tags gone; head + tail kept: the review's last words end the full-length row.
    assert "<" not in tokens and tokens[-3:] == ["surprise", ".", "[SEP]"] and tokens[1] == "an"
    with pytest.warns(UserWarning, match="trained at 48"):
        export_to_format(source, tmp_path / "imdb_tflite_32", "tflite", sequence_length=32)


def test_a_child_process_converts_the_same_model_and_reports_failures_in_one_line(
        tmp_path, task_model_builder, bert_tokenizer, sst2_sentences):
    """Base-size models convert in a child process (the converter keeps ~30x the weights); same model out."""
    model = task_model_builder(bert_tokenizer, "distilbert", "classification", "glue/sst2",
                               ["negative", "positive"], seed=7)
    assert not tflite_format.needs_isolation(model)  # tiny: in process, as every other test here
    source = save_model(model, tmp_path / "model", bert_tokenizer)
    here, child = tmp_path / "here.tflite", tmp_path / "child.tflite"
    assert tflite_format.convert_to_file(model, SEQUENCE_LENGTH, here, isolate=False) == here.stat().st_size
    size = tflite_format.convert_to_file(model, SEQUENCE_LENGTH, child, model_dir=source, isolate=True)
    assert size == child.stat().st_size and abs(size - here.stat().st_size) < 0.01 * size
    runners = [tflite_format.interpreter(path) for path in (here, child)]
    for sentence in sst2_sentences[:4]:
        packed = tflite_format.pack_for_tflite(bert_tokenizer, sentence, SEQUENCE_LENGTH)
        features = {name: packed[name] for name in ("token_ids", "padding_mask")}
        first, second = (tflite_format.run(runner, features)["logits"] for runner in runners)
        np.testing.assert_array_equal(first, second)
    with pytest.raises(ValueError, match="needs the directory it was loaded from"):
        tflite_format.convert_to_file(model, SEQUENCE_LENGTH, tmp_path / "x.tflite", isolate=True)
    with pytest.raises(ValueError, match=r"^TFLite conversion of .*missing failed: ") as error:
        tflite_format.convert_to_file(model, SEQUENCE_LENGTH, tmp_path / "y.tflite", model_dir=tmp_path / "missing",
                                      isolate=True)
    assert "\n" not in str(error.value) and not (tmp_path / "y.tflite").exists()
