"""The request logic behind every API, shared by the gRPC and REST front ends.

Each method takes and returns the tensorflow_serving.apis protos and raises
`ServingError` with TF Serving's code and message (the contract's table).
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2

from distil_tf.serving.server.servable import DEFAULT_SIGNATURE
from distil_tf.serving.server.servable import dtype_name
from distil_tf.serving.server.status import ServingError

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
METADATA_FIELD_SIGNATURE_DEF = "signature_def"


def _braced(names):
    return "{" + ",".join(sorted(names)) + "}"


def check_input_keys(signature, given):
    """predict_util.cc's and saved_model/util.cc's input-alias checks."""
    expected = set(signature.input_names)
    given = set(given)
    if len(given) != len(expected):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input size does not match signature: {len(given)}!={len(expected)} "
            f"len({_braced(given)}) != len({_braced(expected)}). "
            f"Sent extra: {_braced(given - expected)}. "
            f"Missing but required: {_braced(expected - given)}.",
        )
    for alias in signature.input_names:
        if alias not in given:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Signature input alias: {alias}(feed name: "
                f"{signature.feed_name(alias)}) not found in request and no "
                "default value provided. Inputs expected to be in the set "
                f"{_braced(expected)}.",
            )


def check_output_filter(signature, output_filter):
    seen = set()
    for alias in output_filter:
        if alias not in signature.output_dtypes:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"output tensor alias not found in signature: {alias} Outputs "
                f"expected to be in the set {_braced(signature.output_names)}.",
            )
        if alias in seen:
            raise ServingError(
                "INVALID_ARGUMENT", f"duplicate output tensor alias: {alias}"
            )
        seen.add(alias)


def tensor_proto_to_array(alias, proto):
    """TensorProto -> np.ndarray; INVALID_ARGUMENT "tensor parsing error"."""
    try:
        shape = [dim.size for dim in proto.tensor_shape.dim]
        if any(size < 0 for size in shape) or proto.dtype == 0:
            raise ValueError("bad shape or dtype")
        array = tf.make_ndarray(proto)
        if list(array.shape) != shape:
            raise ValueError("shape mismatch")
        return array
    except Exception:  # make_ndarray raises TypeError/ValueError/KeyError.
        raise ServingError("INVALID_ARGUMENT", f"tensor parsing error: {alias}") from None


# TensorProto's typed value field per dtype. TF Serving writes outputs into
# these (float_val, ...) unless --enable_serialization_as_tensor_content, and
# clients read `response.outputs[k].float_val` directly, so the packed
# `tensor_content` that tf.make_tensor_proto prefers would break them.
_TYPED_FIELD = {
    tf.float32: "float_val",
    tf.float64: "double_val",
    tf.int32: "int_val",
    tf.int16: "int_val",
    tf.int8: "int_val",
    tf.uint8: "int_val",
    tf.uint16: "int_val",
    tf.int64: "int64_val",
    tf.uint32: "uint32_val",
    tf.uint64: "uint64_val",
    tf.bool: "bool_val",
}


def array_to_tensor_proto(array, dtype):
    """np.ndarray -> TensorProto with typed value fields, like TF Serving."""
    array = np.asarray(array)
    dtype = tf.dtypes.as_dtype(dtype)
    if dtype == tf.string:
        field = "string_val"
        values = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
    elif dtype in _TYPED_FIELD:
        field = _TYPED_FIELD[dtype]
        values = array.reshape(-1).tolist()
    else:  # Rare dtypes (half, complex, ...) stay packed.
        return tf.make_tensor_proto(array, dtype=dtype)
    # Built directly: tf.make_tensor_proto costs ~50 us per output.
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    getattr(proto, field).extend(values)
    return proto


def serialized_examples(input_proto):
    """`Input` proto -> [N] object array of serialized tf.Examples."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        # Concatenated serializations parse as a merge, which is how TF
        # Serving feeds context + example (util.cc InputToSerializedExampleTensor).
        examples = [context + e.SerializeToString() for e in with_context.examples]
    else:
        examples = []
    if not examples:
        raise ServingError("INVALID_ARGUMENT", "Input is empty.")
    return np.array(examples, dtype=object)


