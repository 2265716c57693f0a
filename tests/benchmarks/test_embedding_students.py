"""The issue-16 table's report: acceptance checks and markdown, on synthetic rows (the runs are the lead's)."""

from distil_tf.benchmarks.embedding_students import acceptance, format_report


def _row(name, layers, only, after=None, latency=10.0):
    row = {"name": name, "layers": layers, "layers_only": {"spearman": only}, "parameters": 17_000_000,
           "model_bytes": 69_000_000, "export_bytes": 71_000_000, "latency_ms_p50": latency,
           "latency_ms_p90": latency * 1.2, "throughput_batch32": 300.0}
    if after is not None:
        row["distilled"] = {"spearman": after}
    return row


def test_acceptance_and_table():
    rows = [_row("teacher", list(range(6)), 0.8672, latency=20.0), _row("layers-0-3-5", [0, 3, 5], 0.8421, 0.8560),
            _row("layers-0-2-4", [0, 2, 4], 0.7381, 0.7900)]
    checks = acceptance(rows)
    assert [check["met"] for check in checks] == [True, False, True]  # 85.60 >= 85.42; 79.00 < 80.27
    report = {"teacher": "/m/all-MiniLM-L6-v2", "date": "2026-12-01T00:00:00+00:00",
              "cpu": {"model": "Some CPU", "cores": 2}, "sts_pairs": 1500, "distill_config": "x/embedding_student.yaml",
              "distill_overrides": [], "steps": 2000, "corpus": ["/d/wiki.test.raw"],
              "speed_texts": {"rounds": 3, "latency": 200, "throughput_batches": 8},
              "command": "python scripts/embedding_students.py --out o", "rows": rows, "acceptance": checks}
    text = format_report(report)
    assert "Some CPU (2 cores)" in text and "2026-12-01" in text
    assert "| layers-0-3-5 | [0, 3, 5] | 84.21 | 85.60 | 98.7% |" in text
    assert "| 2.00x |" in text and "NOT met: [0,2,4]" in text
    report["acceptance"] = []
    assert "acceptance not judged" in format_report(report)
