"""keras-hub preset directories from distil-tf models (`export --format keras-hub`).

Our `Encoder` wraps keras-hub's own `DistilBertBackbone` / `BertBackbone`,
so the export is the same backbone class rebuilt from its config with our
weights and saved with `save_to_preset`; `keras_hub.models.*.from_preset(DIR)`
then loads it offline. What keras-hub can and cannot hold exactly:

- Activation: keras-hub's backbones fix their GELU in code, not in the
  config (DistilBERT: exact erf GELU; BERT: the tanh approximation). A model
  whose `hidden_activation` differs (a BERT teacher from a Hugging Face
  checkpoint uses exact GELU) would load with another function; it is
  refused, never saved approximately.
- Heads: a DistilBERT classifier pooling `[CLS]` is exactly
  `DistilBertTextClassifier` (Dense(hidden, relu) -> dropout -> Dense(K)), a
  BERT classifier on the tanh pooler exactly `BertTextClassifier`. Other
  poolings, regression and span heads have no keras-hub task: refused.
- The MLM head is not exported: keras-hub's `*MaskedLM` heads normalize with
  LayerNorm epsilon 1e-5, ours (Hugging Face's) with 1e-12, so the logits
  would differ. Encoders export as the backbone alone, and say so.
- The tokenizer is keras-hub's WordPiece (tf-text) configured like ours
  (lowercase, accents stripped when uncased); it agrees with our HF-exact
  tokenizer on ordinary text, but it is keras-hub's implementation.
"""

import keras_hub

from distil_tf.models import pooling as pooling_lib

# keras-hub's backbone classes and the GELU each hard-codes.
_BACKBONES = {
    "distilbert": (keras_hub.models.DistilBertBackbone, "gelu"),
    "bert": (keras_hub.models.BertBackbone, "gelu_approximate"),
}


def _backbone(encoder):
    """A fresh keras-hub backbone of `encoder`'s class and config, with its weights."""
    backbone_class, activation = _BACKBONES[encoder.architecture]
    if encoder.hidden_activation != activation:
        raise ValueError(
            f"keras-hub's {backbone_class.__name__} always uses '{activation}' GELU but this model uses "
            f"'{encoder.hidden_activation}'; it cannot be a keras-hub preset exactly "
            "(use --format hf, which records the activation)"
        )
    backbone = backbone_class.from_config(encoder.backbone.get_config())
    backbone.set_weights(encoder.backbone.get_weights())
    return backbone


def _tokenizer(tokenizer, architecture):
    tokenizer_class = (keras_hub.models.BertTokenizer if architecture == "bert"
                       else keras_hub.models.DistilBertTokenizer)
    lowercase = bool(tokenizer.hf_lowercase)
    # Hugging Face strips accents whenever it lowercases unless told otherwise.
    strip_accents = lowercase if tokenizer.hf_strip_accents is None else bool(tokenizer.hf_strip_accents)
    return tokenizer_class(vocabulary=tokenizer.get_vocabulary(), lowercase=lowercase,
                           strip_accents=strip_accents)


def _classifier(model, backbone, tokenizer, sequence_length):
    """The keras-hub text classifier equal to `model`'s head, or a ValueError."""
    architecture = model.encoder.architecture
    if model.head_type != "classification":
        raise ValueError(
            f"keras-hub has no task for a {model.head_type} head (only text classifiers); "
            "use --format hf or saved_model"
        )
    expected = pooling_lib.default_head_pooling(architecture)
    if model.pooling != expected:
        raise ValueError(
            f"this {architecture} classifier pools with '{model.pooling}', but keras-hub's text classifier "
            f"reads '{expected}'; the head cannot be a keras-hub preset exactly, so it is not exported"
        )
    from distil_tf.export.hf_format import check_reference_head_layers

    check_reference_head_layers(model, "keras-hub")
    if architecture == "bert":
        preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
        classifier = keras_hub.models.BertTextClassifier(
            backbone, num_classes=model.num_classes, preprocessor=preprocessor, dropout=model.classifier_dropout)
        classifier.output_dense.set_weights(model.classifier.get_weights())
    else:
        preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
        classifier = keras_hub.models.DistilBertTextClassifier(
            backbone, num_classes=model.num_classes, preprocessor=preprocessor, dropout=model.classifier_dropout)
        classifier.pooled_dense.set_weights(model.pre_classifier.get_weights())
        classifier.output_dense.set_weights(model.classifier.get_weights())
    return classifier


def write_keras_hub_export(model, tokenizer, directory, sequence_length=None):
    """Write a keras-hub preset of `model` into the (staging) `directory`.

    Args:
        model: an `Encoder` (backbone preset) or a classification `TaskModel`
            (text-classifier preset: backbone, tokenizer, preprocessor, task).
        tokenizer: its `BertWordPieceTokenizer`.
        directory: an empty directory.
        sequence_length: the classifier preprocessor's packing length
            (default: the encoder's position count).

    Returns:
        The model-card details (`summary`, `notes`, `usage`).
    """
    is_task = hasattr(model, "head_type")
    encoder = model.encoder if is_task else model
    backbone = _backbone(encoder)
    keras_tokenizer = _tokenizer(tokenizer, encoder.architecture)
    # Never longer than the position table (an input past it has no embedding).
    sequence_length = min(sequence_length or encoder.max_sequence_length, encoder.max_sequence_length)
    notes = ["The tokenizer is keras-hub's WordPiece configured like distil-tf's (same vocabulary and casing)."]
    backbone_name = type(backbone).__name__
    if is_task:
        classifier = _classifier(model, backbone, keras_tokenizer, sequence_length)
        classifier.save_to_preset(str(directory))
        task_name = type(classifier).__name__
        if model.label_names:
            notes.append("Label ids: " + ", ".join(f"{i} = {name}" for i, name in enumerate(model.label_names)) + ".")
        usage = (f"import keras_hub\nclassifier = keras_hub.models.{task_name}.from_preset(\"DIR\")\n"
                 "classifier.predict([\"a sentence\"])  # logits [batch, num_classes]")
        return {"summary": f"keras-hub {task_name} preset", "notes": notes, "usage": usage}
    backbone.save_to_preset(str(directory))
    keras_tokenizer.save_to_preset(str(directory))
    if encoder.mlm_head is not None:
        notes.append("The masked-LM head is not included: keras-hub's MaskedLM head uses LayerNorm epsilon 1e-5, "
                     "this model's 1e-12 (use --format hf for DistilBertForMaskedLM).")
    if encoder.pooling is not None:
        notes.append(f"The backbone returns token vectors; this model's sentence embedding pools them with "
                     f"'{encoder.pooling}'" + (" and L2-normalizes" if encoder.normalize_embeddings else "") + ".")
    summary = f"keras-hub {backbone_name} preset" + (" (backbone only, no MLM head)" if encoder.mlm_head is not None else "")
    usage = (f"import keras_hub\nbackbone = keras_hub.models.{backbone_name}.from_preset(\"DIR\")\n"
             f"tokenizer = keras_hub.models.{backbone_name.replace('Backbone', 'Tokenizer')}.from_preset(\"DIR\")")
    return {"summary": summary, "notes": notes, "usage": usage}
