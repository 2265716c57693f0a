"""JSON <-> tensors with TF Serving's REST rules (util/json_tensor.cc).

Inputs are typed from the signature's dtypes, so a type mismatch fails at
parse time with TF Serving's message. Row-format ("instances") requests are
checked element by element as TF Serving does ("Expecting tensor size",
"Expecting shape", "Expecting object but got list"), and its errors carry
the same "Failed to process element: i ..." framing. Outputs are written
with TF Serving's `WriteDecimal` (printf "%g" when that round-trips, full
precision otherwise, ".0" on whole numbers), bare NaN/Infinity, and
`{"b64": ...}` for string outputs whose alias ends in `_bytes`.

Every walk over a JSON value uses an explicit stack: a client can nest a
document as deeply as it likes without reaching Python's recursion limit.
"""

import base64
import binascii
import json
import math

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import input_pb2

from distil_tf.serving.server.json_document import debug_string
from distil_tf.serving.server.json_document import json_type_name
from distil_tf.serving.server.servable import dtype_name
from distil_tf.serving.server.status import ServingError

_INT32 = (-(2**31), 2**31 - 1)
# AddValueToTensor: the small integer types are read with RapidJSON's
# IsInt() (an int32) and narrowed afterwards, like a C++ static_cast.
_INT_RANGES = {
    tf.int8: _INT32,
    tf.int16: _INT32,
    tf.int32: _INT32,
    tf.uint8: _INT32,
    tf.int64: (-(2**63), 2**63 - 1),
    tf.uint32: (0, 2**32 - 1),
    tf.uint64: (0, 2**64 - 1),
}
_FLOAT_TYPES = (tf.float32, tf.float64)
# Output dtypes TF Serving can write (AddSingleValueAndAdvance).
_WRITABLE = {tf.float32, tf.float64, tf.int32, tf.int16, tf.int8, tf.uint8,
             tf.string, tf.int64, tf.bool, tf.uint32, tf.uint64}
# numpy's own limit on array rank (TF's is 254).
_MAX_RANK = 64


def _invalid(message):
    return ServingError("INVALID_ARGUMENT", message)


def _format_error(document, message):
    return _invalid(f"JSON Value: {debug_string(document)} {message}")


def _type_error(value, dtype):
    return _invalid(
        f"JSON Value: {debug_string(value)} Type: {json_type_name(value)} is not "
        f"of expected type: {dtype_name(dtype)}"
    )


def is_b64_object(value):
    """`{"b64": "<string>"}` and nothing else (IsValBase64Object)."""
    return (isinstance(value, dict) and len(value) == 1
            and isinstance(value.get("b64"), str))


def decode_b64_object(value):
    if not is_b64_object(value):
        raise _invalid(
            f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
        )
    text = value["b64"]
    # absl::Base64Unescape accepts input without its trailing '=' padding.
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Unable to base64 decode") from None


def _leaf(value, dtype):
    """One JSON scalar -> a Python value of `dtype` (AddValueToTensor)."""
    if isinstance(value, dict):
        if dtype == tf.string:
            return decode_b64_object(value)
        raise _type_error(value, dtype)
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8", errors="surrogatepass")
        raise _type_error(value, dtype)
    if dtype == tf.bool:
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in _FLOAT_TYPES:
        if is_number:
            return value
        raise _type_error(value, dtype)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if is_number and isinstance(value, int) and low <= value <= high:
            return value
        raise _type_error(value, dtype)
    raise ServingError(
        "UNIMPLEMENTED",
        f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}",
    )


