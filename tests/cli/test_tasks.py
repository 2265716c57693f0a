"""`distil_tf.cli.tasks`: the tables the task commands print."""

from distil_tf.cli.tasks import format_metrics_table


def test_format_table_shows_percentages():
    table = format_metrics_table("glue/mrpc", "m", {"validation": {"f1": 0.875, "accuracy": 0.8, "score": 0.8375,
                                                                   "examples": 408}})
    assert "validation (408 examples)" in table
    assert "f1" in table and "87.50" in table and "83.75" in table
