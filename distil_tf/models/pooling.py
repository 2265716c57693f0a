"""Pooling: one `[batch, hidden]` vector per sequence, the way a checkpoint was trained to give it.

- `cls_pooler`: BERT's pooler, `tanh(Dense([CLS]))`, trained on next-sentence
  prediction (Hugging Face `BertPooler`); BERT checkpoints only.
- `cls`: the last layer's `[CLS]` vector as is.
- `mean`: the average of the last layer over the non-pad tokens, `[CLS]` and
  `[SEP]` included (sentence-transformers' `Pooling(pooling_mode_mean_tokens)`).

sentence-transformers models (all-MiniLM-L6-v2 among them) are trained with
`mean` and their pooler is never used: a linear probe on all-MiniLM-L6-v2's
frozen encoder (2,000 SST-2 train phrases, 872 dev) scored 67.0% with the
pooler, 73.1% with `cls` and 75.6% with `mean` (issue 12).

L2 normalization (sentence-transformers' `Normalize` module) divides by
`max(||x||, 1e-12)`, as `torch.nn.functional.normalize` does, so the
embedding of an all-zero vector stays finite.
"""

from keras import ops

CLS_POOLER = "cls_pooler"
CLS = "cls"
MEAN = "mean"
POOLINGS = (CLS_POOLER, CLS, MEAN)

# sentence-transformers clamps the token count at 1e-9 (a row with no tokens
# pools to zeros instead of NaN); torch's normalize clamps the norm at 1e-12.
_MIN_TOKEN_COUNT = 1e-9
_MIN_NORM = 1e-12


def validate_pooling(pooling, architecture, where="pooling"):
    """Return `pooling` (or None) after checking it exists for `architecture`.

    Raises:
        ValueError: an unknown name, or `cls_pooler` on DistilBERT (no pooler).
    """
    if pooling is None:
        return None
    if pooling not in POOLINGS:
        raise ValueError(f"unknown {where} '{pooling}'; expected one of {', '.join(POOLINGS)}")
    if pooling == CLS_POOLER and architecture != "bert":
        raise ValueError(
            f"{where} '{CLS_POOLER}' needs BERT's pooler layer, which a {architecture} "
            f"encoder has not; use '{CLS}' or '{MEAN}'"
        )
    return pooling


def default_head_pooling(architecture):
    """What Hugging Face's sequence-classification heads read when the checkpoint says nothing.

    `BertForSequenceClassification`: the pooler; `DistilBertForSequenceClassification`: `[CLS]`.
    """
    return CLS_POOLER if architecture == "bert" else CLS


def pool(sequence_output, padding_mask, pooling, pooler_dense=None):
    """One vector per sequence.

    Args:
        sequence_output: `[batch, seq, hidden]`, the encoder's last layer.
        padding_mask: int or bool `[batch, seq]`, 1 on real tokens.
        pooling: str. One of `POOLINGS`.
        pooler_dense: the BERT pooler's `Dense(hidden, tanh)` (`cls_pooler` only).

    Returns:
        `[batch, hidden]` in `sequence_output`'s dtype (`mean` sums in float32).
    """
    if pooling == MEAN:
        dtype = sequence_output.dtype
        mask = ops.cast(padding_mask, "float32")[:, :, None]  # [batch, seq, 1]
        total = ops.sum(ops.cast(sequence_output, "float32") * mask, axis=1)  # [batch, hidden]
        count = ops.maximum(ops.sum(mask, axis=1), _MIN_TOKEN_COUNT)  # [batch, 1]
        return ops.cast(total / count, dtype)
    first_token = sequence_output[:, 0, :]  # [batch, hidden]
    if pooling == CLS:
        return first_token
    if pooling == CLS_POOLER:
        if pooler_dense is None:
            raise ValueError(f"pooling '{CLS_POOLER}' needs the BERT pooler layer")
        return pooler_dense(first_token)
    raise ValueError(f"unknown pooling '{pooling}'; expected one of {', '.join(POOLINGS)}")


def l2_normalize(embedding):
    """`embedding / max(||embedding||, 1e-12)` over the last axis, float32 `[batch, hidden]`."""
    embedding = ops.cast(embedding, "float32")
    norm = ops.sqrt(ops.sum(ops.square(embedding), axis=-1, keepdims=True))
    return embedding / ops.maximum(norm, _MIN_NORM)
