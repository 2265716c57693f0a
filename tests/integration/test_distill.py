"""`distil-tf distill` end to end: a real corpus, resume after a kill, precisions, XLA, bad input."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from distil_tf import load_model
from distil_tf.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wiki_split(tmp_path_factory, shared_data):
    """wiki.test.raw split into a training part and a held-out part (in tmp, never the repo)."""
    lines = (shared_data / "wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8").splitlines()
    directory = tmp_path_factory.mktemp("wiki")
    (directory / "train.txt").write_text("\n".join(lines[:600]), encoding="utf-8")
    (directory / "heldout.txt").write_text("\n".join(lines[-150:]), encoding="utf-8")
    return directory


def _distill_args(teacher, corpus, out, *extra):
    return ["distill", "--teacher", str(teacher), "--student", "0,2", "--corpus", str(corpus),
            "--out", str(out), "--batch-size", "8", "--max-seq-length", "32", "--seed", "3",
            "--set", "optimizer.learning_rate=2e-3", *extra]


def test_short_real_run_heldout_mlm_loss_falls(tmp_path, capsys, tiny_hf_bert_mlm, wiki_split):
    out = tmp_path / "run"
    code = main(_distill_args(tiny_hf_bert_mlm, wiki_split / "train.txt", out, "--steps", "40",
                              "--validation-corpus", str(wiki_split / "heldout.txt")))
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    before, after = metrics["validation_before"]["mlm"], metrics["validation_after"]["mlm"]
    assert after < before - 0.2, (before, after)
    # The training loop's own seconds, as the task commands record them (no final checkpoint write).
    assert 0 < metrics["train_loop_seconds"] <= metrics["seconds"]
    assert re.search(r"held-out student losses: .*mlm [0-9.]+ -> [0-9.]+", capsys.readouterr().out)
    student = load_model(out / "student")
    assert student.architecture == "distilbert" and student.num_layers == 2
    assert (out / "config.yaml").is_file() and (out / "token_counts.npy").is_file()
    assert any((out / "tensorboard").rglob("*.tfevents*")) or any((out / "tensorboard").rglob("events*"))


class _BatchLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


@pytest.mark.parametrize("extra", [
    ["--precision", "mixed_bfloat16"],
    ["--precision", "mixed_float16"],
    ["--jit-compile", "--set", "data.fixed_shapes=true"],
    # XLA compiles the micro-batch loop too (16-row updates in static micro-batches of 8).
    ["--jit-compile", "--set", "data.fixed_shapes=true", "--set", "optimizer.gradient_accumulation_steps=2"],
])
def test_precisions_and_xla_train_with_finite_falling_loss(tmp_path, tiny_hf_bert_mlm, wiki_split, extra):
    from distil_tf import cli
    from distil_tf.training.distill import DistillConfig, run_distillation

    parser = cli.build_parser()
    args = parser.parse_args(_distill_args(tiny_hf_bert_mlm, wiki_split / "train.txt", tmp_path / "r", "--steps", "12", *extra))
    config = cli.resolve_training_config(
        DistillConfig, args, {"steps": "steps", "batch_size": "data.batch_size", "max_seq_length": "data.max_seq_length"},
        teacher=args.teacher, student=args.student, out=args.out)
    config.data.corpus = [str(wiki_split / "train.txt")]
    recorder = _BatchLosses()
    run_distillation(config, callbacks=[recorder])
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    assert all(np.isfinite(recorder.losses))
    # Keras logs the running mean of the epoch: falling means learning.
    assert recorder.losses[-1] < recorder.losses[0], recorder.losses


def _run_cli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "distil_tf.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_kill_and_resume_ends_with_the_uninterrupted_weights(tmp_path, tiny_hf_bert_mlm, wiki_split):
    common = ["--steps", "10", "--set", "checkpoint_every=3"]
    reference = _run_cli(_distill_args(tiny_hf_bert_mlm, wiki_split / "train.txt", tmp_path / "a", *common))
    interrupted = _run_cli(_distill_args(tiny_hf_bert_mlm, wiki_split / "train.txt", tmp_path / "b", *common))
    state = tmp_path / "b" / "checkpoints" / "checkpoint.json"
    deadline = time.time() + 240
    while time.time() < deadline and interrupted.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 3:
            break
        time.sleep(0.05)
    assert interrupted.poll() is None, "the run ended before it could be killed"
    interrupted.send_signal(signal.SIGKILL)  # a real kill: no cleanup runs
    interrupted.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 3 <= killed_at < 10
    assert not (tmp_path / "b" / "student").exists()
    resumed = _run_cli(_distill_args(tiny_hf_bert_mlm, wiki_split / "train.txt", tmp_path / "b", *common))
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["resumed_from_step"] == killed_at
    for a, b in zip(load_model(tmp_path / "a" / "student").get_weights(),
                    load_model(tmp_path / "b" / "student").get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, capsys, tiny_hf_bert_mlm, wiki_split):
    out = tmp_path / "nan"
    # An absurd learning rate without clipping blows the weights up within a few steps.
    code = main(_distill_args(tiny_hf_bert_mlm, wiki_split / "train.txt", out, "--steps", "30",
                              "--set", "checkpoint_every=1", "--set", "optimizer.learning_rate=1e12",
                              "--set", "optimizer.clip_global_norm=null", "--set", "optimizer.warmup_proportion=0"))
    stderr = capsys.readouterr().err
    assert code == 2 and "the loss became" in stderr and "last good checkpoint is kept" in stderr
    step = json.loads((out / "checkpoints" / "checkpoint.json").read_text())["step"]
    stopped_at = int(stderr.split(" at step ")[1].split(";")[0])
    assert step == stopped_at - 1
    assert not (out / "student").exists()


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("make_corpus, message", [
    (lambda p: p / "missing*.txt", "no corpus file matched"),
    (lambda p: _write(p / "empty.txt", ""), "is empty"),
    (lambda p: _write(p / "short.txt", "a b c\nhi there\n"), "no valid sequence"),
])
def test_bad_corpus(tmp_path, capsys, tiny_hf_bert_mlm, make_corpus, message):
    code = main(_distill_args(tiny_hf_bert_mlm, make_corpus(tmp_path), tmp_path / "out", "--steps", "2"))
    stderr = capsys.readouterr().err
    assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr


def test_bad_models_and_weights(tmp_path, capsys, tiny_hf_bert_mlm, tiny_hf_distilbert_mlm, minilm_dir, wiki_split):
    corpus = wiki_split / "train.txt"
    cases = [
        (["--set", "distillation.alpha_ce=0", "--set", "distillation.alpha_mlm=0",
          "--set", "distillation.alpha_cos=0"], "all loss weights are 0"),
        (["--student", str(minilm_dir)], "vocabulary"),  # 30,522 vs the tiny teacher's 99
    ]
    for extra, message in cases:
        args = _distill_args(tiny_hf_bert_mlm, corpus, tmp_path / "out", "--steps", "2")
        if extra[0] == "--student":
            args[args.index("--student") + 1] = extra[1]
            extra = []
        code = main(args + extra)
        stderr = capsys.readouterr().err
        assert code == 2 and message in stderr, stderr
    # A teacher without an MLM head cannot give soft targets when asked for them.
    code = main(_distill_args(minilm_dir, corpus, tmp_path / "out2", "--steps", "2",
                              "--set", "distillation.alpha_mlm=2"))
    assert code == 2 and "needs the teacher's masked-LM head" in capsys.readouterr().err
