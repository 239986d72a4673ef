"""Load test of a running server: N requests from C concurrent keep-alive clients, then a burst
of malformed requests, then one valid request that must still succeed.

    record = load_test("http://127.0.0.1:8000", bodies, n_requests=2000, concurrency=16)

The clients are plain asyncio HTTP/1.1 connections (one per client, kept alive), not an HTTP
library: a library's per-request cost in Python would be measured instead of the server's.
Latency is per request, from the first byte sent to the last byte of the answer read.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from ..export_bench import cpu_text
from .app import MAX_BODY_BYTES, MAX_PIXELS

REQUEST_TIMEOUT_S = 10.0  # one request; the whole test is bounded by `timeout_s`


# -- a minimal HTTP/1.1 client ------------------------------------------------------------


def _request_bytes(host: str, method: str, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one response with a Content-Length (as uvicorn sends)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


async def _one_shot(url: str, method: str, path: str, body: bytes, content_type: str) -> int:
    """Status of one request on a fresh connection (the server may close it after an error)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(_request_bytes(parts.netloc, method, path, body, content_type))
        await writer.drain()
        status, _ = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
        return status
    finally:
        writer.close()


async def _client(
    url: str,
    requests: list[bytes],
    next_index: list[int],
    latencies: np.ndarray,
    answers: list[Any],
    errors: list[str],
) -> None:
    """One keep-alive connection sending requests until the shared index runs out."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while next_index[0] < len(requests):
            i = next_index[0]
            next_index[0] += 1
            start = time.perf_counter()
            try:
                writer.write(requests[i])
                await writer.drain()
                status, body = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                return  # this connection is broken; the others carry on
            latencies[i] = time.perf_counter() - start
            if status != 200:
                errors.append(f"request {i}: HTTP {status}: {body[:200]!r}")
            else:
                answers[i] = json.loads(body)
    finally:
        writer.close()


# -- malformed requests -------------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def malformed_requests() -> list[tuple[str, str, str, bytes, str, int]]:
    """(name, method, path, body, content type, expected status) of each kind of bad input."""
    side = int(MAX_PIXELS**0.5) + 1  # a tiny PNG that decodes to more than MAX_PIXELS
    huge = _png(np.zeros((side, side), np.uint8))
    valid_png = _png(np.full((280, 280), 255, np.uint8))
    json_type = "application/json"
    return [
        ("body over the limit", "POST", "/predict", b"\0" * (MAX_BODY_BYTES + 1), "image/png", 413),
        ("image over the pixel limit", "POST", "/predict", huge, "image/png", 413),
        ("not an image", "POST", "/predict", b"this is not an image", "image/png", 400),
        ("truncated PNG", "POST", "/predict", valid_png[: len(valid_png) // 2], "image/png", 400),
        ("empty body", "POST", "/predict", b"", "image/png", 400),
        ("invalid JSON", "POST", "/predict", b'{"image": [[1, 2', json_type, 400),
        ("JSON nested too deeply", "POST", "/predict", b"[" * 100_000, json_type, 400),
        ("JSON of wrong shape", "POST", "/predict", b"[[0, 1], [2, 3]]", json_type, 422),
        ("JSON pixel out of range", "POST", "/predict", _json_image(300), json_type, 422),
        ("JSON strings", "POST", "/predict", _json_image('"a"'), json_type, 422),
        ("blank image", "POST", "/predict", valid_png, "image/png", 422),
        ("wrong method", "GET", "/predict", b"", "text/plain", 405),
    ]


def _json_image(value: Any) -> bytes:
    row = "[" + ", ".join([str(value)] * 28) + "]"
    return ("[" + ", ".join([row] * 28) + "]").encode()


# -- the load test ------------------------------------------------------------------------


async def _load(
    url: str, bodies: Sequence[bytes], n_requests: int, concurrency: int
) -> dict[str, Any]:
    host = urlsplit(url).netloc
    requests = [
        _request_bytes(host, "POST", "/predict", bodies[i % len(bodies)], "application/json")
        for i in range(n_requests)
    ]
    latencies = np.full(n_requests, np.nan)
    answers: list[Any] = [None] * n_requests
    errors: list[str] = []
    next_index = [0]
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _client(url, requests, next_index, latencies, answers, errors)
            for _ in range(concurrency)
        )
    )
    wall = time.perf_counter() - start
    done = latencies[np.isfinite(latencies)] * 1e3
    server = np.array([a["latency_ms"] for a in answers if a is not None])
    return {
        "n_requests": n_requests,
        "concurrency": concurrency,
        "n_ok": len(server),
        "n_errors": n_requests - len(server),
        "errors": errors[:20],
        "wall_s": wall,
        "requests_per_s": len(server) / wall,
        "latency_ms": _percentiles(done),
        "server_latency_ms": _percentiles(server),
        "digits": [None if a is None else a["digit"] for a in answers],
    }


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if len(values) == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(values.max())}


async def _malformed_burst(url: str, repeats: int) -> dict[str, Any]:
    """Every malformed request `repeats` times, concurrently; statuses against the expected."""
    cases = malformed_requests() * repeats
    statuses = await asyncio.gather(
        *(_one_shot(url, method, path, body, ctype) for _, method, path, body, ctype, _ in cases),
        return_exceptions=True,
    )
    wrong = [
        f"{name}: expected {expected}, got {status!r}"
        for (name, *_, expected), status in zip(cases, statuses, strict=True)
        if status != expected
    ]
    return {"n_requests": len(cases), "n_kinds": len(cases) // repeats, "unexpected": wrong}


def load_test(
    url: str,
    bodies: Sequence[bytes],
    *,
    n_requests: int = 2000,
    concurrency: int = 16,
    malformed_repeats: int = 5,
    sequential_requests: int = 200,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Load-test the server at `url`, then check it survives malformed input.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8000``.
    bodies : sequence of bytes
        JSON bodies for ``POST /predict``, sent round-robin (request i sends ``bodies[i % n]``).
    n_requests, concurrency : int, default 2000 and 16
        Requests in all, and concurrent keep-alive clients sharing them.
    malformed_repeats : int, default=5
        Each kind of `malformed_requests` is sent this many times, all concurrently.
    sequential_requests : int, default=200
        Afterwards, this many requests from one client: the latency without queueing behind
        other clients (under the load, a request waits for the ones ahead of it).
    timeout_s : float, default=120
        Bound on the whole test; ``TimeoutError`` past it.

    Returns
    -------
    dict
        ``load``: counts, errors (the first 20), wall time, requests/s, client latency and
        server-reported latency percentiles (ms), each request's predicted digit;
        ``malformed``: count and the unexpected statuses (empty when all were as expected);
        ``after``: the status of a valid request sent after the burst; ``sequential``: as
        ``load``, for the one-client run (None when `sequential_requests` is 0).
    """
    if n_requests < 1 or concurrency < 1:
        raise ValueError(
            f"n_requests and concurrency must be >= 1, got {n_requests} and {concurrency}"
        )
    if not bodies:
        raise ValueError("bodies is empty: give at least one JSON request body")

    async def run() -> dict[str, Any]:
        load = await _load(url, bodies, n_requests, concurrency)
        malformed = await _malformed_burst(url, malformed_repeats)
        after = await _one_shot(url, "POST", "/predict", bodies[0], "application/json")
        sequential = None
        if sequential_requests > 0:
            sequential = await _load(url, bodies, sequential_requests, 1)
            del sequential["digits"]
        return {"load": load, "malformed": malformed, "after": after, "sequential": sequential}

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(run(), timeout_s)

    return asyncio.run(bounded())


