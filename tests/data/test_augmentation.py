"""Transfer-set augmentation (Tang et al., 2019) on WordPiece ids: whole words, specials untouched, seeded."""

import inspect

import numpy as np
import pytest
import tensorflow as tf

from distil_tf.data import augmentation
from distil_tf.data.augmentation import WordAugmenter, neighbour_table
from distil_tf.data.glue import TextExample
from distil_tf.tasks import registry
from distil_tf.text import load_tokenizer


@pytest.fixture(scope="module")
def vocabulary(tiny_vocab_file):
    return tiny_vocab_file.read_text().split("\n")[:-1]


@pytest.fixture(scope="module")
def tokenizer(tiny_vocab_file):
    return load_tokenizer(tiny_vocab_file)


def _ids(vocabulary, text):
    return [vocabulary.index(token) for token in text.split()]


def _embeddings(vocabulary):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(len(vocabulary), 16)).astype("float32")
    # "film" is almost "movie": it must be movie's nearest neighbour.
    embeddings[vocabulary.index("film")] = embeddings[vocabulary.index("movie")] + 0.01
    return embeddings


def test_neighbour_table_holds_whole_words_only(vocabulary):
    table = neighbour_table(_embeddings(vocabulary), vocabulary, neighbours=3)
    assert table.shape == (len(vocabulary), 3)
    assert table[vocabulary.index("movie"), 0] == vocabulary.index("film")
    for token in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "##s", ".", "[unused7]"):
        assert (table[vocabulary.index(token)] == -1).all()
    neighbours = {vocabulary[i] for i in table[table >= 0]}
    assert neighbours and all(augmentation.substitutable(token) for token in neighbours)
    assert not any((table[i] == i).any() for i in range(len(vocabulary)))


def test_copies_are_deterministic_under_a_seed_and_differ_across_seeds(vocabulary):
    augmenter = WordAugmenter(vocabulary, neighbour_table(_embeddings(vocabulary), vocabulary, 3),
                              mask=0.2, substitute=0.3, ngram=0.25, word_dropout=0.1)
    ids = _ids(vocabulary, "the movie was very good and not boring ##s , it was great fun")

    def copies(seed):
        return [augmenter.augment(ids, np.random.default_rng([seed, index, 1])) for index in range(20)]

    assert copies(42) == copies(42)
    assert copies(42) != copies(43)
    assert any(copy != ids for copy in copies(42))
    assert any(vocabulary.index("[MASK]") in copy for copy in copies(42))


def test_special_tokens_stay_in_place_and_words_stay_whole(vocabulary):
    augmenter = WordAugmenter(vocabulary, neighbour_table(_embeddings(vocabulary), vocabulary, 3),
                              mask=0.3, substitute=0.4, ngram=0.5, word_dropout=0.3)
    special = {vocabulary.index(token) for token in ("[CLS]", "[SEP]", "[PAD]")}
    row = _ids(vocabulary, "[CLS] the movie was boring ##s and bad [SEP] it was not fun ##ing ! [SEP] [PAD] [PAD]")
    for seed in range(200):
        copy = augmenter.augment(row, np.random.default_rng(seed))
        # Specials keep their order and count, and the row still ends in its padding.
        assert [token for token in copy if token in special] == [token for token in row if token in special]
        assert copy[0] == row[0] and copy[-2:] == row[-2:]
        for previous, token in zip(copy, copy[1:]):
            if vocabulary[token].startswith("##"):
                # A ## piece always follows its own word's piece, never a [MASK] or a substitute.
                assert row[row.index(token) - 1] == previous


def test_bad_probabilities_are_refused(vocabulary):
    with pytest.raises(ValueError, match="mask must be in \\[0, 1\\]"):
        WordAugmenter(vocabulary, mask=1.5)
    with pytest.raises(ValueError, match="mask \\+ substitute must be <= 1"):
        WordAugmenter(vocabulary, mask=0.6, substitute=0.6)


def test_packed_augmented_rows_keep_cls_sep_and_padding(tokenizer, vocabulary):
    from distil_tf.distillation import transfer_set

    spec = registry.get_task("glue/rte")
    examples = [TextExample(f"r:{i}", "the movie was not boring", "it was a very good film", i % 2)
                for i in range(3)]
    augmenter = WordAugmenter(vocabulary, neighbour_table(_embeddings(vocabulary), vocabulary, 3),
                              mask=0.3, substitute=0.3, ngram=0.5)
    transfer = transfer_set.TransferSet(spec, examples, tokenizer, 16,
                                        transfer_set.AugmentationSettings(copies=3), augmenter=augmenter, seed=0)
    parse = transfer_set.batch_parser("classification", 2, 16, tokenizer.pad_token_id, with_teacher=False,
                                      trim=False)
    features, labels = parse(tf.constant(list(transfer.records())))
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    for ids, segments, mask in zip(features["token_ids"].numpy(), features["segment_ids"].numpy(),
                                   features["padding_mask"].numpy()):
        length = int(mask.sum())
        assert ids[0] == cls_id and ids[length - 1] == sep_id and (ids[length:] == pad_id).all()
        # [CLS] a [SEP] b [SEP]: the first SEP closes segment 0, segment 1 follows.
        first_sep = list(ids).index(sep_id)
        assert (segments[: first_sep + 1] == 0).all() and (segments[first_sep + 1 : length] == 1).all()
        assert list(ids[:length]).count(sep_id) == 2 and list(ids[:length]).count(cls_id) == 1
        assert pad_id not in ids[:length]
    np.testing.assert_array_equal(labels["label_weight"], [1, 0, 0, 0] * 3)
    # The labelled rows are the untouched originals.
    original = features["token_ids"].numpy()[0]
    assert [vocabulary[i] for i in original[:int(features["padding_mask"].numpy()[0].sum())]] == (
        "[CLS] the movie was not boring [SEP] it was a very good film [SEP]".split())


class _WatchedList(list):
    """A list that records the highest index a slice of it reached."""

    highest = -1

    def __getitem__(self, index):
        if isinstance(index, slice):
            self.highest = max(self.highest, min(index.stop or len(self), len(self)) - 1)
        else:
            self.highest = max(self.highest, index)
        return super().__getitem__(index)


def test_the_transfer_set_streams(tokenizer, vocabulary):
    from distil_tf.distillation import transfer_set

    spec = registry.get_task("glue/sst2")
    examples = _WatchedList(TextExample(f"t:{i}", "the movie was good", None, 1) for i in range(3000))
    transfer = transfer_set.TransferSet(spec, examples, tokenizer, 16, transfer_set.AugmentationSettings(copies=4),
                                        augmenter=WordAugmenter(vocabulary, None, mask=0.5), seed=0)
    assert len(transfer) == 15000
    records = transfer.records()
    assert inspect.isgenerator(records)
    first = [next(records) for _ in range(10)]
    assert all(isinstance(record, bytes) for record in first)
    # Ten records read one chunk of examples, not the 3000 (nor 15000 records).
    assert examples.highest < transfer_set.CHUNK_EXAMPLES
