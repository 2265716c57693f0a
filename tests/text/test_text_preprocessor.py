"""`TextPreprocessor`: one object from raw text to ids for training, evaluation and every export.

The references are independent: keras-hub's `MultiSegmentPacker` (what
training packed with before, and what keras-hub's own preprocessors use) on
the tokenizer's ids, and Python's cleaning and head + tail cut for IMDb.
"""

import csv

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from distil_tf.text import load_tokenizer
from distil_tf.text.preprocessing import HEAD_TAIL, PreprocessingConfig, clean_line_breaks, truncate_head_tail
from distil_tf.text.text_preprocessor import TextPreprocessor


@pytest.fixture(scope="module")
def tokenizer(bert_vocab):
    return load_tokenizer(bert_vocab)


def _reference(tokenizer, segments, length, truncate="round_robin"):
    """keras-hub's packer on ragged ids, padded to `length`."""
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=length, start_value=tokenizer.token_to_id("[CLS]"), end_value=tokenizer.token_to_id("[SEP]"),
        pad_value=tokenizer.token_to_id("[PAD]"), truncate=truncate)
    token_ids, segment_ids = packer(tuple(segments))
    return token_ids.numpy(), segment_ids.numpy()


def _mrpc_pairs(shared_data, count):
    with open(shared_data / "glue" / "MRPC" / "dev.tsv", encoding="utf-8") as handle:
        next(handle)
        rows = [line.rstrip("\n").split("\t") for line in handle]
    return [row[3] for row in rows[:count]], [row[4] for row in rows[:count]]


def test_pairs_are_cut_round_robin_like_keras_hubs_packer(tokenizer, shared_data):
    first, second = _mrpc_pairs(shared_data, 32)
    # 40 tokens: most MRPC pairs are longer, so both texts get cut.
    preprocessor = TextPreprocessor(tokenizer, PreprocessingConfig(40), pad_to_length=True)
    features = preprocessor(tf.constant(first), tf.constant(second))
    segments = [tokenizer.tokenize_ragged(tf.constant(first)), tokenizer.tokenize_ragged(tf.constant(second))]
    reference_ids, reference_segments = _reference(tokenizer, segments, 40)
    assert sum(len(a) + len(b) > 37 for a, b in zip(*[s.to_list() for s in segments])) >= 24
    np.testing.assert_array_equal(features["token_ids"].numpy(), reference_ids)
    np.testing.assert_array_equal(features["segment_ids"].numpy(), reference_segments)
    np.testing.assert_array_equal(features["padding_mask"].numpy(), (reference_ids != 0).astype(np.int32))


def test_without_static_shapes_a_batch_is_padded_to_its_longest_row(tokenizer):
    preprocessor = TextPreprocessor(tokenizer, 128)
    features = preprocessor(tf.constant(["a gripping, funny film", "a dull mess"]))
    assert features["token_ids"].shape == (2, 7)  # [CLS] a gripping , funny film [SEP]
    static = TextPreprocessor(tokenizer, 128, pad_to_length=True)(tf.constant(["a dull mess"]))
    assert static["token_ids"].shape == (1, 128)
    np.testing.assert_array_equal(static["token_ids"].numpy()[:, :7], features["token_ids"].numpy()[1:, :7])


def test_imdb_reviews_are_cleaned_and_cut_head_plus_tail(tokenizer, shared_data):
    with open(shared_data / "imdb" / "dev.tsv", encoding="utf-8", newline="") as handle:
        reviews = [row[0] for row in list(csv.reader(handle, delimiter="\t"))[1:]]
    raw = [review for review in reviews if "<br" in review and len(review) > 3000][:8]
    assert len(raw) == 8
    config = PreprocessingConfig(96, HEAD_TAIL, head_length=32, clean_line_breaks=True)
    features = TextPreprocessor(tokenizer, config, pad_to_length=True)(tf.constant(raw))
    # Reference: Python's cleaning, the tokenizer, head 32 + tail 62, keras-hub's packer.
    ids = tokenizer.tokenize_ragged(tf.constant([clean_line_breaks(text) for text in raw]))
    kept = truncate_head_tail(ids, 94, HEAD_TAIL, 32)
    reference_ids, _ = _reference(tokenizer, [kept], 96, truncate="waterfall")
    np.testing.assert_array_equal(features["token_ids"].numpy(), reference_ids)
    # The tags matter: unclean text gives other ids.
    unclean = tokenizer.tokenize_ragged(tf.constant(raw))
    assert unclean.to_list() != ids.to_list()


def test_pre_tokenized_ids_pack_like_text(tokenizer, shared_data):
    first, second = _mrpc_pairs(shared_data, 8)
    preprocessor = TextPreprocessor(tokenizer, PreprocessingConfig(48))
    from_text = preprocessor(tf.constant(first), tf.constant(second))
    from_ids = preprocessor.pack([preprocessor.tokenize(tf.constant(first)), preprocessor.tokenize(tf.constant(second))])
    for key in from_text:
        np.testing.assert_array_equal(from_ids[key].numpy(), from_text[key].numpy())


def test_training_batches_and_the_export_run_the_same_preprocessor(tokenizer, shared_data):
    """The tf.data batches of a task and its export's signature pack the same ids, by one class and config."""
    from distil_tf.data.glue import TextExample
    from distil_tf.export.sentence_prediction_module import SentencePredictionExportModule
    from distil_tf.models import Encoder, TaskModel
    from distil_tf.tasks import registry, task_inputs

    first, second = _mrpc_pairs(shared_data, 12)
    spec = registry.get_task("glue/mrpc")
    examples = [TextExample(str(index), a, b, 0) for index, (a, b) in enumerate(zip(first, second))]
    features, _ = next(iter(task_inputs.text_batches(spec, examples, tokenizer, 40, 12)))
    encoder = Encoder("distilbert", vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2,
                      hidden_dim=8, intermediate_dim=16, max_sequence_length=64, mlm_head=False)
    encoder(encoder.dummy_inputs())
    model = TaskModel.from_encoder(encoder, "classification", num_classes=2, task_name="glue/mrpc",
                                   label_names=list(spec.label_names))
    module = registry.build_task("glue/mrpc").export_module(model, tokenizer, 40)
    assert isinstance(module.preprocessor, TextPreprocessor)
    assert module.preprocessor.config == task_inputs.preprocessing_for(spec, 40)
    served = module.pack(tf.constant(first), tf.constant(second))
    for key in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(served[key].numpy(), features[key].numpy())
