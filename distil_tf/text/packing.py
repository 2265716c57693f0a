"""In-graph packing: `[CLS] a [SEP] (b [SEP])`, core ops only; the one packer of training and serving.

`TextPreprocessor` (`text_preprocessor.py`) packs with it in training's
`tf.data` pipelines, in evaluation and inside every exported signature.

Why not `keras_hub.layers.MultiSegmentPacker`: with `truncate="round_robin"`
it calls `tf_text.RoundRobinTrimmer`, which since tensorflow-text 2.13 emits the
`TFText>RoundRobinTrim` / `TFText>RoundRobinGenerateMasks` ops. TF Serving
2.12-2.19 pin tensorflow-text 2.12.1 and lack them, so such a SavedModel
fails to load there ("Op type not registered"). The rule: export with the
tensorflow-text version the target image pins. Here the round-robin rule is
computed with plain arithmetic on row lengths and ragged slicing (core ops),
giving the same token ids as keras-hub's packer (tested) while loading on
every TF Serving release that has the tokenizer's ops.

Padding goes to the longest row of the batch, not to `max_sequence_length`:
attention costs O(seq^2), and on CPU a batch of short sentences padded to 128
runs several times slower for identical outputs. Static shapes (XLA, TPUs)
ask for `pad_to_length`.
"""

import tensorflow as tf

ROUND_ROBIN = "round_robin"
WATERFALL = "waterfall"
TRUNCATION_STRATEGIES = (ROUND_ROBIN, WATERFALL)


def keep_first(token_ids, lengths):
    """The first `lengths[i]` tokens of row `i`.

    Args:
        token_ids: `tf.RaggedTensor` `[batch, None]`.
        lengths: int64 `[batch]`, at most the row lengths.

    Returns:
        `tf.RaggedTensor` `[batch, None]`.
    """
    positions = tf.ragged.range(token_ids.row_lengths())
    return tf.ragged.boolean_mask(token_ids, positions < lengths[:, tf.newaxis])


def truncated_lengths(row_lengths, budget, truncate=ROUND_ROBIN):
    """How many tokens each segment keeps so that their sum fits `budget`.

    Round robin gives one token at a time to each segment, first segment
    first, until the budget is spent or a segment runs out (tf-text's
    `RoundRobinTrimmer`). For two segments of lengths `a`, `b` that is
    `a' = min(a, max(budget - b, ceil(budget / 2)))`, `b' = min(b, budget - a')`.
    Waterfall keeps the first segment whole (up to the budget) and gives the
    rest to the second.

    Args:
        row_lengths: list of 1 or 2 int64 tensors `[batch]`.
        budget: int. Tokens available to the segments (special tokens excluded).
        truncate: str. "round_robin" or "waterfall".

    Returns:
        list of int64 tensors `[batch]`, the kept lengths.
    """
    if truncate not in TRUNCATION_STRATEGIES:
        raise ValueError(f"unknown truncate '{truncate}'; expected one of {TRUNCATION_STRATEGIES}")
    budget = tf.constant(budget, tf.int64)
    if len(row_lengths) == 1:
        return [tf.minimum(row_lengths[0], budget)]
    if len(row_lengths) != 2:
        raise ValueError(f"expected 1 or 2 segments, got {len(row_lengths)}")
    first, second = row_lengths
    if truncate == ROUND_ROBIN:
        half_up = (budget + 1) // 2
        first_kept = tf.minimum(first, tf.maximum(budget - second, half_up))
    else:
        first_kept = tf.minimum(first, budget)
    second_kept = tf.minimum(second, budget - first_kept)
    return [first_kept, second_kept]


