"""TF Serving's REST API: URLs, JSON typing, responses, errors, metrics."""

import base64
import http.client
import json
import urllib.error
import urllib.request

import pytest


def call(server, path, body=None, method=None, raw=None):
    """(HTTP status, parsed JSON or text, content type) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        server.rest_url + path, data=data,
        method=method or ("GET" if data is None else "POST"),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text, ctype = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        status, text, ctype = error.code, error.read(), error.headers["Content-Type"]
    if ctype.startswith("application/json"):
        return status, json.loads(text), ctype
    return status, text.decode(), ctype


def error_of(server, path, body=None, **kwargs):
    status, document, ctype = call(server, path, body, **kwargs)
    assert ctype == "application/json"
    assert set(document) == {"error"}, document
    return status, document["error"]


# --- Predict ----------------------------------------------------------------------


def test_predict_row_format_single_input(shared_server):
    status, document, _ = call(shared_server, "/v1/models/toy/versions/1:predict",
                               {"instances": ["ab", "abcd"]})
    assert status == 200
    predictions = document["predictions"]
    assert len(predictions) == 2
    assert predictions[0]["logits"] == [-2.0, 2.0]
    assert predictions[1]["labels"] == "positive"
    assert predictions[1]["label_ids"] == 1


def test_predict_columnar_format(shared_server):
    status, document, _ = call(shared_server, "/v1/models/toy/labels/stable:predict",
                               {"inputs": {"text": ["ab", "abcd"]}})
    assert status == 200
    assert document["outputs"]["logits"] == [[-2.0, 2.0], [-4.0, 4.0]]
    assert document["outputs"]["labels"] == ["positive", "positive"]


def test_predict_b64_strings_and_named_rows(shared_server):
    encoded = base64.b64encode(b"\xff\xfeab").decode()
    status, document, _ = call(
        shared_server, "/v1/models/pair/versions/1:predict",
        {"instances": [{"text": {"b64": encoded}, "text_pair": "c"}]},
    )
    assert status == 200
    assert document["predictions"][0]["logits"] == [-5.0, 5.0]


def test_predict_single_output_drops_the_name(shared_server):
    status, document, _ = call(
        shared_server, "/v1/models/toy/versions/1:predict",
        {"signature_name": "predict_ids",
         "inputs": {"token_ids": [[1, 2]], "padding_mask": [[1, 1]]}},
    )
    assert status == 200
    assert document == {"outputs": [[-3.0, 3.0]]}
    status, document, _ = call(
        shared_server, "/v1/models/toy/versions/1:predict",
        {"signature_name": "predict_ids",
         "instances": [{"token_ids": [1, 2], "padding_mask": [1, 0]}]},
    )
    assert document == {"predictions": [[-1.0, 1.0]]}


def test_predict_float_formatting(shared_server):
    status, document, _ = call(shared_server, "/v1/models/toy/versions/1:predict",
                               {"instances": ["a"]})
    probabilities = document["predictions"][0]["probabilities"]
    # float32 shortest round-trip, not the float64 expansion.
    assert str(probabilities[1]) == "0.880797"


def test_classify_and_regress_results(shared_server):
    status, document, _ = call(
        shared_server, "/v1/models/toy/versions/1:classify",
        {"signature_name": "classify", "examples": [{"text": "ab"}, {"text": ["abcdef"]}]},
    )
    assert status == 200
    assert [label for label, _ in document["results"][0]] == ["negative", "positive"]
    assert document["results"][1][1][1] > 0.99
    status, document, _ = call(
        shared_server, "/v1/models/toy/versions/1:regress",
        {"signature_name": "regress", "context": {"text": "abc"}, "examples": [{}, {"text": "a"}]},
    )
    assert status == 200
    assert document == {"results": [3.0, 1.0]}


def test_status_json(shared_server):
    status, document, ctype = call(shared_server, "/v1/models/toy/versions/1")
    assert (status, ctype) == (200, "application/json")
    assert document == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    status, document, _ = call(shared_server, "/v1/models/toy")
    assert [s["version"] for s in document["model_version_status"]] == ["2", "1"]


def test_metadata_json(shared_server):
    status, document, _ = call(shared_server, "/v1/models/toy/labels/stable/metadata")
    assert status == 200
    assert document["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    signature = document["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["text"]["dtype"] == "DT_STRING"
    assert signature["method_name"] == "tensorflow/serving/predict"


def test_urls_are_case_insensitive(shared_server):
    status, _, _ = call(shared_server, "/V1/MODELS/toy/VERSIONS/1:PREDICT", {"instances": ["a"]})
    assert status == 200


def test_prometheus_metrics(shared_server):
    call(shared_server, "/v1/models/toy:predict", {"instances": ["a"]})
    status, text, ctype = call(shared_server, "/monitoring/prometheus/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="toy",model_version="2",API="predict",entrypoint="REST",status="OK"}' in text
    assert ":tensorflow:serving:request_latency_bucket{" in text


# --- Errors (status-code table, REST column) ------------------------------------------


@pytest.mark.parametrize(
    "path, body, http_status, message",
    [
        ("/v1/models/nope:predict", {"instances": ["a"]}, 404,
         "Servable not found for request: Latest(nope)"),
        ("/v1/models/toy/versions/7:predict", {"instances": ["a"]}, 404,
         "Servable not found for request: Specific(toy, 7)"),
        ("/v1/models/toy/labels/gold:predict", {"instances": ["a"]}, 400,
         "Unrecognized servable version label: gold"),
        ("/v1/models/toy:predict", {"signature_name": "X", "instances": ["a"]}, 400,
         'Serving signature name: "X" not found in signature def'),
        ("/v1/models/toy:classify", {"signature_name": "X", "examples": [{}]}, 400,
         "No signature was found with the name: X"),
        ("/v1/models/toy:predict", {"signature_name": 3, "instances": ["a"]}, 400,
         "'signature_name' key must be a string value."),
        ("/v1/models/toy:predict", {"instances": ["a"], "inputs": ["a"]}, 400,
         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
        ("/v1/models/toy:predict", {"signature_name": "serving_default"}, 400,
         "Missing 'inputs' or 'instances' key"),
        ("/v1/models/toy:predict", {"instances": []}, 400, "No values in 'instances' array"),
        ("/v1/models/pair:predict", {"inputs": {"text": ["a"]}}, 400,
         "Missing named input: text_pair in 'inputs' object."),
        ("/v1/models/toy:predict",
         {"signature_name": "predict_ids", "instances": [{"token_ids": [1.0], "padding_mask": [1]}]},
         400, "JSON Value: 1.0 Type: Number is not of expected type: int32"),
        ("/v1/models/toy:predict", {"instances": [5]}, 400,
         "JSON Value: 5 Type: Number is not of expected type: string"),
        ("/v1/models/toy:predict", {"instances": [{"b64": "!!"}]}, 400,
         "Error: INVALID_ARGUMENT: Unable to base64 decode"),
        ("/v1/models/toy:classify", {"signature_name": "classify", "examples": []}, 400,
         "'examples' value is an empty array"),
        ("/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("/v1/models/toy/versions/9", None, 404, "Could not find version 9 of model toy"),
    ],
)
def test_error_rows(shared_server, path, body, http_status, message):
    # TF Serving frames many messages ("JSON Value: <body> ...", "Failed to
    # process element: 0 ... Error: ..."); its own tests assert substrings.
    status, error = error_of(shared_server, path, body)
    assert status == http_status
    assert message in error


def test_named_rows_must_match_signature_keys(shared_server):
    status, error = error_of(shared_server, "/v1/models/pair:predict",
                             {"instances": [{"text": "a"}]})
    assert status == 400
    assert error.endswith("keys must be equal to: text,text_pair")


def test_bad_b64_object(shared_server):
    status, error = error_of(shared_server, "/v1/models/toy:predict",
                             {"inputs": {"text": [{"b64": "YQ==", "x": 1}]}})
    assert status == 400
    assert error.endswith("not formatted correctly for base64 data")


def test_malformed_urls_and_json(shared_server):
    status, error = error_of(shared_server, "/v1/models/toy:explain", {"instances": ["a"]})
    assert (status, error) == (400, "Malformed request: POST /v1/models/toy:explain")
    status, error = error_of(shared_server, "/v1/models/toy:predict", raw=b"{not json")
    assert status == 400 and error.startswith("JSON Parse error")
    status, error = error_of(shared_server, "/v1/models/toy:predict", raw=b"\xff\xfe\xfa")
    assert status == 400
    status, error = error_of(shared_server, "/v1/models/toy:predict", raw=b"[1, 2]")
    assert status == 400


def test_oversized_body_is_refused_and_server_lives(shared_server):
    big = json.dumps({"instances": ["x" * (2 * 1024 * 1024)]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", shared_server.rest_port, timeout=10)
    try:
        connection.request("POST", "/v1/models/toy:predict", body=big)
        response = connection.getresponse()
        assert response.status == 429
        assert "exceeds the limit" in json.loads(response.read())["error"]
    except (BrokenPipeError, ConnectionResetError):
        pass  # The server may close before the whole body is sent.
    finally:
        connection.close()
    status, _, _ = call(shared_server, "/v1/models/toy:predict", {"instances": ["still up"]})
    assert status == 200
