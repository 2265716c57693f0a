"""`distil-tf finetune`, `evaluate` and `distill-task` end to end on tiny models and data.

One tiny BERT (2 layers, hidden 32, 99-token vocab) is fine-tuned for two
steps per head type on a few hand-written rows in the original file layouts
(SST-2, STS-B, SQuAD v1.1); the task models are then scored, distilled and
reloaded. Bad inputs must exit with code 2 and one line.
"""

import json

import pytest

from distil_tf import cli, load_model

TRAIN_FLAGS = ["--steps", "2", "--batch-size", "4", "--max-seq-length", "32"]
# Short windows for the tiny model's 64 positions.
SQUAD_FLAGS = ["--set", "data.max_query_length=8", "--set", "data.doc_stride=8"]


def _write_data(root):
    sst2 = root / "glue" / "SST-2"
    sst2.mkdir(parents=True)
    rows = [("the movie was good", 1), ("a bad film", 0), ("very fun", 1), ("boring and bad", 0),
            ("it was great !", 1), ("not good", 0)]
    body = "".join(f"{text}\t{label}\n" for text, label in rows)
    (sst2 / "train.tsv").write_text("sentence\tlabel\n" + body)
    (sst2 / "dev.tsv").write_text("sentence\tlabel\n" + body[: body.index("it was")])
    stsb = root / "glue" / "STS-B"
    stsb.mkdir(parents=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    pairs = [("a movie", "the film", 4.2), ("good", "bad", 0.5), ("it was fun", "it was very fun", 3.8),
             ("hello world", "the test", 0.0)]
    body = "".join(f"{i}\tmain\tf\t2012\t{i}\tnone\tnone\t{a}\t{b}\t{s}\n" for i, (a, b, s) in enumerate(pairs))
    (stsb / "train.tsv").write_text(header + body)
    (stsb / "dev.tsv").write_text(header + body)
    squad = root / "squad"
    squad.mkdir()
    context = "the movie was good . it was fun and not boring ."
    questions = [("q1", "what was the movie ?", "good"), ("q2", "was it fun ?", "fun"),
                 ("q3", "what was it not ?", "boring")]
    qas = [{"id": qid, "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}
           for qid, question, answer in questions]
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    (squad / "train-v1.1.json").write_text(json.dumps(data))
    (squad / "dev-v1.1.json").write_text(json.dumps(data))
    return root


def _run(capsys, *argv):
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _write_data(tmp_path_factory.mktemp("task_data"))


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory, data_dir, tiny_hf_bert_model):
    out = tmp_path_factory.mktemp("runs") / "sst2"
    code = cli.main(["finetune", "--task", "glue/sst2", "--model", str(tiny_hf_bert_model), "--out", str(out),
                     "--data-dir", str(data_dir / "glue"), "--eval-limit", "3", *TRAIN_FLAGS])
    assert code == 0
    return out


def test_finetune_classification_then_evaluate(sst2_run, data_dir, capsys, tmp_path):
    metrics = json.loads((sst2_run / "metrics.json").read_text())
    assert metrics["task"] == "glue/sst2" and metrics["steps"] == 2
    assert metrics["data"]["train_examples"] == 6 and metrics["evaluation"]["validation"]["examples"] == 3
    model = load_model(sst2_run / "model")
    assert (model.head_type, model.num_classes, model.task_name) == ("classification", 2, "glue/sst2")
    provenance = json.loads((sst2_run / "model" / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["task"] == "glue/sst2" and provenance["steps"] == 2 and provenance["data"]["train_examples"] == 6
    output = tmp_path / "eval.json"
    # A root data dir (holding glue/) works as well as the GLUE folder.
    code, stdout, _ = _run(capsys, "evaluate", "--task", "glue/sst2", "--model", sst2_run / "model",
                           "--data-dir", data_dir, "--split", "dev", "--output", output)
    assert code == 0, stdout
    assert "validation (4 examples)" in stdout and "accuracy" in stdout
    result = json.loads(output.read_text())
    assert set(result["evaluation"]["validation"]) == {"accuracy", "score", "examples"}


def test_finetune_regression(tmp_path, data_dir, tiny_hf_bert_model, capsys):
    code, stdout, stderr = _run(capsys, "finetune", "--task", "glue/stsb", "--model", tiny_hf_bert_model,
                                "--out", tmp_path / "stsb", "--data-dir", data_dir / "glue", *TRAIN_FLAGS)
    assert code == 0, stderr
    assert "pearson" in stdout and "spearman" in stdout
    assert load_model(tmp_path / "stsb" / "model").head_type == "regression"


def test_finetune_span_then_distill_task(tmp_path, data_dir, tiny_hf_bert_model, capsys):
    code, stdout, stderr = _run(capsys, "finetune", "--task", "squad/v1.1", "--model", tiny_hf_bert_model,
                                "--out", tmp_path / "squad", "--data-dir", data_dir / "squad",
                                *TRAIN_FLAGS, *SQUAD_FLAGS)
    assert code == 0, stderr
    assert "exact_match" in stdout and "f1" in stdout
    metrics = json.loads((tmp_path / "squad" / "metrics.json").read_text())["evaluation"]["validation"]
    assert metrics["examples"] == 3 and 0.0 <= metrics["f1"] <= 1.0
    code, stdout, stderr = _run(capsys, "distill-task", "--task", "squad/v1.1", "--teacher",
                                tmp_path / "squad" / "model", "--student", "1", "--out", tmp_path / "squad_d",
                                "--data-dir", data_dir / "squad", *TRAIN_FLAGS, *SQUAD_FLAGS)
    assert code == 0, stderr
    student = load_model(tmp_path / "squad_d" / "student")
    assert student.head_type == "span" and student.encoder.num_layers == 1
    assert student.encoder.architecture == "distilbert"
    provenance = json.loads((tmp_path / "squad_d" / "student" / "config.json").read_text())["distil_tf"]["provenance"]
    assert provenance["kind"] == "task_distilled" and provenance["layer_map"] == [0]
    # The distilled student is scored by `evaluate` like any task model.
    code, stdout, _ = _run(capsys, "evaluate", "--task", "squad/v1.1", "--model", tmp_path / "squad_d" / "student",
                           "--data-dir", data_dir / "squad")
    assert code == 0 and "f1" in stdout


def test_distill_task_student_dir_of_another_vocabulary(tmp_path, sst2_run, data_dir, minilm_dir, capsys):
    # The tiny teacher has 99 tokens, all-MiniLM-L6-v2 30,522: caught before any data is read.
    code, _, stderr = _run(capsys, "distill-task", "--task", "glue/sst2", "--teacher", sst2_run / "model",
                           "--student", minilm_dir, "--out", tmp_path / "d", "--data-dir", data_dir / "glue",
                           *TRAIN_FLAGS)
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "the student's vocabulary (30522 tokens) differs from the teacher's" in stderr, stderr
    assert not (tmp_path / "d" / "student").exists()


def test_distill_task_classification_from_a_student_dir(tmp_path, sst2_run, data_dir, tiny_hf_bert_model, capsys):
    code, _, stderr = _run(capsys, "init-student", "--teacher", tiny_hf_bert_model, "--out", tmp_path / "student",
                           "--layers", "1")
    assert code == 0, stderr
    code, stdout, stderr = _run(capsys, "distill-task", "--task", "glue/sst2", "--teacher", sst2_run / "model",
                                "--student", tmp_path / "student", "--out", tmp_path / "d",
                                "--data-dir", data_dir / "glue", *TRAIN_FLAGS)
    assert code == 0, stderr
    assert "accuracy" in stdout
    summary = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert {"distillation_loss", "student_loss", "loss"} <= set(summary["final_train_loss"])
    assert load_model(tmp_path / "d" / "student").task_name == "glue/sst2"


def test_run_directories_stand_for_their_final_model(tmp_path, sst2_run, data_dir, capsys):
    code, stdout, stderr = _run(capsys, "info", sst2_run)
    assert code == 0, stderr
    assert f"model:          {sst2_run / 'model'} (final model of the finetune run {sst2_run}, finished)" in stdout
    code, stdout, stderr = _run(capsys, "evaluate", "--task", "glue/sst2", "--model", sst2_run,
                                "--data-dir", data_dir / "glue", "--json")
    assert code == 0, stderr
    by_run = json.loads(stdout[stdout.index("{"):])["validation"]
    code, stdout, _ = _run(capsys, "evaluate", "--task", "glue/sst2", "--model", sst2_run / "model",
                           "--data-dir", data_dir / "glue", "--json")
    assert by_run == json.loads(stdout[stdout.index("{"):])["validation"]
    # distill-task: the teacher as a run directory, then its own run directory as a model.
    code, _, stderr = _run(capsys, "distill-task", "--task", "glue/sst2", "--teacher", sst2_run, "--student", "1",
                           "--out", tmp_path / "d", "--data-dir", data_dir / "glue", *TRAIN_FLAGS)
    assert code == 0, stderr
    assert json.loads((tmp_path / "d" / "run.json").read_text())["distil_tf_run"] == {
        "format_version": 1, "command": "distill-task", "status": "finished", "final_model": "student"}
    direct, via_run = load_model(tmp_path / "d" / "student"), load_model(tmp_path / "d")
    assert via_run.task_name == "glue/sst2" and via_run.encoder.num_layers == 1
    for a, b in zip(direct.get_weights(), via_run.get_weights()):
        assert (a == b).all()
    # ... and as the student of a further distill-task run.
    code, _, stderr = _run(capsys, "distill-task", "--task", "glue/sst2", "--teacher", sst2_run,
                           "--student", tmp_path / "d", "--out", tmp_path / "d2", "--data-dir", data_dir / "glue",
                           *TRAIN_FLAGS)
    assert code == 0, stderr


def test_unfinished_and_broken_run_directories(tmp_path, sst2_run, data_dir, capsys):
    from distil_tf import run_dir

    run_dir.mark_run_started(tmp_path / "busy", "finetune")
    code, _, stderr = _run(capsys, "evaluate", "--task", "glue/sst2", "--model", tmp_path / "busy",
                           "--data-dir", data_dir / "glue")
    assert code == 2
    assert stderr.strip() == (f"distil-tf: error: {tmp_path / 'busy'} is a finetune run in progress (or stopped) "
                              "with no final model yet: resume it with the same command")
    import shutil

    shutil.copytree(sst2_run, tmp_path / "copy")
    shutil.rmtree(tmp_path / "copy" / "model")
    code, _, stderr = _run(capsys, "info", tmp_path / "copy")
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert f"final model {tmp_path / 'copy' / 'model'} is missing" in stderr
    (tmp_path / "neither").mkdir()
    code, _, stderr = _run(capsys, "export", "--model", tmp_path / "neither", "--out", tmp_path / "export")
    assert code == 2 and "no model in" in stderr and "run.json of a distil-tf run" in stderr
    assert not (tmp_path / "export").exists()


def _empty_sst2(root):
    (root / "SST-2").mkdir(parents=True)
    (root / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    return root


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "--task", "glue/nope", "--model", "{model}", "--out", "{tmp}/o"],
         "unknown task 'glue/nope'; valid tasks: glue/cola, glue/sst2"),
        (["evaluate", "--task", "nope", "--model", "{sst2}"], "unknown task 'nope'; valid tasks:"),
        (["finetune", "--task", "glue/sst2", "--model", "{model}", "--out", "{tmp}/o", "--data-dir", "{tmp}/absent"],
         "data directory {tmp}/absent does not exist"),
        (["finetune", "--task", "glue/cola", "--model", "{model}", "--out", "{tmp}/o", "--data-dir", "{data}/glue"],
         "CoLA/train.tsv: file not found"),
        (["finetune", "--task", "glue/sst2", "--model", "{model}", "--out", "{tmp}/o", "--data-dir", "{empty}"],
         "no examples in split 'train'"),
        (["evaluate", "--task", "glue/stsb", "--model", "{sst2}", "--data-dir", "{data}/glue"],
         "has a classification head but task 'glue/stsb' needs a regression head"),
        (["evaluate", "--task", "glue/mnli", "--model", "{sst2}", "--data-dir", "{data}/glue"],
         "predicts 2 classes but task 'glue/mnli' has 3"),
        (["evaluate", "--task", "squad/v1.1", "--model", "{sst2}", "--data-dir", "{data}/squad"],
         "needs a span head"),
        (["evaluate", "--task", "glue/sst2", "--model", "{model}", "--data-dir", "{data}/glue"],
         "encoder without a task head"),
        (["evaluate", "--task", "glue/sst2", "--model", "{sst2}", "--data-dir", "{data}/glue", "--skip", "99"],
         "no examples left"),
        (["distill-task", "--task", "glue/sst2", "--teacher", "{model}", "--student", "1", "--out", "{tmp}/o",
          "--data-dir", "{data}/glue"], "encoder without a task head"),
        (["distill-task", "--task", "glue/sst2", "--teacher", "{sst2}", "--student", "x,y", "--out", "{tmp}/o",
          "--data-dir", "{data}/glue"], "neither an existing directory nor a layer map"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys, sst2_run, data_dir, tiny_hf_bert_model):
    values = {"model": tiny_hf_bert_model, "sst2": sst2_run / "model", "tmp": tmp_path, "data": data_dir,
              "empty": _empty_sst2(tmp_path / "empty")}
    code, _, stderr = _run(capsys, *[arg.format(**values) for arg in argv])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distil-tf: error: ")
    assert message.format(**values) in lines[0]
    assert not (tmp_path / "o" / "model").exists()


def test_data_environment_without_the_family_folder(tmp_path, sst2_run, capsys, monkeypatch):
    monkeypatch.setenv("DISTIL_TF_DATA", str(tmp_path))
    code, _, stderr = _run(capsys, "evaluate", "--task", "glue/sst2", "--model", sst2_run)
    assert code == 2
    assert stderr.strip() == (f"distil-tf: error: $DISTIL_TF_DATA={tmp_path} has no glue/ folder (expected "
                              f"{tmp_path}/glue/SST-2/train.tsv); fix it, pass --data-dir, or unset it to read tfds")
