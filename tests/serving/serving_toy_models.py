"""Tiny SavedModels with the export module's signatures, for serving tests.

The toy text model stands in for an exported DistilBERT: it scores a text by
its length times a per-version weight, so tests can tell versions apart, and
counts its own invocations in a variable (read through the `calls`
signature) so batching tests can see how many times the model really ran.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from tensorflow_serving.config import model_server_config_pb2

from distil_tf.serving.server import ServerOptions
from distil_tf.serving.server import single_model_config

LABELS = ["negative", "positive"]


class ToyTextModel(tf.Module):
    """serving_default / classify / regress / predict_ids / calls signatures."""

    def __init__(self, weight=1.0, pair=False):
        super().__init__()
        self.weight = tf.Variable(float(weight), trainable=False)
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.label_names = tf.constant(LABELS)
        self.pair = pair

    def _score(self, text):
        # [batch] -> logits [batch, 2]; length * weight against its negation.
        length = tf.cast(tf.strings.length(text, unit="BYTE"), tf.float32)
        positive = length * self.weight
        return tf.stack([-positive, positive], axis=1)

    def _text_outputs(self, logits):
        label_ids = tf.argmax(logits, axis=1)
        return {
            "logits": logits,
            "probabilities": tf.nn.softmax(logits),
            "label_ids": label_ids,
            "labels": tf.gather(self.label_names, label_ids),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        self.calls.assign_add(1)
        return self._text_outputs(self._score(text))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.string, name="text_pair"),
        ]
    )
    def serve_text_pair(self, text, text_pair):
        self.calls.assign_add(1)
        return self._text_outputs(self._score(text) + self._score(text_pair))

    def _parse(self, serialized):
        features = tf.io.parse_example(
            serialized, {"text": tf.io.FixedLenFeature([], tf.string, default_value="")}
        )
        return features["text"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def serve_classify(self, inputs):
        self.calls.assign_add(1)
        scores = tf.nn.softmax(self._score(self._parse(inputs)))
        classes = tf.tile(self.label_names[tf.newaxis, :], [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def serve_regress(self, inputs):
        self.calls.assign_add(1)
        return {"outputs": self._score(self._parse(inputs))[:, 1]}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
        ]
    )
    def serve_ids(self, token_ids, padding_mask):
        self.calls.assign_add(1)
        total = tf.cast(tf.reduce_sum(token_ids * padding_mask, axis=1), tf.float32)
        positive = total * self.weight
        return {"logits": tf.stack([-positive, positive], axis=1)}

    @tf.function(input_signature=[])
    def serve_calls(self):
        return {"count": self.calls.read_value()}

    def signatures(self):
        return {
            "serving_default": self.serve_text_pair if self.pair else self.serve_text,
            "classify": self.serve_classify,
            "regress": self.serve_regress,
            "predict_ids": self.serve_ids,
            "calls": self.serve_calls,
        }


class ToyQaModel(tf.Module):
    """`question`, `context` -> the context's first word as the answer."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="question"),
            tf.TensorSpec([None], tf.string, name="context"),
        ]
    )
    def serve(self, question, context):
        words = tf.strings.split(context)
        answer = words[:, :1].to_tensor(default_value="")[:, 0]
        batch = tf.shape(context)[0]
        return {
            "answer": answer,
            "start": tf.zeros([batch], tf.int64),
            "end": tf.cast(tf.strings.length(answer), tf.int64),
            "score": tf.ones([batch], tf.float32),
        }


def write_qa_model(base_path, version):
    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-", dir=base_path)
    model = ToyQaModel()
    tf.saved_model.save(model, staging, signatures={"serving_default": model.serve})
    os.rename(staging, os.path.join(base_path, str(version)))


