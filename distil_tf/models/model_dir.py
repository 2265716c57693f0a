"""Model directories: save, load, and find what a path holds.

A distil-tf model directory holds
- `config.json`: `{"distil_tf": {"format_version", "model": <Keras config of
  the model>, "provenance": {...}}}`. The top key keeps it apart from Hugging
  Face (`model_type`) and keras-hub (`registered_name`) configs;
- `model.weights.h5`: Keras weights;
- `vocab.txt` + `tokenizer_config.json`: the tokenizer, in Hugging Face's layout.

Directories are published atomically: written under a temporary name beside
the target, then renamed, so a crash never leaves a half-written model where a
reader (or a later command) would load it, and an existing model is only
replaced once the new one is complete.
"""

import json
import pathlib

import keras

from distil_tf.atomic_files import atomic_directory, check_output_available
from distil_tf.models import hf_checkpoint, keras_hub_preset
from distil_tf.models.encoder import Encoder
from distil_tf.run_dir import resolve_model_path
from distil_tf.text import load_tokenizer, save_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
FORMAT_VERSION = 1


def is_model_directory(path):
    config_path = pathlib.Path(path) / CONFIG_FILE
    if not config_path.is_file():
        return False
    try:
        return "distil_tf" in json.loads(config_path.read_text())
    except json.JSONDecodeError:
        return False


def read_model_config(path):
    """The `distil_tf` section of a model directory's config.json."""
    config_path = pathlib.Path(path) / CONFIG_FILE
    try:
        return json.loads(config_path.read_text())["distil_tf"]
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"{config_path} is not a distil-tf model config: {error}") from None


def save_model(model, directory, tokenizer, provenance=None, overwrite=False):
    """Write `model` and `tokenizer` as a distil-tf model directory.

    Args:
        model: a built `Encoder` (or another registered distil-tf Keras model).
        directory: target path; published atomically.
        tokenizer: the model's `BertWordPieceTokenizer`.
        provenance: dict recorded in config.json (teacher, layer map, run...).
        overwrite: replace an existing model directory.
    """
    if tokenizer.vocabulary_size() != _vocabulary_size(model):
        raise ValueError(
            f"tokenizer vocabulary ({tokenizer.vocabulary_size()}) does not match the "
            f"model's ({_vocabulary_size(model)})"
        )
    config = {
        "distil_tf": {
            "format_version": FORMAT_VERSION,
            "model": _architecture_config(model),
            "provenance": provenance or {},
        }
    }
    with atomic_directory(directory, overwrite=overwrite) as staging:
        model.save_weights(staging / WEIGHTS_FILE)
        save_tokenizer(tokenizer, staging)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return pathlib.Path(directory)


def _architecture_config(model):
    """The model's Keras config without `compile_config`.

    A model directory is architecture + weights. A compiled model's config
    also names its optimizer and learning-rate schedule (ours are custom
    classes), which would make every later load import the training code,
    and the optimizer state lives in the run's checkpoints anyway.
    """
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    return config


def _vocabulary_size(model):
    encoder = getattr(model, "encoder", model)
    return encoder.vocabulary_size


def _load_distil_tf_directory(path, dtype=None):
    config = read_model_config(path)
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}/{CONFIG_FILE}: format_version {config.get('format_version')} is "
            f"not {FORMAT_VERSION}; this distil-tf cannot read it"
        )
    model_config = dict(config["model"])
    # Directories written before compile configs were dropped on save.
    model_config.pop("compile_config", None)
    if dtype is not None:
        inner = dict(model_config["config"])
        if "encoder" in inner:  # a task model: the policy lives on its encoder
            inner["encoder"] = dict(inner["encoder"], config=dict(inner["encoder"]["config"], dtype=dtype))
        else:
            inner["dtype"] = dtype
        model_config["config"] = inner
    model = keras.saving.deserialize_keras_object(model_config)
    model(model.dummy_inputs())
    weights = pathlib.Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(f"no weights in {path}: {WEIGHTS_FILE} is missing")
    try:
        model.load_weights(weights)
    except Exception as error:  # h5py raises OSError/KeyError/ValueError variants
        raise ValueError(f"cannot read {weights}: {str(error).splitlines()[0]}") from None
    return model


def load_model(path, dtype=None):
    """Load a teacher, student or task model from any supported source.

    Args:
        path: a distil-tf model directory (written by `init-student`,
            `distill`, `finetune`...), a run directory of `finetune`,
            `distill` or `distill-task` (its final model; see
            `distil_tf.run_dir`), a Hugging Face BERT/DistilBERT directory
            (`config.json` + `model.safetensors` [+ `vocab.txt`]), a local
            keras-hub preset directory, or a keras-hub preset name such as
            `bert_base_en_uncased` (downloads; needs a network).
        dtype: optional dtype policy name for the built model.

    Returns:
        A built Keras model: an `Encoder` (outputs `sequence_output`
        `[batch, seq, hidden]`, `hidden_states`, `mlm_logits`
        `[batch, seq, vocab]` when it has an MLM head), or a task model.
    """
    path = resolve_model_path(path)
    path_obj = pathlib.Path(path)
    if path_obj.is_dir():
        if is_model_directory(path_obj):
            return _load_distil_tf_directory(path_obj, dtype)
        if hf_checkpoint.is_hf_directory(path_obj):
            return hf_checkpoint.load_hf_encoder(path_obj, dtype=dtype)
        if keras_hub_preset.is_preset_directory(path_obj):
            return keras_hub_preset.load_preset_encoder(str(path_obj), dtype=dtype)
        raise ValueError(
            f"no model in {path}: expected config.json from distil-tf, Hugging Face "
            "or keras-hub, or run.json of a distil-tf run"
        )
    if path_obj.exists():
        raise ValueError(f"{path} is a file; pass the model's directory")
    if keras_hub_preset.looks_like_preset_handle(str(path)):
        return keras_hub_preset.load_preset_encoder(str(path), dtype=dtype)
    raise ValueError(f"{path} does not exist (and is not a keras-hub preset name)")


def describe_model(path):
    """Provenance of a model directory (empty for external checkpoints)."""
    path = resolve_model_path(path)
    if is_model_directory(path):
        return read_model_config(path).get("provenance", {})
    return {}


def load_model_and_tokenizer(path, dtype=None):
    path = resolve_model_path(path)
    model = load_model(path, dtype=dtype)
    tokenizer = keras_hub_preset.load_preset_tokenizer(path) if not pathlib.Path(path).exists() else load_tokenizer(path)
    if tokenizer.vocabulary_size() != _vocabulary_size(model):
        raise ValueError(
            f"{path}: the tokenizer's vocabulary ({tokenizer.vocabulary_size()}) does not "
            f"match the model's ({_vocabulary_size(model)})"
        )
    return model, tokenizer


__all__ = [
    "Encoder",
    "atomic_directory",
    "check_output_available",
    "describe_model",
    "load_model",
    "load_model_and_tokenizer",
    "save_model",
]
