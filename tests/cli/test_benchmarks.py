"""`distil_tf.cli.benchmarks`: every `distil-tf benchmark` subcommand parses its flags; bad input is one line, exit 2."""

import pytest

from distil_tf import cli
from distil_tf.cli import benchmarks as cli_benchmarks

SUBCOMMANDS = ["speed", "training", "retention", "ablation", "input-pipeline", "embedding-students", "serving-load",
               "tflite-on-device", "tflite-accuracy", "end-to-end", "kernels"]


def _exit_code(argv):
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    return raised.value.code


def test_the_benchmark_group_lists_every_subcommand(capsys):
    assert _exit_code(["benchmark", "--help"]) == 0
    printed = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in printed


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    assert _exit_code(["benchmark", name, "--help"]) == 0
    assert f"usage: distil-tf benchmark {name}" in capsys.readouterr().out


# A flag of each subcommand, parsed as the command sees it.
PARSED = {
    "speed": (["--pairs", "5", "--runners", "onnxruntime,hf-pytorch"],
              {"pairs": 5, "runners": "onnxruntime,hf-pytorch", "models": "bert,distilbert", "threads": None,
               "handler": cli_benchmarks.cmd_speed}),
    "training": (["--corpus", "c.txt", "--vocab", "v.txt", "--attention-terms"],
                 {"steps": 30, "batch_size": 16, "max_seq_length": 128, "precision": "float32",
                  "attention_terms": True, "jit_compile": False, "output": None,
                  "handler": cli_benchmarks.cmd_training}),
    "retention": (["--teacher", "t", "--out", "o", "--distill-set", "a=1", "--distill-set", "b=2"],
                  {"task": "glue/sst2", "student": "0,2,4", "seeds": "1,2,3", "epochs": 1.0, "batch_size": 32,
                   "max_seq_length": 64, "distill_set": ["a=1", "b=2"], "set": [], "plain_from": "",
                   "handler": cli_benchmarks.cmd_retention}),
    "ablation": (["--teacher", "t", "--corpus", "a.txt", "b.txt", "--out", "o", "--ablate", "ce,attention",
                  "--distill-set", "a=1", "--set", "b=2", "--train-limit", "8000"],
                 {"corpus": ["a.txt", "b.txt"], "student": "0,2,4", "distill_steps": 1000, "distill_batch_size": 32,
                  "distill_max_seq_length": 128, "ablate": "ce,attention", "distill_set": ["a=1"], "set": ["b=2"],
                  "tasks": "glue/sst2,glue/stsb", "seeds": "1,2", "steps": 0, "epochs": 2.0, "batch_size": 32,
                  "max_seq_length": 128, "train_limit": 8000, "data_dir": "", "task_set": [],
                  "handler": cli_benchmarks.cmd_ablation}),
    "input-pipeline": (["--corpus", "c.txt", "--vocab", "v.txt", "--workers", "1,2,4"],
                       {"workers": "1,2,4", "max_seq_length": 128, "batch_size": 32, "epochs": 1, "json": None,
                        "handler": cli_benchmarks.cmd_input_pipeline}),
    "embedding-students": (["--out", "o", "--students", "0,3,5", "0,5", "--limit", "20"],
                           {"students": ["0,3,5", "0,5"], "limit": 20, "teacher": "", "corpus": [],
                            "latency_texts": 200, "throughput_batches": 8, "rounds": 3,
                            "handler": cli_benchmarks.cmd_embedding_students}),
    "serving-load": (["--saved_model_dir", "/e/1", "--concurrency", "1", "2"],
                     {"saved_model_dir": "/e/1", "concurrency": [1, 2], "requests": 200, "sentences_file": None,
                      "handler": cli_benchmarks.cmd_serving_load}),
    "tflite-on-device": (["a.tflite", "b.tflite", "--runs", "2"],
                         {"models": ["a.tflite", "b.tflite"], "runs": 2, "rounds": 3, "json": None,
                          "handler": cli_benchmarks.cmd_tflite_on_device}),
    "tflite-accuracy": (["export_dir", "dev.tsv"],
                        {"export_dir": "export_dir", "dev_tsv": "dev.tsv",
                         "handler": cli_benchmarks.cmd_tflite_accuracy}),
    "end-to-end": (["--sentences", "20", "--runners", "tf-serving-default,ort+tokenizers"],
                   {"sentences": 20, "runners": "tf-serving-default,ort+tokenizers", "model": None, "threads": None,
                    "out": None, "clients": "1,4,16", "requests": None, "server_threads": "0:0",
                    "handler": cli_benchmarks.cmd_end_to_end}),
    "kernels": (["--kernels", "tf-fp32,ort-fp32", "--rows", "32"],
                {"kernels": "tf-fp32,ort-fp32", "rows": 32, "hidden_dim": 768, "intermediate_dim": 3072, "num_layers": 6,
                 "iterations": 30, "threads": None, "out": None, "handler": cli_benchmarks.cmd_kernels}),
}


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_flags_and_defaults(name):
    argv, expected = PARSED[name]
    args = cli.build_parser().parse_args(["benchmark", name, *argv])
    assert args.command == "benchmark" and args.benchmark == name
    for key, value in expected.items():
        assert getattr(args, key) == value, key