def dense_shape(value):
    """GetDenseTensorShape: list lengths along the first elements."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def fill_values(value, shape, dtype, out):
    """FillTensorProto: appends the leaves of `value` to `out`, checking that
    every list sits at the level and has the size `shape` says."""
    rank = len(shape)
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if not isinstance(item, list):
            if level != rank:
                raise _invalid(
                    f"JSON Value: {debug_string(item)} found at incorrect level: "
                    f"{level + 1} in the JSON DOM. Expected at level: {rank}"
                )
            out.append(_leaf(item, dtype))
            continue
        if level >= rank:
            raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(item) != shape[level]:
            raise _invalid(
                f"Encountered list at unexpected size: {len(item)} at level: "
                f"{level} expected size: {shape[level]}"
            )
        if level == rank - 1 and _extend_leaves(item, dtype, out):
            continue
        # Reversed, so that values come off the stack in document order.
        stack.extend((child, level + 1) for child in reversed(item))


def _extend_leaves(values, dtype, out):
    """Fast path for an innermost list whose values all have the right JSON
    type (the common case: token ids, floats, texts). Returns False to let
    the per-value path find and report the offending value."""
    kinds = {type(value) for value in values}
    if dtype in _INT_RANGES:
        if kinds <= {int} and values:
            low, high = _INT_RANGES[dtype]
            if low <= min(values) and max(values) <= high:
                out.extend(values)
                return True
        return False
    if dtype in _FLOAT_TYPES:
        if kinds <= {int, float}:
            out.extend(values)
            return True
        return False
    if dtype == tf.string and kinds <= {str}:
        out.extend(value.encode("utf-8", errors="surrogatepass") for value in values)
        return True
    if dtype == tf.bool and kinds <= {bool}:
        out.extend(values)
        return True
    return False


def _to_array(flat, shape, dtype):
    if len(shape) > _MAX_RANK:
        raise _invalid(
            f"Tensor of rank {len(shape)} has too many dimensions "
            f"(at most {_MAX_RANK} are supported)"
        )
    if dtype == tf.string:
        return np.array(flat, dtype=object).reshape(shape)
    numpy_dtype = dtype.as_numpy_dtype
    if dtype in _INT_RANGES and dtype not in (tf.uint64,):
        # Narrow from int64 (wrapping like TF's int_val -> int8 conversion).
        return np.array(flat, dtype=np.int64).astype(numpy_dtype).reshape(shape)
    # Doubles beyond float32's range become +-inf, tiny ones 0 (GetFloat()).
    with np.errstate(over="ignore", under="ignore"):
        return np.array(flat, dtype=numpy_dtype).reshape(shape)


def json_to_array(value, dtype):
    """A JSON value (scalar or nested lists) -> np.ndarray of `dtype`."""
    shape = dense_shape(value)
    flat = []
    fill_values(value, shape, dtype, flat)
    return _to_array(flat, shape, dtype)


def _shape_text(shape):
    return "[" + ",".join(str(size) for size in shape) + "]"


def _is_element_object(value):
    return isinstance(value, dict) and not is_b64_object(value)


class _InstanceBatch:
    """Collects one tensor per input from the elements of 'instances'
    (AddInstanceItem): every element must give the same size and shape."""

    def __init__(self, signature):
        self.signature = signature
        self.values = {}
        self.shapes = {}

    def add(self, item, name):
        if name not in self.signature.input_dtypes:
            raise _invalid(f"JSON object: does not have named input: {name}")
        shape = dense_shape(item)
        flat = []
        fill_values(item, shape, self.signature.input_dtypes[name], flat)
        if name not in self.shapes:
            self.shapes[name] = shape
            self.values[name] = flat
            return
        expected = self.shapes[name]
        expected_size = int(np.prod(expected)) if expected else 1
        if len(flat) != expected_size:
            raise _invalid(f"Expecting tensor size: {expected_size} but got: {len(flat)}")
        if shape != expected:
            raise _invalid(
                f"Expecting shape {_shape_text(expected)} but got: {_shape_text(shape)}"
            )
        self.values[name].extend(flat)

    def arrays(self, count):
        return {
            name: _to_array(flat, [count] + self.shapes[name],
                            self.signature.input_dtypes[name])
            for name, flat in self.values.items()
        }


def _wrapped(error):
    # TF Serving embeds the inner status with absl's "CODE: message" form.
    return f"{error.code_name}: {error.message}"


def instances_to_arrays(document, signature):
    """Row format: `document["instances"]` -> dict alias -> [N, ...] array."""
    instances = document["instances"]
    if not isinstance(instances, list):
        raise _format_error(document, "Expecting 'instances' to be an list/array")
    if not instances:
        raise _format_error(document, "No values in 'instances' array")
    names = signature.input_names
    if not isinstance(instances[0], dict) and len(names) > 1:
        raise _invalid(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    elements_are_objects = _is_element_object(instances[0])
    batch = _InstanceBatch(signature)
    for index, element in enumerate(instances):
        if elements_are_objects:
            if not _is_element_object(element):
                raise _invalid(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    batch.add(item, name)
                except ServingError as error:
                    raise _invalid(
                        f"Failed to process element: {index} key: {name} of "
                        f"'instances' list. Error: {_wrapped(error)}"
                    ) from None
            if set(element) != set(names):
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"JSON object: {debug_string(element)} keys must be equal to: "
                    f"{','.join(sorted(names))}"
                )
        else:
            if _is_element_object(element):
                raise _invalid(
                    f"Expecting value/list but got object at item {index} of input list"
                )
            try:
                batch.add(element, names[0])
            except ServingError as error:
                raise _invalid(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"Error: {_wrapped(error)}"
                ) from None
    return batch.arrays(len(instances))


def inputs_to_arrays(inputs, signature):
    """Columnar format: `inputs` value or object -> dict alias -> array."""
    names = signature.input_names
    if not isinstance(inputs, dict) or is_b64_object(inputs):
        if len(names) > 1:
            raise _invalid(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        return {names[0]: json_to_array(inputs, signature.input_dtypes[names[0]])}
    arrays = {}
    for name in names:
        if name not in inputs:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(inputs[name], signature.input_dtypes[name])
    return arrays


# --- Output -------------------------------------------------------------------


def write_decimal(value, dtype=tf.float32):
    """TF Serving's WriteDecimal for one float or double."""
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    text = "%g" % number  # absl::StrCat's six significant digits.
    if dtype == tf.float64:
        if float(text) != number:
            text = "%.17g" % number
    elif np.float32(float(text)) != np.float32(number):
        text = "%.9g" % number
    # Whole numbers gain ".0" so a list of them still reads as decimals.
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _value_writer(dtype, as_b64):
    if dtype in _FLOAT_TYPES:
        return lambda value: write_decimal(value, dtype)
    if dtype == tf.bool:
        return lambda value: "true" if value else "false"
    if dtype == tf.string:
        if as_b64:
            return lambda value: json.dumps(
                {"b64": base64.b64encode(bytes(value)).decode("ascii")})
        # TF Serving writes the raw bytes; a string that is not UTF-8 would
        # make invalid JSON, so undecodable bytes become U+FFFD here.
        return lambda value: json.dumps(
            bytes(value).decode("utf-8", errors="replace"), ensure_ascii=False)
    return lambda value: str(int(value))


