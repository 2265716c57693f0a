"""Model cards (`README.md` in every export) say what the model directory records, and only that."""

import json

import pytest
import tensorflow as tf

from distil_tf.export.ecosystem import export_to_format
from distil_tf.models import Encoder, TaskModel, save_model
from distil_tf.run_dir import mark_model_saved, mark_run_finished, mark_run_started
from distil_tf.text import load_tokenizer

# A task-distillation run's provenance, as `distill-task` records it.
PROVENANCE = {
    "kind": "task_distilled",
    "task": "glue/sst2",
    "teacher": "runs/sst2-teacher",
    "student_init": "0,2",
    "layer_map": [0, 2],
    "distillation": {"alpha_ce": 0.5, "alpha_task": 0.5, "temperature": 2.0},
    "data": {"train_examples": 12000, "source": "local"},
    "steps": 1125,
    "epochs": 3.0,
    "max_seq_length": 66,
    "seed": 0,
    "preprocessing": {"max_sequence_length": 66, "truncation": "head"},
}
METRICS = {"task": "glue/sst2", "steps": 1125,
           "evaluation": {"dev": {"accuracy": 0.8738, "examples": 872}}}


@pytest.fixture(scope="module")
def tokenizer(tiny_vocab_file):
    return load_tokenizer(tiny_vocab_file)


def _classifier():
    tf.keras.utils.set_random_seed(0)
    encoder = Encoder("distilbert", vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=8,
                      intermediate_dim=16, max_sequence_length=32, mlm_head=False)
    encoder(encoder.dummy_inputs())
    return TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="glue/sst2",
                                  label_names=["negative", "positive"])


def _run_directory(tmp_path, tokenizer):
    """A finished `distill-task` run: config.yaml, run.json, model/, metrics.json."""
    run = tmp_path / "run"
    mark_run_started(run, "distill-task")
    (run / "config.yaml").write_text("task: glue/sst2\n")
    save_model(_classifier(), run / "model", tokenizer, provenance=PROVENANCE)
    mark_model_saved(run, run / "model")
    (run / "metrics.json").write_text(json.dumps(METRICS))
    mark_run_finished(run)
    return run


@pytest.mark.parametrize("format_name", ["hf", "keras-hub"])
def test_card_of_a_run_records_recipe_data_metrics_and_command(tmp_path, tokenizer, format_name):
    run = _run_directory(tmp_path, tokenizer)
    out = tmp_path / "export"
    export_to_format(run, out, format_name)  # the run directory resolves to run/model
    card = (out / "README.md").read_text()
    for expected in [
        "- teacher: runs/sst2-teacher",
        "- layer map (student layer i <- teacher layer): 0<-0, 1<-2",
        "- temperature: 2.0",
        "0.5 x soft-target cross-entropy (KL at temperature T, scaled by T^2); 0.5 x task loss on the true labels",
        '- data: {"source": "local", "train_examples": 12000}',
        "- steps: 1125",
        '(apply the same before tokenizing): `{"max_sequence_length": 66, "truncation": "head"}`',
        "Produced by `distil-tf distill-task --config config.yaml` in run directory `run`",
        '"accuracy": 0.8738',
        "- labels (id order): negative, positive",
        "- head pooling: cls",
        "2 layers, hidden 8, 2 heads",
    ]:
        assert expected in card, expected
    assert card.startswith("---\nlibrary_name: " + {"hf": "transformers", "keras-hub": "keras-hub"}[format_name])


def test_card_without_provenance_says_not_recorded(tmp_path, tokenizer):
    source = tmp_path / "model"
    save_model(_classifier(), source, tokenizer)
    out = tmp_path / "export"
    export_to_format(source, out, "hf")
    card = (out / "README.md").read_text()
    assert "- teacher: not recorded" in card
    assert "- steps: not recorded" in card
    assert "Dev metrics: not recorded (the model is not the final model of a distil-tf run)." in card
    assert "a model with no recorded provenance" in card
