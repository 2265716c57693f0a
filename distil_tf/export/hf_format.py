"""Hugging Face directories from distil-tf models: the inverse of `models/hf_checkpoint.py`.

`distil-tf export --format hf` writes `config.json`, `model.safetensors`,
`vocab.txt`, `tokenizer_config.json` and `special_tokens_map.json`, loadable
with `transformers.AutoModel*.from_pretrained(DIR)` and back with
`distil_tf.load_model(DIR)` (the encoder, exactly) or `load_hf_task_model(DIR)`
(a task model with its head, exactly). Which class a model becomes:

| distil-tf model                       | DistilBERT                            | BERT                            |
|---------------------------------------|---------------------------------------|---------------------------------|
| encoder with MLM head                 | `DistilBertForMaskedLM`               | `BertForMaskedLM`               |
| encoder without                       | `DistilBertModel`                     | `BertModel`                     |
| classification / regression head      | `DistilBertForSequenceClassification` | `BertForSequenceClassification` |
| span head                             | `DistilBertForQuestionAnswering`      | `BertForQuestionAnswering`      |

What is exact and what is refused:
- Hugging Face's sequence-classification heads pool one fixed way
  (DistilBERT: the last layer's `[CLS]`; BERT: the tanh pooler). A head
  that pools otherwise (`mean`, or `cls` on BERT) has no Hugging Face class
  and is refused; it is never exported as a different head.
- A student whose teacher's token-type row 0 was folded into its position
  embeddings (`student_init.fold_token_type`) is a plain DistilBERT: its
  embedding is `LayerNorm(word + position)` with the folded table, exactly
  what `DistilBertModel` computes from the same tables. It exports exactly;
  the model card says the position table carries the fold.
- Span heads: ours add -1e4 to the logits at padding positions; Hugging
  Face's return the raw logits there (its pipelines mask padding while
  decoding). Real positions are identical.
- An encoder's `mean`/`cls` pooling is written the sentence-transformers way
  (`modules.json`, `1_Pooling/config.json`, optional `Normalize`), which is
  where `load_model` reads it back. A BERT encoder's `cls_pooler` is its
  pooler weights.

Weights: Keras Dense kernels `[in, out]` become Linear weights `[out, in]`;
keras-hub's per-head attention kernels `[hidden, heads, head_dim]` (query,
key, value) and `[heads, head_dim, hidden]` (output) become `[hidden,
hidden]`. The MLM decoder is tied to the word embeddings and is not stored
(Hugging Face ties it on load, as its own `save_pretrained` does).
"""

import json

import numpy as np

from distil_tf.models import pooling as pooling_lib

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
TASK_NAME_KEY = "distil_tf_task_name"
SPECIAL_TOKENS = {
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
    "cls_token": "[CLS]", "mask_token": "[MASK]",
}
# Our activation names -> Hugging Face's (`gelu_new` is the tanh approximation).
_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": "gelu_new"}
_SENTENCE_TRANSFORMERS_POOLING_KEYS = {
    pooling_lib.CLS: "pooling_mode_cls_token",
    pooling_lib.MEAN: "pooling_mode_mean_tokens",
}


# --- Weights ------------------------------------------------------------------


def _numpy(variable):
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable, dtype=np.float32)


def _dense(tensors, key, layer):
    """A Keras Dense `[in, out]` as a Linear `key.weight` `[out, in]` + `key.bias`."""
    tensors[key + ".weight"] = _numpy(layer.kernel).T
    tensors[key + ".bias"] = _numpy(layer.bias)


def _layer_norm(tensors, key, layer):
    tensors[key + ".weight"] = _numpy(layer.gamma)
    tensors[key + ".bias"] = _numpy(layer.beta)