def _array_text(array, write):
    """Nested JSON lists of `array` (any rank), without recursion."""
    if array.ndim == 0:
        return write(array[()])
    if array.size == 0:  # Only nested empty lists; no value to write.
        return json.dumps(np.empty(array.shape).tolist(), separators=(",", ":"))
    flat = [write(value) for value in array.reshape(-1)]
    # Join the innermost dimension first, then each enclosing one.
    for size in reversed(array.shape):
        flat = ["[" + ",".join(flat[start:start + size]) + "]"
                for start in range(0, len(flat), size)]
    return flat[0]


def _writer_for(name, array, dtype):
    dtype = tf.dtypes.as_dtype(dtype)
    if array.size and dtype not in _WRITABLE:
        raise _invalid(f"Failed to write JSON value for tensor type: {dtype_name(dtype)}")
    return _value_writer(dtype, as_b64=dtype == tf.string and name.endswith("_bytes"))


def _rows_text(array, write):
    """The [batch, ...] rows of `array`, each as JSON text."""
    # Slices keep the array's dtype (iterating an object array would not).
    return [_array_text(array[index:index + 1].reshape(array.shape[1:]), write)
            for index in range(array.shape[0])]


def predictions_json(outputs, row_format, dtypes=None):
    """`{"predictions": ...}` (rows) or `{"outputs": ...}` (columns) as text.

    Args:
        outputs: dict alias -> np.ndarray.
        row_format: bool. The request used "instances".
        dtypes: dict alias -> tf.DType (the signature's), else numpy's.
    """
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    dtypes = dtypes or {}
    if row_format:
        batch = None
        for name in names:
            if arrays[name].ndim == 0:
                raise _invalid(f"Tensor name: {name} has no shape information ")
            size = arrays[name].shape[0]
            if batch is not None and size != batch:
                raise _invalid(
                    f"Tensor name: {name} has inconsistent batch size: {size} "
                    f"expecting: {batch}"
                )
            batch = size
    writers = {
        name: _writer_for(name, arrays[name], dtypes.get(name, _numpy_dtype(arrays[name])))
        for name in names
    }
    if not row_format:
        if len(names) == 1:
            body = _array_text(arrays[names[0]], writers[names[0]])
        else:
            body = "{" + ",".join(
                f"{json.dumps(name)}:{_array_text(arrays[name], writers[name])}"
                for name in names
            ) + "}"
        return '{"outputs":' + body + "}"
    if len(names) == 1:
        rows = _rows_text(arrays[names[0]], writers[names[0]])
    else:
        columns = {name: _rows_text(arrays[name], writers[name]) for name in names}
        rows = [
            "{" + ",".join(f"{json.dumps(name)}:{columns[name][index]}" for name in names) + "}"
            for index in range(batch)
        ]
    return '{"predictions":[' + ",".join(rows) + "]}"