def json_bodies(images: np.ndarray) -> list[bytes]:
    """``POST /predict`` JSON bodies of 28x28 uint8 images (n, 28, 28)."""
    return [json.dumps({"image": image.tolist()}).encode() for image in np.asarray(images)]


# -- the recorded result ------------------------------------------------------------------

SERVE_LOAD_TABLE_MARKERS = ("<!-- serve-load-table -->", "<!-- /serve-load-table -->")


def load_record(result: dict[str, Any], labels: Sequence[int]) -> dict[str, Any]:
    """`load_test`'s result for results/serve_load.json: per-request digits replaced by the
    served accuracy against `labels` (request i sent image ``i % len(labels)``)."""
    load = dict(result["load"])
    digits = load.pop("digits")
    labels = np.asarray(labels)
    correct = [d == labels[i % len(labels)] for i, d in enumerate(digits) if d is not None]
    load["served_accuracy"] = float(np.mean(correct)) if correct else None
    return {**result, "load": load}


def measure_serving(
    model: str | os.PathLike[str],
    images: np.ndarray,
    labels: Sequence[int],
    *,
    n_requests: int = 2000,
    concurrency: int = 16,
) -> dict[str, Any]:
    """`load_test` of ``mnist-bench serve MODEL`` run in a child process on 127.0.0.1.

    Parameters
    ----------
    model : path
        What ``mnist-bench serve`` takes (a Keras model is converted to LiteRT at start-up).
    images : ndarray of shape (n, 28, 28), uint8
        Request i sends image ``i % n`` as JSON.
    labels : array-like of shape (n,)
        Their digits, for the served accuracy.
    n_requests, concurrency : int, default 2000 and 16

    Returns
    -------
    dict
        `load_record`'s content plus ``model`` (as ``/healthz`` reports it),
        ``load_average_1min`` (before and after) and ``provenance``: results/serve_load.json.
    """
    from urllib.request import urlopen

    from ..provenance import provenance
    from .server import server_process

    bodies = json_bodies(images)
    with server_process(model) as url:
        with urlopen(f"{url}/healthz", timeout=5) as response:
            model_info = json.loads(response.read())["model"]
        load_before = os.getloadavg()[0]
        result = load_test(url, bodies, n_requests=n_requests, concurrency=concurrency)
    return {
        **load_record(result, labels),
        "model": model_info,
        # Other processes' CPU use skews the times; recorded so a reader can tell.
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "provenance": provenance(),
    }


