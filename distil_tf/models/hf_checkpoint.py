"""Load Hugging Face BERT / DistilBERT checkpoints (safetensors), MLM head included.

keras-hub's converters (`convert_bert.py`, `convert_distilbert.py`) skip the
masked-LM head (`cls.predictions.*`, `vocab_transform`/`vocab_layer_norm`/
`vocab_projector.bias`) and fail on `BertForMaskedLM` checkpoints, which have no
pooler; distillation needs the teacher's MLM logits, so this module maps every
tensor itself. Keys are accepted with or without the `bert.` / `distilbert.`
prefix (a bare `BertModel` such as all-MiniLM-L6-v2 has none).

Pooling comes from the checkpoint too (`sentence_transformers_pooling`):
sentence-transformers directories list their modules in `modules.json`
(`Pooling` with its `1_Pooling/config.json`, optionally `Normalize`); a BERT
checkpoint without them pools with its trained NSP pooler; any other
(`BertForMaskedLM` without pooler weights, DistilBERT) records none.

Hugging Face stores Linear weights as `[out, in]`; Keras Dense kernels are
`[in, out]`, and keras-hub's attention keeps per-head kernels `[hidden, heads,
head_dim]` (query/key/value) and `[heads, head_dim, hidden]` (output).
"""

import json
import pathlib

import numpy as np

from distil_tf.models import pooling as pooling_lib
from distil_tf.models.encoder import Encoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
SENTENCE_TRANSFORMERS_MODULES_FILE = "modules.json"
SENTENCE_TRANSFORMERS_POOLING_DIR = "1_Pooling"
_POOLING_MODULE = "sentence_transformers.models.Pooling"
_NORMALIZE_MODULE = "sentence_transformers.models.Normalize"
# sentence-transformers' Pooling config keys -> our pooling names. Modes we
# cannot reproduce are listed so that the error names them.
_POOLING_MODES = {"pooling_mode_cls_token": pooling_lib.CLS, "pooling_mode_mean_tokens": pooling_lib.MEAN}
_UNSUPPORTED_POOLING_MODES = (
    "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken",
)

_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
}


def is_hf_directory(path):
    path = pathlib.Path(path)
    if not (path / CONFIG_FILE).is_file():
        return False
    return "model_type" in json.loads((path / CONFIG_FILE).read_text())


def _activation(name, directory):
    if name not in _HF_ACTIVATIONS:
        raise ValueError(
            f"{directory}/{CONFIG_FILE}: unsupported hidden activation '{name}' "
            f"(supported: {', '.join(_HF_ACTIVATIONS)})"
        )
    return _HF_ACTIVATIONS[name]


def encoder_config_from_hf(config, directory="."):
    """Encoder kwargs from a Hugging Face `config.json` dict."""
    model_type = config.get("model_type")
    try:
        if model_type == "bert":
            if config.get("position_embedding_type", "absolute") != "absolute":
                raise ValueError(
                    f"{directory}/{CONFIG_FILE}: only absolute position embeddings "
                    f"are supported, got '{config['position_embedding_type']}'"
                )
            epsilon = config.get("layer_norm_eps", 1e-12)
            if abs(epsilon - 1e-12) > 1e-15:
                raise ValueError(
                    f"{directory}/{CONFIG_FILE}: layer_norm_eps {epsilon} is not "
                    "BERT's 1e-12, which the keras-hub backbone fixes"
                )
            return dict(
                architecture="bert",
                vocabulary_size=config["vocab_size"],
                num_layers=config["num_hidden_layers"],
                num_heads=config["num_attention_heads"],
                hidden_dim=config["hidden_size"],
                intermediate_dim=config["intermediate_size"],
                dropout=config.get("hidden_dropout_prob", 0.1),
                max_sequence_length=config.get("max_position_embeddings", 512),
                num_segments=config.get("type_vocab_size", 2),
                hidden_activation=_activation(config.get("hidden_act", "gelu"), directory),
            )
        if model_type == "distilbert":
            return dict(
                architecture="distilbert",
                vocabulary_size=config["vocab_size"],
                num_layers=config["n_layers"],
                num_heads=config["n_heads"],
                hidden_dim=config["dim"],
                intermediate_dim=config["hidden_dim"],
                dropout=config.get("dropout", 0.1),
                max_sequence_length=config.get("max_position_embeddings", 512),
                hidden_activation=_activation(config.get("activation", "gelu"), directory),
            )
    except KeyError as error:
        raise ValueError(f"{directory}/{CONFIG_FILE}: missing key {error}") from None
    raise ValueError(
        f"{directory}/{CONFIG_FILE}: model_type '{model_type}' is not supported "
        "(expected 'bert' or 'distilbert')"
    )


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable JSON ({error})") from None