def _numpy_dtype(array):
    if array.dtype == object or array.dtype.kind in "SU":
        return tf.string
    return tf.dtypes.as_dtype(array.dtype)


# --- Classify / regress ------------------------------------------------------------

_INT64_MAX = 2**63 - 1


def _add_feature_value(value, name, feature, kind):
    """AddValueToFeature: the first value fixes the feature's kind."""

    def check(wanted):
        if kind[0] is None:
            kind[0] = wanted
        elif kind[0] != wanted:
            raise _invalid(
                f"Unexpected element type in feature: {name} expecting type: {kind[0]}"
            )

    if value is None or isinstance(value, list) or (
            isinstance(value, dict) and not is_b64_object(value)):
        raise _invalid(
            f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)}"
        )
    if isinstance(value, bool):
        check("int64")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        check("bytes")
        feature.bytes_list.value.append(decode_b64_object(value))
    elif isinstance(value, str):
        check("bytes")
        feature.bytes_list.value.append(value.encode("utf-8", errors="surrogatepass"))
    elif isinstance(value, float):
        check("float")
        feature.float_list.value.append(value)
    else:
        check("int64")
        if value > _INT64_MAX:  # Fits uint64 only (larger ones parse as doubles).
            raise _invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def json_to_example(value, example):
    """MakeExampleFromJsonObject: `{feature: value | [values]}` -> Example."""
    if not isinstance(value, dict):
        raise _invalid(f"Example must be JSON object but got JSON {json_type_name(value)}")
    for name, content in value.items():
        feature = example.features.feature[name]
        feature.Clear()
        kind = [None]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature, kind)


def examples_to_input(document):
    """`{"context"?, "examples": [...]}` -> `Input` proto."""
    input_proto = input_pb2.Input()
    has_context = "context" in document
    if has_context:
        json_to_example(document["context"], input_proto.example_list_with_context.context)
    if "examples" not in document:
        raise _format_error(
            document, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise _format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(document, "'examples' value is an empty array")
    target = input_proto.example_list_with_context if has_context else input_proto.example_list
    for item in examples:
        json_to_example(item, target.examples.add())
    return input_proto


def classification_results_json(result):
    if not result.classifications:
        raise _invalid("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classification in result.classifications:
        pairs = [
            f"[{json.dumps(entry.label, ensure_ascii=False)},{write_decimal(entry.score)}]"
            for entry in classification.classes
        ]
        rows.append("[" + ",".join(pairs) + "]")
    return '{"results":[' + ",".join(rows) + "]}"


def regression_results_json(result):
    if not result.regressions:
        raise _invalid("Cannot convert empty RegressionResults to JSON")
    return '{"results":[' + ",".join(write_decimal(r.value) for r in result.regressions) + "]}"