class InferenceCore:
    """Predict, Classify, Regress, MultiInference, metadata and status.

    Args:
        manager: `ModelManager` resolving ModelSpecs to servables.
        scheduler: `BatchScheduler` or None (every call runs on its own).
    """

    def __init__(self, manager, scheduler=None):
        self.manager = manager
        self.scheduler = scheduler

    def _servable(self, model_spec, servable):
        return servable if servable is not None else self.manager.get_servable(model_spec)

    def run_signature(self, signature, inputs, timeout=None):
        if self.scheduler is not None:
            return self.scheduler.run(signature, inputs, timeout=timeout)
        return signature(inputs)

    @staticmethod
    def _fill_spec(response_spec, servable, signature_name):
        response_spec.name = servable.model_name
        response_spec.version.value = servable.version
        response_spec.signature_name = signature_name or DEFAULT_SIGNATURE

    # --- Predict -------------------------------------------------------------

    def predict_arrays(self, model_spec, inputs, output_filter=(), timeout=None,
                       servable=None, signature=None):
        """Predict on numpy inputs; returns (servable, signature, outputs)."""
        servable = self._servable(model_spec, servable)
        if signature is None:
            signature = servable.predict_signature(model_spec.signature_name)
        check_input_keys(signature, inputs)
        check_output_filter(signature, output_filter)
        outputs = self.run_signature(signature, inputs, timeout)
        wanted = list(output_filter) or signature.output_names
        return servable, signature, {alias: outputs[alias] for alias in wanted}

    def predict(self, request, timeout=None, servable=None):
        if not request.HasField("model_spec"):
            raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
        servable = self._servable(request.model_spec, servable)
        signature = servable.predict_signature(request.model_spec.signature_name)
        check_input_keys(signature, request.inputs)
        inputs = {
            alias: tensor_proto_to_array(alias, proto)
            for alias, proto in request.inputs.items()
        }
        _, signature, outputs = self.predict_arrays(
            request.model_spec, inputs, list(request.output_filter), timeout,
            servable=servable, signature=signature,
        )
        response = predict_pb2.PredictResponse()
        self._fill_spec(response.model_spec, servable, signature.name)
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(
                array_to_tensor_proto(value, signature.output_dtypes[alias])
            )
        return response

    # --- Classify / Regress ----------------------------------------------------

    @staticmethod
    def _example_input_alias(signature):
        if len(signature.input_names) != 1:
            raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
        alias = signature.input_names[0]
        if signature.input_dtypes[alias] != tf.string:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Input tensor must be of type DT_STRING (serialized tf.Example), "
                f"got {dtype_name(signature.input_dtypes[alias])}",
            )
        return alias

    def classify_result(self, signature, input_proto, timeout=None):
        """classifier.cc: `inputs` -> `classes` [B,K] string / `scores` [B,K] float."""
        alias = self._example_input_alias(signature)
        has_classes = "classes" in signature.output_dtypes
        has_scores = "scores" in signature.output_dtypes
        if not has_classes and not has_scores:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Expected classification signature outputs to contain at least "
                "one of classes, scores.",
            )
        if has_classes and signature.output_dtypes["classes"] != tf.string:
            raise ServingError("INVALID_ARGUMENT", "Expected classes Tensor of DT_STRING.")
        if has_scores and signature.output_dtypes["scores"] != tf.float32:
            raise ServingError("INVALID_ARGUMENT", "Expected scores Tensor of DT_FLOAT.")
        examples = serialized_examples(input_proto)
        outputs = self.run_signature(signature, {alias: examples}, timeout)
        classes = outputs.get("classes") if has_classes else None
        scores = outputs.get("scores") if has_scores else None
        batch_size = len(examples)
        for name, value in (("classes", classes), ("scores", scores)):
            if value is None:
                continue
            if value.ndim != 2 or value.shape[0] != batch_size:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expected Tensor shape: [{batch_size} num_classes] but got "
                    f"{list(value.shape)} for {name}",
                )
        if classes is not None and scores is not None and classes.shape != scores.shape:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Tensors class and score should match in shape: "
                f"{list(classes.shape)} vs. {list(scores.shape)}",
            )
        result = classification_pb2.ClassificationResult()
        num_classes = (classes if classes is not None else scores).shape[1]
        for row in range(batch_size):
            classification = result.classifications.add()
            for column in range(num_classes):
                entry = classification.classes.add()
                if classes is not None:
                    entry.label = _as_text(classes[row, column])
                if scores is not None:
                    entry.score = float(scores[row, column])
        return result

    def regress_result(self, signature, input_proto, timeout=None):
        """regressor.cc: `inputs` -> `outputs` float [B] or [B,1]."""
        alias = self._example_input_alias(signature)
        if "outputs" not in signature.output_dtypes:
            raise ServingError(
                "INVALID_ARGUMENT", "No regression outputs found in signature: outputs"
            )
        if signature.output_dtypes["outputs"] != tf.float32:
            raise ServingError("INVALID_ARGUMENT", "Expected output Tensor of DT_FLOAT.")
        examples = serialized_examples(input_proto)
        values = self.run_signature(signature, {alias: examples}, timeout)["outputs"]
        batch_size = len(examples)
        if not (
            (values.ndim == 1 and values.shape[0] == batch_size)
            or (values.ndim == 2 and values.shape == (batch_size, 1))
        ):
            raise ServingError(
                "INVALID_ARGUMENT",
                "Expected output Tensor shape to be either [batch_size] or "
                f"[batch_size, 1] but got {list(values.shape)}",
            )
        result = regression_pb2.RegressionResult()
        for value in values.reshape(-1):
            result.regressions.add().value = float(value)
        return result

    def classify(self, request, timeout=None, servable=None):
        servable = self._servable(request.model_spec, servable)
        signature = servable.inference_signature(request.model_spec.signature_name)
        response = classification_pb2.ClassificationResponse()
        response.result.CopyFrom(self.classify_result(signature, request.input, timeout))
        self._fill_spec(response.model_spec, servable, signature.name)
        return response

    def regress(self, request, timeout=None, servable=None):
        servable = self._servable(request.model_spec, servable)
        signature = servable.inference_signature(request.model_spec.signature_name)
        response = regression_pb2.RegressionResponse()
        response.result.CopyFrom(self.regress_result(signature, request.input, timeout))
        self._fill_spec(response.model_spec, servable, signature.name)
        return response

    def multi_inference(self, request, timeout=None, servable=None):
        """multi_inference.cc; tasks run one after another on the shared input."""
        if not request.tasks:
            raise ServingError("INVALID_ARGUMENT", "Expected at least one task")
        names = {task.model_spec.name for task in request.tasks}
        if len(names) != 1:
            raise ServingError(
                "INVALID_ARGUMENT",
                "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
            )
        seen = set()
        for task in request.tasks:
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise ServingError(
                    "INVALID_ARGUMENT", f"Duplicate evaluation of signature: {name}"
                )
            seen.add(name)
            if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
                raise ServingError(
                    "UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}"
                )
        servable = self._servable(request.tasks[0].model_spec, servable)
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            signature = servable.inference_signature(task.model_spec.signature_name)
            result = response.results.add()
            self._fill_spec(result.model_spec, servable, signature.name)
            if task.method_name == CLASSIFY_METHOD:
                result.classification_result.CopyFrom(
                    self.classify_result(signature, request.input, timeout)
                )
            else:
                result.regression_result.CopyFrom(
                    self.regress_result(signature, request.input, timeout)
                )
        return response

    # --- Metadata and status -----------------------------------------------------

    def get_model_metadata(self, request):
        if not request.HasField("model_spec"):
            raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
        if not request.metadata_field:
            raise ServingError(
                "INVALID_ARGUMENT",
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != METADATA_FIELD_SIGNATURE_DEF:
                raise ServingError(
                    "INVALID_ARGUMENT", f"Metadata field {field} is not supported"
                )
        servable = self.manager.get_servable(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.metadata[METADATA_FIELD_SIGNATURE_DEF].Pack(servable.signature_def_map())
        return response

    def get_model_status(self, request):
        if not request.HasField("model_spec"):
            raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
        spec = request.model_spec
        if not spec.name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        # Only `version` counts; a version_label is ignored (get_model_status_impl.cc).
        version = spec.version.value if spec.HasField("version") else None
        response = get_model_status_pb2.GetModelStatusResponse()
        for record in self.manager.version_records(spec.name, version):
            status = response.model_version_status.add()
            status.version = record.version
            status.state = record.state
            status.status.SetInParent()  # An OK status is still written out.
            if record.error is not None:
                status.status.error_code = record.error.code_number
                status.status.error_message = record.error.message
        return response

    def handle_reload_config(self, request):
        response = model_management_pb2.ReloadConfigResponse()
        if request.config.WhichOneof("config") != "model_config_list":
            raise ServingError(
                "INVALID_ARGUMENT",
                "ServerModelConfig type not supported by HandleReloadConfigRequest."
                " Only ModelConfigList is currently supported",
            )
        self.manager.apply_config(request.config)
        # `metric_names` (metrics in the response) is not supported; the
        # status is OK or the call fails with the error.
        response.status.SetInParent()
        return response


def _as_text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
