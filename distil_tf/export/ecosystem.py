"""`distil-tf export --format hf|keras-hub|tflite`: a model directory out into another ecosystem.

One entry point for the formats beside TF Serving's SavedModel: load the
model and its tokenizer, check that the target format can hold the model
exactly, write the directory under a staging name with its model card
(`README.md`), then rename it into place. Any refusal or failure leaves no
`--out` behind.
"""

import pathlib

FORMATS = ("hf", "keras-hub", "tflite")


def _load(model_path):
    """`(model, tokenizer, provenance, resolved_path)`; the tokenizer first, since it is cheap to miss."""
    from distil_tf.models import describe_model, load_model
    from distil_tf.run_dir import resolve_model_path
    from distil_tf.text import load_tokenizer

    path = resolve_model_path(model_path)
    if not pathlib.Path(path).exists():
        raise ValueError(f"{model_path} does not exist (export takes a model or run directory)")
    tokenizer = load_tokenizer(path)  # ValueError "no tokenizer in ..." when missing
    model = load_model(path)
    encoder = getattr(model, "encoder", model)
    if tokenizer.vocabulary_size() != encoder.vocabulary_size:
        raise ValueError(
            f"{path}: the tokenizer's vocabulary ({tokenizer.vocabulary_size()}) does not match "
            f"the model's ({encoder.vocabulary_size})"
        )
    return model, tokenizer, describe_model(path), pathlib.Path(path)


def export_to_format(model_path, out, format_name, **options):
    """Export the model at `model_path` to `out` in `format_name`.

    Args:
        model_path: a distil-tf model or run directory, or a Hugging Face /
            keras-hub directory holding a tokenizer.
        out: the directory to create; must not exist.
        format_name: "hf", "keras-hub" or "tflite".
        options: format options (tflite: `sequence_length`).

    Returns:
        One line saying what was written.

    Raises:
        ValueError: `out` exists, no tokenizer, or a head the format cannot
            represent exactly. Nothing is written then.
    """
    from distil_tf.export import model_card
    from distil_tf.atomic_files import atomic_directory

    if format_name not in FORMATS:
        raise ValueError(f"unknown export format '{format_name}'; expected one of {', '.join(FORMATS)}")
    out = pathlib.Path(out)
    if out.exists():
        raise ValueError(f"{out} already exists; choose a new --out (export never overwrites)")
    model, tokenizer, provenance, source = _load(model_path)
    if format_name == "tflite" and hasattr(model, "head_type"):
        # What is served is what was trained: the trained length (a different
        # --max-sequence-length warns) and its cleaning and truncation.
        from distil_tf.export.exporter import export_sequence_length, trained_preprocessing

        trained = trained_preprocessing(source)
        options["sequence_length"] = export_sequence_length(trained, options.get("sequence_length"))
        options["preprocessing"] = trained
    if format_name == "tflite":
        options["model_dir"] = source  # a large model converts in child processes that load it from here
    writer = _writer(format_name)
    with atomic_directory(out) as staging:
        details = writer(model, tokenizer, staging, **options)
        (staging / model_card.CARD_FILE).write_text(
            model_card.render_model_card(model, provenance, source, format_name, details)
        )
    return f"wrote {out} ({details['summary']})"


def _writer(format_name):
    if format_name == "hf":
        from distil_tf.export.hf_format import write_hf_export

        return write_hf_export
    if format_name == "keras-hub":
        from distil_tf.export.keras_hub_format import write_keras_hub_export

        return write_keras_hub_export
    from distil_tf.export.tflite_format import write_tflite_export

    return write_tflite_export
