"""The scripts in scripts/ run end to end on tiny models and data (smoke tests)."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def _run(*args, timeout=600):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def tiny_glue(tmp_path_factory):
    """A few SST-2 rows in the GLUE layout, words from the tiny vocabulary."""
    directory = tmp_path_factory.mktemp("glue")
    (directory / "SST-2").mkdir()
    rows = ["sentence\tlabel", "a good movie\t1", "a bad film\t0", "very fun and great\t1",
            "boring and bad\t0", "i was not bored\t1", "it is very bad\t0", "great fun film\t1", "not good\t0"]
    for split in ("train", "dev"):
        (directory / "SST-2" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return directory


def test_scripts_fine_tune_distil_and_export(tmp_path, tiny_hf_bert_model, tiny_glue):
    teacher, student, export = tmp_path / "teacher", tmp_path / "student", tmp_path / "export"
    _run(SCRIPTS / "finetune_glue.py", "--model", tiny_hf_bert_model, "--task", "glue/sst2",
         "--data-dir", tiny_glue, "--out", teacher, "--steps", "3", "--batch-size", "4", "--max-seq-length", "16")
    _run(SCRIPTS / "distil_on_task.py", "--teacher", teacher, "--layers", "0", "--task", "glue/sst2",
         "--data-dir", tiny_glue, "--out", student, "--steps", "3", "--batch-size", "4", "--max-seq-length", "16")
    output = _run(SCRIPTS / "export_for_serving.py", "--model", student, "--out", export,
                  "--max-seq-length", "16", "a good movie", "a bad film")
    assert (export / "1" / "saved_model.pb").is_file()
    assert "a good movie" in output and ("positive" in output or "negative" in output)


def test_distil_on_corpus_script(tmp_path, tiny_hf_bert_mlm, shared_data):
    corpus = tmp_path / "corpus.txt"
    lines = (shared_data / "wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8").splitlines()[:150]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    output = _run(SCRIPTS / "distil_on_corpus.py", "--teacher", tiny_hf_bert_mlm, "--corpus", corpus,
                  "--out", tmp_path / "student", "--steps", "3", "--batch-size", "4", "--max-seq-length", "32")
    assert "saved to" in output and (tmp_path / "student" / "model.weights.h5").is_file()


@pytest.mark.large
def test_precision_accuracy_scores_both_exports_as_served(tmp_path, tiny_hf_bert_model, tiny_glue):
    """Each precision's SavedModel is scored through serving_default; float32 equals the model's own score."""
    import json

    distil_tf = str(REPO / ".venv" / "bin" / "distil-tf")
    subprocess.run([distil_tf, "finetune", "--task", "glue/sst2", "--model", str(tiny_hf_bert_model), "--out",
                    str(tmp_path / "run"), "--data-dir", str(tiny_glue), "--epochs", "1", "--batch-size", "4",
                    "--max-seq-length", "16"], check=True, capture_output=True, timeout=600)
    model = tmp_path / "run" / "model"
    data = tmp_path / "data"
    data.mkdir()
    (data / "glue").symlink_to(tiny_glue)
    env = dict(os.environ, DISTIL_TF_DATA=str(data))
    result = subprocess.run(["bash", SCRIPTS / "precision_accuracy.sh", tmp_path / "out", model],
                            cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {model} |"))
    float32, bfloat16, delta = (float(cell) for cell in row.split("|")[2:5])
    assert delta == pytest.approx(bfloat16 - float32, abs=0.011)
    # The float32 export, scored as served, gives the model directory's own dev accuracy.
    scored = tmp_path / "direct.json"
    subprocess.run([distil_tf, "evaluate", "--task", "glue/sst2", "--model",
                    str(model), "--data-dir", str(tiny_glue), "--output", str(scored)],
                   check=True, capture_output=True, timeout=600)
    assert float32 == pytest.approx(100 * json.loads(scored.read_text())["evaluation"]["validation"]["score"],
                                    abs=0.006)
    assert (tmp_path / "out" / "precision.md").read_text().count("\n| ") == 2  # header row and the model
    assert "bfloat16 requested" in row


def test_precision_accuracy_without_models_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(["bash", SCRIPTS / "precision_accuracy.sh", tmp_path / "out"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "precision_accuracy: name at least one fine-tuned model directory after OUT"]
