"""What every export module shares: tokenizer, packing, the forward pass and the ids signature.

In the shape of Model Garden's `official/core/export_base.py`: a `tf.Module`
that holds the model and its preprocessing, and whose `get_signatures()`
hands `tf.function`s with an `input_signature` to `tf.saved_model.save`.
Each family adds its own text signatures on top:

| module | family | text signature | ids signature |
|---|---|---|---|
| `SentencePredictionExportModule` | GLUE, IMDb (classification, regression) | `serving_default`, `classify` / `regress` | `predict_ids` |
| `QuestionAnsweringExportModule` | SQuAD (spans) | `serving_default` (question, context) | `predict_ids` |
| `EmbeddingExportModule` | a bare encoder (sentence embeddings) | `serving_default` | `embed_ids` |

`create_export_module` (`export_module.py`) picks the family from the model.

What the base owns, once:
- the length and vocabulary checks (`checks.check_encoder_inputs`);
- the special ids and the segment-id layout (BERT has token types,
  DistilBERT none);
- the forward pass's placement: plain, or compiled by XLA and padded to a
  length bucket first (`InferenceOptions`), cut back to the caller's positions
  for per-position outputs;
- the ids-in signature (`[batch, T]` int32 in, the family's outputs out) and
  its warmup record;
- `TaskExportModule`: a `TaskModel`'s forward pass, fused or keras-hub, both
  through the one head definition `models.task_model.head_outputs`.
"""

import tensorflow as tf

from distil_tf.export import warmup as warmup_records
from distil_tf.export.checks import check_encoder_inputs
from distil_tf.export.fused_encoder import FusedEncoder
from distil_tf.export.inference_options import InferenceOptions, pad_to_bucket, with_compute_dtype
from distil_tf.models import pooling as pooling_lib
from distil_tf.models.task_model import head_outputs
from distil_tf.text import preprocessing as text_preprocessing
from distil_tf.text.text_preprocessor import TextPreprocessor

PREDICT_IDS_SIGNATURE = "predict_ids"


def _ids_spec(name):
    return tf.TensorSpec([None, None], tf.int32, name=name)


def text_spec(name):
    """A string batch `[B]` input of a text signature."""
    return tf.TensorSpec([None], tf.string, name=name)


class ExportModuleBase(tf.Module):
    """The part of every export module that does not depend on the task family.

    Subclasses implement `forward(inputs)` (the model on packed inputs),
    `serving_signatures()` (their text signatures) and `warmup_logs(name)`.

    Args:
        encoder: the `Encoder` that will run (the task model's, or the bare one).
        tokenizer: its `BertWordPieceTokenizer`.
        max_sequence_length: int. Longest packed input, special tokens
            included; at most the encoder's position embeddings.
        options: `InferenceOptions` or None (the fused float32 graph, no XLA).
        minimum_length: int. Shortest useful packed input for this family.
        minimum_reason: str. Why (shown when `max_sequence_length` is shorter).
    """

    # The ids-in signature's name; the embedding export calls it `embed_ids`.
    ids_signature_name = PREDICT_IDS_SIGNATURE
    # Outputs with a position axis (span logits `[B, T]`) are cut back to
    # the caller's length after bucket padding.
    per_position_outputs = False

    def __init__(self, encoder, tokenizer, max_sequence_length, options, minimum_length, minimum_reason, name=None):
        super().__init__(name=name)
        check_encoder_inputs(encoder, tokenizer, max_sequence_length, minimum_length, minimum_reason)
        self.options = InferenceOptions() if options is None else options
        self.tokenizer = tokenizer
        self.max_sequence_length = int(max_sequence_length)
        self.uses_segment_ids = encoder.architecture == "bert"
        self.start_id = tokenizer.token_to_id("[CLS]")
        self.end_id = tokenizer.token_to_id("[SEP]")
        self.pad_id = tokenizer.token_to_id("[PAD]")
        # XLA compiles this inner function, one executable per padded shape
        # (cached by the runtime); padding outside it keeps the count small.
        self._call_model = (
            tf.function(self.forward, jit_compile=True, autograph=False) if self.options.jit_compile
            else self.forward
        )

    # -- what a family supplies -------------------------------------------------

    def forward(self, inputs):
        """The model's outputs (dict of float32 tensors) on packed encoder inputs `[batch, T]`."""
        raise NotImplementedError

    def serving_signatures(self):
        """`{name: concrete function}` of the family's text signatures (`serving_default`, ...)."""
        raise NotImplementedError

    def warmup_logs(self, model_name):
        """TF Serving `PredictionLog`s that exercise every signature once (`assets.extra`)."""
        raise NotImplementedError

    def ids_outputs(self, features):
        """The ids signature's outputs on packed features; the model's raw outputs by default."""
        return self.run_model(features)

    def describe(self):
        """What the export records beside the SavedModel (`assets.extra/*.json`), or None."""
        return None

    # -- shared building blocks (traced inside the signatures) --------------------

    def tokenize(self, texts):
        """WordPiece ids without special tokens, `tf.RaggedTensor` `[batch, None]`."""
        return self.tokenizer.tokenize_ragged(texts)

    def encoder_inputs(self, features):
        """The encoder's inputs from packed features: segment ids only for BERT (zeros if absent)."""
        inputs = {"token_ids": features["token_ids"], "padding_mask": features["padding_mask"]}
        if self.uses_segment_ids:
            inputs["segment_ids"] = features.get("segment_ids", tf.zeros_like(features["token_ids"]))
        return inputs

    def run_model(self, features):
        """`forward` on packed features (`[batch, T]` each), padded to a bucket when the options ask."""
        inputs = self.encoder_inputs(features)
        if not self.options.buckets:
            return self._call_model(inputs)
        padded, length = pad_to_bucket(inputs, self.options.buckets)
        outputs = self._call_model(padded)
        if self.per_position_outputs:
            # Per-position outputs: back to the caller's positions.
            outputs = {key: value[:, :length] for key, value in outputs.items()}
        return outputs

    # -- signatures ---------------------------------------------------------------

    def get_signatures(self):
        """`{signature_name: concrete function}` for `tf.saved_model.save`.

        Every signature traces with `autograph=False`: the code is plain
        graph code (tf.cond/tf.while_loop where it branches on tensors), and
        AutoGraph's source transformation of everything it calls (keras-hub
        layers, tf-text, ours) was more than half of an export's time (162 s
        of 334 s for a tiny BERT on a loaded 2-core machine), for an identical graph.
        """
        return {**self.serving_signatures(), self.ids_signature_name: self._ids_signature()}

    def _ids_signature(self):
        if self.uses_segment_ids:
            @tf.function(autograph=False,
                         input_signature=[_ids_spec("token_ids"), _ids_spec("padding_mask"), _ids_spec("segment_ids")])
            def serve_ids(token_ids, padding_mask, segment_ids):
                return self.ids_outputs(
                    {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids})
        else:
            @tf.function(autograph=False, input_signature=[_ids_spec("token_ids"), _ids_spec("padding_mask")])
            def serve_ids(token_ids, padding_mask):
                return self.ids_outputs({"token_ids": token_ids, "padding_mask": padding_mask})

        return serve_ids.get_concrete_function()

    def ids_warmup_log(self, features, model_name):
        """A warmup record for the ids signature, from real packed features (its own graph)."""
        id_inputs = {"token_ids": features["token_ids"].numpy(), "padding_mask": features["padding_mask"].numpy()}
        if self.uses_segment_ids:
            id_inputs["segment_ids"] = features["segment_ids"].numpy()
        return warmup_records.make_prediction_log(id_inputs, self.ids_signature_name, model_name)