def _attention(tensors, layer, keys):
    """keys: the (query, key, value, output) Linear names."""
    attention = layer._self_attention_layer
    for dense, key in zip(
        (attention._query_dense, attention._key_dense, attention._value_dense), keys[:3]
    ):
        kernel = _numpy(dense.kernel)  # [hidden, heads, head_dim]
        hidden = kernel.shape[0]
        tensors[key + ".weight"] = kernel.reshape(hidden, -1).T  # [heads*head_dim, hidden]
        tensors[key + ".bias"] = _numpy(dense.bias).reshape(-1)
    output = attention._output_dense
    kernel = _numpy(output.kernel)  # [heads, head_dim, hidden]
    tensors[keys[3] + ".weight"] = kernel.reshape(-1, kernel.shape[-1]).T
    tensors[keys[3] + ".bias"] = _numpy(output.bias)


def _distilbert_tensors(encoder, prefix):
    tensors = {}
    _embedding_tensors(tensors, encoder, prefix)
    for index, layer in enumerate(encoder.transformer_layers):
        key = f"{prefix}transformer.layer.{index}."
        _attention(tensors, layer, [key + "attention." + name for name in ("q_lin", "k_lin", "v_lin", "out_lin")])
        _layer_norm(tensors, key + "sa_layer_norm", layer._self_attention_layer_norm)
        _dense(tensors, key + "ffn.lin1", layer._feedforward_intermediate_dense)
        _dense(tensors, key + "ffn.lin2", layer._feedforward_output_dense)
        _layer_norm(tensors, key + "output_layer_norm", layer._feedforward_layer_norm)
    return tensors


def _bert_tensors(encoder, prefix, with_pooler):
    tensors = {}
    _embedding_tensors(tensors, encoder, prefix)
    tensors[prefix + "embeddings.token_type_embeddings.weight"] = _numpy(
        encoder.backbone.segment_embedding.embeddings
    )
    for index, layer in enumerate(encoder.transformer_layers):
        key = f"{prefix}encoder.layer.{index}."
        _attention(
            tensors, layer,
            [key + "attention.self." + name for name in ("query", "key", "value")]
            + [key + "attention.output.dense"],
        )
        _layer_norm(tensors, key + "attention.output.LayerNorm", layer._self_attention_layer_norm)
        _dense(tensors, key + "intermediate.dense", layer._feedforward_intermediate_dense)
        _dense(tensors, key + "output.dense", layer._feedforward_output_dense)
        _layer_norm(tensors, key + "output.LayerNorm", layer._feedforward_layer_norm)
    if with_pooler:
        _dense(tensors, prefix + "pooler.dense", encoder.backbone.pooled_dense)
    return tensors


def _embedding_tensors(tensors, encoder, prefix):
    tensors[prefix + "embeddings.word_embeddings.weight"] = _numpy(encoder.token_embedding.embeddings)
    tensors[prefix + "embeddings.position_embeddings.weight"] = _numpy(
        encoder.position_embedding.position_embeddings
    )
    _layer_norm(tensors, prefix + "embeddings.LayerNorm", encoder.embeddings_layer_norm)


def _mlm_head_tensors(tensors, encoder):
    head = encoder.mlm_head
    if encoder.architecture == "bert":
        _dense(tensors, "cls.predictions.transform.dense", head._intermediate_dense)
        _layer_norm(tensors, "cls.predictions.transform.LayerNorm", head._intermediate_layer_norm)
        tensors["cls.predictions.bias"] = _numpy(head._bias)
    else:
        _dense(tensors, "vocab_transform", head._intermediate_dense)
        _layer_norm(tensors, "vocab_layer_norm", head._intermediate_layer_norm)
        tensors["vocab_projector.bias"] = _numpy(head._bias)


# --- Configs ------------------------------------------------------------------


