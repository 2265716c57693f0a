"""Multi-replica training: MirroredStrategy equals one device; two workers agree.

Clipping and gradient accumulation included (issue 13's defects): N replicas
must take exactly the update one device takes on the same rows.
"""

import json
import math
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).with_name("distributed_run.py")
REPO = SCRIPT.parents[2]
CLI = pathlib.Path(sys.executable).with_name("distil-tf")
PAPER_CONFIG = REPO / "distil_tf/configs/distilbert_base_paper.yaml"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exact_report(mode, tmp_path):
    out = tmp_path / f"{mode}.json"
    result = subprocess.run([sys.executable, str(SCRIPT), mode, str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["replicas"] == 2
    return report


def test_clipping_and_accumulation_are_exact_over_two_cpu_devices(tmp_path):
    report = _exact_report("exact", tmp_path)
    # One SGD step, lr 1, clip 1.0: the update's norm is the clip on both.
    # Keras's own clip (each replica's share, before the sum) moved 2
    # replicas further, in another direction: the defect this guards.
    sgd = report["sgd_step"]
    assert abs(sgd["single_norm"] - 1.0) < 1e-5 and abs(sgd["mirrored_norm"] - 1.0) < 1e-5
    assert sgd["max_move_difference"] < 1e-6
    assert sgd["keras_mirrored_norm"] > 1.2
    # 3 updates of 4 accumulated batches, with uneven padding and masking
    # across the halves and a binding clip (without it the weights end >1e-3
    # away): the same weights and losses on 2 replicas, float32 round-off only.
    masked_lm = report["masked_lm"]
    assert masked_lm["updates"] == 3 and masked_lm["clip_effect"] > 1e-3
    assert masked_lm["max_weight_difference"] < 1e-5
    assert abs(masked_lm["single_loss"] - masked_lm["mirrored_loss"]) < 1e-5
    for name, value in masked_lm["single_terms"].items():
        assert abs(value - masked_lm["mirrored_terms"][name]) < 1e-5, name


@pytest.mark.large
def test_task_distillation_and_finetuning_are_exact_over_two_cpu_devices(tmp_path):
    """They share the optimizer and the train step; ~60 s more, so large."""
    report = _exact_report("exact_tasks", tmp_path)
    for kind in ("task_distill", "finetune"):
        assert report[kind]["max_weight_difference"] < 1e-5, kind
        assert abs(report[kind]["single_loss"] - report[kind]["mirrored_loss"]) < 1e-5, kind


def _cli(*args, timeout=600):
    return subprocess.run([str(CLI), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wiki_corpus(tmp_path_factory, shared_data):
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    lines = (shared_data / "wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:300]), encoding="utf-8")
    return path


def test_issue_command_accumulation_two_mirrored_two_devices(tmp_path, tiny_hf_bert_mlm, wiki_corpus):
    """The command of the issue's report (a `Cond.call()` RuntimeError before the fix)."""
    out = tmp_path / "run"
    result = _cli("distill", "--teacher", tiny_hf_bert_mlm, "--student", "0,2", "--corpus", wiki_corpus,
                  "--out", out, "--batch-size", "4", "--max-seq-length", "32", "--steps", "6",
                  "--strategy", "mirrored", "--set", "runtime.cpu_devices=2",
                  "--set", "optimizer.gradient_accumulation_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["replicas"], metrics["strategy"]) == (2, "MirroredStrategy")
    state = json.loads((out / "checkpoints/checkpoint.json").read_text())
    assert (state["step"], state["batches_per_update"]) == (6, 2)


@pytest.mark.large
def test_paper_config_under_mirrored_two_devices_through_the_cli(tmp_path, tiny_hf_bert_mlm, wiki_corpus):
    """distilbert_base_paper.yaml (accumulation 64, clip 5, mixed_float16), shrunk to 2 updates (~70 s)."""
    out = tmp_path / "paper"
    result = _cli("distill", "--config", PAPER_CONFIG, "--teacher", tiny_hf_bert_mlm, "--student", "0,2",
                  "--corpus", wiki_corpus, "--out", out, "--strategy", "mirrored", "--cpu-devices", "2",
                  # Global batch 4 (2 rows per replica) x 64 batches per update.
                  "--set", "data.batch_size=4", "--set", "data.max_seq_length=32", "--set", "steps=128",
                  "--set", "checkpoint_every=64", "--set", "log_every=64", "--set", "student=0,2")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["precision"] == "mixed_float16"
    assert all(math.isfinite(value) for value in metrics["final_train_loss"].values())
    config = (out / "config.yaml").read_text()
    assert "gradient_accumulation_steps: 64" in config and "clip_global_norm: 5.0" in config
    state = json.loads((out / "checkpoints/checkpoint.json").read_text())
    assert (state["step"], state["batches_per_update"]) == (128, 64)


def test_accumulation_not_dividing_the_steps_exits_2_with_one_line(tmp_path, tiny_hf_bert_mlm, wiki_corpus):
    result = _cli("distill", "--teacher", tiny_hf_bert_mlm, "--student", "0,2", "--corpus", wiki_corpus,
                  "--out", tmp_path / "bad", "--steps", "10", "--set", "optimizer.gradient_accumulation_steps=4")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "gradient_accumulation_steps" in line]
    assert lines == [
        "distil-tf: error: steps=10 is not a multiple of optimizer.gradient_accumulation_steps=4: each update takes 4 "
        "batches, so the last 2 would make no full update; use steps=8 or 12"
    ], result.stderr[-2000:]


def test_multi_worker_mirrored_two_local_workers_end_identical_and_equal_one_device(tmp_path):
    """Two MultiWorkerMirrored processes, clip binding, accumulation 4, 3 updates; and one device."""
    ports = [_free_port(), _free_port()]
    workers = []
    for index in range(2):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                     "task": {"type": "worker", "index": index}}
        workers.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), "worker", str(tmp_path)], cwd=REPO,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    single = subprocess.run([sys.executable, str(SCRIPT), "single", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]
    first, second = np.load(tmp_path / "worker0.npz"), np.load(tmp_path / "worker1.npz")
    one_device = np.load(tmp_path / "workersingle.npz")
    assert max(float(np.abs(first[key] - second[key]).max()) for key in first) == 0.0
    assert max(float(np.abs(first[key] - one_device[key]).max()) for key in first) < 1e-5
    reports = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in (0, 1, "single")]
    assert reports[0]["replicas"] == 2 and reports[0]["loss"] == reports[1]["loss"]
    assert abs(reports[0]["loss"] - reports[2]["loss"]) < 1e-5
    assert [report["iterations"] for report in reports] == [3, 3, 3]  # 12 batches / 4 per update
    # Only the chief writes checkpoints.
    assert (tmp_path / "run0" / "checkpoints").is_dir() and not (tmp_path / "run1" / "checkpoints").exists()
