"""One client for TF Serving over gRPC or REST, and the CLI's predict table.

Speaks only the public TF Serving APIs (tensorflow-serving-api stubs, REST
JSON of g3doc/api_rest.md), so it works unchanged against the real
`tensorflow/serving` image and against `distil-tf-model-server`.

Examples:

```python
client = ServingClient("localhost:8500", "sst2")
outputs = client.classify_texts(["a gripping film", "dull"])
print(outputs["labels"], outputs["probabilities"])
print(predict_command("localhost:8501", "sst2", ["great"], rest=True))
embeddings = ServingClient("localhost:8500", "minilm").embed_texts(["a cat", "a dog"])  # [2, hidden]
```
"""

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

DEFAULT_SIGNATURE = "serving_default"
# The output of an exported encoder (`distil_tf.export.embedding_module`).
EMBEDDING_OUTPUT = "embedding"

# REST gives only an HTTP status; this is the most likely TF code for each
# (http_server.cc maps several codes to 400 and 500).
_CODE_BY_HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_STATE_NAMES = {
    value.number: value.name
    for value in get_model_status_pb2.ModelVersionStatus.State.DESCRIPTOR.values
}


class ServingRequestError(RuntimeError):
    """A request TF Serving answered with an error (or could not be sent).

    Attributes:
        code: str. TF/gRPC status name, e.g. "NOT_FOUND".
        message: str. The server's message.
        http_status: int or None. The HTTP status for REST calls.
    """

    def __init__(self, code, message, http_status=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


def _to_bytes(text):
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


def _decode_strings(array):
    """Bytes outputs -> str so labels and answers print as text."""
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        flat = [
            value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
            for value in array.reshape(-1)
        ]
        return np.array(flat, dtype=object).reshape(array.shape)
    return array


def _example_proto(features, example):
    """{name: value | [values]} -> tf.train.Example features (REST typing rules)."""
    for name, value in features.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        feature = example.features.feature[name]
        if all(isinstance(v, (str, bytes)) for v in values):
            feature.bytes_list.value.extend(_to_bytes(v) for v in values)
        elif all(isinstance(v, (bool, int, np.integer)) for v in values):
            feature.int64_list.value.extend(int(v) for v in values)
        else:
            feature.float_list.value.extend(float(v) for v in values)
    return example


def _example_json(features):
    document = {}
    for name, value in features.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        converted = []
        for item in values:
            if isinstance(item, bytes):
                converted.append({"b64": base64.b64encode(item).decode("ascii")})
            elif isinstance(item, np.generic):
                converted.append(item.item())
            else:
                converted.append(item)
        document[name] = converted
    return document


def _json_value(array):
    """numpy -> JSON-ready lists; bytes that are not UTF-8 go as b64."""
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        def convert(item):
            if isinstance(item, np.ndarray):
                return [convert(x) for x in item]
            if isinstance(item, bytes):
                try:
                    return item.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(item).decode("ascii")}
            return str(item)

        return convert(array)
    return array.tolist()


def _signature_summary(signature_def):
    def tensors(infos):
        return {
            name: {
                "dtype": tf.dtypes.as_dtype(info.dtype).name,
                "shape": None
                if info.tensor_shape.unknown_rank
                else [dim.size if dim.size >= 0 else None for dim in info.tensor_shape.dim],
            }
            for name, info in sorted(infos.items())
        }

    return {
        "method_name": signature_def.method_name,
        "inputs": tensors(signature_def.inputs),
        "outputs": tensors(signature_def.outputs),
    }


