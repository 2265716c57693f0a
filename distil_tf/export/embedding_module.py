"""`EmbeddingExportModule`: an encoder and its tokenizer as sentence-embedding signatures.

The export of a bare encoder (issue 16): sentence embeddings for search,
deduplication and clustering, pooled the way the checkpoint pools
(`distil_tf.models.pooling`; "mean" for sentence-transformers models such
as all-MiniLM-L6-v2), optionally L2-normalized.

Signatures (`B` = batch, `T` = longest packed row of the batch, `H` = hidden):

| name | inputs | outputs |
|---|---|---|
| `serving_default` | `text` string `[B]` | `embedding` float32 `[B, H]` |
| `embed_ids` | `token_ids`, `padding_mask` (+ `segment_ids`, BERT) int32 `[B, T]` | `embedding` float32 `[B, H]` |

Text is tokenized and packed in graph exactly as for task exports
(`export_base.ExportModuleBase`: the model's `BertWordPieceTokenizer`, `[CLS] text [SEP]`,
truncated to `max_sequence_length`, padded to the longest row). An empty text
is `[CLS] [SEP]` and gets that sequence's embedding, never an error.

The same module, built in memory with `fused_graph=False`, is what
`distil-tf evaluate --task stsb-embedding` runs on a model directory, so a
served embedding and an evaluated one differ only by the graph (fused vs
keras-hub layers, equal to float32 rounding).
"""

import tensorflow as tf

from distil_tf.export import warmup as warmup_records
from distil_tf.export.export_base import ExportModuleBase, text_spec
from distil_tf.export.fused_encoder import FusedEncoder
from distil_tf.export.inference_options import with_compute_dtype
from distil_tf.models import pooling as pooling_lib
from distil_tf.models.encoder import Encoder
from distil_tf.text.text_preprocessor import TextPreprocessor

DEFAULT_MAX_SEQUENCE_LENGTH = 128
EMBEDDING_OUTPUT = "embedding"
EMBED_IDS_SIGNATURE = "embed_ids"


