"""`QuestionAnsweringExportModule`: SQuAD span models for TF Serving, question and context in, answer out.

Signatures (`B` = batch, `T` = longest packed row):

| name | inputs | outputs |
|---|---|---|
| `serving_default` | `question`, `context` string `[B]` | `answer` string `[B]`, `start`, `end` int64 `[B]`, `score` float32 `[B]` |
| `predict_ids` | `token_ids`, `padding_mask` (+ `segment_ids`, BERT) int32 `[B,T]` | `start_logits`, `end_logits` float32 `[B,T]` |

`start`/`end` are code-point offsets into the context as received (Python
`str` indices, not bytes or UTF-16 units; invalid UTF-8 is first replaced by
U+FFFD, so offsets index the decoded-with-replacement string), with
`context[start:end] == answer`. Answers cover whole whitespace-separated
words (see `span_decoding`). A question is cut to `max_query_length`
WordPieces and a long context is read in overlapping windows of
`max_sequence_length - question - 3` WordPieces, `doc_stride` apart, as
`run_squad.py` does (a span may only start where its window gives it the most
context); past `max_windows` windows the context is truncated. `score` is the
best span's start logit + end logit. Training records its `doc_stride` and
`max_query_length` with the model, and the export reads them.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from distil_tf.export import span_decoding
from distil_tf.export import warmup as warmup_records
from distil_tf.export.export_base import TaskExportModule, text_spec
from distil_tf.heads import SPAN
from distil_tf.text import packing

DEFAULT_MAX_SEQUENCE_LENGTH = 384
DEFAULT_MAX_QUERY_LENGTH = 64
DEFAULT_MAX_ANSWER_LENGTH = 30
DEFAULT_MAX_WINDOWS = 16

# SQuAD's whitespace (squad_lib `_is_whitespace`, also
# `distil_tf.data.squad._split_context`): context words and their offsets are
# the ones the training features were built from.
_CONTEXT_WHITESPACE = r"[ \t\r\n]|\x{202F}"


class QuestionAnsweringExportModule(TaskExportModule):
    """A span `TaskModel` plus its tokenizer: question and context in, answer and offsets out.

    Args:
        model: a built `TaskModel` with a span head.
        tokenizer: its `BertWordPieceTokenizer`.
        max_sequence_length: int. Longest packed window, special tokens included.
        max_query_length: int or None. Question WordPieces kept; `None` means
            `min(64, max_sequence_length // 2)`.
        max_answer_length: int. Longest answer, in WordPieces.
        doc_stride: int or None. WordPieces between the starts of two context
            windows; `None` means `min(128, max_sequence_length // 2)`
            (`run_squad.py` uses 128 at length 384).
        max_windows: int. Most windows per question; a longer context is
            truncated after them (one encoder row per window: the cap bounds
            a request's time).
        options: `InferenceOptions` or None (the fused float32 graph).
        preprocessing: `PreprocessingConfig` or None (pairs: round robin).

    Raises:
        ValueError: lengths that leave no room for the context, non-positive
            answer length, stride or window count.

    Examples:
    >>> module = QuestionAnsweringExportModule(model, tokenizer, max_sequence_length=384)
    >>> tf.saved_model.save(module, "/models/squad/1", signatures=module.get_signatures())
    """

    head_types = (SPAN,)
    per_position_outputs = True

    def __init__(self, model, tokenizer, max_sequence_length=DEFAULT_MAX_SEQUENCE_LENGTH, max_query_length=None,
                 max_answer_length=DEFAULT_MAX_ANSWER_LENGTH, doc_stride=None, max_windows=DEFAULT_MAX_WINDOWS,
                 options=None, preprocessing=None, name=None):
        if max_query_length is None:
            max_query_length = min(DEFAULT_MAX_QUERY_LENGTH, max_sequence_length // 2)
        if not 1 <= max_query_length <= max_sequence_length - 4:
            raise ValueError(
                f"max_query_length {max_query_length} must be in [1, "
                f"{max_sequence_length - 4}] to leave room for the context"
            )
        if max_answer_length < 1:
            raise ValueError(f"max_answer_length must be >= 1, got {max_answer_length}")
        if doc_stride is None:
            doc_stride = min(128, max_sequence_length // 2)
        if doc_stride < 1:
            raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        super().__init__(model, tokenizer, max_sequence_length, options, 4, "[CLS] question [SEP] context [SEP]",
                         pair=True, preprocessing=preprocessing, name=name)
        self.label_names = None
        self.max_query_length = int(max_query_length)
        self.max_answer_length = int(max_answer_length)
        self.doc_stride = int(doc_stride)
        self.max_windows = int(max_windows)

    def serving_default_input_names(self):
        return ("question", "context")

    def pack(self, questions, contexts):
        """Features `[batch, T]` of (question, context) pairs cut to one window (the ids warmup's input)."""
        return self.preprocessor(questions, contexts)

    def answer_questions(self, questions, contexts):
        """serving_default outputs of a span model (see the module docstring)."""
        contexts = tf.strings.unicode_transcode(
            contexts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        # Words [batch, W] and their byte offsets; every WordPiece of the
        # context then knows its word, so a token span maps back to text.
        words, word_starts, word_ends = tf_text.regex_split_with_offsets(
            contexts, _CONTEXT_WHITESPACE
        )
        word_pieces = self.tokenize(words.flat_values)  # [num_words, P]
        # [batch, W, P] -> [batch, C]: context WordPieces, and for each the
        # index of its word in the flat word list.
        context_ids = tf.RaggedTensor.from_row_splits(word_pieces, words.row_splits).merge_dims(1, 2)
        piece_words = context_ids.with_flat_values(word_pieces.value_rowids())
        question_ids = self.tokenize(questions)[:, : self.max_query_length]
        windows = self._context_windows(question_ids, context_ids)
        piece_index = windows["piece_index"]  # [N, None] into context_ids.flat_values

        features, (question_lengths, context_lengths) = packing.pack_segments(
            [tf.gather(question_ids, windows["row"]), tf.gather(context_ids.flat_values, piece_index)],
            self.max_sequence_length,
            self.start_id,
            self.end_id,
            self.pad_id,
            truncate=packing.WATERFALL,  # windows already fit: nothing is cut
        )
        outputs = self.run_model(features)  # [N, T] logits, one row per window
        context_begin = question_lengths + 2  # [CLS] question [SEP]
        width = tf.shape(features["token_ids"], out_type=tf.int64)[1]
        positions = tf.range(width)
        valid = (positions[tf.newaxis, :] >= context_begin[:, tf.newaxis]) & (
            positions[tf.newaxis, :] < (context_begin + context_lengths)[:, tf.newaxis]
        )
        # run_squad's "max context" rule: a span may start only at a token
        # whose window gives it the most context on both sides, so
        # overlapping windows do not both propose it.
        start_mask = tf.concat(
            [tf.ragged.range(context_begin) < 0, windows["is_max_context"]], axis=1
        ).to_tensor(default_value=False, shape=tf.stack([tf.size(context_begin, out_type=tf.int64), width]))
        start, end, score, found = span_decoding.best_spans(
            outputs["start_logits"], outputs["end_logits"], valid, self.max_answer_length, start_mask
        )
        # The best window of every question (the first one on a tie).
        window_scores = tf.RaggedTensor.from_row_lengths(score, windows["count"])
        # At least one column, so that argmax has an axis to reduce over in
        # an empty batch.
        most_windows = tf.reduce_max(tf.concat([windows["count"], [1]], axis=0))
        window_scores_dense = window_scores.to_tensor(
            default_value=span_decoding.NO_SPAN_SCORE,
            shape=tf.stack([window_scores.nrows(), most_windows]),
        )
        best_in_row = tf.argmax(window_scores_dense, axis=1, output_type=tf.int64)
        best_window = window_scores.row_splits[:-1] + best_in_row
        score = tf.gather(score, best_window)
        found = tf.gather(found, best_window)
        # Token position -> window position -> flat context piece -> word -> bytes.
        # One extra zero entry at the end of each lookup table: rows without a
        # span point there, so they stay in range even when the batch has no
        # context words at all; their offsets are zeroed below.
        no_piece = tf.size(piece_index.flat_values, out_type=tf.int64)
        flat_piece_index = tf.concat([piece_index.flat_values, [0]], axis=0)
        window_begin = tf.gather(piece_index.row_splits[:-1] - context_begin, best_window)
        start_piece = tf.gather(flat_piece_index, tf.where(found, window_begin + tf.gather(start, best_window), no_piece))
        end_piece = tf.gather(flat_piece_index, tf.where(found, window_begin + tf.gather(end, best_window), no_piece))
        piece_to_word = tf.concat([piece_words.flat_values, [0]], axis=0)
        word_start_bytes = tf.concat([word_starts.flat_values, [0]], axis=0)
        word_end_bytes = tf.concat([word_ends.flat_values, [0]], axis=0)
        start_byte = tf.gather(word_start_bytes, tf.gather(piece_to_word, start_piece))
        end_byte = tf.gather(word_end_bytes, tf.gather(piece_to_word, end_piece))
        start_byte = tf.where(found, start_byte, 0)
        end_byte = tf.where(found, end_byte, 0)
        answers = tf.strings.substr(contexts, start_byte, end_byte - start_byte, unit="BYTE")
        return {
            "answer": answers,
            "start": span_decoding.byte_to_char_offsets(contexts, start_byte),
            "end": span_decoding.byte_to_char_offsets(contexts, end_byte),
            "score": score,
        }

    def _context_windows(self, question_ids, context_ids):
        """BERT's sliding windows over the context WordPieces, as index tensors.

        Window `k` of a question starts at `k * stride` and holds at most
        `budget = max_sequence_length - 3 - question_length` pieces, with
        `stride = min(doc_stride, budget)`; windows are added until one reaches
        the context's end (`run_squad.py`), at most `max_windows` (the rest
        of a longer context is dropped: the cost is one encoder row per
        window, so the cap bounds a request's time).

        Args:
            question_ids: `tf.RaggedTensor` `[batch, None]`, already cut to
                `max_query_length`.
            context_ids: `tf.RaggedTensor` `[batch, None]`.

        Returns:
            dict: `row` int64 `[N]` (question of each window), `count` int64
            `[batch]` (windows per question), `piece_index` `tf.RaggedTensor`
            `[N, None]` (indices into `context_ids.flat_values`) and
            `is_max_context` bool `tf.RaggedTensor` `[N, None]`.
        """
        question_lengths = question_ids.row_lengths()
        context_lengths = context_ids.row_lengths()
        budget = self.max_sequence_length - 3 - question_lengths  # >= 1 (checked in __init__)
        stride = tf.minimum(tf.constant(self.doc_stride, tf.int64), budget)
        overflow = tf.maximum(context_lengths - budget, 0)
        count = tf.minimum(1 + (overflow + stride - 1) // stride, self.max_windows)
        row = tf.repeat(tf.range(tf.size(count, out_type=tf.int64)), count)
        window_start = tf.ragged.range(count).flat_values * tf.gather(stride, row)
        window_length = tf.maximum(
            tf.minimum(tf.gather(budget, row), tf.gather(context_lengths, row) - window_start), 0
        )
        first_piece = tf.gather(context_ids.row_splits[:-1], row) + window_start
        piece_index = tf.ragged.range(first_piece, first_piece + window_length)
        # Context of a piece in its window: min(left, right) + 0.01 * length
        # (run_squad `_check_is_max_context`); a piece is max-context in the
        # window where this is largest.
        offset = tf.ragged.range(window_length)
        left_right = tf.minimum(offset, window_length[:, tf.newaxis] - 1 - offset)
        context_score = tf.cast(left_right, tf.float32) + 0.01 * tf.cast(window_length, tf.float32)[:, tf.newaxis]
        best_score = tf.math.unsorted_segment_max(
            context_score.flat_values,
            piece_index.flat_values,
            num_segments=tf.size(context_ids.flat_values, out_type=tf.int64),
        )
        # Ties go to the first such window, as run_squad's strict `>` does.
        num_pieces = tf.size(context_ids.flat_values, out_type=tf.int64)
        window_id = tf.ones_like(piece_index) * tf.range(tf.size(row, out_type=tf.int64))[:, tf.newaxis]
        is_best = context_score >= tf.gather(best_score, piece_index)
        candidate = tf.where(is_best.flat_values, window_id.flat_values, tf.size(row, out_type=tf.int64))
        first_best = tf.math.unsorted_segment_min(candidate, piece_index.flat_values, num_segments=num_pieces)
        is_max_context = tf.equal(window_id, tf.gather(first_best, piece_index))
        return {"row": row, "count": count, "piece_index": piece_index, "is_max_context": is_max_context}


    def serving_signatures(self):
        @tf.function(autograph=False, input_signature=[text_spec("question"), text_spec("context")])
        def serve_questions(question, context):
            return self.answer_questions(question, context)

        return {"serving_default": serve_questions.get_concrete_function()}

    def warmup_logs(self, model_name):
        """serving_default at batch sizes 1 and 4, and predict_ids on real packed windows."""
        logs = [warmup_records.make_prediction_log(inputs, "serving_default", model_name)
                for inputs in warmup_records.warmup_inputs(self.serving_default_input_names())]
        encode = lambda texts: tf.constant([text.encode("utf-8") for text in texts])
        features = self.pack(encode(warmup_records.WARMUP_SENTENCES), encode(warmup_records.WARMUP_SENTENCE_PAIRS))
        logs.append(self.ids_warmup_log(features, model_name))
        return logs
