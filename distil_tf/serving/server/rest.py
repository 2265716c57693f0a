"""TF Serving's REST API (g3doc/api_rest.md) on the standard library's server.

`http.server.ThreadingHTTPServer` keeps the stand-in free of new
dependencies; one thread per connection is plenty for tests and demos, and
the model call dominates the cost anyway.
"""

import concurrent.futures
import dataclasses
import http.server
import json
import logging
import re
import time
import urllib.parse

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2

from distil_tf.serving.server import json_tensor
from distil_tf.serving.server.json_document import debug_string
from distil_tf.serving.server.json_document import parse_json
from distil_tf.serving.server.status import ServingError

logger = logging.getLogger(__name__)

# http_rest_api_util.cc's two regexes (case-insensitive, matched against the
# raw path; names and labels are percent-decoded afterwards, so a model name
# may contain "/" or ":" written as %2F or %3A). Versions are ASCII digits.
_POST_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/([0-9]+)|/labels/([^/:]+))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_GET_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/([0-9]+)|/labels/([^/:]+))?(?:/(metadata))?",
    re.IGNORECASE,
)
# http_rest_api_handler.h kPathRegex: only these paths reach the API handler;
# anything else is an unknown resource (404), as in TF Serving's HTTP server.
_API_PATH = re.compile(r"/v1/", re.IGNORECASE)
_INT64_MAX = 2**63 - 1


@dataclasses.dataclass
class _Route:
    """A parsed API path (http_rest_api_util.cc ParseModelInfo)."""

    method: str
    model_name: str
    version: int = None
    label: str = None
    verb: str = ""  # classify / regress / predict (POST)
    metadata: bool = False  # GET .../metadata

    @property
    def api(self):
        if self.method == "POST":
            return self.verb
        return "get_model_metadata" if self.metadata else "get_model_status"

    def model_spec(self):
        spec = model_pb2.ModelSpec(name=self.model_name)
        if self.version is not None:
            spec.version.value = self.version
        elif self.label is not None:
            spec.version_label = self.label
        return spec


def parse_route(method, path):
    """(method, path) -> `_Route`, or ServingError with TF Serving's message."""
    pattern = {"POST": _POST_PATH, "GET": _GET_PATH}.get(method)
    match = pattern.fullmatch(path) if pattern else None
    if not match:
        raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
    name, version_text, label = match.group(1), match.group(2), match.group(3)
    route = _Route(method=method, model_name=urllib.parse.unquote(name or ""))
    if version_text is not None:
        version = int(version_text)
        if version > _INT64_MAX:  # absl::SimpleAtoi into an int64 fails.
            raise ServingError(
                "INVALID_ARGUMENT", f"Failed to convert version: {version_text} to numeric."
            )
        route.version = version
    if label is not None:
        route.label = urllib.parse.unquote(label)
    if method == "POST":
        route.verb = match.group(4).lower()
    else:
        route.metadata = match.group(4) is not None
    if not route.model_name:  # Only GET /v1/models[/metadata] gets here.
        raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
    return route


def _proto_json(message):
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


