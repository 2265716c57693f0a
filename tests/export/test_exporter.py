"""export_model: versions, atomic publishing, refusals."""

import pytest
import tensorflow as tf

from distil_tf.export import SentencePredictionExportModule, export_command, export_model, warmup
from distil_tf.export.exporter import signature_names
from distil_tf.models import Encoder, TaskModel, save_model
from distil_tf.text import load_tokenizer


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    encoder = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, max_sequence_length=32, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="glue/sst2",
                                   label_names=["negative", "positive"])
    path = tmp_path_factory.mktemp("tiny") / "sst2"
    save_model(model, path, tokenizer)
    return path


def test_next_free_version_and_layout(sst2_export):
    # The fixture's base path held version 3 and a non-numeric directory.
    version_dir = sst2_export.version_dir
    assert version_dir.name == "4" and version_dir.is_absolute()
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables").is_dir()
    assert sorted(path.name for path in version_dir.parent.iterdir()) == ["3", "4", "not-a-version"]
    assert signature_names(version_dir) == ["classify", "predict_ids", "serving_default"]


def test_existing_version_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "1").mkdir()
    with pytest.raises(ValueError, match="version 1 already exists"):
        export_model(tiny_model_dir, tmp_path, version=1)


def test_failing_warmup_fails_the_export_and_publishes_nothing(tiny_model_dir, tmp_path, monkeypatch):
    # A record TF Serving would fail on (wrong input name) is caught at export,
    # after the SavedModel is written: the staged directory is removed.
    bad_record = warmup.make_prediction_log({"sentence": [b"hello"]})
    monkeypatch.setattr(SentencePredictionExportModule, "warmup_logs", lambda module, model_name: [bad_record])
    with pytest.raises(ValueError, match="warmup record 0 .* fails: .*sentence"):
        export_model(tiny_model_dir, tmp_path / "base", version=7, max_sequence_length=32)
    assert list((tmp_path / "base").iterdir()) == []


def test_relative_base_path_is_made_absolute(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = export_command(tiny_model_dir, "serving/sst2", max_sequence_length=32, warmup=False)
    version_dir = tmp_path / "serving" / "sst2" / "1"
    assert str(version_dir) in message and "classify, predict_ids, serving_default" in message
    assert not (version_dir / "assets.extra").exists()
    loaded = tf.saved_model.load(str(version_dir))
    outputs = loaded.signatures["serving_default"](text=tf.constant(["a good movie", ""]))
    assert outputs["labels"].shape == (2,)


def test_keras_layers_export_serves_the_same_outputs(tiny_model_dir, tmp_path):
    # `--keras-layers` keeps the keras-hub graph; the default fused graph
    # must answer the same to float32 rounding.
    texts = tf.constant(["a good movie", "a dull, long and bad one", ""])
    outputs = {}
    for keras_layers in (False, True):
        base = tmp_path / ("keras" if keras_layers else "fused")
        export_command(tiny_model_dir, base, max_sequence_length=32, warmup=False, keras_layers=keras_layers)
        outputs[keras_layers] = tf.saved_model.load(str(base / "1")).signatures["serving_default"](text=texts)
    assert outputs[False]["labels"].numpy().tolist() == outputs[True]["labels"].numpy().tolist()
    difference = tf.reduce_max(tf.abs(outputs[False]["logits"] - outputs[True]["logits"]))
    assert float(difference) < 1e-5


def test_encoder_without_known_pooling_is_refused(tiny_vocab_file, tmp_path):
    # Encoders export as embeddings (test_embedding_export), but only pooled
    # the way their checkpoint pools; this random DistilBERT records none.
    encoder = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, max_sequence_length=32)
    encoder(encoder.dummy_inputs())
    save_model(encoder, tmp_path / "encoder", load_tokenizer(tiny_vocab_file))
    with pytest.raises(ValueError, match="no known pooling"):
        export_model(tmp_path / "encoder", tmp_path / "serving")
    assert not (tmp_path / "serving").exists()


def test_base_path_that_is_a_file_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export_model(tiny_model_dir, tmp_path / "file")
