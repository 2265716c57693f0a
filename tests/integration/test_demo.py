"""`distil-tf demo` as a newcomer runs it: default `--out` (relative), any working directory.

A tiny budget (a few steps per model, 3 latency sentences) on the real
teacher (all-MiniLM-L6-v2) and the real SST-2 files: the run must end with
its three-row table, write `runs/demo/demo.json` under the working
directory, and print no Python warnings or TensorFlow C++ log lines.

Marked `large` (about 4 minutes on 2 cores): `make test-all` runs it, and
every release rehearses `make demo` itself on a fresh clone. The README
tour test (default tier) covers the same commands at CI's budget.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest


@pytest.mark.large
def test_demo_runs_from_any_directory_with_the_default_out(tmp_path, shared_data, minilm_dir):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["DISTIL_TF_DATA"] = str(shared_data)
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    command = ["distil-tf", "demo", "--train-limit", "64", "--teacher-steps", "2", "--student-steps", "2",
               "--latency-sentences", "3"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "demo" / "demo.json").read_text())
    assert [row["model"] for row in summary["rows"]] == [
        "teacher (all-MiniLM-L6-v2, 6 layers)", "student (3 layers, distilled)",
        "same student, fine-tuned without distillation"]
    assert summary["dev_examples"] == 872
    assert summary["rows"][1]["parameters"] == summary["rows"][2]["parameters"] < summary["rows"][0]["parameters"]
    assert "| same student, fine-tuned without distillation |" in result.stdout
    output = result.stdout + result.stderr
    for noise in ("Warning", "warnings.warn", "cuInit", "oneDNN custom operations", "Traceback"):
        assert noise not in output, f"demo output contains {noise!r}:\n{output[-3000:]}"
    # A rerun reuses every finished stage and prints the same table.
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / "demo" / "demo.json").read_text())["rows"][1]["dev_accuracy"] == \
        summary["rows"][1]["dev_accuracy"]