class EmbeddingExportModule(ExportModuleBase):
    """An `Encoder` plus its tokenizer, with sentence-embedding signatures.

    Args:
        encoder: a built `distil_tf.models.Encoder`.
        tokenizer: its `BertWordPieceTokenizer`.
        max_sequence_length: int. Longest packed input, special tokens
            included (longer texts are truncated); at most the encoder's
            position embeddings.
        pooling: str or None. "cls_pooler", "cls" or "mean"; None: the
            encoder's recorded pooling (from its checkpoint).
        normalize: bool or None. L2-normalize the embeddings; None: the
            encoder's `normalize_embeddings` (sentence-transformers'
            `Normalize` module).
        options: `InferenceOptions` or None (the fused float32 graph).

    Raises:
        ValueError: `encoder` is not an `Encoder`, it has no known pooling
            and none is given, bad lengths, or a vocabulary mismatch.

    Examples:
    >>> module = EmbeddingExportModule(encoder, tokenizer, max_sequence_length=128)
    >>> module.embed_texts(tf.constant(["a man is dancing.", ""])).shape  # [2, hidden]
    >>> tf.saved_model.save(module, "/models/minilm/1", signatures=module.get_signatures())
    """

    ids_signature_name = EMBED_IDS_SIGNATURE

    def __init__(
        self,
        encoder,
        tokenizer,
        max_sequence_length=DEFAULT_MAX_SEQUENCE_LENGTH,
        pooling=None,
        normalize=None,
        options=None,
        name=None,
    ):
        if not isinstance(encoder, Encoder):
            raise ValueError(
                f"embedding export needs an encoder (got {type(encoder).__name__}); "
                "a task model is exported with its head"
            )
        pooling = pooling_lib.validate_pooling(pooling or encoder.pooling, encoder.architecture, "--pooling")
        if pooling is None:
            raise ValueError(
                "the encoder has no known pooling (no sentence-transformers 1_Pooling/config.json in "
                "its checkpoint, no trained BERT pooler): pass --pooling "
                f"{'|'.join(pooling_lib.POOLINGS if encoder.architecture == 'bert' else pooling_lib.POOLINGS[1:])}"
            )
        super().__init__(encoder, tokenizer, max_sequence_length, options, 2, "[CLS] [SEP]", name=name)
        if self.options.fused_graph:
            # Only the fused copy and the pooler are saved: no MLM head, no
            # keras-hub variables (embedding tables are shared with the copy).
            encoder = with_compute_dtype(encoder, "float32")
            self.fused_encoder = FusedEncoder(encoder, self.options.compute_dtype)
            self.encoder = None
        else:
            self.fused_encoder = None
            self.encoder = with_compute_dtype(encoder, self.options.compute_dtype)
        # The fused graph applies BERT's pooler itself; the keras-hub graph's
        # `Encoder.embed` has its own.
        use_pooler = self.fused_encoder is not None and pooling == pooling_lib.CLS_POOLER
        self.pooled_dense = encoder.backbone.pooled_dense if use_pooler else None
        self.pooling = pooling
        self.normalize = encoder.normalize_embeddings if normalize is None else bool(normalize)
        self.hidden_dim = encoder.hidden_dim
        # Round robin of one text, no cleaning: [CLS] text [SEP], cut to the length.
        self.preprocessor = TextPreprocessor(tokenizer, self.max_sequence_length)

    def describe(self):
        """What the export records beside the SavedModel (`assets.extra/embedding.json`)."""
        return {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_sequence_length": self.max_sequence_length,
            "hidden_dim": self.hidden_dim,
            "graph": self.options.label,
        }

    # -- building blocks (traced inside the signatures) ----------------------------

    def pack(self, texts):
        """`{"token_ids", "segment_ids", "padding_mask"}` int32 `[batch, T]` of raw texts."""
        return self.preprocessor(texts)

    def forward(self, inputs):
        """Embeddings float32 `[batch, hidden]` of packed inputs; padded positions are masked out."""
        if self.fused_encoder is not None:
            sequence_output = self.fused_encoder(inputs)  # [batch, T, hidden]
            pooled = pooling_lib.pool(sequence_output, inputs["padding_mask"], self.pooling, self.pooled_dense)
            if self.normalize:
                return pooling_lib.l2_normalize(pooled)
            return tf.cast(pooled, tf.float32)
        return self.encoder.embed(inputs, pooling=self.pooling, normalize=self.normalize)

    def embed_features(self, features):
        """Embeddings float32 `[batch, hidden]` of packed features (`[batch, T]` each)."""
        # Bucket padding is masked, so the pooled vector is unchanged.
        return self.run_model(features)

    def embed_texts(self, texts):
        """Embeddings float32 `[batch, hidden]` of a string tensor `[batch]`."""
        return self.embed_features(self.pack(texts))

    def ids_outputs(self, features):
        return {EMBEDDING_OUTPUT: self.embed_features(features)}

    # -- signatures -----------------------------------------------------------------

    def serving_signatures(self):
        @tf.function(autograph=False, input_signature=[text_spec("text")])
        def serve_text(text):
            return {EMBEDDING_OUTPUT: self.embed_texts(text)}

        return {"serving_default": serve_text.get_concrete_function()}

    def warmup_logs(self, model_name):
        """Batch sizes 1 and 4, an empty text (a [CLS] [SEP] row), and embed_ids on real packed ids."""
        logs = [
            warmup_records.make_prediction_log(inputs, "serving_default", model_name)
            for inputs in warmup_records.warmup_inputs(("text",))
        ]
        logs.append(warmup_records.make_prediction_log({"text": [b""]}, "serving_default", model_name))
        texts = tf.constant([text.encode("utf-8") for text in warmup_records.WARMUP_SENTENCES])
        logs.append(self.ids_warmup_log(self.pack(texts), model_name))
        return logs
