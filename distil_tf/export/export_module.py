"""`ExportModule`: a task model and its tokenizer as TF Serving signatures.

Follows Model Garden's `ExportModule(tf.Module)` (official/core/export_base.py,
official/nlp/serving/serving_modules.py): one `tf.Module` holds the Keras
model and the tokenizer, each signature is a `tf.function` with an
`input_signature`, and `get_signatures()` hands them to
`tf.saved_model.save`.

Signatures (`B` = batch, `T` = longest packed row of the batch):

| name | head | inputs | outputs |
|---|---|---|---|
| `serving_default` | classification | `text` (+ `text_pair`) string `[B]` | `logits`, `probabilities` float32 `[B,K]`, `label_ids` int64 `[B]`, `labels` string `[B]` |
| `serving_default` | regression | `text` (+ `text_pair`) | `score` float32 `[B]` |
| `serving_default` | span | `question`, `context` string `[B]` | `answer` string `[B]`, `start`, `end` int64 `[B]`, `score` float32 `[B]` |
| `classify` | classification | `inputs`: serialized `tf.Example` `[B]` | `classes` string `[B,K]`, `scores` float32 `[B,K]` |
| `regress` | regression | `inputs`: serialized `tf.Example` `[B]` | `outputs` float32 `[B]` |
| `predict_ids` | all | `token_ids`, `padding_mask` (+ `segment_ids`, BERT) int32 `[B,T]` | the head's outputs (`logits`; `start_logits`, `end_logits`) |

Text is tokenized in graph by the model's `BertWordPieceTokenizer` (invalid
UTF-8 is replaced, never an error) and packed by `packing.pack_segments`:
`[CLS] a [SEP] (b [SEP])`, segment ids 0/1, round-robin truncation of pairs
to `max_sequence_length` (the ids training's packer gives, without the
`TFText>RoundRobinTrim` op), padding to the longest row of the batch. A
10,000-word text is truncated, not refused.

`classify` and `regress` are what TF Serving's Classify and Regress APIs
require (one input `inputs`; `classes`/`scores`, `outputs`); the examples
carry the text in bytes feature `text` (and `text_pair` for pair tasks).

Question answering: `start`/`end` are code-point offsets into the context as
received (Python `str` indices, not bytes or UTF-16 units; invalid UTF-8 is
first replaced by U+FFFD, so offsets index the decoded-with-replacement
string), with `context[start:end] == answer`. Answers cover whole
whitespace-separated words (see `span_decoding`). A question is cut to
`max_query_length` WordPieces and a long context is read in overlapping
windows of `max_sequence_length - question - 3` WordPieces, `doc_stride`
apart, as `run_squad.py` does (a span may only start where its window gives
it the most context); past `max_windows` windows the context is truncated.
`score` is the best span's start logit + end logit.
"""

import tensorflow as tf
import tensorflow_text as tf_text

from distil_tf.data import task_specs as registry
from distil_tf.export import packing, span_decoding
from distil_tf.export.checks import check_encoder_inputs
from distil_tf.export.fused_encoder import FusedEncoder
from distil_tf.export.inference_options import InferenceOptions, pad_to_bucket, with_compute_dtype
from distil_tf.heads import CLASSIFICATION, REGRESSION, SPAN
from distil_tf.models import pooling as pooling_lib
from distil_tf.models.task_model import head_outputs
from distil_tf.text import preprocessing as text_preprocessing

DEFAULT_MAX_SEQUENCE_LENGTH = 128
DEFAULT_MAX_QUERY_LENGTH = 64
DEFAULT_MAX_ANSWER_LENGTH = 30
DEFAULT_MAX_WINDOWS = 16

# SQuAD's whitespace (squad_lib `_is_whitespace`, also
# `distil_tf.data.squad._split_context`): context words and their offsets are
# the ones the training features were built from.
_CONTEXT_WHITESPACE = r"[ \t\r\n]|\x{202F}"