def test_speed_defaults_to_the_shared_data(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTIL_TF_DATA", str(tmp_path))
    args = cli.build_parser().parse_args(["benchmark", "speed"])
    assert args.stsb == str(tmp_path / "glue" / "STS-B" / "dev.tsv")
    assert args.vocab == str(tmp_path / "bert-base-uncased" / "vocab.txt")


@pytest.mark.parametrize("name", ["training", "retention", "ablation", "input-pipeline", "embedding-students", "serving-load",
                                  "tflite-on-device", "tflite-accuracy"])
def test_missing_required_flags_are_usage_errors(name, capsys):
    assert _exit_code(["benchmark", name]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["input-pipeline", "--corpus", "c.txt", "--vocab", "v.txt", "--workers", "x"],
     "distil-tf: error: --workers takes comma-separated counts, e.g. 1,2; got 'x'"),
    (["speed", "--pairs", "0"], "distil-tf: error: --pairs must be >= 1, got 0"),
    (["end-to-end", "--sentences", "0"], "distil-tf: error: --sentences must be >= 1, got 0"),
    (["end-to-end", "--clients", "1,x"],
     "distil-tf: error: --clients takes comma-separated counts such as 1,4,16 (or none), got '1,x'"),
    (["end-to-end", "--clients", "0,4"], "distil-tf: error: --clients counts must be >= 1, got 0,4"),
    (["end-to-end", "--requests", "0"], "distil-tf: error: --requests must be >= 1, got 0"),
    (["end-to-end", "--server-threads", "1:2,3"], "distil-tf: error: --server-threads takes INTRA:INTER pairs "
     "of counts >= 0 such as 0:0,1:2, got '1:2,3'"),
    (["end-to-end", "--server-threads", "1:-1"], "distil-tf: error: --server-threads takes INTRA:INTER pairs "
     "of counts >= 0 such as 0:0,1:2, got '1:-1'"),
    (["kernels", "--kernels", "tf-fp32,tf-fp64"],
     "distil-tf: error: unknown kernel(s) tf-fp64; expected some of tf-fp32, tf-fp32+onednn, tf-bf16+onednn, "
     "tf-int8+onednn, tf-int8-hybrid, ort-fp32, ort-int8"),
    (["kernels", "--rows", "0"],
     "distil-tf: error: hidden_dim, intermediate_dim, num_layers, rows and iterations must all be >= 1"),
    (["end-to-end", "--runners", "tf-serving-default,onnx"],
     "distil-tf: error: unknown runner(s) onnx; choose from tf-serving-default, tf-serving-default+onednn, "
     "tf-predict-ids, hf-pipeline, ort+tokenizers"),
    (["retention", "--teacher", "t", "--out", "o", "--seeds", "1,two"],
     "distil-tf: error: --seeds expects comma-separated integers, got '1,two'"),
    (["ablation", "--teacher", "t", "--corpus", "c.txt", "--out", "o", "--seeds", "1,two"],
     "distil-tf: error: --seeds expects comma-separated integers, got '1,two'"),
    (["ablation", "--teacher", "t", "--corpus", "c.txt", "--out", "o", "--ablate", "ce,kl"],
     "distil-tf: error: unknown term 'kl' in --ablate; choose from ce, mlm, cos, hidden_mse, attention_mse, "
     "attention_kl, value_relation, mse, pooled_cos, pooled_mse, pooled_relation, attention, mlm_head"),
    (["ablation", "--teacher", "t", "--corpus", "c.txt", "--out", "o", "--distill-steps", "0"],
     "distil-tf: error: --distill-steps must be >= 1, got 0"),
    (["ablation", "--teacher", "t", "--corpus", "c.txt", "--out", "o", "--task-set", "epochs=3"],
     "distil-tf: error: --task-set expects TASK:KEY=VALUE (say glue/stsb:epochs=3), got 'epochs=3'"),
    (["ablation", "--teacher", "t", "--corpus", "c.txt", "--out", "o", "--task-set", "glue/cola:epochs=3"],
     "distil-tf: error: --task-set glue/cola:epochs=3: glue/cola is not one of --tasks (glue/sst2, glue/stsb)"),
    (["ablation", "--teacher", "t", "--corpus", "c.txt", "--out", "o", "--tasks", "glue/sst2,glue/sst5"],
     "distil-tf: error: unknown task 'glue/sst5'; valid tasks: glue/cola, glue/sst2, glue/mrpc, glue/stsb, glue/qqp, "
     "glue/mnli, glue/qnli, glue/rte, glue/wnli, imdb, squad/v1.1, squad/v2.0"),
])
def test_bad_values_are_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(["benchmark", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [message]
    assert captured.out == ""


def test_missing_files_are_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert cli.main(["benchmark", "speed", "--stsb", str(missing)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"distil-tf: error: {missing} not found (set DISTIL_TF_DATA or pass the path)"]
    assert cli.main(["benchmark", "serving-load", "--saved_model_dir", str(tmp_path),
                     "--sentences_file", str(missing)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("distil-tf: error: ") and str(missing) in err[0]


def test_ablation_refusals_are_one_line_and_write_nothing(tmp_path, tiny_hf_bert_model, tiny_hf_bert_mlm, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the movie was good and fun\n")
    out = tmp_path / "out"
    common = ["benchmark", "ablation", "--corpus", str(corpus), "--out", str(out)]
    missing = tmp_path / "missing.txt"
    assert cli.main(["benchmark", "ablation", "--teacher", "t", "--corpus", str(missing), "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"distil-tf: error: --corpus {missing}: no such file"]
    # The ce and mlm terms of (a) need the teacher's MLM head: fit one first.
    assert cli.main([*common, "--teacher", str(tiny_hf_bert_model)]) == 2
    teacher = str(tiny_hf_bert_model)
    assert capsys.readouterr().err.splitlines() == [
        f"distil-tf: error: the teacher {teacher} has no masked-LM head, which the ce and mlm terms of (a) need: "
        f"fit one first (distil-tf fit-mlm-head --teacher {teacher} --corpus CORPUS --out T_MLM) and pass "
        "--teacher T_MLM"]
    # A term (a) has off would rerun (a).
    assert cli.main([*common, "--teacher", str(tiny_hf_bert_mlm), "--ablate", "pooled_cos"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "distil-tf: error: --ablate pooled_cos: (a) has it off already (weight 0), so its run would be (a) again; "
        "on in (a): ce, mlm, cos, hidden_mse, attention_mse, attention_kl, value_relation"]
    assert not out.exists()


def test_ablation_passes_its_flags_on_and_prints_the_report(monkeypatch, tmp_path, capsys):
    from distil_tf.benchmarks import ablation

    seen = {}
    monkeypatch.setattr(ablation, "run_ablation", lambda config: seen.setdefault("config", config) and "report")
    monkeypatch.setattr(ablation, "format_report", lambda report: f"table of {report}")
    assert cli.main(["benchmark", "ablation", "--teacher", "t", "--corpus", "c.txt", "--out", str(tmp_path),
                     "--ablate", "ce, attention", "--tasks", "glue/sst2", "--seeds", "3", "--steps", "5",
                     "--distill-set", "optimizer.learning_rate=3e-4", "--task-set", "glue/sst2:epochs=3"]) == 0
    config = seen["config"]
    assert config.task_overrides == ("glue/sst2:epochs=3",)
    assert (config.ablate, config.tasks, config.seeds, config.steps) == (("ce", "attention"), ("glue/sst2",), (3,), 5)
    assert config.distill_overrides == ("optimizer.learning_rate=3e-4",) and config.corpus == ("c.txt",)
    assert capsys.readouterr().out == f"table of report\n\nwritten to {tmp_path / 'ablation.md'}\n"


def test_embedding_students_records_its_command_and_prints_the_report(monkeypatch, capsys):
    from distil_tf.benchmarks import embedding_students

    seen = {}

    def fake_run(config, command=None):
        seen.update(config=config, command=command)
        return "report"

    monkeypatch.setattr(embedding_students, "run_embedding_students", fake_run)
    monkeypatch.setattr(embedding_students, "format_report", lambda report: f"table of {report}")
    assert cli.main(["benchmark", "embedding-students", "--out", "runs/e s", "--steps", "3"]) == 0
    assert seen["command"] == "distil-tf benchmark embedding-students --out 'runs/e s' --steps 3"
    assert seen["config"].out == "runs/e s" and seen["config"].steps == 3
    assert capsys.readouterr().out == "table of report\n"


def test_serving_load_reads_the_sentences_file_and_prints_the_rows(monkeypatch, tmp_path, capsys):
    from distil_tf.benchmarks import serving_load

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("one\n\n two \n")
    seen = {}
    row = dict(mode="grpc", batching=True, concurrency=2, requests_per_second=10.0, p50_ms=1.0, p99_ms=2.0,
               errors=0, overhead=1.5)

    def fake_run(saved_model_dir, sentences=None, concurrency=(), requests=0):
        seen.update(saved_model_dir=saved_model_dir, sentences=sentences, concurrency=concurrency, requests=requests)
        return [row]

    monkeypatch.setattr(serving_load, "run", fake_run)
    assert cli.main(["benchmark", "serving-load", "--saved_model_dir", "/e/1", "--sentences_file", str(sentences),
                     "--concurrency", "2", "--requests", "5"]) == 0
    assert seen == {"saved_model_dir": "/e/1", "sentences": ["one", "two"], "concurrency": (2,), "requests": 5}
    assert capsys.readouterr().out == serving_load.format_rows([row]) + "\n"
