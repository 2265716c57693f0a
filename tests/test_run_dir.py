"""`run.json`: a run directory resolves to its final model, or says why it cannot."""

import json
import shutil

import pytest

from distil_tf import run_dir
from distil_tf.models import load_model, save_model
from distil_tf.models.encoder import Encoder
from distil_tf.text import load_tokenizer


def _tiny_model_dir(path, vocab_file):
    tokenizer = load_tokenizer(vocab_file)
    encoder = Encoder(architecture="distilbert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1,
                      num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    encoder(encoder.dummy_inputs())
    return save_model(encoder, path, tokenizer), encoder


def test_marker_lifecycle(tmp_path, tiny_vocab_file):
    run = tmp_path / "run"
    run_dir.mark_run_started(run, "finetune")
    assert run_dir.read_run(run) == {"format_version": 1, "command": "finetune", "status": "running",
                                     "final_model": None}
    with pytest.raises(run_dir.RunNotFinishedError, match="finetune run in progress .* resume it with the same command"):
        run_dir.resolve_model_path(str(run))
    _, encoder = _tiny_model_dir(run / "model", tiny_vocab_file)
    run_dir.mark_model_saved(run, run / "model")
    assert run_dir.read_run(run)["final_model"] == "model"
    assert run_dir.read_run(run)["status"] == "running"
    # The model is the run's answer as soon as it is saved (evaluation may still fail).
    assert run_dir.resolve_model_path(str(run)) == str(run / "model")
    run_dir.mark_run_finished(run)
    assert run_dir.read_run(run)["status"] == "finished"
    assert run_dir.resolve_model_path(run) == run / "model"
    loaded = load_model(run)
    assert [w.tolist() for w in loaded.get_weights()] == [w.tolist() for w in encoder.get_weights()]
    assert load_tokenizer(run).get_vocabulary() == load_tokenizer(tiny_vocab_file).get_vocabulary()


def test_other_paths_pass_through_unchanged(tmp_path, tiny_vocab_file):
    model, _ = _tiny_model_dir(tmp_path / "m", tiny_vocab_file)
    assert run_dir.resolve_model_path(str(model)) == str(model)
    assert run_dir.resolve_model_path(tmp_path / "absent") == tmp_path / "absent"
    assert run_dir.resolve_model_path("bert_base_en_uncased") == "bert_base_en_uncased"
    assert run_dir.resolve_model_path(None) is None


def test_a_deleted_final_model_is_named(tmp_path, tiny_vocab_file):
    run = tmp_path / "run"
    _tiny_model_dir(run / "student", tiny_vocab_file)
    run_dir.mark_run_started(run, "distill")
    run_dir.mark_model_saved(run, run / "student")
    run_dir.mark_run_finished(run)
    shutil.rmtree(run / "student")
    with pytest.raises(ValueError, match=r"final model .*student is missing \(deleted or moved\?\)"):
        load_model(run)


def test_a_broken_marker_is_one_clear_error(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="run.json is not a distil-tf run marker"):
        load_model(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"other": 1}))
    with pytest.raises(ValueError, match="not a distil-tf run marker"):
        run_dir.resolve_model_path(tmp_path)


def test_neither_model_nor_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no model in .*expected config.json .* or run.json of a distil-tf run"):
        load_model(tmp_path)
