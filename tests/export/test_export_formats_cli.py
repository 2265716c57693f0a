"""`distil-tf export --format hf|keras-hub|tflite`: exit 0 and a directory, or exit 2, one line, nothing written."""

import json

import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from distil_tf.cli import main
from distil_tf.export.hf_format import hf_checkpoint
from distil_tf.models import Encoder, TaskModel, save_model
from distil_tf.text import load_tokenizer


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_vocab_file):
    """`{"student": dir, "mean_classifier": dir, "span": dir}` of tiny distil-tf models."""
    root = tmp_path_factory.mktemp("cli_models")
    tokenizer = load_tokenizer(tiny_vocab_file)
    tf.keras.utils.set_random_seed(0)
    encoder = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, max_sequence_length=32)
    encoder(encoder.dummy_inputs())
    save_model(encoder, root / "student", tokenizer, provenance={"kind": "student"})
    save_model(TaskModel.from_encoder(encoder, "classification", num_classes=2, pooling="mean"),
               root / "mean_classifier", tokenizer)
    save_model(TaskModel.from_encoder(encoder, "span"), root / "span", tokenizer)
    return {name: root / name for name in ("student", "mean_classifier", "span")}


@pytest.mark.parametrize("format_name, expected_file", [
    ("hf", "model.safetensors"), ("keras-hub", "model.weights.h5"), ("tflite", "model_int8.tflite")])
def test_export_format_writes_the_directory_with_a_model_card(tmp_path, models, capsys, format_name, expected_file):
    out = tmp_path / "out"
    assert main(["export", "--format", format_name, "--model", str(models["student"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().startswith(f"wrote {out} (")
    assert (out / expected_file).is_file() and (out / "README.md").is_file()


def _fails(argv, capsys, match):
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("distil-tf: error: ")
    assert match in error, error


@pytest.mark.parametrize("model, format_name, match", [
    ("mean_classifier", "hf", "pools with 'mean', but DistilBertForSequenceClassification reads"),
    ("span", "keras-hub", "keras-hub has no task for a span head"),
])
def test_heads_the_format_cannot_hold_exit_2_and_leave_nothing(tmp_path, models, capsys, model, format_name, match):
    out = tmp_path / "exports" / "out"
    _fails(["export", "--format", format_name, "--model", str(models[model]), "--out", str(out)], capsys, match)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_existing_out_exits_2(tmp_path, models, capsys):
    out = tmp_path / "out"
    out.mkdir()
    _fails(["export", "--format", "hf", "--model", str(models["student"]), "--out", str(out)], capsys,
           "already exists")


def test_model_without_tokenizer_exits_2(tmp_path, capsys):
    tf.keras.utils.set_random_seed(0)
    encoder = Encoder("distilbert", vocabulary_size=99, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16)
    encoder(encoder.dummy_inputs())
    model_dir = tmp_path / "hf_without_tokenizer"
    model_dir.mkdir()
    # A Hugging Face directory with weights but no vocab.txt.
    config, tensors, _ = hf_checkpoint(encoder)
    (model_dir / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(model_dir / "model.safetensors"))
    out = tmp_path / "out"
    _fails(["export", "--format", "keras-hub", "--model", str(model_dir), "--out", str(out)], capsys,
           "no tokenizer in")
    assert not out.exists()


def test_serving_flags_with_another_format_exit_2(tmp_path, models, capsys):
    out = tmp_path / "out"
    _fails(["export", "--format", "hf", "--pooling", "mean", "--model", str(models["student"]), "--out", str(out)],
           capsys, "--pooling only apply to --format saved_model")
    assert not out.exists()