def _encoder_hf_config(encoder):
    activation = _HF_ACTIVATIONS.get(encoder.hidden_activation)
    if activation is None:
        raise ValueError(
            f"hidden activation '{encoder.hidden_activation}' has no Hugging Face name "
            f"(exportable: {', '.join(_HF_ACTIVATIONS)})"
        )
    common = dict(vocab_size=encoder.vocabulary_size, max_position_embeddings=encoder.max_sequence_length,
                  initializer_range=0.02, pad_token_id=0)
    if encoder.architecture == "bert":
        return dict(
            model_type="bert", hidden_size=encoder.hidden_dim, num_hidden_layers=encoder.num_layers,
            num_attention_heads=encoder.num_heads, intermediate_size=encoder.intermediate_dim,
            hidden_act=activation, hidden_dropout_prob=encoder.dropout,
            # keras-hub's attention applies the block's dropout to its probabilities.
            attention_probs_dropout_prob=encoder.dropout, type_vocab_size=encoder.num_segments,
            layer_norm_eps=1e-12, position_embedding_type="absolute", **common,
        )
    return dict(
        model_type="distilbert", dim=encoder.hidden_dim, n_layers=encoder.num_layers,
        n_heads=encoder.num_heads, hidden_dim=encoder.intermediate_dim, activation=activation,
        dropout=encoder.dropout, attention_dropout=encoder.dropout, sinusoidal_pos_embds=False,
        tie_weights_=True, tie_word_embeddings=True, **common,
    )


def check_head_pooling(model):
    """Raise unless a task model's head pools the way its Hugging Face class does."""
    architecture = model.encoder.architecture
    expected = pooling_lib.default_head_pooling(architecture)
    if model.head_type != "span" and model.pooling != expected:
        class_name = "BertForSequenceClassification" if architecture == "bert" else "DistilBertForSequenceClassification"
        reads = "the tanh pooler over [CLS]" if architecture == "bert" else "the last layer's [CLS] vector"
        raise ValueError(
            f"this {architecture} classifier pools with '{model.pooling}', but {class_name} reads "
            f"{reads} ('{expected}'); the head has no exact Hugging Face class, so it is not exported"
        )
    check_reference_head_layers(model, "Hugging Face")


def check_reference_head_layers(model, target):
    """Raise unless the head has the reference class's layers: DistilBERT's pre-classifier, BERT's none.

    A student that inherited a BERT teacher's head (`student_init.student_task_model`)
    is a DistilBERT without the pre-classifier: no DistilBERT class of `target` holds it.
    """
    if model.head_type == "span":
        return
    reference = model.encoder.architecture == "distilbert"
    if model.has_pre_classifier != reference:
        has = "has a Dense+ReLU pre-classifier" if model.has_pre_classifier else "has no pre-classifier"
        raise ValueError(
            f"this {model.encoder.architecture} classifier {has} (a head inherited from its teacher), unlike "
            f"{target}'s {model.encoder.architecture} classifier; the head cannot be exported exactly"
        )


