"""`distil_tf.benchmarks.tflite_on_device`: the rows it reports (no timing is asserted: timing is the benchmark's)."""

import json

import pytest

from distil_tf.benchmarks import tflite_on_device
from distil_tf.export import tflite_format
from distil_tf.models import Encoder

pytest.importorskip("ai_edge_litert")


def _tiny_tflite(path, layers, quantize=False):
    encoder = Encoder("distilbert", vocabulary_size=100, num_layers=layers, num_heads=2, hidden_dim=16,
                      intermediate_dim=32, max_sequence_length=32, mlm_head=False)
    encoder(encoder.dummy_inputs())
    tflite_format.convert_to_file(encoder, 16, path, quantize=quantize, isolate=False)
    return path


def test_rows_report_each_model_its_size_and_every_call(tmp_path):
    paths = [_tiny_tflite(tmp_path / "two_layers.tflite", 2), _tiny_tflite(tmp_path / "one_layer.tflite", 1)]
    rows = tflite_on_device.benchmark(paths, runs=3, warmup=1, rounds=2, threads=1)
    assert [row["path"] for row in rows] == [str(path) for path in paths]
    for row, path in zip(rows, paths):
        assert row["calls"] == 6 and row["threads"] == 1
        assert row["megabytes"] == round(path.stat().st_size / 2**20, 1)
        assert 0 < row["ms_p50"] and 0 < row["ms_mean"]
    out = tmp_path / "report.json"
    tflite_on_device.main([str(paths[1]), "--runs", "2", "--rounds", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["rounds"] == 1 and report["runs_per_round"] == 2 and report["rows"][0]["calls"] == 2
    assert report["cpu"]["cores"] >= 1 and report["cpu"]["model"]
