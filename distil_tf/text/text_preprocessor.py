"""`TextPreprocessor`: raw text to packed ids, the one path of training, evaluation and serving.

In keras-hub's `TextClassifierPreprocessor` shape (a tokenizer plus a packer
behind one call), built only from core TF ops and the tokenizer's
tensorflow-text ops, which stock TF Serving 2.20 loads:

    preprocessor = TextPreprocessor(tokenizer, PreprocessingConfig(128))
    features = preprocessor(texts)              # [batch, T] each, T = longest row
    features = preprocessor(texts, text_pairs)  # [CLS] a [SEP] b [SEP], segment ids 0/1

The same object (class, config and tokenizer) runs inside training's
`tf.data` pipelines (`data.glue.make_text_dataset`, `data.imdb`, the task
distiller's transfer set), inside `distil-tf evaluate`, and inside every
exported signature (`export.sentence_prediction_module`, the embedding and
TFLite exports). Its config (`PreprocessingConfig`: length, truncation,
cleaning) is saved in the model directory, and `distil-tf export` builds the
served preprocessor from it, so what is served is what was trained.

Steps: clean (IMDb's `<br />` tags, RE2 in graph), tokenize (the model's
WordPiece tokenizer, ids without special tokens), truncate (round robin
for pairs; head + tail or head for long single texts), pack (`[CLS]`,
`[SEP]`, segment ids, padding mask, padded to the longest row or, for
static shapes, to `max_seq_length`).
"""

import tensorflow as tf

from distil_tf.text import packing
from distil_tf.text.preprocessing import PreprocessingConfig


class TextPreprocessor(tf.Module):
    """Raw strings `[batch]` (and pairs) -> `{"token_ids", "segment_ids", "padding_mask"}` int32 `[batch, T]`.

    Args:
        tokenizer: the model's WordPiece tokenizer (`BertWordPieceTokenizer`,
            or any keras-hub WordPiece tokenizer).
        config: `PreprocessingConfig` (or an int: that length, round robin,
            no cleaning).
        pad_to_length: bool. Pad to `config.max_seq_length` (a static width for
            XLA and TPUs) instead of the batch's longest row.
    """

    def __init__(self, tokenizer, config, pad_to_length=False, name=None):
        super().__init__(name=name)
        self.tokenizer = tokenizer
        self.config = config if isinstance(config, PreprocessingConfig) else PreprocessingConfig(int(config))
        self.pad_to_length = bool(pad_to_length)
        self.start_id = tokenizer.token_to_id("[CLS]")
        self.end_id = tokenizer.token_to_id("[SEP]")
        self.pad_id = tokenizer.token_to_id("[PAD]")

    @property
    def sequence_length(self):
        return self.config.max_seq_length

    def tokenize(self, texts):
        """WordPiece ids of (uncleaned) strings `[batch]`, no special tokens: `tf.RaggedTensor` `[batch, None]`."""
        if hasattr(self.tokenizer, "tokenize_ragged"):
            return self.tokenizer.tokenize_ragged(texts)
        ids = self.tokenizer(texts)
        return ids if isinstance(ids, tf.RaggedTensor) else tf.RaggedTensor.from_tensor(ids)

    def __call__(self, texts, text_pairs=None):
        """Clean, tokenize, truncate and pack; see the module docstring."""
        return packing.pack_texts(self.tokenize, texts, text_pairs, self.config, self.sequence_length,
                                  self.start_id, self.end_id, self.pad_id, pad_to_length=self.pad_to_length)

    def pack(self, segments):
        """Truncate and pack already tokenized segments (1 or 2 ragged `[batch, None]`): `__call__` after tokenizing.

        For ids made outside the graph (the transfer set's augmented copies),
        which must be cut and packed exactly like text.
        """
        return packing.pack_token_ids(segments, self.config, self.sequence_length, self.start_id, self.end_id,
                                      self.pad_id, pad_to_length=self.pad_to_length)