def hf_checkpoint(model):
    """The Hugging Face `(config, tensors, extra_files)` of a distil-tf model.

    Args:
        model: an `Encoder` or a `TaskModel` (classification, regression, span).

    Returns:
        `config`: the `config.json` dict; `tensors`: name -> float32 numpy
        array (Linear weights `[out, in]`); `extra_files`: relative path ->
        JSON-able dict (sentence-transformers pooling modules), possibly empty.

    Raises:
        ValueError: a head Hugging Face cannot express (see the module docstring).
    """
    is_task = hasattr(model, "head_type")
    encoder = model.encoder if is_task else model
    bert = encoder.architecture == "bert"
    prefix_name = "bert" if bert else "distilbert"
    config = _encoder_hf_config(encoder)
    extra_files = {}
    if not is_task:
        if encoder.mlm_head is not None:
            class_name, prefix = ("BertForMaskedLM" if bert else "DistilBertForMaskedLM"), prefix_name + "."
        else:
            class_name, prefix = ("BertModel" if bert else "DistilBertModel"), ""
        # BertModel always has a pooler; BertForMaskedLM has none, so its
        # (possibly untrained) pooler is kept only when it is the pooling.
        with_pooler = bert and (encoder.mlm_head is None or encoder.pooling is not None)
        tensors = _bert_tensors(encoder, prefix, with_pooler) if bert else _distilbert_tensors(encoder, prefix)
        if encoder.mlm_head is not None:
            _mlm_head_tensors(tensors, encoder)
        extra_files = _sentence_transformers_files(encoder)
    else:
        check_head_pooling(model)
        prefix = prefix_name + "."
        with_pooler = bert and model.head_type != "span"
        tensors = _bert_tensors(encoder, prefix, with_pooler) if bert else _distilbert_tensors(encoder, prefix)
        if model.head_type == "span":
            class_name = "BertForQuestionAnswering" if bert else "DistilBertForQuestionAnswering"
            _dense(tensors, "qa_outputs", model.classifier)
            config["qa_dropout" if not bert else "classifier_dropout"] = model.classifier_dropout
        else:
            class_name = "BertForSequenceClassification" if bert else "DistilBertForSequenceClassification"
            if model.pre_classifier is not None:
                _dense(tensors, "pre_classifier", model.pre_classifier)
            _dense(tensors, "classifier", model.classifier)
            config["seq_classif_dropout" if not bert else "classifier_dropout"] = model.classifier_dropout
            config.update(_label_config(model))
        # Not "distil_tf": that key marks a distil-tf model directory.
        config[TASK_NAME_KEY] = model.task_name
    config["architectures"] = [class_name]
    config["torch_dtype"] = "float32"
    return config, tensors, extra_files


def _label_config(model):
    if model.head_type == "regression":
        return {"num_labels": 1, "problem_type": "regression",
                "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    names = model.label_names or [f"LABEL_{index}" for index in range(model.num_classes)]
    return {
        "num_labels": model.num_classes,
        "problem_type": "single_label_classification",
        "id2label": {str(index): name for index, name in enumerate(names)},
        "label2id": {name: index for index, name in enumerate(names)},
    }


def _sentence_transformers_files(encoder):
    """`modules.json` + `1_Pooling/config.json` (+ Normalize) for a `mean`/`cls` encoder."""
    if encoder.pooling not in _SENTENCE_TRANSFORMERS_POOLING_KEYS:
        return {}
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if encoder.normalize_embeddings:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": encoder.hidden_dim}
    for name, key in _SENTENCE_TRANSFORMERS_POOLING_KEYS.items():
        pooling[key] = encoder.pooling == name
    for key in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"):
        pooling[key] = False
    files = {"modules.json": modules, "1_Pooling/config.json": pooling}
    if encoder.normalize_embeddings:
        files["2_Normalize/.keep"] = None  # sentence-transformers wants the folder to exist
    return files


# --- Writing --------------------------------------------------------------------


def write_tokenizer_files(tokenizer, directory, architecture):
    """`vocab.txt`, `tokenizer_config.json`, `special_tokens_map.json` for `transformers`."""
    from distil_tf.text import save_tokenizer

    save_tokenizer(tokenizer, directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "BertTokenizer" if architecture == "bert" else "DistilBertTokenizer"
    config["model_max_length"] = None  # set by write_hf_directory
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    (directory / SPECIAL_TOKENS_MAP_FILE).write_text(json.dumps(SPECIAL_TOKENS, indent=2) + "\n")


def write_hf_directory(model, tokenizer, directory):
    """Write `model` and `tokenizer` into the (empty, staging) `directory`.

    Returns:
        The Hugging Face class name written (`config["architectures"][0]`).
    """
    from safetensors.numpy import save_file

    config, tensors, extra_files = hf_checkpoint(model)
    encoder = getattr(model, "encoder", model)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()},
              str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    write_tokenizer_files(tokenizer, directory, encoder.architecture)
    tokenizer_config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_path.read_text())
    tokenizer_config["model_max_length"] = encoder.max_sequence_length
    tokenizer_config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    for relative, content in extra_files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("" if content is None else json.dumps(content, indent=2) + "\n")
    return config["architectures"][0]