def resolve_pair(task_name, head_type, pair=None):
    """Whether inputs are text pairs: explicit `pair`, else the task registry.

    Raises:
        ValueError: the task is not registered and `pair` is not given.
    """
    if head_type == SPAN:
        return True
    if task_name in registry.TASKS:
        is_pair = registry.get_task(task_name).is_pair
        if pair is not None and bool(pair) != is_pair:
            raise ValueError(
                f"pair={pair} contradicts task '{task_name}' (registered with is_pair={is_pair})"
            )
        return is_pair
    if pair is None:
        raise ValueError(
            f"task '{task_name}' is not in the task registry, so whether it reads text "
            "pairs is unknown: pass pair=True or pair=False (--pair / --no-pair)"
        )
    return bool(pair)


class ExportModule(tf.Module):
    """A `TaskModel` plus its tokenizer, with TF Serving signatures.

    Args:
        model: a built `distil_tf.models.TaskModel` (attributes `head_type`,
            `task_name`, `label_names`, `num_classes`, `encoder`).
        tokenizer: its `BertWordPieceTokenizer`.
        max_sequence_length: int. Longest packed input, special tokens
            included; at most the encoder's position embeddings.
        pair: bool or None. Text-pair inputs; `None` asks the task registry
            (span models always read (question, context) pairs).
        max_query_length: int or None. Question WordPieces kept (span heads);
            `None` means `min(64, max_sequence_length // 2)`.
        max_answer_length: int. Longest answer, in WordPieces (span heads).
        doc_stride: int or None. WordPieces between the starts of two context
            windows (span heads); `None` means `min(128, max_sequence_length // 2)`
            (`run_squad.py` uses 128 at length 384).
        max_windows: int. Most windows per question (span heads); a longer
            context is truncated after them.
        options: `InferenceOptions` or None (the defaults: the fused encoder
            graph, float32, no XLA). How the model's forward pass runs in
            every signature; see `distil_tf.export.inference_options`.

    Examples:
    >>> module = ExportModule(model, tokenizer, max_sequence_length=128)
    >>> tf.saved_model.save(module, "/models/sst2/1", signatures=module.get_signatures())
    """

    def __init__(
        self,
        model,
        tokenizer,
        max_sequence_length=DEFAULT_MAX_SEQUENCE_LENGTH,
        pair=None,
        max_query_length=None,
        max_answer_length=DEFAULT_MAX_ANSWER_LENGTH,
        doc_stride=None,
        max_windows=DEFAULT_MAX_WINDOWS,
        options=None,
        name=None,
        preprocessing=None,
    ):
        super().__init__(name=name)
        head_type = getattr(model, "head_type", None)
        if head_type not in (CLASSIFICATION, REGRESSION, SPAN):
            raise ValueError(
                f"only task models can be exported (got {type(model).__name__}); "
                "fine-tune the encoder on a task first (distil-tf finetune)"
            )
        encoder = model.encoder
        check_encoder_inputs(encoder, tokenizer, max_sequence_length, 4, "[CLS] text [SEP] text [SEP]")
        if head_type == SPAN:
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
        self.options = InferenceOptions() if options is None else options
        if self.options.fused_graph:
            # The fused graph is float32; a mixed-precision model is cast once.
            model = with_compute_dtype(model, "float32")
            self.fused_encoder = FusedEncoder(model.encoder)
            # The head's layers only: the keras-hub encoder's variables are
            # not saved (the fused copy replaces them; embeddings are shared).
            self.head_layers = {
                "pooled_dense": (
                    model.encoder.backbone.pooled_dense if model.pooling == pooling_lib.CLS_POOLER else None
                ),
                "pre_classifier": getattr(model, "pre_classifier", None),
                "classifier": model.classifier,
            }
            self.model = None
        else:
            self.model = with_compute_dtype(model, self.options.compute_dtype)
        # XLA compiles this inner function, one executable per padded shape
        # (cached by the runtime); padding outside it keeps the count small.
        self._call_model = (
            tf.function(self._model_outputs, jit_compile=True, autograph=False) if self.options.jit_compile else self._model_outputs
        )
        self.tokenizer = tokenizer
        self.head_type = head_type
        # The head's pooling ("cls_pooler", "cls", "mean"; None for span).
        self.pooling = model.pooling
        self.task_name = model.task_name
        self.pair = resolve_pair(model.task_name, head_type, pair)
        self.uses_segment_ids = encoder.architecture == "bert"
        self.max_sequence_length = int(max_sequence_length)
        # Training's cleaning and truncation (`distil_tf.text.preprocessing`);
        # None: GLUE's round robin, no cleaning.
        self.preprocessing = (preprocessing or text_preprocessing.PreprocessingConfig(self.max_sequence_length)
                              ).with_length(self.max_sequence_length)
        if self.preprocessing.truncation != text_preprocessing.ROUND_ROBIN and (self.pair or head_type == SPAN):
            raise ValueError(f"truncation '{self.preprocessing.truncation}' is for single texts; "
                             f"this model's inputs are pairs")
        self.max_query_length = max_query_length
        self.max_answer_length = int(max_answer_length)
        self.doc_stride = doc_stride
        self.max_windows = int(max_windows)
        self.start_id = tokenizer.token_to_id("[CLS]")
        self.end_id = tokenizer.token_to_id("[SEP]")
        self.pad_id = tokenizer.token_to_id("[PAD]")
        if head_type == CLASSIFICATION:
            label_names = model.label_names or [str(index) for index in range(model.num_classes)]
            if len(label_names) != model.num_classes:
                raise ValueError(
                    f"the model has {model.num_classes} classes but {len(label_names)} label names"
                )
            self.label_names = list(label_names)
        else:
            self.label_names = None

    # ------------------------------------------------------------------
    # Building blocks (traced inside the signatures)
    # ------------------------------------------------------------------

    def tokenize(self, texts):
        """WordPiece ids without special tokens, `tf.RaggedTensor` `[batch, None]`."""
        return self.tokenizer.tokenize_ragged(texts)

    def pack(self, texts, text_pairs=None):
        """Features `{"token_ids", "segment_ids", "padding_mask"}` int32 `[batch, T]`.

        Cleans and truncates as training did (`self.preprocessing`): IMDb
        models drop `<br />` tags and keep head + tail of long reviews.
        """
        return packing.pack_texts(self.tokenize, texts, text_pairs, self.preprocessing, self.max_sequence_length,
                                  self.start_id, self.end_id, self.pad_id)

    def _fused_outputs(self, inputs):
        """`TaskModel.call` (inference) on the fused encoder's sequence output: the same `head_outputs`."""
        sequence_output = self.fused_encoder(inputs)  # [batch, T, hidden]
        return head_outputs(
            self.head_type, sequence_output, inputs["padding_mask"], self.head_layers["classifier"],
            pooling=self.pooling, pooler_dense=self.head_layers["pooled_dense"],
            pre_classifier=self.head_layers["pre_classifier"],
        )

    def _model_outputs(self, inputs):
        if self.options.fused_graph:
            outputs = self._fused_outputs(inputs)
        else:
            outputs = self.model(inputs, training=False)
        return {key: tf.cast(value, tf.float32) for key, value in outputs.items()}

    def run_model(self, features):
        """The head's raw outputs on packed features (`[batch, T]` each)."""
        inputs = {"token_ids": features["token_ids"], "padding_mask": features["padding_mask"]}
        if self.uses_segment_ids:
            inputs["segment_ids"] = features["segment_ids"]
        if not self.options.buckets:
            return self._call_model(inputs)
        padded, length = pad_to_bucket(inputs, self.options.buckets)
        outputs = self._call_model(padded)
        if self.head_type == SPAN:
            # Per-position logits: back to the caller's positions.
            outputs = {key: value[:, :length] for key, value in outputs.items()}
        return outputs

    def classification_outputs(self, logits):
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_ids = tf.argmax(logits, axis=-1, output_type=tf.int64)
        labels = tf.gather(tf.constant(self.label_names), label_ids)
        return {
            "logits": logits,
            "probabilities": probabilities,
            "label_ids": label_ids,
            "labels": labels,
        }

    def text_outputs(self, texts, text_pairs=None):
        """serving_default outputs of a classification or regression model."""
        logits = self.run_model(self.pack(texts, text_pairs))["logits"]
        if self.head_type == REGRESSION:
            return {"score": logits}
        return self.classification_outputs(logits)

    def parse_examples(self, serialized):
        """Texts of serialized `tf.Example`s: bytes features `text` (+ `text_pair`).

        A missing feature fails the request (INVALID_ARGUMENT) instead of
        scoring an empty string.
        """
        spec = {"text": tf.io.FixedLenFeature([], tf.string)}
        if self.pair:
            spec["text_pair"] = tf.io.FixedLenFeature([], tf.string)
        features = tf.io.parse_example(serialized, spec)
        return features["text"], features.get("text_pair")

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

    # ------------------------------------------------------------------
    # Signatures
    # ------------------------------------------------------------------

    def get_signatures(self):
        """`{signature_name: concrete function}` for `tf.saved_model.save`.

        Every signature traces with `autograph=False`: the code below is plain
        graph code (tf.cond/tf.while_loop where it branches on tensors), and
        AutoGraph's source transformation of everything it calls (keras-hub
        layers, tf-text, ours) was more than half of an export's time (162 s
        of 334 s for a tiny BERT on a loaded 2-core machine), for an identical graph.
        """
        text_spec = lambda name: tf.TensorSpec([None], tf.string, name=name)
        ids_spec = lambda name: tf.TensorSpec([None, None], tf.int32, name=name)
        signatures = {}

        if self.head_type == SPAN:
            @tf.function(autograph=False, input_signature=[text_spec("question"), text_spec("context")])
            def serve_questions(question, context):
                return self.answer_questions(question, context)

            signatures["serving_default"] = serve_questions.get_concrete_function()
        elif self.pair:
            @tf.function(autograph=False, input_signature=[text_spec("text"), text_spec("text_pair")])
            def serve_text_pairs(text, text_pair):
                return self.text_outputs(text, text_pair)

            signatures["serving_default"] = serve_text_pairs.get_concrete_function()
        else:
            @tf.function(autograph=False, input_signature=[text_spec("text")])
            def serve_text(text):
                return self.text_outputs(text)

            signatures["serving_default"] = serve_text.get_concrete_function()

        if self.head_type == CLASSIFICATION:
            @tf.function(autograph=False, input_signature=[text_spec("inputs")])
            def serve_classify(inputs):
                texts, text_pairs = self.parse_examples(inputs)
                outputs = self.text_outputs(texts, text_pairs)
                batch_size = tf.shape(outputs["probabilities"])[0]
                classes = tf.tile(tf.constant([self.label_names]), [batch_size, 1])
                return {"classes": classes, "scores": outputs["probabilities"]}

            signatures["classify"] = serve_classify.get_concrete_function()
        elif self.head_type == REGRESSION:
            @tf.function(autograph=False, input_signature=[text_spec("inputs")])
            def serve_regress(inputs):
                texts, text_pairs = self.parse_examples(inputs)
                return {"outputs": self.text_outputs(texts, text_pairs)["score"]}

            signatures["regress"] = serve_regress.get_concrete_function()

        if self.uses_segment_ids:
            @tf.function(
                autograph=False,
                input_signature=[ids_spec("token_ids"), ids_spec("padding_mask"), ids_spec("segment_ids")]
            )
            def serve_ids(token_ids, padding_mask, segment_ids):
                return self.run_model(
                    {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids}
                )
        else:
            @tf.function(autograph=False, input_signature=[ids_spec("token_ids"), ids_spec("padding_mask")])
            def serve_ids(token_ids, padding_mask):
                return self.run_model({"token_ids": token_ids, "padding_mask": padding_mask})

        signatures["predict_ids"] = serve_ids.get_concrete_function()
        return signatures

    def serving_default_input_names(self):
        if self.head_type == SPAN:
            return ("question", "context")
        return ("text", "text_pair") if self.pair else ("text",)
