"""`distil-tf benchmark input-pipeline`: every source and worker count reads the same tokens."""

import json

import numpy as np
import pytest

from distil_tf.benchmarks import input_pipeline

WORDS = ["the", "a", "movie", "good", "bad", "is", "was", "not", "great", "film", "very", "fun", "boring"]


@pytest.fixture()
def corpus(tmp_path):
    rng = np.random.default_rng(1)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(8, 60))) for _ in range(80)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_two_workers_split_the_single_workers_tokens(tmp_path, corpus, tiny_vocab_file):
    from distil_tf.data import sequence_shards
    from distil_tf.text import load_tokenizer

    sequence_shards.write_sequence_shards(str(corpus), load_tokenizer(tiny_vocab_file), tmp_path / "ids", 32,
                                          sequences_per_shard=20, progress=lambda line: None)
    totals = {}
    for name, source in (("text", str(corpus)), ("shards", str(tmp_path / "ids"))):
        one = input_pipeline._worker((source, str(tiny_vocab_file), 0, 1, 32, 8, 1, 0))
        halves = [input_pipeline._worker((source, str(tiny_vocab_file), index, 2, 32, 8, 1, 0)) for index in (0, 1)]
        assert one[0] > 80 and one[1] > 80 * 8  # chunked lines: more sequences than lines
        assert all(half[0] > 0 for half in halves)
        assert (halves[0][0] + halves[1][0], halves[0][1] + halves[1][1]) == one[:2]
        totals[name] = one[:2]
    assert totals["text"] == totals["shards"]


@pytest.mark.large
def test_the_command_times_every_source_and_worker_count(tmp_path, corpus, tiny_vocab_file, capsys):
    from distil_tf import cli

    output = tmp_path / "report.json"
    code = cli.main(["benchmark", "input-pipeline", "--corpus", str(corpus), "--vocab", str(tiny_vocab_file),
                     "--workers", "1,2", "--max-seq-length", "32", "--batch-size", "8", "--json", str(output)])
    assert code in (0, None)
    report = json.loads(output.read_text())
    rows = {(row["source"], row["workers"]): row for row in report["results"]}
    assert set(rows) == {(source, workers) for source in ("text", "gzip text", "pre-tokenized shards")
                         for workers in (1, 2)}
    tokens = {row["tokens"] for row in rows.values()}
    assert len(tokens) == 1 and tokens.pop() == report["pretokenize"]["tokens"]
    assert all(row["tokens_per_second"] > 0 for row in rows.values())
    assert "| pre-tokenized shards | 2 |" in capsys.readouterr().out


def test_bad_worker_counts_are_one_line(tiny_vocab_file, corpus):
    with pytest.raises(ValueError, match="workers must be counts >= 1"):
        input_pipeline.run(str(corpus), str(tiny_vocab_file), workers=[0])
