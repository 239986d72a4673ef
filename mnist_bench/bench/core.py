"""The measuring core: devices, op determinism, timed calls in alternating turns, records."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from ..provenance import cpu_description, cpu_label, gpu_names

LATENCY_WARMUPS = 3  # tracing, then the first calls that still allocate


@dataclass(frozen=True)
class Workload:
    """One benchmarked unit of work: each `run()` call processes `images` images."""

    name: str  # e.g. "train/seed/keras", "latency/reference/mnist_bench.predict"
    run: Callable[[], object]
    images: int
    flops_per_image: int | None  # None: not a compute benchmark (loading)
    device: str  # what ran it, e.g. "AMD EPYC (family 25 model 17, 2 cpus)" or a GPU name
    info: dict[str, Any] = field(default_factory=dict)  # model, batch size, pipeline...


# -- devices ------------------------------------------------------------------------------


def cpu_device_name(cpu: dict[str, Any]) -> str:
    """A benchmark's CPU device from `provenance.cpu_description()`'s dict: ``"AMD EPYC
    (family 25 model 17, 2 cpus)"``. With the family and model: "AMD EPYC" alone names a Zen
    3, a Zen 4 and a Zen 5, whose times differ 2-3x (and whose files would overwrite each
    other)."""
    return cpu_label(cpu, more=f", {cpu['affinity_cpus'] or cpu['logical_cpus']} cpus")


def _cpu_name() -> str:
    return cpu_device_name(cpu_description())


def _on_gpu(device: str | None, gpus: list[str]) -> bool:
    """Whether TensorFlow ops placed on `device` (None: default placement) run on a GPU."""
    return bool(gpus) and tf.DeviceSpec.from_string(device or "").device_type != "CPU"


def device_name(device: str | None = None) -> str:
    """The name of the device that runs TensorFlow ops.

    Parameters
    ----------
    device : str, optional
        A TensorFlow device such as ``"/CPU:0"`` or ``"/GPU:0"``. Default: TensorFlow's
        default placement, i.e. the first GPU when one is visible, else the CPU.

    Returns
    -------
    str
        The GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``, or the CPU model with its family,
        model and logical CPU count, e.g. ``"AMD EPYC (family 25 model 17, 2 cpus)"``.
    """
    gpus = gpu_names()
    if not _on_gpu(device, gpus):
        return _cpu_name()
    return gpus[tf.DeviceSpec.from_string(device or "").device_index or 0]


def device_slug(name: str | None = None) -> str:
    """`name` (default: `device_name()`) made safe for a file name:
    ``"amd-epyc-family-25-model-17-2-cpus"``."""
    return re.sub(r"[^a-z0-9]+", "-", (name or device_name()).lower()).strip("-") or "device"


@contextmanager
def _on(device: str | None) -> Iterator[None]:
    """Run TensorFlow ops (and create variables) on `device`; None: default placement."""
    if device is None:
        yield
    else:
        with tf.device(device):
            yield


def op_determinism() -> bool | None:
    """Whether TensorFlow op determinism is on: it is process-wide and `train` turns it on
    for good, so a benchmark after a training in the same process runs with it. None when
    this TensorFlow cannot say."""
    try:
        from tensorflow.python.framework import config as tf_config  # no public query exists

        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return None


@contextmanager
def _op_determinism(on: bool | None) -> Iterator[None]:
    """Run with TensorFlow op determinism switched `on` (True) or off (False), restoring the
    previous setting after; None: leave it as it is. Switching it off again needs
    TensorFlow's private config module (no public call exists); where that is missing the
    request raises RuntimeError rather than measuring something else."""
    if on is None:
        yield
        return
    try:
        from tensorflow.python.framework import config as tf_config

        switch = {True: tf_config.enable_op_determinism, False: tf_config.disable_op_determinism}
        was = bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on TensorFlow
        raise RuntimeError(f"this TensorFlow cannot switch op determinism: {exc}") from exc
    switch[on]()
    try:
        yield
    finally:
        switch[was]()


# -- timing and records -------------------------------------------------------------------


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls of `fn`; warm it up before."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def entry(
    workload: Workload, seconds: Sequence[float], *, peak_gflops: float | None = None
) -> dict[str, Any]:
    """The record of one benchmark from the wall seconds of its timed calls.

    Parameters
    ----------
    workload : Workload
    seconds : sequence of float
        Seconds of each timed `workload.run()` call (warm-up excluded); the median counts.
    peak_gflops : float, optional
        The machine's peak (`matmul_peak`), for ``peak_fraction``.

    Returns
    -------
    dict
        ``name``, ``images_per_s`` (images per call / median seconds), ``seconds`` (median),
        ``seconds_all``, ``repeats``, ``images`` (per call), ``flops_per_image``, ``gflops``
        (achieved), ``peak_fraction`` (None without a peak or without FLOPs), ``device``, and
        the workload's `info`.
    """
    if not seconds:
        raise ValueError("seconds must hold at least one timed call")
    median = float(statistics.median(seconds))
    images_per_s = workload.images / median
    flops = workload.flops_per_image
    gflops = None if flops is None else images_per_s * flops / 1e9
    fraction = gflops / peak_gflops if gflops is not None and peak_gflops else None
    return {
        "name": workload.name,
        "images_per_s": images_per_s,
        "seconds": median,
        "seconds_all": [float(s) for s in seconds],
        "repeats": len(seconds),
        "images": workload.images,
        "flops_per_image": flops,
        "gflops": gflops,
        "peak_fraction": fraction,
        "device": workload.device,
        **workload.info,
    }


def _measure(workload: Workload, *, repeats: int, peak_gflops: float | None) -> dict[str, Any]:
    [seconds] = _timed_together([workload], repeats)  # one untimed warm-up call first
    return entry(workload, seconds, peak_gflops=peak_gflops)


def _timed_together(
    workloads: Sequence[Workload], repeats: int, warmups: int = 1
) -> list[list[float]]:
    """Wall seconds of `repeats` calls of each workload, timed in turn, the order reversed
    every other round (A B, B A, A B, ...), after `warmups` untimed calls of each. Workloads
    that are compared with each other are timed this way: on a shared machine whose speed
    drifts (other tenants, CPU throttling), every workload then sees the same conditions, and
    the reversal keeps a steady drift within a round from always favouring the same position.
    Their ratio thus holds even when the absolute figures move. Returns one list of seconds
    per workload, in the order given."""
    for workload in workloads:
        for _ in range(warmups):
            workload.run()
    seconds: list[list[float]] = [[] for _ in workloads]
    for round_ in range(repeats):
        order = list(range(len(workloads)))
        for i in order if round_ % 2 == 0 else order[::-1]:
            seconds[i] += _timed(workloads[i].run, 1)
    return seconds


def _latency_entry(
    workload: Workload, seconds: Sequence[float], peak_gflops: float | None
) -> dict[str, Any]:
    """An `entry` record (``images_per_s`` = 1000 / ``p50_ms``) plus ``p50_ms``, ``p90_ms``,
    ``mean_ms`` and ``min_ms`` of one-image calls."""
    ms = 1000.0 * np.asarray(seconds)
    return {
        **entry(workload, seconds, peak_gflops=peak_gflops),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
    }
