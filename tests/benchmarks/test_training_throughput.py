"""The training-throughput benchmark runs end to end on a tiny setting (no timing asserted)."""

import pytest

from distil_tf.benchmarks import training_throughput


def test_runs_and_reports_both_modes(tmp_path, shared_data, tiny_vocab_file):
    corpus = tmp_path / "corpus.txt"
    lines = (shared_data / "wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8").splitlines()[:200]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    report = training_throughput.run(str(corpus), str(tiny_vocab_file), steps=2, warmup_steps=1, batch_size=4,
                                     max_length=32, teacher_layers=2, student_layers=1, hidden_dim=16, num_heads=2)
    assert set(report["results"]) == {"distillation (5/2/1)", "student MLM only"}
    assert all(result["tokens_per_second"] > 0 for result in report["results"].values())
    table = training_throughput.format_table(report)
    assert "Distillation overhead" in table and "precision float32" in table


@pytest.mark.large  # three short fits (~2 min on the shared 2-core machine)
def test_attention_terms_add_a_third_run_and_their_overhead(tmp_path, shared_data, tiny_vocab_file):
    corpus = tmp_path / "corpus.txt"
    lines = (shared_data / "wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8").splitlines()[:200]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    report = training_throughput.run(str(corpus), str(tiny_vocab_file), steps=2, warmup_steps=1, batch_size=4,
                                     max_length=32, teacher_layers=2, student_layers=1, hidden_dim=16, num_heads=2,
                                     attention_terms=True)
    assert list(report["results"]) == [training_throughput.DISTILLATION, training_throughput.WITH_ATTENTION,
                                       training_throughput.MLM_ONLY]
    assert all(result["tokens_per_second"] > 0 for result in report["results"].values())
    assert report["attention_overhead_ratio"] > 0
    table = training_throughput.format_table(report)
    assert "| distillation (5/2/1) + attention terms |" in table and "Attention-term overhead" in table