def write_warmup(version_dir, texts):
    """One predict_log warmup record per text (TF Serving's format)."""
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, "tf_serving_warmup_requests")) as writer:
        for text in texts:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="warmup"))
            request.inputs["text"].CopyFrom(tf.make_tensor_proto([text], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def write_toy_model(base_path, version, weight=1.0, pair=False, warmup_texts=None,
                    corrupt=False):
    """Publishes `base_path/<version>` atomically (temp dir, then rename).

    Returns:
        The version directory.
    """
    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-", dir=base_path)
    target = os.path.join(base_path, str(version))
    if corrupt:
        with open(os.path.join(staging, "saved_model.pb"), "wb") as handle:
            handle.write(b"this is not a SavedModel")
    else:
        model = ToyTextModel(weight=weight, pair=pair)
        tf.saved_model.save(model, staging, signatures=model.signatures())
        if warmup_texts:
            write_warmup(staging, warmup_texts)
    os.rename(staging, target)
    return target


def expected_positive_logit(text, weight=1.0):
    return float(len(text.encode("utf-8"))) * weight


def toy_config(root):
    """toy: all versions, labels stable->1 canary->2; pair, qa: latest."""
    config = model_server_config_pb2.ModelServerConfig()
    toy = config.model_config_list.config.add(
        name="toy", base_path=str(root / "toy"), model_platform="tensorflow"
    )
    toy.model_version_policy.all.SetInParent()
    toy.version_labels["stable"] = 1
    toy.version_labels["canary"] = 2
    config.model_config_list.config.add(
        name="pair", base_path=str(root / "pair"), model_platform="tensorflow"
    )
    config.model_config_list.config.add(
        name="qa", base_path=str(root / "qa"), model_platform="tensorflow"
    )
    return config


def options_for(base_path, name="toy", **overrides):
    """Fast-polling ServerOptions for one model on free loopback ports."""
    settings = dict(
        port=0,
        rest_api_port=-1,
        model_server_config=single_model_config(name, str(base_path)),
        file_system_poll_wait_seconds=0.2,
        max_num_load_retries=0,
    )
    settings.update(overrides)
    return ServerOptions(**settings)


def as_text_array(texts):
    return np.array([t.encode("utf-8") if isinstance(t, str) else t for t in texts], dtype=object)


# --- TF Serving's test models, re-created -------------------------------------
#
# tensorflow_serving/servables/tensorflow/testdata holds prebuilt SavedModels;
# these builders make models with the same signatures and arithmetic from
# plain TensorFlow, so the ported contract tests need no copied files. Versions
# are published as zero-padded directories ("00000123"), as TF Serving's test
# data is.

HALF_PLUS_VERSION = 123


def _publish(base_path, version, save):
    """Writes a SavedModel with `save(staging_dir)`, then renames it into
    `base_path/<version as 8 digits>` (atomic publish)."""
    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-", dir=base_path)
    save(staging)
    target = os.path.join(base_path, f"{version:08d}")
    os.rename(staging, target)
    return target


def _parse_x(serialized):
    features = tf.io.parse_example(
        serialized, {"x": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}
    )
    return features["x"]  # [batch, 1]


class HalfPlusModel(tf.Module):
    """TF2 half_plus_two (`offset=2`) / half_plus_three (`offset=3`):
    y = 0.5 * x + offset, with TF Serving's four signatures."""

    def __init__(self, offset):
        super().__init__()
        self.a = tf.Variable(0.5)
        self.b = tf.Variable(float(offset))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_x_to_y(self, inputs):
        # No `classes` output: TF Serving answers with empty labels.
        return {"scores": self.a * _parse_x(inputs) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress_x_to_y(self, inputs):
        return {"outputs": self.a * _parse_x(inputs) + self.b}

    def signatures(self):
        return {
            "serving_default": self.predict,
            "classify_x_to_y": self.classify_x_to_y,
            "regress_x_to_y": self.regress_x_to_y,
        }


def write_half_plus(base_path, offset=2, version=HALF_PLUS_VERSION):
    model = HalfPlusModel(offset)
    return _publish(base_path, version,
                    lambda path: tf.saved_model.save(model, path, signatures=model.signatures()))


def write_tf1_half_plus_two(base_path, version=HALF_PLUS_VERSION):
    """saved_model_half_plus_two_cpu: a TF1 graph written by SavedModelBuilder,
    with predict / classify / regress method names on its signatures."""
    v1 = tf.compat.v1

    def save(path):
        os.rmdir(path)  # The builder insists on creating the directory itself.
        with tf.Graph().as_default():
            a = v1.get_variable("a", initializer=0.5)
            b = v1.get_variable("b", initializer=2.0)
            x = v1.placeholder(tf.float32, name="x")
            y = tf.add(a * x, b, name="y")
            serialized = v1.placeholder(tf.string, [None], name="tf_example")
            example_y = a * _parse_x(serialized) + b
            info = v1.saved_model.utils.build_tensor_info
            signature = v1.saved_model.signature_def_utils.build_signature_def
            signatures = {
                "serving_default": signature(
                    {"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
                "classify_x_to_y": signature(
                    {"inputs": info(serialized)}, {"scores": info(example_y)},
                    "tensorflow/serving/classify"),
                "regress_x_to_y": signature(
                    {"inputs": info(serialized)}, {"outputs": info(example_y)},
                    "tensorflow/serving/regress"),
            }
            with v1.Session() as session:
                session.run(v1.global_variables_initializer())
                builder = v1.saved_model.Builder(path)
                builder.add_meta_graph_and_variables(
                    session, ["serve"], signature_def_map=signatures)
                builder.save()

    return _publish(base_path, version, save)


def write_saved_model_save(base_path):
    """test_tf_saved_model_save: y = v1 * v2 * x with v1=3, v2=2."""
    root = tf.train.Checkpoint()
    root.v1 = tf.Variable(3.0)
    root.v2 = tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    function = root.f.get_concrete_function(tf.TensorSpec(None, tf.float32, name="x"))
    return _publish(base_path, HALF_PLUS_VERSION,
                    lambda path: tf.saved_model.save(root, path, function))


def write_multiple_signatures(base_path):
    """test_tf_saved_model_save_multiple_signatures: serving_default -> 1,
    custom_signature_key -> 2."""
    root = tf.train.Checkpoint()
    spec = [tf.TensorSpec(None, tf.float32, name="x")]
    root.f = tf.function(lambda x: {"y": tf.constant(1.0)}, input_signature=spec)
    root.g = tf.function(lambda x: {"y": tf.constant(2.0)}, input_signature=spec)
    signatures = {"serving_default": root.f, "custom_signature_key": root.g}
    return _publish(base_path, HALF_PLUS_VERSION,
                    lambda path: tf.saved_model.save(root, path, signatures=signatures))


def write_keras_sequential(base_path):
    """test_sequential_keras_saved_model_save: Input `x` [None, 1] -> identity.

    Keras 3 names a model's outputs output_0; the signature is written with a
    tf.function so that its output is called `y` as in TF Serving's test.
    """
    import keras

    model = keras.Sequential([keras.Input(shape=(1,), name="x"),
                              keras.layers.Lambda(lambda x: x, name="y")])
    module = tf.Module()
    module.model = model
    module.serve = tf.function(lambda x: {"y": model(x)},
                               input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    return _publish(base_path, HALF_PLUS_VERSION,
                    lambda path: tf.saved_model.save(module, path,
                                                      signatures={"serving_default": module.serve}))


def write_tf_text_regression(base_path):
    """tf_text_regression: uses a tensorflow_text op inside the graph;
    y = 0.5 * x + number of whitespace tokens in "hello world" (2).

    The op is saved from a subprocess, so that this test process has not
    registered tf-text's ops before the server loads the model: the server
    must register them itself, as the stock binary links them in.
    """
    import subprocess
    import sys

    os.makedirs(base_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-", dir=base_path)
    subprocess.run([sys.executable, "-c", _TF_TEXT_MODEL_SCRIPT, staging], check=True,
                   capture_output=True, timeout=300)
    target = os.path.join(base_path, f"{HALF_PLUS_VERSION:08d}")
    os.rename(staging, target)
    return target


_TF_TEXT_MODEL_SCRIPT = """
import sys
import tensorflow as tf
import tensorflow_text as text


class TextModel(tf.Module):
    def __init__(self):
        super().__init__()
        self.tokenizer = text.WhitespaceTokenizer()

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
    def serve(self, x):
        tokens = self.tokenizer.tokenize(tf.constant(["hello world"]))
        count = tf.cast(tokens.row_lengths()[0], tf.float32)
        return {"y": 0.5 * x + count}


model = TextModel()
tf.saved_model.save(model, sys.argv[1], signatures={"serving_default": model.serve})
"""


def write_bad_model(base_path):
    """bad_half_plus_two: a version directory whose saved_model.pb is junk."""
    def save(path):
        with open(os.path.join(path, "saved_model.pb"), "wb") as handle:
            handle.write(b"not a SavedModel")

    return _publish(base_path, HALF_PLUS_VERSION, save)


def _echo(dtypes):
    """A signature returning its inputs unchanged, keyed `dtypes`' names:
    what a REST request parsed into is what comes back."""
    names = sorted(dtypes)
    specs = [tf.TensorSpec(None, dtypes[name], name=name) for name in names]
    return tf.function(lambda *tensors: {name: tf.identity(t) for name, t in zip(names, tensors)},
                       input_signature=specs)


def _constant(outputs):
    """A signature that ignores its int32 input and returns `outputs`."""
    spec = [tf.TensorSpec(None, tf.int32, name="default")]
    return tf.function(lambda default: {k: tf.constant(v) if not callable(v) else v()
                                        for k, v in outputs.items()},
                       input_signature=spec)


def _examples(function):
    return tf.function(function, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])


def json_echo_signatures():
    """Signatures standing in for json_tensor_test.cc's TensorInfo maps and
    TensorProto outputs, so that its cases run as REST round trips."""
    int32, string, float32, float64 = tf.int32, tf.string, tf.float32, tf.float64
    return {
        "int32": _echo({"default": int32}),
        "float": _echo({"default": float32}),
        "double": _echo({"default": float64}),
        "string": _echo({"default": string}),
        "int_named": _echo({"int_tensor": int32}),
        "str_named": _echo({"str_tensor": string}),
        "int_str": _echo({"int_tensor": int32, "str_tensor": string}),
        "four_types": _echo({"int_tensor": int32, "str_tensor": string,
                             "float_tensor": float32, "dbl_tensor": float64}),
        "int_str_bin": _echo({"int_tensor": int32, "str_tensor": string, "bin_tensor": string}),
        "bytes": _echo({"str_tensor_bytes": string}),
        "five_outputs": _echo({"int_tensor": int32, "str_tensor": string, "float_tensor": float32,
                               "double_scalar_tensor": float64, "str_tensor_bytes": string}),
        "complex64": tf.function(
            lambda default: {"tensor": tf.complex(default, default)},
            input_signature=[tf.TensorSpec(None, float32, name="default")]),
        "scalar_output": tf.function(
            lambda default: {"tensor": tf.reduce_sum(default)},
            input_signature=[tf.TensorSpec(None, int32, name="default")]),
        "inconsistent_batch": _constant({"int_tensor": [[1, 2, 3], [4, 5, 6]],
                                         "str_tensor": [["foo", "bar", "baz"]]}),
        "zero_batch": _constant({"int_tensor": lambda: tf.zeros([0, 2], int32)}),
        "zero_batches": _constant({"str_tensor": lambda: tf.zeros([0, 1, 2], string),
                                   "float_tensor": lambda: tf.zeros([0, 3, 4], float32)}),
        "zero_batch_mismatch": _constant({"int_tensor": lambda: tf.zeros([0, 2], int32),
                                          "str_tensor": [["foo", "bar"]]}),
        # Classify / regress: what the REST examples were turned into.
        "example_echo": _examples(lambda inputs: {
            "classes": tf.reshape(tf.io.encode_base64(inputs), [-1, 1]),
            "scores": tf.ones([tf.shape(inputs)[0], 1])}),
        "example_size": _examples(lambda inputs: {
            "outputs": tf.cast(tf.strings.length(inputs), tf.float32)}),
        "classify_constants": _examples(lambda inputs: {
            "classes": tf.constant([["car", "bike", "bus"]] * 2),
            "scores": tf.constant([[0.2, 0.7, 0.1], [0.7, 0.1, 0.2]])}),
        "regress_constants": _examples(lambda inputs: {
            "outputs": tf.constant([0.2, 0.9, 1.0])}),
        "regress_non_finite": _examples(lambda inputs: {
            "outputs": tf.constant([0.2, np.inf, 1.0, -np.inf, np.nan], tf.float32)}),
    }


def write_json_echo(base_path, version=1):
    module = tf.Module()
    signatures = json_echo_signatures()
    for name, function in signatures.items():
        setattr(module, name, function)
    return _publish(base_path, version,
                    lambda path: tf.saved_model.save(module, path, signatures=signatures))
