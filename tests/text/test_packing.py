"""In-graph packing: the ids of keras-hub's `MultiSegmentPacker` (the reference), core ops only."""

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.text import packing

CLS, SEP, PAD = 101, 102, 0


def make_packer(sequence_length, truncate):
    """keras-hub's packer: what the round-robin rule must reproduce without `TFText>RoundRobinTrim`."""
    return keras_hub.layers.MultiSegmentPacker(sequence_length=sequence_length, start_value=CLS, end_value=SEP,
                                               pad_value=PAD, truncate=truncate)


def _ragged(lengths, offset):
    return tf.ragged.constant([[offset + index for index in range(length)] for length in lengths], tf.int32)


def _unpadded(features):
    token_ids = features["token_ids"].numpy()
    segment_ids = features["segment_ids"].numpy()
    lengths = features["padding_mask"].numpy().sum(axis=1)
    return [list(row[:n]) for row, n in zip(token_ids, lengths)], [
        list(row[:n]) for row, n in zip(segment_ids, lengths)
    ]


@pytest.mark.parametrize("truncate", ["round_robin", "waterfall"])
def test_pairs_match_the_training_packer(truncate):
    # Lengths around the budget (12 - 3 = 9): both long, one short, both
    # short, empty, odd/even budgets.
    first_lengths = [0, 1, 3, 9, 20, 4, 5, 10, 6]
    second_lengths = [0, 20, 3, 9, 1, 5, 4, 10, 0]
    for sequence_length in (12, 13):
        first, second = _ragged(first_lengths, 1000), _ragged(second_lengths, 2000)
        features, _ = packing.pack_segments([first, second], sequence_length, CLS, SEP, PAD, truncate)
        reference_ids, reference_segments = make_packer(sequence_length, truncate)((first, second))
        reference_lengths = (reference_ids.numpy() != PAD).sum(axis=1)
        token_ids, segment_ids = _unpadded(features)
        for row in range(len(first_lengths)):
            n = reference_lengths[row]
            assert token_ids[row] == list(reference_ids.numpy()[row][:n]), (sequence_length, row)
            assert segment_ids[row] == list(reference_segments.numpy()[row][:n])


def test_single_text_truncates_and_pads_to_the_longest_row():
    features, (kept,) = packing.pack_segments([_ragged([2, 30, 0], 1000)], 8, CLS, SEP, PAD)
    assert features["token_ids"].shape == (3, 8)
    np.testing.assert_array_equal(features["token_ids"][0], [CLS, 1000, 1001, SEP, 0, 0, 0, 0])
    np.testing.assert_array_equal(features["token_ids"][1], [CLS, *range(1000, 1006), SEP])
    np.testing.assert_array_equal(features["padding_mask"][2], [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(features["segment_ids"], np.zeros((3, 8)))
    np.testing.assert_array_equal(kept, [2, 6, 0])


def test_short_batch_is_not_padded_to_max_length():
    features, _ = packing.pack_segments([_ragged([2, 1], 1000)], 128, CLS, SEP, PAD)
    assert features["token_ids"].shape == (2, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown truncate"):
        packing.truncated_lengths([tf.constant([1], tf.int64)] * 2, 5, "longest_first")
    with pytest.raises(ValueError, match="no room"):
        packing.pack_segments([_ragged([1], 0)] * 2, 3, CLS, SEP, PAD)
