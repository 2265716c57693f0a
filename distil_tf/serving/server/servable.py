"""One loaded SavedModel version and its signatures.

A servable is generic: it knows a SavedModel only through its SignatureDefs
(read from saved_model.pb, exactly what TF Serving's GetModelMetadata returns)
and the matching concrete functions of `tf.saved_model.load`.
"""

import os
import re

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from distil_tf.serving.server.status import ServingError
from distil_tf.serving.server.status import grpc_code_from_number

DEFAULT_SIGNATURE = "serving_default"
SERVING_TAG = "serve"


def dtype_name(dtype):
    """TF's DataTypeString: DT_FLOAT -> "float", DT_INT32 -> "int32"."""
    enum = tf.dtypes.as_dtype(dtype).as_datatype_enum
    return types_pb2.DataType.Name(enum)[len("DT_"):].lower()


# Eager errors from a concrete function carry Python-side framing that TF
# Serving's session errors do not have; keep only the runtime's own words.
_EAGER_PREFIX = re.compile(
    r"^Graph execution error:\s*(Detected at node .*?<stack traces unavailable>\s*)?",
    re.DOTALL,
)
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


def clean_runtime_message(message):
    message = _EAGER_PREFIX.sub("", message)
    return _OP_SUFFIX.sub("", message).strip()


class Signature:
    """A serving signature: its proto, its input/output aliases and function.

    Args:
        name: str. Signature key (`serving_default`, `classify`, ...).
        signature_def: `SignatureDef` proto from saved_model.pb.
        function: the concrete function from `loaded.signatures[name]`.
    """

    def __init__(self, name, signature_def, function):
        self.name = name
        self.signature_def = signature_def
        self.function = function
        self.method_name = signature_def.method_name
        # A concrete function flattens its keyword inputs in sorted key order;
        # TF's "Expects arg[i]" counts in that order too.
        self.input_names = sorted(signature_def.inputs)
        self.output_names = sorted(signature_def.outputs)
        self.input_dtypes = {
            key: tf.dtypes.as_dtype(info.dtype)
            for key, info in signature_def.inputs.items()
        }
        self.output_dtypes = {
            key: tf.dtypes.as_dtype(info.dtype)
            for key, info in signature_def.outputs.items()
        }

    def feed_name(self, alias):
        return self.signature_def.inputs[alias].name

    def check_input_dtypes(self, inputs):
        """Raises TF's INVALID_ARGUMENT for a wrongly typed input tensor."""
        for index, alias in enumerate(self.input_names):
            expected = self.input_dtypes[alias]
            given = tf.dtypes.as_dtype(inputs[alias].dtype)
            if given != expected:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[{index}] to be {dtype_name(expected)} but "
                    f"{dtype_name(given)} is provided",
                )

    def __call__(self, inputs):
        """Runs the signature on numpy inputs; returns numpy outputs.

        Args:
            inputs: dict alias -> np.ndarray, exactly the signature's inputs.

        Returns:
            dict alias -> np.ndarray with every output of the signature.
        """
        self.check_input_dtypes(inputs)
        try:
            tensors = {
                alias: tf.convert_to_tensor(value, dtype=self.input_dtypes[alias])
                for alias, value in inputs.items()
            }
            outputs = self.function(**tensors)
        except tf.errors.OpError as error:
            raise ServingError(
                grpc_code_from_number(error.error_code),
                clean_runtime_message(error.message),
            ) from None
        except (TypeError, ValueError) as error:
            # Raised by tensor conversion or the function's argument binding
            # (a rank or shape clash with the TensorSpec), before any op runs.
            raise ServingError("INVALID_ARGUMENT", clean_runtime_message(str(error)))
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}


def register_text_ops():
    """Registers tensorflow_text's ops, if it is installed.

    The stock tensorflow_model_server links tf-text's ops_lib in
    (SUPPORTED_TENSORFLOW_OPS), so a SavedModel that tokenizes in its graph
    loads there; importing the package gives this server the same ops.
    Without it such a model fails to load with TF's "Op type not registered".
    """
    try:
        import tensorflow_text  # noqa: F401 (imported for its op registrations)
    except ImportError:
        pass


class Servable:
    """A loaded `base_path/<version>/` SavedModel.

    Args:
        model_name: str.
        version: int.
        path: str. The version directory.
    """

    def __init__(self, model_name, version, path):
        self.model_name = model_name
        self.version = int(version)
        self.path = path
        self.signature_defs = self._read_signature_defs(path)
        register_text_ops()
        self.loaded = tf.saved_model.load(path, tags=[SERVING_TAG])
        self.signatures = {}
        for name, signature_def in self.signature_defs.items():
            if name in self.loaded.signatures:
                self.signatures[name] = Signature(
                    name, signature_def, self.loaded.signatures[name]
                )

    @staticmethod
    def _read_signature_defs(path):
        saved_model_path = os.path.join(path, "saved_model.pb")
        saved_model = saved_model_pb2.SavedModel()
        with open(saved_model_path, "rb") as handle:
            saved_model.ParseFromString(handle.read())
        for meta_graph in saved_model.meta_graphs:
            if SERVING_TAG in meta_graph.meta_info_def.tags:
                return {
                    # SavedModels also carry TF's internal init signature;
                    # TF Serving hides it from metadata.
                    name: signature
                    for name, signature in meta_graph.signature_def.items()
                    if not name.startswith("__")
                }
        raise ValueError(f"{path} has no MetaGraph tagged '{SERVING_TAG}'")

    def signature_def_map(self):
        result = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in self.signature_defs.items():
            result.signature_def[name].CopyFrom(signature_def)
        return result

    def predict_signature(self, name):
        """Signature for Predict; FAILED_PRECONDITION when absent (predict_util.cc)."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError(
                "FAILED_PRECONDITION", f'Serving signature key "{name}" not found.'
            )
        return self.signatures[name]

    def inference_signature(self, name):
        """Signature for Classify/Regress; INVALID_ARGUMENT when absent."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError(
                "INVALID_ARGUMENT", f"No signature was found with the name: {name}"
            )
        return self.signatures[name]
