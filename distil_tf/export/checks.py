"""Checks every export module makes before tracing: the length fits, the tokenizer matches."""


def check_encoder_inputs(encoder, tokenizer, max_sequence_length, minimum_length, minimum_reason):
    """Raise a one-line `ValueError` unless `max_sequence_length` and `tokenizer` fit `encoder`.

    Args:
        encoder: the `Encoder` to serve.
        tokenizer: its `BertWordPieceTokenizer`.
        max_sequence_length: int. The longest packed input the export accepts.
        minimum_length: int. The shortest useful one for this export.
        minimum_reason: str. Why (shown when it is too short).
    """
    if max_sequence_length > encoder.max_sequence_length:
        raise ValueError(
            f"max_sequence_length {max_sequence_length} exceeds the model's "
            f"{encoder.max_sequence_length} position embeddings; pass a smaller one"
        )
    if max_sequence_length < minimum_length:
        raise ValueError(f"max_sequence_length must be >= {minimum_length} ({minimum_reason}), "
                         f"got {max_sequence_length}")
    if tokenizer.vocabulary_size() != encoder.vocabulary_size:
        raise ValueError(
            f"tokenizer vocabulary ({tokenizer.vocabulary_size()}) does not match the "
            f"model's ({encoder.vocabulary_size})"
        )