def load_test_passed(content: dict[str, Any]) -> bool:
    """No failed request, every malformed request answered as expected, the last one 200."""
    sequential_errors = (content.get("sequential") or {}).get("n_errors", 0)
    return (
        content["load"]["n_errors"] == 0
        and sequential_errors == 0
        and not content["malformed"]["unexpected"]
        and content["after"] == 200
    )


def serve_load_table(content: dict[str, Any]) -> str:
    """Markdown table of results/serve_load.json."""
    load, cpu = content["load"], content["provenance"]["cpu"]
    malformed = content["malformed"]
    runs = [load] if content.get("sequential") is None else [load, content["sequential"]]
    return "\n".join(
        [
            "| requests | clients | errors | req/s | p50 (ms) | p99 (ms) | in-server p50 (ms) "
            "| in-server p99 (ms) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *(
                f"| {r['n_requests']:,} | {r['concurrency']} | {r['n_errors']} | "
                f"{r['requests_per_s']:,.0f} | {r['latency_ms']['p50']:.2f} | "
                f"{r['latency_ms']['p99']:.2f} | {r['server_latency_ms']['p50']:.3f} | "
                f"{r['server_latency_ms']['p99']:.3f} |"
                for r in runs
            ),
            "",
            f"`mnist-bench serve` ({content['model']['runtime']}) in its own process and the "
            f"{load['concurrency']} keep-alive clients in another, on 127.0.0.1, "
            f"{cpu_text(cpu)}, shared by both. p50/p99: "
            "a request's round trip as a client sees it (queueing behind the other clients "
            "included; the one-client row has none); in-server: preparation and inference. "
            "After the load, "
            f"{malformed['n_requests']} malformed requests ({malformed['n_kinds']} kinds): "
            f"{len(malformed['unexpected'])} unexpected statuses; a valid request after them: "
            f"HTTP {content['after']}. 1-minute load average {_load_text(content)} (other "
            "processes on the machine). Written by `mnist-bench serve-load`.",
        ]
    )


def _load_text(content: dict[str, Any]) -> str:
    load = content.get("load_average_1min") or {}
    if not load:
        return "not recorded"
    return f"{load['before']:.1f} before, {load['after']:.1f} after"
