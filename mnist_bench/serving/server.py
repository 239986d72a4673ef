"""Loading a model for serving, and running the app on uvicorn (in the foreground or a thread).

predictor, info = load_for_serving("results/model.keras")   # LiteRT when available
serve(create_app(predictor.predict_proba, model_info=info), host="127.0.0.1", port=8000)

with running_server(app) as url:        # a real server on 127.0.0.1, a free port
    ...                                 # stopped and joined on exit
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..export import file_sha256, load_predictor
from ..model_card import model_card

STARTUP_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 256
KEEP_ALIVE_S = 5


class _KerasPredictor:
    """A Keras model behind the `predict_proba` contract (`mnist_bench.predict`)."""

    runtime = "keras"

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, x: Any) -> Any:
        from ..evaluation import predict

        return predict(self.model, x)[1]


def _model_file(path: Path) -> Path:
    """The file holding the weights: a folder's model.keras / .h5, or the path itself."""
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        from ..models import H5_NAME, KERAS_NAME

        for name in (KERAS_NAME, H5_NAME):
            if (path / name).is_file():
                return path / name
    return path


def litert_available() -> bool:
    """Whether the ai-edge-litert runtime is installed."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def load_for_serving(path: str | Path, *, runtime: str = "auto") -> tuple[Any, dict[str, Any]]:
    """Load the model at `path` once, on the fastest runtime available.

    Parameters
    ----------
    path : path
        A ``.tflite`` file (served as is), a SavedModel folder, or a Keras model
        (``.keras``/``.h5`` or a folder holding one): converted at start-up to a float32
        LiteRT model in a temporary folder when ``ai-edge-litert`` is installed and
        `runtime` is ``"auto"``, else run by Keras.
    runtime : {"auto", "keras"}, default="auto"

    Returns
    -------
    predictor : object with ``predict_proba`` (float32 (N, 28, 28, 1) -> (N, 10))
    model_info : dict
        ``file``, ``sha256`` (of the file given), ``runtime``, and the model's card
        (`mnist_bench.model_card`: ``name``, ``recipe``, ``calibrated``, ``temperature``).
    """
    if runtime not in ("auto", "keras"):
        raise ValueError(f"runtime must be one of ['auto', 'keras'], got {runtime!r}")
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model file or folder")
    predictor = load_predictor(path)
    card = model_card(path, predictor)  # before a Keras model becomes a LiteRT one
    if not hasattr(predictor, "predict_proba"):  # a Keras model
        if runtime == "auto" and litert_available():
            from ..export import LiteRTPredictor, export_model

            with tempfile.TemporaryDirectory(prefix="mnist-bench-serve-") as tmp:
                tflite = export_model(predictor, "litert", Path(tmp) / "model.tflite")
                predictor = LiteRTPredictor(tflite)  # reads the file into memory
        else:
            predictor = _KerasPredictor(predictor)
    model_file = _model_file(path)
    info = {
        "file": model_file.name,
        "sha256": file_sha256(model_file),
        "runtime": predictor.runtime,
        **card,
    }
    return predictor, info


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _uvicorn_config(app: Any, host: str, port: int) -> Any:
    import uvicorn

    # No access log: one line per request costs more than the prediction itself. Past
    # MAX_CONNECTIONS open connections and requests, uvicorn answers 503 instead of queueing
    # without bound; idle keep-alive connections are closed after KEEP_ALIVE_S.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def serve(app: Any, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run `app` on uvicorn until interrupted (Ctrl-C)."""
    import uvicorn

    uvicorn.Server(_uvicorn_config(app, host, port)).run()


@contextmanager
def running_server(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` on uvicorn in a background thread; yield its base URL, e.g.
    ``http://127.0.0.1:PORT``; stop it and join the thread on exit.

    Raises ``RuntimeError`` if it has not started within `STARTUP_TIMEOUT_S`.
    """
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(_uvicorn_config(app, host, port))
    # uvicorn installs no signal handlers outside the main thread: Ctrl-C stays the caller's.
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {host}:{port} did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_S)


def _healthy(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def server_process(
    model: str | Path, *, host: str = "127.0.0.1", timeout_s: float = 180.0
) -> Iterator[str]:
    """Run ``mnist-bench serve MODEL`` in a child process on a free port of `host`; yield its
    URL once ``/healthz`` answers; terminate (then kill) it on exit.

    A separate process, so a load generator in this one does not share its interpreter lock.
    Raises ``RuntimeError`` with the child's output if it exits or is not up in `timeout_s`.
    """
    import subprocess
    import sys

    port = free_port(host)
    url = f"http://{host}:{port}"
    argv = [sys.executable, "-m", "mnist_bench.cli", "serve", str(model)]
    child = subprocess.Popen(
        [*argv, "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                output = child.communicate(timeout=10)[0]
                raise RuntimeError(f"`mnist-bench serve` did not come up on {url}:\n{output}")
            time.sleep(0.2)
        yield url
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
