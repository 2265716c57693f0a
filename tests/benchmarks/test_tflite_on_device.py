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
    assert tflite_on_device.format_rows(rows).splitlines()[1].startswith(f"{paths[1]}: ")


def test_the_command_prints_a_line_per_model_and_writes_the_json(tmp_path, capsys):
    from distil_tf import cli

    path = _tiny_tflite(tmp_path / "one_layer.tflite", 1)
    out = tmp_path / "report.json"
    assert cli.main(["benchmark", "tflite-on-device", str(path), "--runs", "2", "--rounds", "1",
                     "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rounds"] == 1 and report["runs_per_round"] == 2 and report["rows"][0]["calls"] == 2
    assert report["cpu"]["cores"] >= 1 and report["cpu"]["model"]
    printed = capsys.readouterr().out
    assert f"{path}: " in printed and "batch-1 latency p50" in printed and "2 calls" in printed


def test_tflite_accuracy_scores_the_fp32_and_int8_models_of_an_export(tmp_path, tiny_vocab_file, capsys):
    """`distil-tf benchmark tflite-accuracy`: each file's SST-2 dev accuracy, as `classification_accuracy` counts it."""
    from distil_tf import cli
    from distil_tf.export.ecosystem import export_to_format
    from distil_tf.models import TaskModel, save_model
    from distil_tf.text import load_tokenizer

    tokenizer = load_tokenizer(tiny_vocab_file)
    encoder = Encoder("distilbert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                      hidden_dim=16, intermediate_dim=32, max_sequence_length=32, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "classification", task_name="glue/sst2", num_classes=2,
                                   label_names=["negative", "positive"])
    save_model(model, tmp_path / "model", tokenizer)
    export_to_format(tmp_path / "model", tmp_path / "tflite", "tflite", sequence_length=16)
    sentences, labels = ["the movie was good", "a bad film", "very fun", "boring"], [1, 0, 1, 0]
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in zip(sentences, labels)))

    rows = tflite_on_device.sst2_accuracy(tmp_path / "tflite", dev)
    assert [row["path"] for row in rows] == [str(tmp_path / "tflite" / name)
                                             for name in (tflite_format.FP32_FILE, tflite_format.INT8_FILE)]
    expected, _ = tflite_format.classification_accuracy(tmp_path / "tflite" / tflite_format.FP32_FILE, tokenizer,
                                                        sentences, labels, 16)
    assert rows[0]["accuracy"] == expected and rows[0]["sentences"] == 4
    assert cli.main(["benchmark", "tflite-accuracy", str(tmp_path / "tflite"), str(dev)]) == 0
    assert capsys.readouterr().out.splitlines() == tflite_on_device.format_accuracy(rows).splitlines()
    assert "SST-2 dev accuracy" in tflite_on_device.format_accuracy(rows)
