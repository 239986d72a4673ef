"""Inference benchmark of every runtime, measured in one run: Keras `model.predict`,
`mnist_bench.predict` (the package's compiled TensorFlow path), the SavedModel, and LiteRT
float32 and int8 at 1 and 2 threads.

    records = run_inference_bench(model, {"litert": "results/export/model.tflite", ...}, x)

Each row: one image's latency p50/p99 (ms) through `mnist_bench.predict` (or `model.predict`),
after warm-up, and batched throughput (images/s) for `batch` images per call, the median of
repeated calls. Nothing is asserted; `mnist-bench export-bench` prints and records the rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .provenance import cpu_text as cpu_text  # re-exported: its home was here

INFERENCE_TABLE_MARKERS = ("<!-- inference-table -->", "<!-- /inference-table -->")
SINGLE_CALLS = 400  # timed one-image calls per row (model.predict: a tenth, it is ~100x slower)
WARMUP_CALLS = 20
BATCH = 1000  # images per batched call
BATCH_SECONDS = 2.0  # repeat batched calls for about this long (at least 3 calls)


def _single(fn: Callable[[np.ndarray], Any], x: np.ndarray, calls: int) -> dict[str, float]:
    """p50/p99 (ms) of `fn` on one image at a time, cycling through `x`."""
    for i in range(WARMUP_CALLS):
        fn(x[i % len(x)][np.newaxis])
    times = np.empty(calls)
    for i in range(calls):
        image = x[i % len(x)][np.newaxis]  # (1, 28, 28, 1), outside the timed region
        start = time.perf_counter()
        fn(image)
        times[i] = time.perf_counter() - start
    p50, p99 = np.percentile(times * 1e3, [50, 99])
    return {"single_p50_ms": float(p50), "single_p99_ms": float(p99), "single_calls": calls}


def _batched(fn: Callable[[np.ndarray], Any], x: np.ndarray) -> dict[str, float]:
    """Median images/s of `fn` on batches of len(x) images."""
    fn(x)  # warm-up: traces, allocations, XNNPACK weight packing
    times: list[float] = []
    deadline = time.perf_counter() + BATCH_SECONDS
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return {"batch": len(x), "batch_images_per_s": float(len(x) / np.median(times))}


def _row(name: str, runtime: str, threads: int | None, **numbers: Any) -> dict[str, Any]:
    return {"name": name, "runtime": runtime, "threads": threads, **numbers}


def run_inference_bench(
    model: Any,
    exports: dict[str, str | Path],
    images: np.ndarray,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Time every runtime on the same images in one run.

    Parameters
    ----------
    model : keras.Model
        The Keras model the files were exported from.
    exports : dict
        Format (``saved_model``, ``litert``, ``litert-int8``) -> exported path; formats
        missing here are skipped.
    images : ndarray of shape (n, 28, 28, 1), float32 in [0, 1]
        At least `BATCH` images (test images): single calls cycle through them, batched
        calls take the first `BATCH`.
    progress : callable, optional
        Called with each row as soon as it is measured.

    Returns
    -------
    list of dict
        One per runtime: ``name``, ``runtime``, ``threads``, ``single_p50_ms``,
        ``single_p99_ms``, ``single_calls``, ``batch``, ``batch_images_per_s``.
    """
    from .evaluation import predict
    from .export import LiteRTPredictor, SavedModelPredictor

    x = np.ascontiguousarray(images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != (28, 28, 1) or len(x) < BATCH:
        raise ValueError(f"images must be float32 (n >= {BATCH}, 28, 28, 1), got {x.shape}")
    batch = x[:BATCH]
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        if progress is not None:
            progress(row)

    def keras_predict(b: np.ndarray) -> Any:
        return model.predict(b, verbose=0, batch_size=len(b))

    add(
        _row(
            "keras model.predict",
            "tensorflow",
            None,
            **_single(keras_predict, x, SINGLE_CALLS // 10),
            **_batched(keras_predict, batch),
        )
    )
    add(
        _row(
            "mnist_bench.predict (Keras)",
            "tensorflow",
            None,
            **_single(lambda b: predict(model, b), x, SINGLE_CALLS),
            **_batched(lambda b: predict(model, b), batch),
        )
    )
    if "saved_model" in exports:
        sm = SavedModelPredictor(exports["saved_model"])
        add(
            _row(
                "SavedModel",
                "tensorflow",
                None,
                **_single(lambda b: predict(sm, b), x, SINGLE_CALLS),
                **_batched(lambda b: predict(sm, b), batch),
            )
        )
    for fmt in ("litert", "litert-int8"):
        if fmt not in exports:
            continue
        for threads in (1, 2):
            p = LiteRTPredictor(exports[fmt], single_threads=threads, batch_threads=threads)
            add(
                _row(
                    f"LiteRT {'int8' if fmt.endswith('int8') else 'float32'}",
                    fmt,
                    threads,
                    **_single(lambda b, p=p: predict(p, b), x, SINGLE_CALLS),
                    **_batched(lambda b, p=p: predict(p, b), batch),
                )
            )
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets from one run's rows: the fastest single-image p50 against
    `mnist_bench.predict` and the fastest batched rate against `model.predict`."""
    by_name = {r["name"]: r for r in rows if r["threads"] in (None, 1)}
    keras = next(r for r in rows if r["name"] == "keras model.predict")
    package = by_name["mnist_bench.predict (Keras)"]
    fastest_single = min(rows, key=lambda r: r["single_p50_ms"])
    fastest_batch = max(rows, key=lambda r: r["batch_images_per_s"])
    return {
        "fastest_single": _label(fastest_single),
        "fastest_single_p50_ms": fastest_single["single_p50_ms"],
        "single_speedup_vs_package": package["single_p50_ms"] / fastest_single["single_p50_ms"],
        "fastest_batch": _label(fastest_batch),
        "fastest_batch_images_per_s": fastest_batch["batch_images_per_s"],
        "batch_speedup_vs_model_predict": fastest_batch["batch_images_per_s"]
        / keras["batch_images_per_s"],
    }


def _label(row: dict[str, Any]) -> str:
    n = row["threads"]
    threads = "" if n is None else f", {n} thread{'s' if n > 1 else ''}"
    return f"{row['name']}{threads}"


def inference_table(content: dict[str, Any]) -> str:
    """Markdown table of results/inference.json, with the CPU and the same-run ratios."""
    lines = [
        "| runtime | threads | 1 image p50 (ms) | 1 image p99 (ms) | batched img/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in content["rows"]:
        threads = "TF default" if r["threads"] is None else str(r["threads"])
        lines.append(
            f"| {r['name']} | {threads} | {r['single_p50_ms']:.3f} | {r['single_p99_ms']:.3f} "
            f"| {r['batch_images_per_s']:,.0f} |"
        )
    q, cpu = content["ratios"], content["provenance"]["cpu"]
    lines += [
        "",
        f"Measured in one run on {cpu_text(cpu)}, batches of "
        f"{content['batch']}. Fastest one image: {q['fastest_single']}, "
        f"p50 {q['fastest_single_p50_ms']:.3f} ms, {q['single_speedup_vs_package']:.1f}x "
        f"`mnist_bench.predict` on Keras. Fastest batched: {q['fastest_batch']}, "
        f"{q['batch_speedup_vs_model_predict']:.1f}x `model.predict`. 1-minute load average "
        f"{_load_text(content)} (other processes on the machine). Written by "
        "`mnist-bench export-bench`.",
    ]
    return "\n".join(lines)


def _load_text(content: dict[str, Any]) -> str:
    load = content.get("load_average_1min") or {}
    if not load:
        return "not recorded"
    return f"{load['before']:.1f} before, {load['after']:.1f} after"
