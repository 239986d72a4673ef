"""Tests of the HTTP server (`mnist_bench.serving`): every status code in-process through
Starlette's TestClient, then a real uvicorn server on 127.0.0.1 under a bounded load test.

The app serves the published model exported to LiteRT float32 (the `litert_predictor`
session fixture). The full 2,000-request load test through `mnist-bench serve-load` (a child
server process) is in the slow tier.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from mnist_bench.cli import main
from mnist_bench.serving import MAX_BODY_BYTES, create_app, running_server
from mnist_bench.serving.app import STATIC_DIR
from mnist_bench.serving.load import json_bodies, load_test, malformed_requests

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_INFO = {"file": "model.tflite", "sha256": "0" * 64, "runtime": "litert"}


@pytest.fixture(scope="module")
def app(litert_predictor):
    return create_app(litert_predictor.predict_proba, model_info=MODEL_INFO)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _photo(digit: np.ndarray, fmt: str = "PNG") -> bytes:
    """A 'photo' of an MNIST digit: dark ink on white paper, 10x larger (280x280)."""
    big = 255 - np.kron(digit, np.ones((10, 10), np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(big).convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def _assert_ok(response, digit: int) -> dict:
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["digit"] == digit
    assert len(answer["probabilities"]) == 10
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-3)
    assert int(np.argmax(answer["probabilities"])) == digit
    image = np.array(answer["image"])
    assert image.shape == (28, 28) and image.min() >= 0 and image.max() <= 255
    assert answer["model"] == MODEL_INFO
    assert answer["latency_ms"] > 0
    return answer


# -- valid requests -----------------------------------------------------------------------


def test_json_digits_are_read_as_is(client, mnist):
    for i in range(20):
        image = mnist.x_test[i]
        answer = _assert_ok(
            client.post("/predict", json={"image": image.tolist()}), mnist.y_test[i]
        )
        assert answer["image"] == image.tolist()  # a 28x28 digit is taken as is
    bare = client.post("/predict", json=mnist.x_test[0].astype(float).tolist())
    _assert_ok(bare, mnist.y_test[0])


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("PNG", None)]
)
def test_photo_uploads_are_prepared_mnist_style(client, mnist, fmt, content_type):
    headers = {"content-type": content_type} if content_type else {}
    for i in (0, 1, 2):
        response = client.post("/predict", content=_photo(mnist.x_test[i], fmt), headers=headers)
        answer = _assert_ok(response, mnist.y_test[i])
        seen = np.array(answer["image"])  # prepared: light ink on black, centred
        assert seen[0].max() == 0 and seen[:, 0].max() == 0 and seen.max() >= 200


def test_multipart_upload(client, mnist):
    files = {"digit": ("digit.png", _photo(mnist.x_test[3]), "image/png")}
    _assert_ok(client.post("/predict", files=files), mnist.y_test[3])


def test_healthz_page_and_assets_are_local(client):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "model": MODEL_INFO}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="pad"', 'id="clear"', 'id="digit"', 'id="bars"', 'id="seen"'):
        assert element in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets), assets  # no CDN
    for asset in assets:
        assert client.get(asset).status_code == 200
    for path in STATIC_DIR.iterdir():  # nothing fetched from elsewhere at run time either
        assert not re.search(r"https?://", path.read_text()), path.name


# -- bad input: a JSON error, never a traceback, and the server keeps serving --------------


@pytest.mark.parametrize(
    "case", malformed_requests(), ids=[case[0] for case in malformed_requests()]
)
def test_malformed_requests_get_json_errors(client, mnist, case):
    name, method, path, body, content_type, expected = case
    response = client.request(method, path, content=body, headers={"content-type": content_type})
    assert response.status_code == expected, (name, response.text)
    error = response.json()
    assert error["status"] == expected and error["error"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    _assert_ok(client.post("/predict", json=mnist.x_test[0].tolist()), mnist.y_test[0])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"pixels": []}', 422, "expected {\"image\": 28x28 array}, got keys ['pixels']"),
        (b"[[1, 2], [3]]", 422, "28x28 array"),
        (json.dumps([[True] * 28] * 28).encode(), 422, "integer or float array"),
        (json.dumps([[-1] * 28] * 28).encode(), 422, "pixel values in [0, 255]"),
        (json.dumps([[7] * 28] * 28).encode(), 422, "no ink found"),
        (b"[[NaN]]", 400, "NaN is not a pixel value"),
        (b"\xff\xfe", 400, "not valid JSON"),
    ],
)
def test_bad_json_names_the_problem(client, body, status, message):
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_declared_oversize_body_is_refused_before_reading(client):
    # The Content-Length alone decides: 413 without the server waiting for the body.
    headers = {"content-type": "image/png", "content-length": str(MAX_BODY_BYTES + 1)}
    response = client.post("/predict", content=b"\0" * (MAX_BODY_BYTES + 1), headers=headers)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]


def test_streamed_oversize_body_is_refused(client):
    """No Content-Length (chunked transfer): the server counts while reading and stops."""

    def chunks():
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"\0" * 65536

    response = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413
    assert response.json()["error"] == f"body exceeds the {MAX_BODY_BYTES}-byte limit"


def test_predictor_is_safe_from_many_threads(litert_predictor, mnist):
    """The interpreter is not thread-safe; the predictor's lock makes concurrent calls give
    the same answers as sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    x = mnist.x_test[:64].reshape(64, 28, 28, 1).astype(np.float32) / 255
    expected = [litert_predictor.predict_proba(x[i : i + 1 + i % 5]) for i in range(48)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(
            pool.map(lambda i: litert_predictor.predict_proba(x[i : i + 1 + i % 5]), range(48))
        )
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


def test_multipart_without_a_file_is_400(client):
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nno file here\r\n--xyz--\r\n'
    )
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == 400 and "no file" in response.json()["error"]


