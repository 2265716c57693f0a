"""`distil_tf.benchmarks.speed` (`distil-tf benchmark speed`) on tiny models and a 3-pair STS-B file.

Timing figures are never asserted (the machine is shared); the tests check
that every runner runs on the same ids, the report is complete, and that
runners and levers agree on outputs.
"""

import json
import sys

import numpy as np
import pytest

from distil_tf.benchmarks import speed
from distil_tf.text import load_tokenizer

# 10 tab-separated columns, sentences in columns 8 and 9 (GLUE STS-B).
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
PAIRS = [
    ("the movie is good", "the film was great"),
    ("i was bored", "it is a very boring film !"),
    ("hello world", "this is a test ."),
]
TINY_TEACHER = dict(
    architecture="bert", vocabulary_size=99, num_layers=2, num_heads=2, hidden_dim=32,
    intermediate_dim=64, dropout=0.1, max_sequence_length=64, num_segments=2,
    hidden_activation="gelu",
)


@pytest.fixture
def stsb_file(tmp_path):
    path = tmp_path / "dev.tsv"
    lines = [STSB_HEADER] + [
        f"{index}\tmain-news\tfile\t2012\t{index}\tnone\tnone\t{first}\t{second}\t3.0"
        for index, (first, second) in enumerate(PAIRS)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(stsb_file, vocab, out_dir, runners, models=speed.MODEL_NAMES):
    return speed.run_benchmark(
        stsb_file, vocab, TINY_TEACHER, models=models, runners=runners, out_dir=out_dir,
        warmup_pairs=1, log=lambda line: None,
    )


# Every TF runner exports and reloads a SavedModel (~10 s each on a loaded
# 2-core machine): the default tier runs the main rows, `large` all of them.
MAIN_RUNNERS = ["tf-savedmodel", "tf-savedmodel+keras-layers", "hf-pytorch", "onnxruntime"]


@pytest.mark.parametrize(
    "runners",
    [MAIN_RUNNERS, pytest.param(list(speed.ALL_RUNNERS), marks=pytest.mark.large)],
    ids=["main-runners", "all-runners"],
)
def test_benchmark_runs_every_runner_and_writes_the_report(stsb_file, tiny_vocab_file, tmp_path, runners):
    pytest.importorskip("onnxruntime")
    out_dir = tmp_path / "report"
    report = _run(stsb_file, tiny_vocab_file, out_dir, runners)

    assert report["skipped"] == {}
    assert [(row["model"], row["runner"]) for row in report["rows"]] == [
        (model, runner) for model in speed.MODEL_NAMES for runner in runners
    ]
    for row in report["rows"]:
        assert row["pairs"] == len(PAIRS)
        assert row["pass_seconds"] > 0
        assert row["ms_per_pair_p50"] <= row["ms_per_pair_p90"]
        assert row["cpu_seconds"] >= 0
    assert set(report["speedups"]) == set(runners)
    # float32 levers keep the outputs; bfloat16 reports what it costs.
    for row in report["rows"]:
        bfloat16 = "+bf16" in row["runner"]  # `+bf16` and `+bf16+onednn`
        if row["runner"].startswith("tf-savedmodel+") and not bfloat16:
            assert row["max_abs_diff_vs_tf_savedmodel"] < 1e-5, row
        if bfloat16:
            assert row["max_abs_diff_sequence_output"] > 0
    # One set of weights and ids: our encoder matches HF PyTorch and ONNX Runtime.
    for model in speed.MODEL_NAMES:
        for name, value in report["parity"][model].items():
            if "int8" in name:  # int8 weights: a measured cost, reported, not float32 rounding
                assert 0 < value < 0.25, (name, value)
            else:
                assert value < 1e-5, (name, value)
    assert set(report["versions"]) >= {"tensorflow", "keras", "keras-hub", "torch", "transformers", "onnxruntime"}
    assert report["threads"]["onnxruntime"]["inter_op"] == 1

    saved = json.loads((out_dir / "speed.json").read_text())
    assert saved["rows"] == report["rows"]
    table = (out_dir / "speed.md").read_text()
    assert "| distilbert | onnxruntime |" in table and "668" in table
    assert (out_dir / "speed.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_peer_is_skipped_and_the_rest_runs(stsb_file, tiny_vocab_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    report = _run(stsb_file, tiny_vocab_file, None, ["tf-savedmodel", "onnxruntime"], models=["distilbert"])
    assert "onnxruntime" in report["skipped"]["onnxruntime"]
    assert [row["runner"] for row in report["rows"]] == ["tf-savedmodel"]
    assert "skipped onnxruntime" in speed.format_table(report)


def test_unknown_names_fail_before_any_work(stsb_file, tiny_vocab_file):
    with pytest.raises(ValueError, match="unknown runner"):
        _run(stsb_file, tiny_vocab_file, None, ["tf-serving-magic"])
    with pytest.raises(ValueError, match="unknown model"):
        _run(stsb_file, tiny_vocab_file, None, ["tf-savedmodel"], models=["roberta"])


def test_pairs_are_packed_cls_a_sep_b_sep(stsb_file, tiny_vocab_file):
    tokenizer = load_tokenizer(tiny_vocab_file)
    pairs = speed.read_stsb_pairs(stsb_file, limit=2)
    assert pairs == PAIRS[:2]
    inputs = speed.tokenize_pairs(tokenizer, pairs)
    first = tokenizer.tokenize_ragged([PAIRS[0][0]]).to_list()[0]
    second = tokenizer.tokenize_ragged([PAIRS[0][1]]).to_list()[0]
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    assert inputs.token_ids[0].tolist() == [[cls_id] + first + [sep_id] + second + [sep_id]]
    assert inputs.segment_ids[0].tolist() == [[0] * (len(first) + 2) + [1] * (len(second) + 1)]
    assert inputs.token_ids[0].dtype == np.int32
    # Over-long pairs are cut round robin, as the export's text signature cuts them.
    truncated = speed.tokenize_pairs(tokenizer, pairs, max_sequence_length=8)
    assert max(truncated.lengths) == 8
    assert (len(first), len(second)) == (4, 4)  # budget 5: round robin keeps 3 + 2
    assert truncated.token_ids[0].tolist() == [[cls_id] + first[:3] + [sep_id] + second[:2] + [sep_id]]


def test_real_stsb_dev_has_1500_pairs(shared_data):
    pairs = speed.read_stsb_pairs(shared_data / "glue" / "STS-B" / "dev.tsv")
    assert len(pairs) == speed.STSB_DEV_PAIRS
    assert all(first and second for first, second in pairs)


def test_speedups_and_table_rows():
    rows = [
        {"model": "bert", "runner": "onnxruntime", "parameters": 110e6, "pass_seconds": 3.0,
         "ms_per_pair_mean": 2.0, "ms_per_pair_p50": 2.0, "ms_per_pair_p90": 2.0},
        {"model": "distilbert", "runner": "onnxruntime", "parameters": 66e6, "pass_seconds": 1.5,
         "ms_per_pair_mean": 1.0, "ms_per_pair_p50": 1.0, "ms_per_pair_p90": 1.0},
    ]
    assert speed.speedups(rows) == {"onnxruntime": 2.0}
