"""On-device models (`export --format tflite`): fp32 and int8 dynamic-range TFLite, ids in, fixed shapes.

The paper's section 4.2 runs DistilBERT on a phone; this is the counterpart.
The directory holds
- `model.tflite`: float32;
- `model_int8.tflite`: dynamic-range quantization (int8 weights, float32
  activations; `tf.lite.Optimize.DEFAULT` without a representative dataset),
  about 4x smaller;
- `vocab.txt` + `tokenizer_config.json`: the vocabulary asset for the app's
  tokenizer;
- `tflite.json`: inputs, outputs, sequence length, label names.

Inputs are token ids, not text. tf-text's tokenizers do have TFLite kernels
(`FastWordpieceTokenizer`, `FastBertNormalizer`), but only as custom ops that
an interpreter must register from the `tensorflow_text` Python package
(`tf_text.tflite_registrar`); `ai-edge-litert`'s interpreter, the runtime TF
2.20 points to (`tf.lite.Interpreter` is deprecated), ships only builtin
ops, so an in-graph tokenizer would not load there or on a phone without a
custom build. The graph is converted with `TFLITE_BUILTINS` only: a model that
would need Flex (select TF) ops fails to convert instead of producing a file
the runtime cannot run.

Shapes are fixed at `[1, sequence_length]` (batch 1, the on-device case):
pad every input to `sequence_length` with `padding_mask` 0; padding does not
change the real positions' outputs. `pack_for_tflite` does this host-side
with the training packer's rules.

Outputs: classification `logits` `[1, K]`, regression `logits` `[1]`, span
`start_logits`/`end_logits` `[1, L]`, an encoder `embedding` `[1, hidden]`
(its recorded pooling) or `sequence_output` `[1, L, hidden]` when it records
none. The MLM head is not exported (`[L, vocab]` logits have no on-device use
here).

Models over 20M parameters are converted one flatbuffer per child process
(`convert_to_file`): the converter holds ~30x the weights in RAM (BERT-base
int8: 15.3 GB peak) and keeps it until its process ends.

Size and batch-1 latency (`distil_tf.benchmarks.tflite_on_device`, on a
quiet machine, never in CI; BERT-base against DistilBERT as the paper
does), and the accuracy cost of int8 on SST-2 dev:

    distil-tf benchmark tflite-on-device BERT/model.tflite DISTILBERT/model.tflite \
        BERT/model_int8.tflite DISTILBERT/model_int8.tflite --json results.json
    distil-tf benchmark tflite-accuracy DIR ../shared/data/glue/SST-2/dev.tsv
"""

import json

import numpy as np
import tensorflow as tf

FP32_FILE = "model.tflite"
INT8_FILE = "model_int8.tflite"
SPEC_FILE = "tflite.json"
DEFAULT_SEQUENCE_LENGTH = 128


def _output_names(model):
    if hasattr(model, "head_type"):
        return ["start_logits", "end_logits"] if model.head_type == "span" else ["logits"]
    return ["embedding"] if model.pooling is not None else ["sequence_output"]


def _serving_function(model, sequence_length, sequence_output=False):
    """A `tf.function` over fixed `[1, sequence_length]` int32 ids; returns a dict of outputs.

    `sequence_output=True` makes an encoder return its last hidden states
    `[1, sequence_length, hidden]` even when it records a pooling (the speed
    benchmark compares those with the peers').
    """
    encoder = getattr(model, "encoder", model)
    bert = encoder.architecture == "bert"
    specs = {
        "token_ids": tf.TensorSpec([1, sequence_length], tf.int32, name="token_ids"),
        "padding_mask": tf.TensorSpec([1, sequence_length], tf.int32, name="padding_mask"),
    }
    if bert:
        specs["segment_ids"] = tf.TensorSpec([1, sequence_length], tf.int32, name="segment_ids")
    is_task = hasattr(model, "head_type")

    def serve(**inputs):
        if is_task:
            return dict(model(inputs, training=False))
        if model.pooling is not None and not sequence_output:
            return {"embedding": model.embed(inputs)}
        last_hidden = model.hidden_states_model(model.backbone_inputs(inputs), training=False)[-1]
        return {"sequence_output": tf.cast(last_hidden, tf.float32)}

    return tf.function(serve, input_signature=None).get_concrete_function(**specs)