def test_unknown_route_and_method_are_json(client):
    assert client.get("/nowhere").json()["status"] == 404
    assert client.put("/predict", content=b"").status_code == 405


def test_internal_error_is_500_without_traceback(litert_predictor, mnist):
    calls = []

    def flaky(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("secret internal detail /path/to/file.py")
        return litert_predictor.predict_proba(x)

    with TestClient(create_app(flaky, model_info=MODEL_INFO), raise_server_exceptions=False) as c:
        failed = c.post("/predict", json=mnist.x_test[0].tolist())
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal server error", "status": 500}
        _assert_ok(c.post("/predict", json=mnist.x_test[0].tolist()), mnist.y_test[0])


# -- a real server on 127.0.0.1 -----------------------------------------------------------


@pytest.mark.network
def test_real_server_under_bounded_load(app, litert_predictor, mnist):
    """240 requests from 16 concurrent clients, then every malformed request 3 times
    concurrently, then a valid one: no errors, every status as expected, and every served
    digit the one the model gives offline (concurrency mixes no answers up)."""
    n = 240
    with running_server(app) as url:
        assert url.startswith("http://127.0.0.1:")
        result = load_test(
            url,
            json_bodies(mnist.x_test[:n]),
            n_requests=n,
            concurrency=16,
            malformed_repeats=3,
            sequential_requests=20,
            timeout_s=60,
        )
    load = result["load"]
    assert load["n_errors"] == 0, load["errors"]
    assert load["n_ok"] == n
    assert load["digits"] == litert_predictor.predict(mnist.x_test[:n])[0].tolist()
    assert result["malformed"]["unexpected"] == []
    assert result["malformed"]["n_requests"] == 3 * len(malformed_requests())
    assert result["after"] == 200
    assert load["latency_ms"]["p50"] <= load["latency_ms"]["p99"]
    assert result["sequential"]["n_ok"] == 20 and result["sequential"]["concurrency"] == 1


@pytest.mark.network
def test_load_test_fails_loudly_without_a_server(mnist):
    from mnist_bench.serving.server import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(OSError):
        load_test(url, json_bodies(mnist.x_test[:2]), n_requests=4, concurrency=2, timeout_s=10)


def test_load_test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_requests and concurrency must be >= 1"):
        load_test("http://127.0.0.1:1", [b"{}"], n_requests=0)
    with pytest.raises(ValueError, match="bodies is empty"):
        load_test("http://127.0.0.1:1", [])


def test_recorded_load_test_and_its_table(tmp_path, capsys):
    """results/serve_load.json holds a passing 2,000-request run; the table regenerates."""
    content = json.loads((REPO_ROOT / "results" / "serve_load.json").read_text())
    load = content["load"]
    assert (load["n_requests"], load["concurrency"], load["n_errors"]) == (2000, 16, 0)
    assert content["malformed"]["unexpected"] == [] and content["after"] == 200
    assert load["served_accuracy"] >= 0.99
    readme = tmp_path / "README.md"
    readme.write_text("<!-- serve-load-table -->\n<!-- /serve-load-table -->\n")
    assert main(["serve-load", "--report", "--readme", str(readme)]) == 0
    assert f"| 2,000 | 16 | 0 | {load['requests_per_s']:,.0f} |" in readme.read_text()


# -- slow: the full load test through the command, a child server process ------------------


@pytest.mark.slow
@pytest.mark.network
def test_serve_load_command_full(tmp_path, mnist_dir, capsys, monkeypatch):
    """`mnist-bench serve-load results/model.keras`: 2,000 requests, 16 clients, 0 errors."""
    monkeypatch.setenv("MNIST_BENCH_DATA", str(mnist_dir))
    out = tmp_path / "serve_load.json"
    code = main(["serve-load", str(REPO_ROOT / "results" / "model.keras"), "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed
    content = json.loads(out.read_text())
    assert content["load"]["n_errors"] == 0 and content["model"]["runtime"] == "litert"


# -- `mnist-bench serve` and model loading ------------------------------------------------


@pytest.mark.network
def test_serve_command_serves_a_litert_file(litert_file, mnist):
    """`mnist-bench serve FILE.tflite` in a child process (LiteRT only: starts in seconds)."""
    from urllib.request import Request, urlopen

    from mnist_bench.export import file_sha256
    from mnist_bench.serving.server import server_process

    with server_process(litert_file, timeout_s=60) as url:
        with urlopen(f"{url}/healthz", timeout=5) as response:
            model = json.loads(response.read())["model"]
        body = json.dumps({"image": mnist.x_test[0].tolist()}).encode()
        request = Request(f"{url}/predict", body, {"Content-Type": "application/json"})
        with urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
    assert model == {
        "file": litert_file.name,
        "sha256": file_sha256(litert_file),
        "runtime": "litert",
        # an exported file computes what it was exported with, but cannot say it
        **{"name": litert_file.stem, "recipe": None, "calibrated": None, "temperature": None},
    }
    assert answer["digit"] == mnist.y_test[0] and answer["model"] == model


def test_load_for_serving_runtimes_and_bad_paths(litert_file, tmp_path):
    from mnist_bench.serving import load_for_serving

    predictor, info = load_for_serving(REPO_ROOT / "results", runtime="keras")  # a folder
    assert info["runtime"] == predictor.runtime == "keras"
    assert info["file"] == "model.keras"
    x = np.zeros((2, 28, 28, 1), np.float32)
    assert predictor.predict_proba(x).shape == (2, 10)
    with pytest.raises(ValueError, match=r"runtime must be one of \['auto', 'keras'\]"):
        load_for_serving(litert_file, runtime="onnx")
    with pytest.raises(ValueError, match=r"missing\.tflite: no such model file or folder"):
        load_for_serving(tmp_path / "missing.tflite")


def test_serve_command_bad_model_is_exit_2(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.tflite")]) == 2
    err = capsys.readouterr().err
    assert "missing.tflite: no such model file or folder" in err and "Traceback" not in err
