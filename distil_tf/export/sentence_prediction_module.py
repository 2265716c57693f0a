"""`SentencePredictionExportModule`: GLUE and IMDb models (classification, regression) for TF Serving.

Signatures (`B` = batch, `T` = longest packed row of the batch, `K` = classes):

| name | head | inputs | outputs |
|---|---|---|---|
| `serving_default` | classification | `text` (+ `text_pair`) string `[B]` | `logits`, `probabilities` float32 `[B,K]`, `label_ids` int64 `[B]`, `labels` string `[B]` |
| `serving_default` | regression | `text` (+ `text_pair`) | `score` float32 `[B]` |
| `classify` | classification | `inputs`: serialized `tf.Example` `[B]` | `classes` string `[B,K]`, `scores` float32 `[B,K]` |
| `regress` | regression | `inputs`: serialized `tf.Example` `[B]` | `outputs` float32 `[B]` |
| `predict_ids` | both | `token_ids`, `padding_mask` (+ `segment_ids`, BERT) int32 `[B,T]` | `logits` |

Text is tokenized in graph by the model's `BertWordPieceTokenizer` (invalid
UTF-8 is replaced, never an error) and packed by `text.TextPreprocessor`
(the object training's `tf.data` pipelines run) with the model's recorded
preprocessing: the cleaning (IMDb's `<br />` tags) and the
truncation (round robin for pairs, head + tail for long reviews) that training
used, `[CLS] a [SEP] (b [SEP])`, segment ids 0/1, padding to the longest row
of the batch. A 10,000-word text is truncated, not refused.

`classify` and `regress` are what TF Serving's Classify and Regress APIs
require (one input `inputs`; `classes`/`scores`, `outputs`); the examples
carry the text in bytes feature `text` (and `text_pair` for pair tasks).
"""

import tensorflow as tf

from distil_tf.export import warmup as warmup_records
from distil_tf.export.export_base import TaskExportModule, text_spec
from distil_tf.heads import CLASSIFICATION, REGRESSION

DEFAULT_MAX_SEQUENCE_LENGTH = 128


class SentencePredictionExportModule(TaskExportModule):
    """A classification or regression `TaskModel` plus its tokenizer, with TF Serving signatures.

    Args:
        model: a built `TaskModel` with a classification or regression head.
        tokenizer: its `BertWordPieceTokenizer`.
        max_sequence_length: int. Longest packed input, special tokens included.
        pair: bool. Text-pair inputs (`export_module.resolve_pair` asks the registry).
        options: `InferenceOptions` or None (the fused float32 graph).
        preprocessing: `PreprocessingConfig` or None: the model's recorded cleaning and truncation.

    Examples:
    >>> module = SentencePredictionExportModule(model, tokenizer, max_sequence_length=128, pair=False)
    >>> tf.saved_model.save(module, "/models/sst2/1", signatures=module.get_signatures())
    """

    head_types = (CLASSIFICATION, REGRESSION)

    def __init__(self, model, tokenizer, max_sequence_length=DEFAULT_MAX_SEQUENCE_LENGTH, pair=False, options=None,
                 preprocessing=None, name=None):
        super().__init__(model, tokenizer, max_sequence_length, options, 4, "[CLS] text [SEP] text [SEP]",
                         pair=pair, preprocessing=preprocessing, name=name)
        if self.head_type == CLASSIFICATION:
            label_names = model.label_names or [str(index) for index in range(model.num_classes)]
            if len(label_names) != model.num_classes:
                raise ValueError(
                    f"the model has {model.num_classes} classes but {len(label_names)} label names"
                )
            self.label_names = list(label_names)
        else:
            self.label_names = None

    def serving_default_input_names(self):
        return ("text", "text_pair") if self.pair else ("text",)

    # -- building blocks (traced inside the signatures) ----------------------------

    def pack(self, texts, text_pairs=None):
        """Features `{"token_ids", "segment_ids", "padding_mask"}` int32 `[batch, T]`.

        Cleans and truncates as training did (`self.preprocessing`): IMDb
        models drop `<br />` tags and keep head + tail of long reviews.
        """
        return self.preprocessor(texts, text_pairs)

    def classification_outputs(self, logits):
        """`logits` `[B, K]` -> logits, probabilities, label ids and label names."""
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
        """serving_default's outputs on raw texts `[B]` (and pairs `[B]`)."""
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

    # -- signatures -----------------------------------------------------------------

    def serving_signatures(self):
        signatures = {}
        if self.pair:
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
        else:
            @tf.function(autograph=False, input_signature=[text_spec("inputs")])
            def serve_regress(inputs):
                texts, text_pairs = self.parse_examples(inputs)
                return {"outputs": self.text_outputs(texts, text_pairs)["score"]}

            signatures["regress"] = serve_regress.get_concrete_function()
        return signatures

    def warmup_logs(self, model_name):
        """serving_default at batch sizes 1 and 4, predict_ids on real packed ids, and classify/regress."""
        logs = [warmup_records.make_prediction_log(inputs, "serving_default", model_name)
                for inputs in warmup_records.warmup_inputs(self.serving_default_input_names())]
        texts = list(warmup_records.WARMUP_SENTENCES)
        pairs = list(warmup_records.WARMUP_SENTENCE_PAIRS) if self.pair else None
        features = self.pack(tf.constant([text.encode("utf-8") for text in texts]),
                             None if pairs is None else tf.constant([text.encode("utf-8") for text in pairs]))
        logs.append(self.ids_warmup_log(features, model_name))
        # Classify/Regress run their own graph (tf.Example parsing) too.
        kind = "classify" if self.head_type == CLASSIFICATION else "regress"
        logs.append(warmup_records.make_example_log(kind, texts, pairs, model_name))
        return logs