def write_hf_export(model, tokenizer, directory):
    """`export --format hf`'s writer: the directory plus what the model card says about it."""
    class_name = write_hf_directory(model, tokenizer, directory)
    encoder = getattr(model, "encoder", model)
    notes = []
    if getattr(model, "head_type", None) == "span":
        notes.append("Start/end logits at padding positions are raw here; distil-tf adds -1e4 to them "
                     "(mask padding before decoding).")
    if encoder.architecture == "bert" and encoder.mlm_head is not None and encoder.pooling is not None:
        notes.append("The pooler weights are stored too (BertForMaskedLM ignores them; distil-tf reads "
                     "them back as the model's cls_pooler).")
    if encoder.mlm_head is None and not hasattr(model, "head_type") and encoder.architecture == "distilbert":
        notes.append("This encoder has no masked-LM head; it exports as the bare DistilBertModel.")
    usage = (f"from transformers import AutoTokenizer, {class_name}\n"
             f"tokenizer = AutoTokenizer.from_pretrained(\"DIR\")\n"
             f"model = {class_name}.from_pretrained(\"DIR\")")
    return {"summary": f"Hugging Face {class_name}", "class_name": class_name, "notes": notes, "usage": usage}


# --- Reading task heads back -------------------------------------------------------

_HEADS = {
    "DistilBertForSequenceClassification": "sequence", "BertForSequenceClassification": "sequence",
    "DistilBertForQuestionAnswering": "span", "BertForQuestionAnswering": "span",
}


def load_hf_task_model(directory):
    """A `TaskModel` from a Hugging Face `*ForSequenceClassification` / `*ForQuestionAnswering` directory.

    `distil_tf.load_model` reads a Hugging Face directory's encoder only; this
    reads the head too (the inverse of `hf_checkpoint` for task models), so
    that an exported task model comes back exactly.

    Raises:
        ValueError: the directory's class is not one of those heads.
    """
    import pathlib

    from distil_tf.models import TaskModel
    from distil_tf.models.hf_checkpoint import load_hf_encoder, read_safetensors

    directory = pathlib.Path(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    class_name = (config.get("architectures") or [None])[0]
    if class_name not in _HEADS:
        raise ValueError(f"{directory}: {class_name} is not a task head distil-tf reads "
                         f"(expected one of {', '.join(_HEADS)})")
    bert = class_name.startswith("Bert")
    tensors = read_safetensors(directory)
    encoder = load_hf_encoder(directory)
    if _HEADS[class_name] == "span":
        model = TaskModel(encoder, "span", task_name=config.get(TASK_NAME_KEY),
                          classifier_dropout=config.get("classifier_dropout" if bert else "qa_dropout"))
        heads = {"classifier": "qa_outputs"}
    else:
        regression = config.get("problem_type") == "regression"
        id2label = config.get("id2label") or {}
        names = [id2label[str(index)] for index in range(len(id2label))] if not regression else None
        if names and names == [f"LABEL_{index}" for index in range(len(names))]:
            names = None  # transformers' placeholder names: the model had none
        model = TaskModel(
            encoder, "regression" if regression else "classification",
            num_classes=None if regression else (config.get("num_labels") or len(id2label)),
            task_name=config.get(TASK_NAME_KEY), label_names=names,
            classifier_dropout=config.get("classifier_dropout" if bert else "seq_classif_dropout"),
            pooling=pooling_lib.default_head_pooling("bert" if bert else "distilbert"),
        )
        heads = {"classifier": "classifier"} if bert else {"pre_classifier": "pre_classifier", "classifier": "classifier"}
    model(model.dummy_inputs())
    for attribute, key in heads.items():
        layer = getattr(model, attribute)
        layer.kernel.assign(np.asarray(tensors[key + ".weight"]).T)
        layer.bias.assign(np.asarray(tensors[key + ".bias"]))
    return model