class RestApi:
    """Turns (method, path, body) into (HTTP status, JSON text, API name).

    Args:
        core: `InferenceCore`.
        metrics: `ServerMetrics` or None.
        prometheus_path: str or None. Where metrics are served.
        timeout_seconds: float. `--rest_api_timeout_in_ms` / 1000.
        max_request_bytes: int. Largest body accepted.
    """

    def __init__(self, core, metrics, prometheus_path, timeout_seconds, max_request_bytes):
        self.core = core
        self.metrics = metrics
        self.prometheus_path = prometheus_path
        self.timeout_seconds = timeout_seconds
        self.max_request_bytes = max_request_bytes
        # Requests run here so a slow model call answers 504 at the deadline
        # instead of holding the client; the call itself cannot be interrupted.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="rest-worker"
        )

    def close(self):
        self._executor.shutdown(wait=False, cancel_futures=True)

    def handle(self, method, path, body):
        """Returns (status, content_type, text)."""
        path = path.split("?", 1)[0]
        if self.prometheus_path and method == "GET" and path == self.prometheus_path:
            return 200, "text/plain; version=0.0.4", self.metrics.render()
        started = time.monotonic()
        api, model_name, version = "rest", "", ""
        try:
            if not _API_PATH.match(path):
                raise ServingError("NOT_FOUND", f"Not found: {method} {path}")
            route = parse_route(method, path)
            api, model_name = route.api, route.model_name
            future = self._executor.submit(self._dispatch, route, body)
            try:
                version, text = future.result(timeout=self.timeout_seconds)
            except concurrent.futures.TimeoutError:
                raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None
            status_name = "OK"
            return 200, "application/json", text
        except ServingError as error:
            status_name = error.code_name
            return error.http_status, "application/json", json.dumps({"error": error.message})
        except Exception as error:  # A bug must not take the server down.
            logger.exception("REST request failed")
            status_name = "INTERNAL"
            message = f"{type(error).__name__}: {error}"
            return 500, "application/json", json.dumps({"error": message})
        finally:
            if self.metrics is not None and api != "rest":
                self.metrics.observe_request(
                    model_name, version, api, "REST", status_name, time.monotonic() - started
                )

    def _dispatch(self, route, body):
        spec = route.model_spec()
        if route.method == "GET":
            if route.metadata:
                return self._metadata(spec)
            request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
            return "", json.dumps(_proto_json(self.core.get_model_status(request)))
        # json_tensor.cc ParseJson + FillSignature, shared by every POST.
        document = parse_json(body)
        if not isinstance(document, dict):
            raise ServingError(
                "INVALID_ARGUMENT", f"JSON Value: {debug_string(document)} Is not object"
            )
        signature_name = document.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"JSON Value: {debug_string(document)} not formatted correctly. "
                "'signature_name' key must be a string value.",
            )
        spec.signature_name = signature_name
        if route.verb == "predict":
            return self._predict(spec, document)
        return self._classify_or_regress(spec, document, route.verb)

    def _metadata(self, spec):
        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec)
        request.metadata_field.append("signature_def")
        response = self.core.get_model_metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        model_spec = _proto_json(response.model_spec)
        model_spec["version"] = str(response.model_spec.version.value)
        document = {
            "model_spec": model_spec,
            "metadata": {"signature_def": _proto_json(signature_map)},
        }
        return str(response.model_spec.version.value), json.dumps(document)

    def _predict(self, spec, document):
        servable = self.core.manager.get_servable(spec)
        name = spec.signature_name or "serving_default"
        if name not in servable.signatures:
            raise ServingError(
                "INVALID_ARGUMENT", f'Serving signature name: "{name}" not found in signature def'
            )
        signature = servable.signatures[name]
        if not signature.input_names:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Failed to get input map for signature: {spec.signature_name or 'DEFAULT'}",
            )
        has_instances, has_inputs = "instances" in document, "inputs" in document
        if has_instances and has_inputs:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"JSON Value: {debug_string(document)} Not formatted correctly expecting "
                "only one of 'inputs' or 'instances' keys to exist ",
            )
        if has_instances:
            inputs = json_tensor.instances_to_arrays(document, signature)
        elif has_inputs:
            inputs = json_tensor.inputs_to_arrays(document["inputs"], signature)
        else:
            raise ServingError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
        servable, signature, outputs = self.core.predict_arrays(
            spec, inputs, timeout=self.timeout_seconds, servable=servable, signature=signature
        )
        text = json_tensor.predictions_json(outputs, has_instances, signature.output_dtypes)
        return str(servable.version), text

    def _classify_or_regress(self, spec, document, verb):
        # The whole request is read before the model is looked up, as in
        # FillClassificationRequestFromJson + Classify.
        input_proto = json_tensor.examples_to_input(document)
        servable = self.core.manager.get_servable(spec)
        signature = servable.inference_signature(spec.signature_name)
        if verb == "classify":
            result = self.core.classify_result(signature, input_proto, self.timeout_seconds)
            return str(servable.version), json_tensor.classification_results_json(result)
        result = self.core.regress_result(signature, input_proto, self.timeout_seconds)
        return str(servable.version), json_tensor.regression_results_json(result)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "distil-tf-model-server"
    api = None  # Set on a subclass per server.

    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        logger.debug("%s - %s", self.address_string(), format % args)

    def _respond(self, status, content_type, text, close=False):
        payload = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self):
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None else 0
        except ValueError:
            length = -1
        if length < 0:
            raise ServingError("INVALID_ARGUMENT", "Invalid Content-Length header")
        if length > self.api.max_request_bytes:
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"Request body of {length} bytes exceeds the limit of "
                f"{self.api.max_request_bytes} bytes (--max_request_bytes)",
            )
        return self.rfile.read(length)

    def _serve(self, method):
        try:
            body = self._read_body() if method == "POST" else b""
        except ServingError as error:
            # The unread body would be parsed as the next request: close.
            self._respond(error.http_status, "application/json",
                          json.dumps({"error": error.message}), close=True)
            return
        status, content_type, text = self.api.handle(method, self.path, body)
        self._respond(status, content_type, text)

    def do_GET(self):  # noqa: N802 (stdlib naming)
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def do_PUT(self):  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self):  # noqa: N802
        self._serve("DELETE")


class RestServer:
    """Runs `RestApi` on a ThreadingHTTPServer in a background thread."""

    def __init__(self, api, host, port):
        handler = type("BoundHandler", (_Handler,), {"api": api})
        self.api = api
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = None

    def start(self):
        import threading

        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name="rest-server", daemon=True,
        )
        self._thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.api.close()
