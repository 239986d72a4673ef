"""The ASGI app: the draw-a-digit page, ``POST /predict`` and ``GET /healthz``.

    app = create_app(predictor, model_info={"sha256": ..., "runtime": "litert"})
    uvicorn.run(app, host="127.0.0.1", port=8000)   # or: mnist-bench serve MODEL

``POST /predict`` takes one digit as

- an image: a PNG or JPEG body (any ``Content-Type`` but JSON and multipart), or a
  ``multipart/form-data`` upload whose first file is the image;
- JSON: a 28x28 array of pixel values 0..255, bare or as ``{"image": [[...], ...]}``.

Every digit goes through `preprocess.prepare_digit`: an image of any other size than 28x28
(the page's canvas) is prepared MNIST-style (bounding box, 20x20, centre of mass in 28x28),
a 28x28 one is taken as is. The answer is JSON: ``digit``, ``probabilities`` (10 floats),
``image`` (the 28x28 uint8 digit the model saw), ``model`` (its SHA-256 and runtime) and
``latency_ms`` (preparation and inference in the server). Errors are JSON ``{"error": ...}``:
413 for a body over `MAX_BODY_BYTES` or an image declaring over `MAX_PIXELS` (checked before
decoding, `mnist_bench.images`), 400 for a body that is not an image (or a truncated one) or
not JSON, 422 for a wrong shape or values (or no ink) and for an image we do not read
(animated, float pixels), never a traceback.

Inference runs on the event loop, one request at a time (a LiteRT interpreter is not
thread-safe, and one inference takes well under a millisecond), so concurrent clients are
safe; an uploaded photo is decoded and prepared in a worker thread first, so a large one does
not stall the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..images import ImageError, ImageTooLarge, UnsupportedImage, read_image_bytes
from ..preprocess import IMAGE_SIZE, prepare_digit

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 1 << 20  # 1 MiB: a 280x280 canvas PNG is ~10 kB, a phone JPEG of a digit ~0.5 MB
MAX_PIXELS = 2048 * 2048  # decoded size cap: a small PNG can decode to gigabytes, and the
# photo preparation holds a few float64 copies (~150 MB at this size, one request at a time)
JSON_TYPES = ("application/json",)


class RequestError(Exception):
    """A client error: HTTP `status` with a one-line `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# -- request parsing ----------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds `limit` bytes (before reading it all
    when Content-Length says so)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"body of {int(declared)} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_image(data: bytes) -> np.ndarray:
    """Pixels of an encoded image (H, W[, C]), through the decoding guard
    (`mnist_bench.images`): 413 if it declares over `MAX_PIXELS`, 422 if it is an image we do
    not read (animated, float pixels), 400 if it is none."""
    if not data:
        raise RequestError(400, "empty body: expected a PNG/JPEG image or a JSON 28x28 array")
    try:
        return read_image_bytes(data, name="upload", max_pixels=MAX_PIXELS)
    except ImageTooLarge as exc:
        raise RequestError(413, str(exc)) from exc
    except UnsupportedImage as exc:
        raise RequestError(422, str(exc)) from exc
    except ImageError as exc:
        raise RequestError(400, str(exc)) from exc


def _json_pixels(data: bytes) -> np.ndarray:
    """The 28x28 array of a JSON body; 400 for invalid JSON, 422 for a wrong layout."""

    def reject_constant(name: str) -> None:
        raise ValueError(f"{name} is not a pixel value")

    try:
        value = json.loads(data, parse_constant=reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"not valid JSON: {exc}") from exc
    except RecursionError as exc:  # "[[[[..." nested deeper than Python's stack
        raise RequestError(400, "not valid JSON for an image: nested too deeply") from exc
    if isinstance(value, dict):
        if set(value) != {"image"}:
            raise RequestError(422, f'expected {{"image": 28x28 array}}, got keys {sorted(value)}')
        value = value["image"]
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nesting
        raise RequestError(422, f"image must be a 28x28 array of numbers: {exc}") from exc
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise RequestError(422, f"image must be a 28x28 array, got shape {array.shape}")
    return array


async def _form_file(request: Request, body: bytes) -> bytes:
    """The first uploaded file of a multipart form (the body is already read and checked)."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form()
    except Exception as exc:  # python-multipart raises its own error types
        raise RequestError(400, f"not a valid multipart form: {exc}") from exc
    files = [v for v in form.values() if hasattr(v, "read")]
    if not files:
        raise RequestError(400, "multipart form holds no file: upload the image as a file field")
    return await files[0].read()


def _prepare(pixels: np.ndarray) -> np.ndarray:
    """`prepare_digit`, its ValueError (wrong values, no ink) a 422."""
    try:
        return prepare_digit(pixels)  # (28, 28) uint8
    except ValueError as exc:
        raise RequestError(422, str(exc)) from exc


def _prepare_image(data: bytes) -> np.ndarray:
    return _prepare(_decode_image(data))


# -- handlers -----------------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _predict_handler(
    predict_proba: Callable[[np.ndarray], np.ndarray], model_info: dict[str, Any], limit: int
) -> Callable[[Request], Any]:
    async def predict(request: Request) -> Response:
        try:
            body = await _read_body(request, limit)
            start = time.perf_counter()
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type in JSON_TYPES:  # 28x28: microseconds, on the event loop
                digit_image = _prepare(_json_pixels(body))
            else:  # decoding and preparing a photo can take ~0.5 s: not on the event loop
                if content_type == "multipart/form-data":
                    body = await _form_file(request, body)
                digit_image = await run_in_threadpool(_prepare_image, body)
            x = digit_image.reshape(1, IMAGE_SIZE, IMAGE_SIZE, 1).astype(np.float32) / 255.0
            probabilities = predict_proba(x)[0]
            latency_ms = (time.perf_counter() - start) * 1e3
        except RequestError as exc:
            return _error(exc.status, exc.message)
        return JSONResponse(
            {
                "digit": int(probabilities.argmax()),
                "probabilities": [round(float(p), 6) for p in probabilities],
                "image": digit_image.tolist(),
                "model": model_info,
                "latency_ms": round(latency_ms, 4),
            }
        )

    return predict


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    return _error(status, str(getattr(exc, "detail", "")) or "error")


async def _server_error(request: Request, exc: Exception) -> Response:
    # No traceback or exception text leaves the server: it may hold paths or internals.
    return _error(500, "internal server error")


# -- app ----------------------------------------------------------------------------------


def create_app(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    *,
    model_info: dict[str, Any],
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI app serving one loaded model.

    Parameters
    ----------
    predict_proba : callable
        float32 (N, 28, 28, 1) in [0, 1] -> float32 (N, 10) probabilities, e.g. a
        `mnist_bench.export.LiteRTPredictor`'s ``predict_proba``. Called once per request.
    model_info : dict
        JSON-serialisable description returned with every prediction and by ``/healthz``,
        e.g. ``{"sha256": "...", "runtime": "litert", "file": "model.keras"}``.
    max_body_bytes : int, default=1 MiB
        Larger request bodies are refused with 413.

    Returns
    -------
    starlette.applications.Starlette
    """

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": model_info})

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route(
            "/predict",
            _predict_handler(predict_proba, model_info, max_body_bytes),
            methods=["POST"],
        ),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    handlers = {HTTPException: _http_error, Exception: _server_error}
    return Starlette(routes=routes, exception_handlers=handlers)