def sentence_transformers_pooling(directory):
    """`(pooling, normalize)` of a sentence-transformers directory, `(None, False)` otherwise.

    Reads `modules.json` (the `Pooling` module's folder and whether a
    `Normalize` module follows it); without `modules.json`, a bare
    `1_Pooling/config.json` still counts (normalization then unknown: off).

    Raises:
        ValueError: a pooling mode we cannot reproduce (max, sqrt-length mean,
            weighted mean, last token, or several modes concatenated).
    """
    directory = pathlib.Path(directory)
    modules_path = directory / SENTENCE_TRANSFORMERS_MODULES_FILE
    pooling_dir, normalize = None, False
    if modules_path.is_file():
        modules = _read_json(modules_path)
        if not isinstance(modules, list):
            raise ValueError(f"{modules_path}: expected a list of modules")
        for module in modules:
            module_type = str(module.get("type", ""))
            if module_type == _POOLING_MODULE:
                pooling_dir = directory / module.get("path", SENTENCE_TRANSFORMERS_POOLING_DIR)
            elif module_type == _NORMALIZE_MODULE:
                normalize = True
    elif (directory / SENTENCE_TRANSFORMERS_POOLING_DIR / CONFIG_FILE).is_file():
        pooling_dir = directory / SENTENCE_TRANSFORMERS_POOLING_DIR
    if pooling_dir is None:
        return None, False
    config_path = pooling_dir / CONFIG_FILE
    config = _read_json(config_path)
    modes = [name for name in (*_POOLING_MODES, *_UNSUPPORTED_POOLING_MODES) if config.get(name)]
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise ValueError(
            f"{config_path}: pooling {' + '.join(modes) or '(none set)'} is not supported; "
            f"distil-tf pools with exactly one of {', '.join(_POOLING_MODES)}"
        )
    return _POOLING_MODES[modes[0]], normalize