class ServingClient:
    """TF Serving client with one interface over gRPC and REST.

    Args:
        target: str. "host:port" (gRPC port, or REST port with `rest=True`);
            a REST target may also be a full "http://host:port" URL.
        model_name: str.
        rest: bool. Use the REST API instead of gRPC.
        timeout: float. Deadline per attempt, in seconds.
        retries: int. Extra attempts after UNAVAILABLE (nothing else is
            retried: other errors are answers, not outages).
        backoff: float. First wait between attempts, doubled each time.
        version: int or None. Pin a version (default: latest).
        version_label: str or None. Pin a label such as "stable".
    """

    def __init__(
        self,
        target,
        model_name,
        rest=False,
        timeout=10.0,
        retries=3,
        backoff=0.2,
        version=None,
        version_label=None,
    ):
        if version is not None and version_label is not None:
            raise ValueError("pass at most one of version and version_label")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.target = target
        self.model_name = model_name
        self.rest = rest
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.version = version
        self.version_label = version_label
        self._metadata_cache = None
        if rest:
            base = target if "://" in target else f"http://{target}"
            self._base_url = base.rstrip("/")
            self._channel = None
        else:
            self._channel = grpc.insecure_channel(
                target,
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                ],
            )
            self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self):
        if self._channel is not None:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- Transport ------------------------------------------------------------------

    def _with_retries(self, call):
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return call()
            except ServingRequestError as error:
                if error.code != "UNAVAILABLE" or attempt == self.retries:
                    raise
                time.sleep(delay)
                delay *= 2

    def _grpc(self, method, request):
        def call():
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                raise ServingRequestError(error.code().name, error.details() or "") from None

        return self._with_retries(call)

    def _model_path(self):
        path = f"/v1/models/{urllib.parse.quote(self.model_name, safe='')}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.version_label is not None:
            path += f"/labels/{urllib.parse.quote(self.version_label, safe='')}"
        return path

    def _http(self, path, document=None):
        url = self._base_url + path
        data = None if document is None else json.dumps(document).encode("utf-8")

        def call():
            request = urllib.request.Request(
                url, data=data, method="GET" if data is None else "POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                body = error.read()
                try:
                    message = json.loads(body).get("error", "")
                except (ValueError, AttributeError):
                    message = body.decode("utf-8", errors="replace")
                code = _CODE_BY_HTTP_STATUS.get(error.code, "UNKNOWN")
                raise ServingRequestError(code, message, http_status=error.code) from None
            except (urllib.error.URLError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                raise ServingRequestError("UNAVAILABLE", f"cannot reach {url}: {reason}") from None
            except TimeoutError:
                raise ServingRequestError("DEADLINE_EXCEEDED", f"no answer from {url} "
                                          f"within {self.timeout} s") from None

        return self._with_retries(call)

    def _fill_spec(self, spec, signature_name=None):
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if signature_name is not None:
            spec.signature_name = signature_name

    # --- Predict ---------------------------------------------------------------------

    def predict(self, inputs, signature=DEFAULT_SIGNATURE, output_filter=None):
        """Generic Predict.

        Args:
            inputs: dict alias -> array-like (lists of str become DT_STRING).
            signature: str. Signature key.
            output_filter: list of output aliases, or None for all.

        Returns:
            dict alias -> np.ndarray (strings decoded to str).
        """
        arrays = {alias: np.asarray(value) for alias, value in inputs.items()}
        if self.rest:
            return self._predict_rest(arrays, signature, output_filter)
        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, signature)
        for alias, array in arrays.items():
            if array.dtype.kind in ("U", "S", "O"):
                values = [_to_bytes(v) for v in array.reshape(-1)]
                proto = tf.make_tensor_proto(values, dtype=tf.string, shape=array.shape)
            else:
                proto = tf.make_tensor_proto(array)
            request.inputs[alias].CopyFrom(proto)
        if output_filter:
            request.output_filter.extend(output_filter)
        response = self._grpc(self._prediction.Predict, request)
        return {
            alias: _decode_strings(tf.make_ndarray(proto))
            for alias, proto in response.outputs.items()
        }

    def _predict_rest(self, arrays, signature, output_filter):
        document = {
            "signature_name": signature,
            "inputs": {alias: _json_value(array) for alias, array in arrays.items()},
        }
        outputs = self._http(self._model_path() + ":predict", document)["outputs"]
        if not isinstance(outputs, dict):
            # Columnar responses drop the name of a lone output. (REST has no
            # output_filter, so filtering happens here.)
            names = list(self.metadata()[signature]["outputs"])
            outputs = {names[0]: outputs}
        result = {alias: _decode_strings(np.asarray(value)) for alias, value in outputs.items()}
        if output_filter:
            result = {alias: result[alias] for alias in output_filter}
        return result

    def classify_texts(self, texts, text_pairs=None, signature=DEFAULT_SIGNATURE):
        """Text-in classification (`text`, optional `text_pair`).

        Returns:
            dict with the signature's outputs, e.g. `logits` [B,K],
            `probabilities` [B,K], `label_ids` [B], `labels` [B].
        """
        if isinstance(texts, (str, bytes)):
            raise ValueError("texts must be a list of strings, not one string")
        inputs = {"text": np.array(list(texts), dtype=object)}
        if text_pairs is not None:
            if len(text_pairs) != len(texts):
                raise ValueError(
                    f"text_pairs has {len(text_pairs)} entries, texts has {len(texts)}"
                )
            inputs["text_pair"] = np.array(list(text_pairs), dtype=object)
        return self.predict(inputs, signature)

    def embed_texts(self, texts, signature=DEFAULT_SIGNATURE):
        """Sentence embeddings of an exported encoder, float32 `[len(texts), hidden]`.

        An empty text is a valid input (the embedding of `[CLS] [SEP]`).

        Raises:
            ValueError: no texts, or the model answers without an `embedding`
                output (a task model: classify its texts instead).
            ServingRequestError: the server answered with an error.
        """
        if isinstance(texts, (str, bytes)):
            raise ValueError("texts must be a list of strings, not one string")
        texts = list(texts)
        if not texts:
            raise ValueError("give at least one text to embed")
        outputs = self.predict({"text": np.array(texts, dtype=object)}, signature)
        if EMBEDDING_OUTPUT not in outputs:
            raise ValueError(
                f"model '{self.model_name}' answers without an '{EMBEDDING_OUTPUT}' output "
                f"(outputs: {', '.join(sorted(outputs))}): it is not an exported encoder"
            )
        return np.asarray(outputs[EMBEDDING_OUTPUT], dtype=np.float32).reshape(len(texts), -1)

    def answer_questions(self, questions, contexts, signature=DEFAULT_SIGNATURE):
        """Extractive QA: `question`, `context` -> `answer`, `start`, `end`, `score`."""
        if len(questions) != len(contexts):
            raise ValueError(
                f"got {len(questions)} questions but {len(contexts)} contexts"
            )
        return self.predict(
            {
                "question": np.array(list(questions), dtype=object),
                "context": np.array(list(contexts), dtype=object),
            },
            signature,
        )

    def predict_ids(self, token_ids, padding_mask, signature="predict_ids"):
        """Ids-in signature: `token_ids`, `padding_mask` int32 [B,T] -> `logits`."""
        return self.predict(
            {
                "token_ids": np.asarray(token_ids, dtype=np.int32),
                "padding_mask": np.asarray(padding_mask, dtype=np.int32),
            },
            signature,
        )

    # --- Classify / Regress ------------------------------------------------------------

    def classify_examples(self, examples, signature="classify", context=None):
        """Classify API on tf.Examples given as {feature: value} dicts.

        Returns:
            list (per example) of [(label, score), ...].
        """
        if self.rest:
            document = {"signature_name": signature,
                        "examples": [_example_json(e) for e in examples]}
            if context is not None:
                document["context"] = _example_json(context)
            results = self._http(self._model_path() + ":classify", document)["results"]
            return [[(str(label), float(score)) for label, score in row] for row in results]
        request = classification_pb2.ClassificationRequest()
        self._fill_spec(request.model_spec, signature)
        self._fill_input(request.input, examples, context)
        response = self._grpc(self._prediction.Classify, request)
        return [
            [(entry.label, entry.score) for entry in classification.classes]
            for classification in response.result.classifications
        ]

    def regress(self, examples, signature="regress", context=None):
        """Regress API on tf.Examples given as dicts; returns a list of floats."""
        if self.rest:
            document = {"signature_name": signature,
                        "examples": [_example_json(e) for e in examples]}
            if context is not None:
                document["context"] = _example_json(context)
            results = self._http(self._model_path() + ":regress", document)["results"]
            return [float(value) for value in results]
        request = regression_pb2.RegressionRequest()
        self._fill_spec(request.model_spec, signature)
        self._fill_input(request.input, examples, context)
        response = self._grpc(self._prediction.Regress, request)
        return [regression.value for regression in response.result.regressions]

    @staticmethod
    def _fill_input(input_proto, examples, context):
        if context is not None:
            target = input_proto.example_list_with_context
            _example_proto(context, target.context)
        else:
            target = input_proto.example_list
        for features in examples:
            _example_proto(features, target.examples.add())

    # --- Status and metadata -----------------------------------------------------------

    def model_status(self):
        """[{version, state, error_code, error_message}] for the model."""
        if self.rest:
            path = f"/v1/models/{urllib.parse.quote(self.model_name, safe='')}"
            if self.version is not None:
                path += f"/versions/{int(self.version)}"
            response = json_format.ParseDict(
                self._http(path), get_model_status_pb2.GetModelStatusResponse(),
                ignore_unknown_fields=True,
            )
        else:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = self.model_name
            if self.version is not None:
                request.model_spec.version.value = int(self.version)
            response = self._grpc(self._models.GetModelStatus, request)
        from tensorflow.core.protobuf import error_codes_pb2

        return [
            {
                "version": status.version,
                "state": _STATE_NAMES.get(status.state, str(status.state)),
                "error_code": error_codes_pb2.Code.Name(status.status.error_code),
                "error_message": status.status.error_message,
            }
            for status in response.model_version_status
        ]

    def metadata(self):
        """{signature: {method_name, inputs: {alias: {dtype, shape}}, outputs}}."""
        if self._metadata_cache is not None:
            return self._metadata_cache
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if self.rest:
            document = self._http(self._model_path() + "/metadata")
            json_format.ParseDict(
                document["metadata"]["signature_def"], signature_map, ignore_unknown_fields=True
            )
        else:
            request = get_model_metadata_pb2.GetModelMetadataRequest()
            self._fill_spec(request.model_spec)
            request.metadata_field.append("signature_def")
            response = self._grpc(self._prediction.GetModelMetadata, request)
            response.metadata["signature_def"].Unpack(signature_map)
        self._metadata_cache = {
            name: _signature_summary(signature_def)
            for name, signature_def in sorted(signature_map.signature_def.items())
        }
        return self._metadata_cache


# --- CLI helpers ---------------------------------------------------------------------


def _cell(value):
    if isinstance(value, float) or isinstance(value, np.floating):
        return f"{float(value):.4f}"
    if isinstance(value, np.ndarray):
        if value.size > 6:
            return f"<{value.dtype.name} {list(value.shape)}>"
        return "[" + ", ".join(_cell(v) for v in value.reshape(-1)) + "]"
    return str(value)


def format_predictions_table(texts, outputs, max_text_chars=48):
    """A plain-text table, one row per input text.

    Known outputs get friendly columns (label and its probability, score,
    answer span); any other per-row output is shown as is.

    Args:
        texts: list of str, the inputs in request order.
        outputs: dict alias -> np.ndarray with dim 0 == len(texts).
        max_text_chars: int. Texts longer than this are cut with "...".
    """
    columns = []  # (header, per-row function)
    if "labels" in outputs:
        columns.append(("label", lambda i: outputs["labels"][i]))
    elif "label_ids" in outputs:
        columns.append(("label_id", lambda i: outputs["label_ids"][i]))
    if "probabilities" in outputs:
        columns.append(("probability", lambda i: float(np.max(outputs["probabilities"][i]))))
    for name in ("score", "answer", "start", "end"):
        if name in outputs:
            columns.append((name, lambda i, n=name: outputs[n][i]))
    if not columns:
        for name in sorted(outputs):
            if outputs[name].ndim >= 1 and outputs[name].shape[0] == len(texts):
                columns.append((name, lambda i, n=name: outputs[n][i]))
    headers = ["text"] + [header for header, _ in columns]
    rows = []
    for index, text in enumerate(texts):
        shown = text if len(text) <= max_text_chars else text[: max_text_chars - 3] + "..."
        shown = shown.replace("\n", " ")
        rows.append([shown] + [_cell(function(index)) for _, function in columns])
    widths = [max(len(str(row[c])) for row in rows + [headers]) for c in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def format_embeddings_table(texts, embeddings, max_text_chars=48):
    """Each text's embedding norm, then the matrix of pairwise cosine similarities.

    Args:
        texts: list of str, in request order.
        embeddings: float `[len(texts), hidden]`.
        max_text_chars: int. Texts longer than this are cut with "...".
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1)
    unit = embeddings / np.maximum(norms, 1e-12)[:, None]
    cosines = unit @ unit.T
    shown = [
        (text if len(text) <= max_text_chars else text[: max_text_chars - 3] + "...").replace("\n", " ")
        for text in texts
    ]
    shown = [text if text else '""' for text in shown]
    width = max(len(text) for text in shown + ["text"])
    lines = [f"{len(texts)} embeddings of {embeddings.shape[1]} dimensions", ""]
    lines.append(f"{'#':>3}  {'text':<{width}}  norm")
    for index, text in enumerate(shown):
        lines.append(f"{index + 1:>3}  {text:<{width}}  {norms[index]:.4f}")
    lines += ["", "cosine " + "".join(f"{index + 1:>8}" for index in range(len(texts)))]
    for index in range(len(texts)):
        lines.append(f"{index + 1:>6} " + "".join(f"{value:>8.4f}" for value in cosines[index]))
    return "\n".join(lines)


def predict_command(server, model, texts, rest=False, signature=None, timeout=30.0,
                    text_pairs=None, embed=False):
    """What `distil-tf predict --server HOST:PORT --model NAME [--rest] [--embed] TEXT...` prints.

    With `embed`, the model is an exported encoder: the output is each text's
    embedding norm and the pairwise cosine similarities of the texts.

    Raises:
        ServingRequestError: the server answered with an error.
        ValueError: no texts; `embed` against a model without embeddings.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("give at least one TEXT to classify")
    if embed:
        if text_pairs:
            raise ValueError("--pair does not apply to --embed: each TEXT is embedded on its own")
        with ServingClient(server, model, rest=rest, timeout=timeout) as client:
            embeddings = client.embed_texts(texts, signature=signature or DEFAULT_SIGNATURE)
        return format_embeddings_table(texts, embeddings)
    with ServingClient(server, model, rest=rest, timeout=timeout) as client:
        outputs = client.classify_texts(
            texts, text_pairs=text_pairs, signature=signature or DEFAULT_SIGNATURE
        )
    return format_predictions_table(texts, outputs)
