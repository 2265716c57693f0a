"""The issue-14 runners of `distil-tf benchmark speed` on real STS-B pairs, tiny models.

ONNX Runtime with its transformer fusions and with int8 dynamic
quantization must compute what our export computes (same weights), within
stated tolerances; every TensorFlow runner runs in its own process with the
oneDNN setting its name says. No timing is asserted.
"""

import json
import subprocess
import sys

import pytest

from distil_tf.benchmarks import speed

# Real bert-base-uncased vocabulary (real WordPieces), tiny widths.
TINY_BERT_CONFIG = {
    "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "max_position_embeddings": 128, "type_vocab_size": 2,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
}
NEW_RUNNERS = ["tf-savedmodel", "tf-savedmodel+onednn", "onnxruntime+fusions", "onnxruntime+fusions+int8"]
# Same weights, float32: fusions reorder sums only.
FUSIONS_ATOL = 1e-4
# int8 weights (per-tensor scales) and dynamically quantized activations, on
# LayerNorm-scale (about unit) sequence outputs.
INT8_ATOL = 0.1


@pytest.fixture
def tiny_bert_config(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(TINY_BERT_CONFIG))
    return path


def _check_report(report, models):
    rows = {(row["model"], row["runner"]): row for row in report["rows"]}
    for model in models:
        assert rows[(model, "tf-savedmodel")]["onednn"].startswith("off")
        assert rows[(model, "tf-savedmodel")]["onednn_enabled_in_child"] is False
        assert rows[(model, "tf-savedmodel+onednn")]["onednn"].startswith("on")
        assert rows[(model, "tf-savedmodel+onednn")]["onednn_enabled_in_child"] is True
        # oneDNN changes kernels, not the graph: same outputs to float32 rounding.
        assert rows[(model, "tf-savedmodel+onednn")]["max_abs_diff_vs_tf_savedmodel"] < 1e-5
        # The peer at its best: its fusions fired (attention included).
        fused = rows[(model, "onnxruntime+fusions")]["ort_fused_operators"]
        assert fused.get("Attention", 0) == TINY_BERT_CONFIG["num_hidden_layers"] or model == "distilbert"
        assert fused.get("Attention", 0) >= 1 and fused.get("SkipLayerNormalization", 0) >= 2
        parity = report["parity"][model]
        assert parity["keras_vs_onnxruntime+fusions"] <= FUSIONS_ATOL
        assert 0 < parity["keras_vs_onnxruntime+fusions+int8"] <= INT8_ATOL


def test_new_runners_agree_with_our_export_on_real_pairs(shared_data, tiny_bert_config):
    report = speed.run_benchmark(
        shared_data / "glue" / "STS-B" / "dev.tsv", shared_data / "bert-base-uncased" / "vocab.txt",
        speed.teacher_config_from_bert_json(tiny_bert_config), models=["distilbert"],
        runners=NEW_RUNNERS, num_pairs=4, warmup_pairs=1, log=lambda line: None,
    )
    _check_report(report, ["distilbert"])
    table = speed.format_table(report)
    assert "| distilbert | tf-savedmodel | off |" in table
    assert "| distilbert | tf-savedmodel+onednn | on |" in table
    assert "ORT fused operators" in table


def test_runner_names_say_what_they_run():
    for name, (options, onednn) in speed.TF_RUNNERS.items():
        assert ("+onednn" in name) == onednn, name
        assert ("bf16" in name) == (options.get("compute_dtype") == "bfloat16"), name
    assert {"onnxruntime+fusions", "onnxruntime+fusions+int8"} <= set(speed.PEER_RUNNERS)
    assert speed.check_runner("onnxruntime+fusions+int8") is None  # importable offline


@pytest.mark.large
def test_cli_smoke_of_the_new_runners(shared_data, tiny_bert_config, tmp_path):
    runners = NEW_RUNNERS + ["tf-savedmodel+bf16+onednn"]
    command = [sys.executable, "-m", "distil_tf.cli", "benchmark", "speed", "--pairs", "3",
               "--runners", ",".join(runners), "--bert-config", str(tiny_bert_config),
               "--out", str(tmp_path / "speed")]
    subprocess.run(command, check=True, capture_output=True, text=True,
                   env={**__import__("os").environ, "DISTIL_TF_DATA": str(shared_data)})
    report = json.loads((tmp_path / "speed" / "speed.json").read_text())
    assert {row["runner"] for row in report["rows"]} == set(runners)
    _check_report(report, ["bert", "distilbert"])
    bf16 = [row for row in report["rows"] if row["runner"] == "tf-savedmodel+bf16+onednn"]
    assert all(row["max_abs_diff_sequence_output"] < 0.1 for row in bf16)


def test_tflite_runners_match_our_encoder_on_real_pairs_across_buckets(shared_data, tiny_bert_config,
                                                                    monkeypatch):
    """TFLite at fixed bucket shapes (padding masked) computes our encoder's states on real STS-B pairs."""
    pytest.importorskip("ai_edge_litert")
    runners = list(speed.TFLITE_RUNNERS)
    # The first 10 pairs of STS-B dev are 16-23 WordPieces: two buckets, two flatbuffers per runner.
    monkeypatch.setattr(speed, "TFLITE_BUCKETS", (20, 32))
    report = speed.run_benchmark(
        shared_data / "glue" / "STS-B" / "dev.tsv", shared_data / "bert-base-uncased" / "vocab.txt",
        speed.teacher_config_from_bert_json(tiny_bert_config), models=["bert"],
        runners=runners, num_pairs=10, warmup_pairs=1, log=lambda line: None,
    )
    rows = {(row["model"], row["runner"]): row for row in report["rows"]}
    # BERT only (segment ids too): DistilBERT's conversion is tested in tests/export.
    assert set(rows) == {("bert", runner) for runner in runners}
    for model in ("bert",):
        float32, int8 = rows[(model, "tflite+buckets")], rows[(model, "tflite+buckets+int8")]
        assert float32["tflite_buckets"] == [20, 32] == int8["tflite_buckets"]
        # Dynamic-range quantization stores the matmul and embedding weights in int8.
        assert int8["tflite_bytes"] < 0.5 * float32["tflite_bytes"]
        parity = report["parity"][model]
        assert parity["keras_vs_tflite+buckets"] <= FUSIONS_ATOL
        assert 0 < parity["keras_vs_tflite+buckets+int8"] <= INT8_ATOL
    assert "MB per .tflite" in speed.format_table(report)