def convert(model, sequence_length, quantize=False, sequence_output=False):
    """TFLite flatbuffer bytes of `model` (builtin ops only).

    Raises:
        ValueError: the graph needs ops outside TFLite's builtins.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = _serving_function(model, sequence_length, sequence_output=sequence_output)
    # Freeze the weights into constants first. Converted with the Keras model
    # (or its SavedModel) as the trackable, the flatbuffer keeps them as
    # VAR_HANDLE/READ_VARIABLE ops that nothing initializes on the
    # interpreter: NaN outputs under XNNPACK, an error without it.
    frozen = convert_variables_to_constants_v2(concrete)
    # The frozen function returns a flat list (dict keys sorted, as
    # tf.function flattens them); re-wrapping it restores the output names
    # in the TFLite signature.
    input_names = [tensor.name.split(":")[0] for tensor in frozen.inputs]
    output_names = sorted(concrete.structured_outputs)
    specs = {spec.name: spec for spec in concrete.structured_input_signature[1].values()}

    def serve(**inputs):
        outputs = frozen(*[inputs[name] for name in input_names])
        return dict(zip(output_names, outputs))

    named = tf.function(serve).get_concrete_function(**specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([named], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # ConverterError, with a long MLIR dump
        raise ValueError(f"TFLite conversion failed: {str(error).strip().splitlines()[0]}") from None
    return flatbuffer


# The converter needs about 30x a model's weights in RAM and does not give it
# back to the process (measured on AMD EPYC: DistilBERT-base fp32 alone
# peaked at 8.6 GB of RSS for a 252 MB flatbuffer; its fp32 then int8 in one
# process at 13.7 GB; BERT-base's pair ran out of 24 GiB). So each flatbuffer
# of a model this large is converted by a child process that loads the model
# from its directory: the peak is one conversion's, and the parent's memory
# is untouched. The cost is the child's start (~10 s of imports and loading),
# which small models skip.
ISOLATE_ABOVE_PARAMETERS = 20_000_000


def needs_isolation(model):
    """Whether `model`'s conversions run in child processes (`ISOLATE_ABOVE_PARAMETERS`)."""
    return model.count_params() > ISOLATE_ABOVE_PARAMETERS


def convert_to_file(model, sequence_length, path, quantize=False, sequence_output=False, model_dir=None,
                    isolate=None):
    """Write `model`'s flatbuffer to `path`; returns its size in bytes.

    Args:
        model: the loaded model (converted here when not isolated).
        model_dir: a directory `distil_tf.load_model` loads `model` from; the
            child process converts that (required when isolated).
        isolate: bool or None (`needs_isolation(model)`).

    Raises:
        ValueError: the conversion failed, or the child ran out of memory.
    """
    import pathlib
    import subprocess
    import sys

    path = pathlib.Path(path)
    if not (needs_isolation(model) if isolate is None else isolate):
        path.write_bytes(convert(model, sequence_length, quantize=quantize, sequence_output=sequence_output))
        return path.stat().st_size
    if model_dir is None:
        raise ValueError("converting a large model in a child process needs the directory it was loaded from")
    command = [sys.executable, "-m", "distil_tf.export.tflite_format", "--convert", str(model_dir), str(path),
               "--length", str(sequence_length)]
    command += ["--int8"] if quantize else []
    command += ["--sequence-output"] if sequence_output else []
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        if completed.returncode < 0:  # killed, by the kernel's OOM killer in practice
            raise ValueError(f"TFLite conversion of {model_dir} was killed (signal {-completed.returncode}): "
                             f"it needs about 30x the weights' size in free RAM")
        lines = [line for line in completed.stderr.strip().splitlines() if line.startswith("ValueError")]
        last = (lines or completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"TFLite conversion of {model_dir} failed: {last.removeprefix('ValueError: ')}")
    return path.stat().st_size

def interpreter(path):
    """An `ai_edge_litert` interpreter with tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ValueError("running TFLite models needs ai-edge-litert (pip install 'distil-tf[tflite]')") from None
    runner = Interpreter(model_path=str(path))
    runner.allocate_tensors()
    return runner


def run(runner, inputs):
    """Run the model's signature on numpy int32 `[1, L]` inputs; dict of numpy outputs."""
    signature = runner.get_signature_runner()
    return {name: np.asarray(value) for name, value in signature(**{
        name: np.asarray(value, np.int32) for name, value in inputs.items()}).items()}


def pack_for_tflite(tokenizer, text, sequence_length, text_pair=None, preprocessing=None):
    """Host-side packing to the fixed shape by training's `TextPreprocessor` (what the SavedModel signatures run).

    `preprocessing` (`PreprocessingConfig` or its dict, as `tflite.json`
    records it; None: round-robin, no cleaning) cleans and truncates as in
    training: an IMDb model drops `<br />` tags and keeps head + tail.

    Returns:
        dict of int32 numpy `[1, sequence_length]`: token_ids, segment_ids, padding_mask.
    """
    from distil_tf.text.preprocessing import PreprocessingConfig
    from distil_tf.text.text_preprocessor import TextPreprocessor

    if preprocessing is None:
        preprocessing = PreprocessingConfig(sequence_length)
    elif isinstance(preprocessing, dict):
        preprocessing = PreprocessingConfig.from_dict(preprocessing)
    preprocessor = TextPreprocessor(tokenizer, preprocessing.with_length(sequence_length), pad_to_length=True)
    features = preprocessor(tf.constant([text]), None if text_pair is None else tf.constant([text_pair]))
    return {name: value.numpy().astype(np.int32) for name, value in features.items()}