def pack_segments(
    segments,
    sequence_length,
    start_id,
    end_id,
    pad_id,
    truncate=ROUND_ROBIN,
    pad_to_length=False,
):
    """Truncate, add special tokens, pad to the longest row (or to `sequence_length`).

    Args:
        segments: list of 1 or 2 `tf.RaggedTensor` `[batch, None]` of token
            ids (no special tokens).
        sequence_length: int. Longest packed row, special tokens included.
        start_id: int. `[CLS]`.
        end_id: int. `[SEP]`.
        pad_id: int. `[PAD]`.
        truncate: str. "round_robin" (training's default) or "waterfall".
        pad_to_length: bool. Pad every batch to `sequence_length` (a static
            width, for XLA and TPUs) instead of its longest row.

    Returns:
        `(features, kept_lengths)`: features `{"token_ids", "segment_ids",
        "padding_mask"}` int32 `[batch, longest]` with
        `longest <= sequence_length` (`[batch, sequence_length]` with `pad_to_length`), and the kept length of every segment,
        int64 `[batch]` each.
    """
    num_special = 1 + len(segments)
    budget = sequence_length - num_special
    if budget < 1:
        raise ValueError(
            f"sequence_length {sequence_length} leaves no room for text after "
            f"{num_special} special tokens"
        )
    segments = [tf.cast(segment, tf.int32) for segment in segments]
    kept_lengths = truncated_lengths(
        [segment.row_lengths() for segment in segments], budget, truncate
    )
    segments = [keep_first(segment, kept) for segment, kept in zip(segments, kept_lengths)]

    batch_size = segments[0].nrows()
    start = tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], tf.constant(start_id, tf.int32)))
    end = tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], tf.constant(end_id, tf.int32)))
    pieces, segment_pieces = [start], [tf.zeros_like(start)]
    for segment_index, segment in enumerate(segments):
        pieces += [segment, end]
        segment_pieces += [
            tf.ones_like(segment) * segment_index,
            tf.ones_like(end) * segment_index,
        ]
    token_ids = tf.concat(pieces, axis=1)
    segment_ids = tf.concat(segment_pieces, axis=1)
    padding_mask = tf.ones_like(token_ids)
    # The width is the longest row; an empty batch still gets the special
    # tokens' width, so that the model's `[:, 0]` ([CLS]) slice is in range.
    if pad_to_length:
        shape = tf.stack([batch_size, tf.constant(sequence_length, batch_size.dtype)])
    else:
        row_lengths = tf.concat([token_ids.row_lengths(), [num_special]], axis=0)
        shape = tf.stack([batch_size, tf.reduce_max(row_lengths)])
    features = {
        "token_ids": token_ids.to_tensor(default_value=pad_id, shape=shape),
        "segment_ids": segment_ids.to_tensor(default_value=0, shape=shape),
        "padding_mask": padding_mask.to_tensor(default_value=0, shape=shape),
    }
    return features, kept_lengths


def pack_texts(tokenize, texts, text_pairs, preprocessing, sequence_length, start_id, end_id, pad_id,
               pad_to_length=False):
    """Clean, tokenize, truncate and pack texts as the model was trained (`TextPreprocessor.__call__`).

    Args:
        tokenize: callable, string `[batch]` -> ragged int ids `[batch, None]`
            without special tokens.
        texts: string `[batch]`; text_pairs: string `[batch]` or None.
        preprocessing: `distil_tf.text.preprocessing.PreprocessingConfig`
            (cleaning, truncation; its length is not used: `sequence_length` is).
        sequence_length: int. Longest packed row, special tokens included.
        start_id, end_id, pad_id: int. `[CLS]`, `[SEP]`, `[PAD]`.
        pad_to_length: bool. A static width `sequence_length` (see `pack_segments`).

    Returns:
        `{"token_ids", "segment_ids", "padding_mask"}` int32 `[batch, longest]`.
    """
    from distil_tf.text import preprocessing as text_preprocessing

    if preprocessing.clean_line_breaks:
        texts = text_preprocessing.clean_line_breaks_in_graph(texts)
    segments = [tokenize(texts)]
    if text_pairs is not None:
        segments.append(tokenize(text_pairs))
    return pack_token_ids(segments, preprocessing, sequence_length, start_id, end_id, pad_id, pad_to_length)


def pack_token_ids(segments, preprocessing, sequence_length, start_id, end_id, pad_id, pad_to_length=False):
    """Truncate already tokenized segments the model's way and pack them: `pack_texts` after tokenizing.

    Round robin (GLUE, pairs) shares the budget between the segments; head
    + tail / head (IMDb, one text) keep the review's start and end first, and
    the packer then never trims.
    """
    from distil_tf.text import preprocessing as text_preprocessing

    segments = list(segments)
    if preprocessing.truncation != text_preprocessing.ROUND_ROBIN:
        if len(segments) != 1:
            raise ValueError(f"truncation '{preprocessing.truncation}' is for single texts, got {len(segments)}")
        # [CLS] text [SEP]: two special tokens; what is left then fits.
        segments[0] = text_preprocessing.truncate_head_tail(
            segments[0], sequence_length - 2, preprocessing.truncation, preprocessing.head_length)
    features, _ = pack_segments(segments, sequence_length, start_id, end_id, pad_id, pad_to_length=pad_to_length)
    return features