class TaskExportModule(ExportModuleBase):
    """A `TaskModel`'s forward pass for export: the fused encoder graph or keras-hub's layers.

    Both paths end in `models.task_model.head_outputs`, the head `TaskModel.call`
    runs in training and evaluation, so the head exists once.

    Args:
        model: a built `TaskModel` whose `head_type` is one of `head_types`.
        tokenizer, max_sequence_length, options, minimum_length, minimum_reason:
            as for `ExportModuleBase`.
        pair: bool. Whether the model reads text pairs.
        preprocessing: `PreprocessingConfig` or None. The cleaning and
            truncation the model was trained with (None: GLUE's round robin,
            no cleaning), at the export's length.
    """

    head_types = ()

    def __init__(self, model, tokenizer, max_sequence_length, options, minimum_length, minimum_reason,
                 pair, preprocessing=None, name=None):
        head_type = getattr(model, "head_type", None)
        if head_type not in self.head_types:
            raise ValueError(f"{type(self).__name__} exports {' or '.join(self.head_types)} heads, "
                             f"got {head_type or type(model).__name__}")
        super().__init__(model.encoder, tokenizer, max_sequence_length, options, minimum_length, minimum_reason,
                         name=name)
        if self.options.fused_graph:
            # The fused graph reads float32 weights (a mixed-precision model is cast once) and
            # casts its projections to the compute dtype itself.
            model = with_compute_dtype(model, "float32")
            self.fused_encoder = FusedEncoder(model.encoder, self.options.compute_dtype)
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
        self.head_type = head_type
        # The head's pooling ("cls_pooler", "cls", "mean"; None for span).
        self.pooling = model.pooling
        self.task_name = model.task_name
        self.pair = bool(pair)
        # Training's cleaning and truncation (`distil_tf.text.preprocessing`).
        self.preprocessing = (preprocessing or text_preprocessing.PreprocessingConfig(self.max_sequence_length)
                              ).with_length(self.max_sequence_length)
        if self.preprocessing.truncation != text_preprocessing.ROUND_ROBIN and self.pair:
            raise ValueError(f"truncation '{self.preprocessing.truncation}' is for single texts; "
                             f"this model's inputs are pairs")
        # Training's preprocessor, rebuilt from the config saved with the model:
        # the one path from raw text to ids for every signature of the family.
        self.preprocessor = TextPreprocessor(tokenizer, self.preprocessing)

    def forward(self, inputs):
        """`TaskModel.call` (inference) on packed inputs: `{"logits"}` or `{"start_logits", "end_logits"}`."""
        if self.options.fused_graph:
            sequence_output = self.fused_encoder(inputs)  # [batch, T, hidden]
            outputs = head_outputs(
                self.head_type, sequence_output, inputs["padding_mask"], self.head_layers["classifier"],
                pooling=self.pooling, pooler_dense=self.head_layers["pooled_dense"],
                pre_classifier=self.head_layers["pre_classifier"],
            )
        else:
            outputs = self.model(inputs, training=False)
        return {key: tf.cast(value, tf.float32) for key, value in outputs.items()}