def read_safetensors(directory):
    """All tensors of `model.safetensors` (or its sharded index) as numpy."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = pathlib.Path(directory)
    if (directory / WEIGHTS_FILE).is_file():
        files = [directory / WEIGHTS_FILE]
    elif (directory / WEIGHTS_INDEX_FILE).is_file():
        index = json.loads((directory / WEIGHTS_INDEX_FILE).read_text())
        files = [directory / name for name in sorted(set(index["weight_map"].values()))]
    else:
        raise ValueError(
            f"no weights in {directory}: expected {WEIGHTS_FILE} "
            "(PyTorch .bin checkpoints are not read; convert them to safetensors)"
        )
    tensors = {}
    for path in files:
        try:
            tensors.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"corrupted safetensors file {path}: {error}") from None
    return tensors


class _StateDict:
    """Named tensors with prefix handling and shape checks."""

    def __init__(self, tensors, prefix, source):
        self.tensors = tensors
        self.prefix = prefix
        self.source = source
        self.used = set()

    def has(self, key):
        return self._resolve(key) is not None

    def _resolve(self, key):
        for candidate in (self.prefix + key, key):
            if candidate in self.tensors:
                return candidate
        return None

    def get(self, key, shape=None):
        name = self._resolve(key)
        if name is None and key.endswith(".weight") and "LayerNorm" in key:
            name = self._resolve(key[: -len("weight")] + "gamma")
        if name is None and key.endswith(".bias") and "LayerNorm" in key:
            name = self._resolve(key[: -len("bias")] + "beta")
        if name is None:
            raise ValueError(f"{self.source}: missing tensor '{self.prefix}{key}'")
        self.used.add(name)
        value = np.asarray(self.tensors[name], dtype=np.float32)
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"{self.source}: tensor '{name}' has shape {tuple(value.shape)}, "
                f"expected {tuple(shape)} from config.json"
            )
        return value


def _assign(variable, value):
    if tuple(variable.shape) != tuple(value.shape):
        raise ValueError(
            f"cannot load {variable.path}: shape {tuple(value.shape)} != {tuple(variable.shape)}"
        )
    variable.assign(value.astype(variable.dtype))


def _load_dense(layer, state, key):
    kernel = state.get(key + ".weight")
    _assign(layer.kernel, kernel.T)
    _assign(layer.bias, state.get(key + ".bias"))


def _load_layer_norm(layer, state, key):
    _assign(layer.gamma, state.get(key + ".weight"))
    _assign(layer.beta, state.get(key + ".bias"))


def _load_attention(layer, state, keys, num_heads):
    """keys: (query, key, value, output) Linear names in the checkpoint."""
    attention = layer._self_attention_layer
    for dense, key in zip(
        (attention._query_dense, attention._key_dense, attention._value_dense), keys[:3]
    ):
        hidden_dim = dense.kernel.shape[0]
        head_dim = hidden_dim // num_heads
        kernel = state.get(key + ".weight", (hidden_dim, hidden_dim)).T
        _assign(dense.kernel, kernel.reshape(hidden_dim, num_heads, head_dim))
        _assign(dense.bias, state.get(key + ".bias").reshape(num_heads, head_dim))
    output = attention._output_dense
    hidden_dim = output.kernel.shape[-1]
    head_dim = hidden_dim // num_heads
    kernel = state.get(keys[3] + ".weight", (hidden_dim, hidden_dim)).T
    _assign(output.kernel, kernel.reshape(num_heads, head_dim, hidden_dim))
    _assign(output.bias, state.get(keys[3] + ".bias"))


def _load_embeddings(encoder, state):
    """Word and position embeddings (both architectures name them alike)."""
    hidden = encoder.hidden_dim
    _assign(
        encoder.token_embedding.embeddings,
        state.get("embeddings.word_embeddings.weight", (encoder.vocabulary_size, hidden)),
    )
    _assign(
        encoder.position_embedding.position_embeddings,
        state.get(
            "embeddings.position_embeddings.weight", (encoder.max_sequence_length, hidden)
        ),
    )


def _load_layers(encoder, state, prefix, names):
    """Every transformer layer, `names` mapping our sublayers to the checkpoint's keys.

    `names`: "attention" (query, key, value, output keys), "attention_norm",
    "ffn_in", "ffn_out", "output_norm", each below `{prefix}{index}.`.
    """
    for index, layer in enumerate(encoder.transformer_layers):
        key = f"{prefix}{index}."
        _load_attention(layer, state, [key + name for name in names["attention"]], encoder.num_heads)
        _load_layer_norm(layer._self_attention_layer_norm, state, key + names["attention_norm"])
        _load_dense(layer._feedforward_intermediate_dense, state, key + names["ffn_in"])
        _load_dense(layer._feedforward_output_dense, state, key + names["ffn_out"])
        _load_layer_norm(layer._feedforward_layer_norm, state, key + names["output_norm"])


_BERT_LAYER_KEYS = {
    "attention": [f"attention.self.{name}" for name in ("query", "key", "value")] + ["attention.output.dense"],
    "attention_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "output_norm": "output.LayerNorm",
}
_DISTILBERT_LAYER_KEYS = {
    "attention": [f"attention.{name}" for name in ("q_lin", "k_lin", "v_lin", "out_lin")],
    "attention_norm": "sa_layer_norm",
    "ffn_in": "ffn.lin1",
    "ffn_out": "ffn.lin2",
    "output_norm": "output_layer_norm",
}


def _load_bert(encoder, state):
    _load_embeddings(encoder, state)
    _assign(
        encoder.backbone.segment_embedding.embeddings,
        state.get("embeddings.token_type_embeddings.weight", (encoder.num_segments, encoder.hidden_dim)),
    )
    _load_layer_norm(encoder.embeddings_layer_norm, state, "embeddings.LayerNorm")
    _load_layers(encoder, state, "encoder.layer.", _BERT_LAYER_KEYS)
    # BertForMaskedLM checkpoints have no pooler: keep its initial weights
    # (the pooler is never used by distillation or our task heads).
    if state.has("pooler.dense.weight"):
        _load_dense(encoder.backbone.pooled_dense, state, "pooler.dense")
    if encoder.mlm_head is not None:
        head = encoder.mlm_head
        _load_dense(head._intermediate_dense, state, "cls.predictions.transform.dense")
        _load_layer_norm(
            head._intermediate_layer_norm, state, "cls.predictions.transform.LayerNorm"
        )
        _assign(head._bias, state.get("cls.predictions.bias", (encoder.vocabulary_size,)))


def _load_distilbert(encoder, state):
    _load_embeddings(encoder, state)
    _load_layer_norm(encoder.embeddings_layer_norm, state, "embeddings.LayerNorm")
    _load_layers(encoder, state, "transformer.layer.", _DISTILBERT_LAYER_KEYS)
    if encoder.mlm_head is not None:
        head = encoder.mlm_head
        _load_dense(head._intermediate_dense, state, "vocab_transform")
        _load_layer_norm(head._intermediate_layer_norm, state, "vocab_layer_norm")
        _assign(head._bias, state.get("vocab_projector.bias", (encoder.vocabulary_size,)))


def load_hf_encoder(directory, dtype=None):
    """Build an `Encoder` from a Hugging Face BERT or DistilBERT directory.

    Args:
        directory: path holding `config.json` and `model.safetensors`.
        dtype: optional dtype policy for the built model.

    Returns:
        An `Encoder` with the checkpoint's weights, with an MLM head exactly
        when the checkpoint has one (`BertForMaskedLM`, `DistilBertForMaskedLM`),
        and the checkpoint's pooling (`sentence_transformers_pooling`, else
        "cls_pooler" for a BERT with pooler weights, else None).
    """
    directory = pathlib.Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    encoder_config = encoder_config_from_hf(config, directory)
    tensors = read_safetensors(directory)
    if encoder_config["architecture"] == "bert":
        prefix, head_key = "bert.", "cls.predictions.bias"
    else:
        prefix, head_key = "distilbert.", "vocab_projector.bias"
    encoder_config["mlm_head"] = head_key in tensors
    pooling, normalize = sentence_transformers_pooling(directory)
    if pooling is None and encoder_config["architecture"] == "bert" and any(
        name in tensors for name in ("pooler.dense.weight", prefix + "pooler.dense.weight")
    ):
        # A trained NSP pooler is the checkpoint's own sentence vector.
        pooling = pooling_lib.CLS_POOLER
    encoder_config["pooling"] = pooling
    encoder_config["normalize_embeddings"] = normalize
    encoder = Encoder(dtype=dtype, **encoder_config)
    encoder(encoder.dummy_inputs())
    state = _StateDict(tensors, prefix, f"{directory}/{WEIGHTS_FILE}")
    if encoder_config["architecture"] == "bert":
        _load_bert(encoder, state)
    else:
        _load_distilbert(encoder, state)
    return encoder