def write_tflite_export(model, tokenizer, directory, sequence_length=None, preprocessing=None, model_dir=None):
    """Write fp32 and int8 TFLite models, the vocabulary and `tflite.json` into `directory`.

    `preprocessing`: the `PreprocessingConfig` the model was trained with
    (recorded in `tflite.json` for the app's packer, `pack_for_tflite`).
    `model_dir`: where `model` was loaded from; a large model is converted
    there by child processes (`convert_to_file`).

    Returns:
        The model-card details (`summary`, `notes`, `usage`).
    """
    from distil_tf.text import save_tokenizer

    encoder = getattr(model, "encoder", model)
    sequence_length = min(sequence_length or DEFAULT_SEQUENCE_LENGTH, encoder.max_sequence_length)
    sizes = {}
    for file_name, quantize in ((FP32_FILE, False), (INT8_FILE, True)):
        sizes[file_name] = convert_to_file(model, sequence_length, directory / file_name, quantize=quantize,
                                           model_dir=model_dir)
    save_tokenizer(tokenizer, directory)
    inputs = ["token_ids", "padding_mask"] + (["segment_ids"] if encoder.architecture == "bert" else [])
    spec = {
        "inputs": {name: [1, sequence_length] for name in inputs},
        "input_dtype": "int32",
        "outputs": _output_names(model),
        "sequence_length": sequence_length,
        "files": {FP32_FILE: "float32", INT8_FILE: "int8 dynamic-range (weights int8, activations float32)"},
        "bytes": sizes,
        "label_names": getattr(model, "label_names", None),
        "pooling": getattr(model, "pooling", None),
        "tokenization": "host-side: WordPiece with vocab.txt, [CLS] text [SEP], padded to sequence_length",
        "preprocessing": None if preprocessing is None else preprocessing.to_dict(),
    }
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    megabytes = {name: f"{size / 2**20:.1f} MB" for name, size in sizes.items()}
    notes = [f"Fixed input shape [1, {sequence_length}] int32; pad with padding_mask 0.",
             f"Sizes: {FP32_FILE} {megabytes[FP32_FILE]}, {INT8_FILE} {megabytes[INT8_FILE]}.",
             "Tokenize on the host with vocab.txt (no in-graph tokenizer: ai-edge-litert has no tf-text ops)."]
    if encoder.mlm_head is not None:
        notes.append("The masked-LM head is not part of the TFLite model.")
    usage = ("from ai_edge_litert.interpreter import Interpreter\n"
             f"runner = Interpreter(model_path=\"DIR/{INT8_FILE}\")\n"
             f"outputs = runner.get_signature_runner()({', '.join(f'{name}=...' for name in inputs)})"
             f"  # int32 [1, {sequence_length}] each")
    return {"summary": f"TFLite fp32 + int8 dynamic-range, [1, {sequence_length}] ids in", "notes": notes,
            "usage": usage}


def classification_accuracy(path, tokenizer, sentences, labels, sequence_length, preprocessing=None):
    """Accuracy of a classifier `.tflite` on `(sentences, labels)`, one sentence at a time.

    Returns:
        `(accuracy, predictions)`: float in [0, 1] and int label ids `[len(sentences)]`.
    """
    runner = interpreter(path)
    inputs = set(runner.get_signature_runner().get_input_details())
    predictions = []
    for sentence in sentences:
        packed = pack_for_tflite(tokenizer, sentence, sequence_length, preprocessing=preprocessing)
        logits = run(runner, {name: packed[name] for name in inputs})["logits"]  # [1, K]
        predictions.append(int(np.argmax(logits[0])))
    predictions = np.asarray(predictions)
    return float(np.mean(predictions == np.asarray(labels))), predictions


def _main():
    """The child process of `convert_to_file`: one flatbuffer of a model directory (not a user command)."""
    import argparse
    import pathlib

    parser = argparse.ArgumentParser(description="internal: one TFLite conversion for convert_to_file")
    parser.add_argument("--convert", nargs=2, metavar=("MODEL_DIR", "OUT.tflite"), required=True)
    parser.add_argument("--length", type=int, default=DEFAULT_SEQUENCE_LENGTH)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--sequence-output", action="store_true")
    arguments = parser.parse_args()
    from distil_tf.models import load_model

    model = load_model(arguments.convert[0])
    flatbuffer = convert(model, arguments.length, quantize=arguments.int8,
                         sequence_output=arguments.sequence_output)
    pathlib.Path(arguments.convert[1]).write_bytes(flatbuffer)


if __name__ == "__main__":
    _main()
