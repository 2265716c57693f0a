"""Pre-tokenized corpora (`distil_tf.data.sequence_shards`): the same sequences as the text, sharded, pinned."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.data import batching, corpus, sequence_shards

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(100)]


@pytest.fixture(scope="module")
def tokenizer():
    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=SPECIALS + WORDS, lowercase=True)


@pytest.fixture()
def text_corpus(tmp_path):
    rng = np.random.default_rng(0)
    # 60 lines of 5-70 words: some dropped as too short, some chunked at max_length 32.
    lines = [" ".join(f"w{rng.integers(100)}" for _ in range(rng.integers(5, 70))) for _ in range(60)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _sequences(dataset):
    return [ids.tolist() for ids in dataset.as_numpy_iterator()]


def test_shards_hold_exactly_the_text_pipelines_sequences(tmp_path, tokenizer, text_corpus):
    expected = _sequences(corpus.build_sequence_dataset(text_corpus, tokenizer, 32, shuffle_buffer=0))
    manifest = sequence_shards.write_sequence_shards(text_corpus, tokenizer, tmp_path / "ids", 32,
                                                     sequences_per_shard=7, progress=lambda line: None)
    assert manifest["sequences"] == len(expected) > 40
    assert manifest["tokens"] == sum(map(len, expected))
    assert len(manifest["shards"]) == -(-len(expected) // 7)
    assert not (tmp_path / "ids.partial").exists()
    # Read back through the corpus entry point, in order, and shuffled.
    assert _sequences(corpus.build_sequence_dataset(str(tmp_path / "ids"), tokenizer, 32, shuffle_buffer=0)) \
        == expected
    shuffled = _sequences(corpus.build_sequence_dataset(f"sequences:{tmp_path / 'ids'}", tokenizer, 32,
                                                        shuffle_buffer=100, seed=3))
    assert shuffled != expected and sorted(shuffled) == sorted(expected)


@pytest.mark.parametrize("per_shard", [7, 1000])  # by file (9 shards), by record (1 shard)
def test_two_input_pipelines_split_the_shards_disjointly_and_completely(tmp_path, tokenizer, text_corpus,
                                                                           per_shard):
    sequence_shards.write_sequence_shards(text_corpus, tokenizer, tmp_path / "ids", 32,
                                          sequences_per_shard=per_shard, progress=lambda line: None)
    everything = _sequences(corpus.build_sequence_dataset(str(tmp_path / "ids"), tokenizer, 32, shuffle_buffer=0))
    parts = [
        _sequences(corpus.build_sequence_dataset(
            str(tmp_path / "ids"), tokenizer, 32, shuffle_buffer=10, seed=1,
            input_context=tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index)))
        for index in range(2)
    ]
    assert all(parts) and sorted(parts[0] + parts[1]) == sorted(everything)


def test_masked_lm_batches_read_the_shards(tmp_path, tokenizer, text_corpus):
    sequence_shards.write_sequence_shards(text_corpus, tokenizer, tmp_path / "ids", 32, progress=lambda line: None)
    counts = np.ones(len(SPECIALS) + len(WORDS), np.int64)
    options = dict(max_length=32, batch_size=4, seed=5, shuffle_buffer=0)
    from_text = batching.build_mlm_dataset(text_corpus, tokenizer, counts, **options)
    from_ids = batching.build_mlm_dataset(str(tmp_path / "ids"), tokenizer, counts, **options)
    for text_batch, ids_batch in zip(from_text, from_ids):
        for key in ("token_ids", "mlm_labels", "padding_mask"):
            np.testing.assert_array_equal(text_batch[key], ids_batch[key])


def test_shards_written_for_another_vocabulary_or_length_are_refused(tmp_path, tokenizer, text_corpus):
    sequence_shards.write_sequence_shards(text_corpus, tokenizer, tmp_path / "ids", 32, progress=lambda line: None)
    other = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=SPECIALS + WORDS[::-1], lowercase=True)
    with pytest.raises(ValueError, match="another vocabulary.*pretokenize --out"):
        corpus.build_sequence_dataset(str(tmp_path / "ids"), other, 32)
    with pytest.raises(ValueError, match=r"max_length, min_length, max_unknown_fraction \(32, 12, 0.5\); this run "
                                         r"asks \(64, 12, 0.5\)"):
        corpus.build_sequence_dataset(str(tmp_path / "ids"), tokenizer, 64)
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        sequence_shards.write_sequence_shards(text_corpus, tokenizer, tmp_path / "ids", 32)
    with pytest.raises(ValueError, match="only corpus source"):
        corpus.build_sequence_dataset([str(tmp_path / "ids"), text_corpus], tokenizer, 32)
    with pytest.raises(ValueError, match="no sequences.json"):
        corpus.build_sequence_dataset(f"sequences:{tmp_path}", tokenizer, 32)


def test_pretokenize_command_writes_the_shards_and_refuses_an_existing_dir(tmp_path, text_corpus, capsys):
    from distil_tf.cli import main

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + WORDS) + "\n")
    args = ["pretokenize", "--corpus", text_corpus, "--tokenizer", str(vocab), "--out", str(tmp_path / "ids"),
            "--max-seq-length", "32", "--sequences-per-shard", "10"]
    assert main(args) == 0
    manifest = sequence_shards.read_manifest(tmp_path / "ids")
    assert f"wrote {manifest['sequences']:,} sequences" in capsys.readouterr().out
    assert len(manifest["shards"]) == -(-manifest["sequences"] // 10)
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "exists; pass --overwrite" in error
