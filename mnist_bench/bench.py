"""Throughput and latency of training, inference, preprocessing and loading, measured against
this machine's own dense float32 peak.

Run it::

    mnist-bench bench                            # a few minutes on 2 CPU cores: prints the
                                                 # table, writes results/benchmarks/<device>.json
    mnist-bench bench --quick --no-write         # every item tiny: a smoke run (about a minute
                                                 # on 2 cores, nearly all of it graph tracing)
    pytest tests/test_bench.py --benchmark-only  # the same workloads under pytest-benchmark

or from Python: ``result = run_benchmarks(); print(format_table(result))``.

What is measured (`run_benchmarks`):

- calibration: an n x n float32 matmul with NumPy and with `tf.matmul`, best of several
  repeats; the faster is the machine's practical dense peak (`peak_gflops`);
- training throughput of an epoch slice (`steps` batches of 256) for the ``seed`` and
  ``reference`` models, through plain `model.fit` on NumPy arrays (the baseline) and through the
  package's own input path as `train` runs it (`training.epoch_dataset`: seeded order, tf.data
  prefetch, and the model's recipe's augmentation: on for ``reference``, off for ``seed``),
  both compiled by `training.compile_model`; each model is the network its recipe trains
  (`TrainConfig.recipe(name).model_options`);
- batched inference (batch 1024) and single-image latency, `model.predict` against
  `mnist_bench.predict` on the same model;
- `preprocess_images` + `one_hot`, and `load_mnist` (decompression, parsing, SHA-256 checks).

What is not: no download, graph tracing or warm-up is inside a timed region. Every workload
runs untimed first; data and models exist before timing starts; one timed call is one `fit`,
one `predict` (of one image, for a latency), one load. A workload's figure is the MEDIAN of its
timed calls, robust to a busy machine. Ratios compare two workloads timed in the same process,
never a figure from another run. No result asserts a time: benchmarks measure and record.
TensorFlow op determinism is process-wide and `train` leaves it on, so each result records
whether it was on (`op_determinism`).

FLOPs per image come from the model's Conv2D and Dense layers (`models.model_flops`; a
multiply-add counts 2; training = 3x forward). Achieved GFLOP/s = images/s x FLOPs/image / 1e9,
and ``peak_fraction`` divides it by the calibration's peak. Pooling, batch norm, activations,
the optimizer update and the input pipeline cost time but are not counted: the gap between the
fraction and 1 is where that time goes.
"""

from __future__ import annotations

import itertools
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ._io import read_json, replace_marked, write_json
from .config import TrainConfig
from .data import MnistData, load_mnist
from .evaluation import predict
from .models import MODEL_NAMES, build_model, model_flops
from .preprocess import one_hot, preprocess_images
from .provenance import cpu_description, gpu_names, provenance
from .training import compile_model, epoch_dataset

PIPELINES = ("keras", "mnist_bench")  # plain model.fit on NumPy arrays; training.epoch_dataset
INFERENCE_METHODS = ("model.predict", "mnist_bench.predict")
MATMUL_LIBRARIES = ("numpy", "tf")
DEFAULT_OUT = Path("results/benchmarks")
PIXELS = 28 * 28
PREPROCESS_FLOPS = PIXELS  # one float32 divide per pixel; the cast and the one-hot are copies
LATENCY_WARMUPS = 3  # tracing, then the first calls that still allocate
GPU_MATMUL_CHAIN = 50  # matmuls queued per sync on a GPU, where one 2048^3 product is ~0.1 ms


@dataclass(frozen=True)
class Sizes:
    """How much work each item of `run_benchmarks` does. Counts per timed call unless named."""

    matmul_n: int  # side of the square float32 matrices
    matmul_repeats: int  # timed products per library; the best counts
    train_steps: int  # batches of 256 per timed fit
    train_repeats: int  # timed fits per (model, pipeline)
    inference_images: int  # images per timed predict call, batch 1024
    inference_repeats: int
    latency_repeats: int  # timed one-image calls per (model, method)
    preprocess_repeats: int  # each over all 60,000 training images
    load_repeats: int  # each loads and verifies all four files


FULL = Sizes(
    matmul_n=2048,
    matmul_repeats=5,
    # 10,240 images per fit: long enough that model.fit's per-call set-up on NumPy arrays
    # (a new data adapter each call) does not dominate, as it did at 8 steps.
    train_steps=40,
    train_repeats=3,
    inference_images=10_000,  # the test set's size
    inference_repeats=3,
    latency_repeats=50,  # model.predict: ~90 ms each
    preprocess_repeats=5,
    load_repeats=3,
)
QUICK = Sizes(
    matmul_n=512,
    matmul_repeats=2,
    train_steps=1,  # still one untimed fit first: tracing dominates a quick run
    train_repeats=1,
    inference_images=1024,
    inference_repeats=1,
    latency_repeats=3,
    preprocess_repeats=1,
    load_repeats=1,
)


@dataclass(frozen=True)
class Workload:
    """One benchmarked unit of work: each `run()` call processes `images` images."""

    name: str  # e.g. "train/seed/keras", "latency/reference/mnist_bench.predict"
    run: Callable[[], object]
    images: int
    flops_per_image: int | None  # None: not a compute benchmark (loading)
    device: str  # what ran it, e.g. "AMD EPYC (2 cpus)" or "NVIDIA H100 80GB HBM3"
    info: dict[str, Any] = field(default_factory=dict)  # model, batch size, pipeline...


# -- devices ------------------------------------------------------------------------------


def _cpu_name() -> str:
    cpu = cpu_description()
    return f"{cpu['model_name']} ({cpu['affinity_cpus'] or cpu['logical_cpus']} cpus)"


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
        The GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``, or the CPU model with its logical
        CPU count, e.g. ``"AMD EPYC (2 cpus)"``.
    """
    gpus = gpu_names()
    if not _on_gpu(device, gpus):
        return _cpu_name()
    return gpus[tf.DeviceSpec.from_string(device or "").device_index or 0]


def device_slug(name: str | None = None) -> str:
    """`name` (default: `device_name()`) made safe for a file name: ``"amd-epyc-2-cpus"``."""
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


# -- calibration --------------------------------------------------------------------------


def matmul_call(
    n: int = 2048, *, library: str = "numpy", device: str | None = None
) -> tuple[Callable[[], Any], int]:
    """A call computing float32 n x n matmuls, returning once they are done, and its FLOPs.

    ``library="numpy"``: one product, ``a @ b``. ``library="tf"``: `tf.matmul` on `device`
    (default placement when None), synced with the host by ``.numpy()`` of one element, so
    no copy of the product is timed; on a GPU `GPU_MATMUL_CHAIN` products are queued per
    sync, since one launch and sync would outlast the product itself. Each product costs
    2 n^3 FLOPs (n^3 multiply-adds). Inputs are drawn once, from a local generator.
    """
    _check_choice("library", library, MATMUL_LIBRARIES)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    if library == "numpy":
        return (lambda: a @ b), 2 * n**3
    with _on(device):
        ta, tb = tf.constant(a), tf.constant(b)
    products = GPU_MATMUL_CHAIN if "GPU" in ta.device else 1

    def call() -> Any:
        with _on(device):
            corners = [tf.matmul(ta, tb)[0, 0] for _ in range(products)]
            return tf.add_n(corners).numpy()

    return call, products * 2 * n**3


def _best_gflops(fn: Callable[[], Any], flops: int, repeats: int) -> float:
    fn()  # warm-up: thread pools, kernel selection, first allocation
    return flops / min(_timed(fn, repeats)) / 1e9


def matmul_peak(n: int = 2048, *, repeats: int = 5, device: str | None = None) -> dict[str, Any]:
    """The machine's practical dense float32 peak: the best of NumPy and `tf.matmul`.

    Parameters
    ----------
    n : int, default 2048
        Side of the square matrices; 2 n^3 FLOPs per product.
    repeats : int, default 5
        Timed products per library after one warm-up; the fastest counts.
    device : str, optional
        TensorFlow device for `tf.matmul` (default placement when None). NumPy runs on the CPU.

    Returns
    -------
    dict
        ``numpy_gflops``, ``tf_gflops``, ``peak_gflops`` (their max), ``peak_source``, ``n``,
        ``repeats``, ``device`` (name of the TensorFlow device) and ``tf32`` (whether
        TensorFloat-32 may round float32 matmuls on the GPU; None on a CPU).
    """
    numpy_gflops = _best_gflops(*matmul_call(n, library="numpy"), repeats)
    tf_gflops = _best_gflops(*matmul_call(n, library="tf", device=device), repeats)
    return {
        "n": n,
        "repeats": repeats,
        "numpy_gflops": numpy_gflops,
        "tf_gflops": tf_gflops,
        "peak_gflops": max(numpy_gflops, tf_gflops),
        "peak_source": "numpy" if numpy_gflops >= tf_gflops else "tf.matmul",
        "device": device_name(device),
        "tf32": (  # None on a CPU, where TensorFloat-32 does not exist
            bool(tf.config.experimental.tensor_float_32_execution_enabled())
            if _on_gpu(device, gpu_names())
            else None
        ),
    }


# -- workloads ----------------------------------------------------------------------------


def _pixels(n: int, pixels: np.ndarray | None, seed: int = 0) -> np.ndarray:
    """`n` raw images uint8 (n, 28, 28): the first n of `pixels`, or random ones.
    Speed does not depend on the values (dense kernels, no sparsity shortcuts)."""
    if pixels is None:
        return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    if len(pixels) < n:
        raise ValueError(f"need {n} images, got {len(pixels)}")
    return np.asarray(pixels[:n])


def _labels(n: int, labels: np.ndarray | None, seed: int = 1) -> np.ndarray:
    if labels is None:
        return np.random.default_rng(seed).integers(0, 10, n, dtype=np.uint8)
    return np.asarray(labels[:n])


def recipe_model(name: str) -> keras.Model:
    """A fresh, uncompiled `name` network as its published recipe builds it (the recipe's
    ``model_options`` applied): the network whose speed the README reports."""
    return build_model(name, **TrainConfig.recipe(name).model_options)


def train_workload(
    model_name: str,
    *,
    batch_size: int = 256,
    steps: int = 8,
    pipeline: str = "keras",
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    device: str | None = None,
    determinism: bool | None = None,
) -> Workload:
    """A freshly built, compiled `model_name` and a call training it on `steps` batches.

    ``pipeline="keras"``: ``model.fit`` on NumPy arrays, Keras' own batching and shuffling
    (the baseline). ``pipeline="mnist_bench"``: ``model.fit`` on `training.epoch_dataset`
    exactly as `train` runs an epoch (seeded order, the model's recipe's augmentation, tf.data
    prefetch); each call is the next epoch. Both compile with `training.compile_model` and the
    model's recipe (`TrainConfig.recipe`). `images` (uint8 (N, 28, 28)) and `labels` default
    to random ones; N must be at least ``steps * batch_size``. `determinism`: every call
    (the warm-up's tracing included) runs with TensorFlow op determinism on (True) or off
    (False), the name then ending ``+determinism`` or ``-determinism``; None: as it is.
    """
    _check_choice("pipeline", pipeline, PIPELINES)
    config = TrainConfig.recipe(model_name, batch_size=batch_size)
    n = steps * batch_size
    x, y = preprocess_images(_pixels(n, images)), one_hot(_labels(n, labels))
    with _on(device):
        model = recipe_model(model_name)
        compile_model(model, config, steps_per_epoch=steps)
    epochs = itertools.count()

    def run() -> None:
        with _on(device), _op_determinism(determinism):
            if pipeline == "keras":
                model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
            else:
                ds = epoch_dataset(x, y, config, next(epochs))
                model.fit(ds, epochs=1, shuffle=False, verbose=0)

    info = {"model": model_name, "batch_size": batch_size, "steps": steps, "pipeline": pipeline}
    info["augment"] = pipeline == "mnist_bench" and config.augment
    info["op_determinism"] = determinism
    suffix = {None: "", True: "+determinism", False: "-determinism"}[determinism]
    return Workload(
        f"train/{model_name}/{pipeline}{suffix}",
        run,
        n,
        model_flops(model)["training"],
        device_name(device),
        info,
    )


def _predict_call(model: keras.Model, x: np.ndarray, method: str, batch_size: int) -> Callable:
    _check_choice("method", method, INFERENCE_METHODS)
    if method == "model.predict":
        return lambda: model.predict(x, batch_size=batch_size, verbose=0)
    return lambda: predict(model, x, batch_size=batch_size)


def inference_workload(
    model: keras.Model,
    *,
    batch_size: int = 1024,
    images: int = 10_000,
    method: str = "model.predict",
    pixels: np.ndarray | None = None,
    device: str | None = None,
) -> Workload:
    """A call predicting `images` preprocessed images, float32 (N, 28, 28, 1), in batches of
    `batch_size`, through `model.predict` or `mnist_bench.predict`. `pixels`: raw uint8
    images to use (default random); they are preprocessed here, outside the timed call."""
    x = preprocess_images(_pixels(images, pixels))
    call = _predict_call(model, x, method, batch_size)

    def run() -> None:
        with _on(device):
            call()

    info = {"model": model.name, "batch_size": batch_size, "method": method}
    name = f"inference/{model.name}/{method}"
    return Workload(name, run, images, model_flops(model)["forward"], device_name(device), info)


def latency_workload(
    model: keras.Model,
    *,
    method: str = "mnist_bench.predict",
    pixels: np.ndarray | None = None,
    device: str | None = None,
) -> Workload:
    """A call predicting ONE preprocessed image, float32 (1, 28, 28, 1): a serving request."""
    x = preprocess_images(_pixels(1, pixels))
    call = _predict_call(model, x, method, 1)

    def run() -> None:
        with _on(device):
            call()

    info = {"model": model.name, "batch_size": 1, "method": method}
    name = f"latency/{model.name}/{method}"
    return Workload(name, run, 1, model_flops(model)["forward"], device_name(device), info)


def preprocess_workload(images: np.ndarray, labels: np.ndarray | None = None) -> Workload:
    """A call of `preprocess_images(images)` and `one_hot(labels)`: uint8 (N, 28, 28) and
    (N,) labels (random when None). NumPy on the CPU."""
    y = _labels(len(images), labels)

    def run() -> None:
        preprocess_images(images)
        one_hot(y)

    return Workload("preprocess", run, len(images), PREPROCESS_FLOPS, _cpu_name(), {})


def load_workload(data_dir: str | Path | None = None) -> Workload:
    """A call of `load_mnist(data_dir, download=False)`: all four files read, decompressed,
    parsed and checked against their pinned SHA-256 (70,000 images). The first call of
    `load_throughput` is untimed and may download into the cache when `data_dir` is None."""
    return Workload(
        "load",
        lambda: load_mnist(data_dir, download=False),
        70_000,
        None,
        _cpu_name(),
        {"data_dir": None if data_dir is None else str(data_dir)},
    )


# -- measurements -------------------------------------------------------------------------


def train_throughput(
    model_name: str,
    *,
    batch_size: int = 256,
    steps: int = 8,
    repeats: int = 3,
    pipeline: str = "keras",
    peak_gflops: float | None = None,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    device: str | None = None,
    determinism: bool | None = None,
) -> dict[str, Any]:
    """Training images/s of `model_name` over `steps` batches per fit (see `train_workload`).

    One untimed warm-up fit (graph tracing, first batches), then `repeats` timed fits; the
    median counts. FLOPs per image: training, 3x forward. Returns an `entry` record plus
    ``model``, ``batch_size``, ``steps``, ``pipeline`` and ``augment``.
    """
    workload = train_workload(
        model_name,
        batch_size=batch_size,
        steps=steps,
        pipeline=pipeline,
        images=images,
        labels=labels,
        device=device,
        determinism=determinism,
    )
    return _measure(workload, repeats=repeats, peak_gflops=peak_gflops)


def inference_throughput(
    model: keras.Model,
    *,
    batch_size: int = 1024,
    images: int = 10_000,
    repeats: int = 3,
    method: str = "model.predict",
    peak_gflops: float | None = None,
    pixels: np.ndarray | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Batched inference images/s of `model` through `method` (see `inference_workload`):
    one untimed warm-up call, then `repeats` timed calls over `images` images."""
    workload = inference_workload(
        model, batch_size=batch_size, images=images, method=method, pixels=pixels, device=device
    )
    return _measure(workload, repeats=repeats, peak_gflops=peak_gflops)


def single_image_latency(
    model: keras.Model,
    *,
    repeats: int = 50,
    method: str = "mnist_bench.predict",
    peak_gflops: float | None = None,
    pixels: np.ndarray | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Milliseconds per one-image call of `method`: three untimed calls, then `repeats` timed.

    Returns an `entry` record (``images_per_s`` = 1000 / ``p50_ms``) plus ``p50_ms``,
    ``p90_ms``, ``mean_ms`` and ``min_ms``.
    """
    workload = latency_workload(model, method=method, pixels=pixels, device=device)
    [seconds] = _timed_together([workload], repeats, warmups=LATENCY_WARMUPS)
    return _latency_entry(workload, seconds, peak_gflops)


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


def preprocess_throughput(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    repeats: int = 5,
    peak_gflops: float | None = None,
) -> dict[str, Any]:
    """Images/s of `preprocess_images` + `one_hot` over `images`, uint8 (N, 28, 28)."""
    workload = preprocess_workload(images, labels)
    return _measure(workload, repeats=repeats, peak_gflops=peak_gflops)


def load_throughput(data_dir: str | Path | None = None, *, repeats: int = 3) -> dict[str, Any]:
    """Images/s of `load_mnist` (70,000 images, verified). The warm-up load, untimed, fills
    the OS file cache (and downloads into the loader's cache if `data_dir` is None and the
    files are nowhere); the timed loads never download."""
    load_mnist(data_dir)  # warm-up
    workload = load_workload(data_dir)
    return entry(workload, _timed(workload.run, repeats))


# -- where the training time goes ----------------------------------------------------------


def _op_seconds(trace_dir: Path) -> dict[str, float]:
    """Seconds per TensorFlow op type in a profiler trace: the op events of TensorFlow's
    compute threads (named ``<op name>:<op type>``), summed over threads, so the total can
    exceed the wall time by up to the thread count. Container events (executor steps,
    ParallelFor shards, ``ExecutorState::Process``) are left out: they hold the ops, and would
    count them twice. An op event is ``name:Type`` with one colon; containers use ``::``."""
    try:  # TensorFlow's own copy of the profiler's protobuf; no extra package needed
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError as exc:  # pragma: no cover - depends on the TensorFlow build
        raise RuntimeError(f"this TensorFlow cannot read profiler traces: {exc}") from exc
    seconds: dict[str, float] = {}
    for path in trace_dir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if ":" in name and "::" not in name:
                        op = name.rsplit(":", 1)[1]
                        seconds[op] = seconds.get(op, 0.0) + event.duration_ps / 1e12
    return seconds


def profile_training(
    model_name: str = "reference",
    *,
    steps: int = 8,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    device: str | None = None,
    top: int = 8,
) -> dict[str, Any]:
    """Where the training time of `model_name` goes, by TensorFlow op type: one epoch slice
    of `steps` batches through the package's pipeline (as `train` runs it) under TensorFlow's
    profiler, after an untraced warm-up.

    Returns
    -------
    dict
        ``model``, ``images``, ``wall_seconds`` (the traced fit), ``op_seconds`` (all op
        types, summed over compute threads), and ``top``: the `top` op types by time, each
        ``{"op", "seconds", "share"}`` with share = its fraction of all op time, then one
        ``"other"`` entry for the rest.
    """
    import tempfile

    workload = train_workload(
        model_name, steps=steps, pipeline="mnist_bench", images=images, labels=labels,
        device=device,
    )  # fmt: skip
    workload.run()  # warm-up: tracing is not training time
    with tempfile.TemporaryDirectory(prefix="mnist-bench-trace-") as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        try:
            [wall] = _timed(workload.run, 1)
        finally:
            tf.profiler.experimental.stop()
        op_seconds = _op_seconds(Path(trace_dir))
    total = sum(op_seconds.values()) or 1.0
    ranked = sorted(op_seconds.items(), key=lambda kv: -kv[1])
    rows = [{"op": op, "seconds": sec, "share": sec / total} for op, sec in ranked[:top]]
    rest = sum(sec for _, sec in ranked[top:])
    rows.append({"op": "other", "seconds": rest, "share": rest / total})
    return {
        "model": model_name,
        "images": workload.images,
        "wall_seconds": wall,
        "op_seconds": op_seconds,
        "top": rows,
        "device": workload.device,
    }


def format_profile(profile: dict[str, Any]) -> str:
    """The `profile_training` result as lines: op type, seconds, share of all op time."""
    lines = [
        f"where training time goes, {profile['model']} ({profile['images']} images, "
        f"{profile['wall_seconds']:.2f} s wall; op time summed over compute threads):"
    ]
    lines += [f"  {r['op']:<28} {r['seconds']:>8.3f} s {r['share']:>7.1%}" for r in profile["top"]]
    return "\n".join(lines)


# -- the whole suite ----------------------------------------------------------------------

# ratio name -> (numerator benchmark, denominator benchmark, field compared). Every ratio
# reads "the first path is this many times faster than the second": the package's path
# against plain Keras, and training without op determinism against with it (its cost).
_RATIO_TEMPLATES = {
    "train_mnist_bench_vs_keras_fit/{m}": (
        "train/{m}/mnist_bench",
        "train/{m}/keras",
        "images_per_s",
    ),
    "predict_batched_vs_model_predict/{m}": (
        "inference/{m}/mnist_bench.predict",
        "inference/{m}/model.predict",
        "images_per_s",
    ),
    "predict_single_p50_vs_model_predict/{m}": (
        "latency/{m}/model.predict",  # a latency: the slower one goes on top
        "latency/{m}/mnist_bench.predict",
        "p50_ms",
    ),
    "train_without_vs_with_op_determinism/{m}": (
        "train/{m}/mnist_bench-determinism",
        "train/{m}/mnist_bench+determinism",
        "images_per_s",
    ),
}


def ratios(benchmarks: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Speed-ups of the package's paths over plain Keras, from records of the same run.

    Keys ``train_mnist_bench_vs_keras_fit/<model>`` (training images/s, package pipeline over
    plain `model.fit`), ``predict_batched_vs_model_predict/<model>`` (batched images/s) and
    ``predict_single_p50_vs_model_predict/<model>`` (one-image p50 of `model.predict` over
    that of `mnist_bench.predict`), where above 1 the package is faster; and
    ``train_without_vs_with_op_determinism/<model>`` (the package's training images/s with op
    determinism off over on), where above 1 determinism costs time. Pairs not measured are
    left out.
    """
    by_name = {b["name"]: b for b in benchmarks}
    out = {}
    for template, (top, bottom, key) in _RATIO_TEMPLATES.items():
        for m in MODEL_NAMES:
            a, b = by_name.get(top.format(m=m)), by_name.get(bottom.format(m=m))
            if a is not None and b is not None:
                out[template.format(m=m)] = float(a[key] / b[key])
    return out


def _suite(
    sizes: Sizes,
    peak_gflops: float,
    data: MnistData,
    data_dir: str | Path | None,
    device: str | None,
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The measurements of `run_benchmarks`, in order, each a call returning its records.
    Workloads whose figures are compared (the training paths of one model, the inference
    methods of one model) are timed together, in turn (`_timed_together`)."""
    # The package's pipeline twice more, op determinism off then on (what `train` runs):
    # what determinism costs, measured in the same run.
    trainings = [*itertools.product(PIPELINES, [None]), ("mnist_bench", False)]
    trainings.append(("mnist_bench", True))
    for name in MODEL_NAMES:
        yield partial(
            _measure_group,
            [
                partial(
                    train_workload,
                    name,
                    steps=sizes.train_steps,
                    pipeline=pipeline,
                    images=data.x_train,
                    labels=data.y_train,
                    device=device,
                    determinism=determinism,
                )
                for pipeline, determinism in trainings
            ],
            sizes.train_repeats,
            peak_gflops,
        )
    for name in MODEL_NAMES:
        with _on(device):
            model = recipe_model(name)  # untrained: speed does not depend on the weights
        yield partial(
            _measure_group,
            [
                partial(
                    inference_workload,
                    model,
                    images=sizes.inference_images,
                    method=method,
                    pixels=data.x_test,
                    device=device,
                )
                for method in INFERENCE_METHODS
            ],
            sizes.inference_repeats,
            peak_gflops,
        )
        yield partial(
            _measure_group,
            [
                partial(latency_workload, model, method=method, pixels=data.x_test, device=device)
                for method in INFERENCE_METHODS
            ],
            sizes.latency_repeats,
            peak_gflops,
            latency=True,
        )
    yield lambda: [
        preprocess_throughput(
            data.x_train, data.y_train, repeats=sizes.preprocess_repeats, peak_gflops=peak_gflops
        )
    ]
    yield lambda: [load_throughput(data_dir, repeats=sizes.load_repeats)]


def _measure_group(
    makers: Sequence[Callable[[], Workload]],
    repeats: int,
    peak_gflops: float,
    *,
    latency: bool = False,
) -> list[dict[str, Any]]:
    """Build the workloads (their set-up is never timed), time them together, one record each."""
    workloads = [make() for make in makers]
    warmups = LATENCY_WARMUPS if latency else 1
    timings = _timed_together(workloads, repeats, warmups=warmups)
    if latency:
        return [_latency_entry(w, t, peak_gflops) for w, t in zip(workloads, timings, strict=True)]
    return [entry(w, t, peak_gflops=peak_gflops) for w, t in zip(workloads, timings, strict=True)]


def run_benchmarks(
    *,
    data_dir: str | Path | None = None,
    quick: bool = False,
    device: str | None = None,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Calibrate, then measure every benchmark and the ratios against plain Keras, in one run.

    Parameters
    ----------
    data_dir : path, optional
        MNIST folder (`load_mnist`'s search order when None). The real images feed every
        benchmark; they are loaded before anything is timed.
    quick : bool, default False
        Every item tiny (`QUICK`): a smoke run of seconds per item; its figures are no results.
    device : str, optional
        TensorFlow device for the models and `tf.matmul`, e.g. ``"/CPU:0"`` on a GPU machine;
        default placement when None. NumPy work (preprocessing, loading) runs on the CPU.
    progress : callable, optional
        Called as ``progress("peak", peak)`` after calibration, then as
        ``progress("benchmark", record)`` when each record is done (for a live table), then
        as ``progress("profile", profile)``.

    Returns
    -------
    dict
        ``device``, ``provenance``, ``peak`` (`matmul_peak`), ``benchmarks`` (`entry` records,
        in order), ``ratios`` (`ratios`), ``quick``, ``sizes`` (`Sizes` as a dict) and
        ``op_determinism`` (whether TensorFlow op determinism was on: it is process-wide)
        and ``profile`` (`profile_training` of the reference model: time per op type).
    """
    notify = progress or (lambda kind, record: None)
    sizes = QUICK if quick else FULL
    peak = matmul_peak(sizes.matmul_n, repeats=sizes.matmul_repeats, device=device)
    notify("peak", peak)
    data = load_mnist(data_dir)  # may download; nothing is timed yet
    records = []
    for measure in _suite(sizes, peak["peak_gflops"], data, data_dir, device):
        for record in measure():
            records.append(record)
            notify("benchmark", record)
    profile = profile_training(
        "reference", steps=sizes.train_steps, images=data.x_train, labels=data.y_train,
        device=device,
    )  # fmt: skip
    notify("profile", profile)
    return {
        "profile": profile,
        "device": device_name(device),
        "provenance": provenance(),
        "peak": peak,
        "benchmarks": records,
        "ratios": ratios(records),
        "quick": quick,
        "sizes": asdict(sizes),
        "op_determinism": op_determinism(),
    }


# -- reporting ----------------------------------------------------------------------------

TABLE_HEADER = (
    f"{'benchmark':<40} {'images/s':>10} {'p50 ms':>8} {'GFLOP/s':>8} {'of peak':>7} "
    f"{'MFLOP/img':>9}"
)


def _cell(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def format_row(record: dict[str, Any]) -> str:
    """One fixed-column row of `format_table` for one `entry` record."""
    flops = record["flops_per_image"]
    return " ".join(
        [
            f"{record['name']:<40}",
            _cell(record["images_per_s"], ",.0f", 10),
            _cell(record.get("p50_ms"), ".2f", 8),
            _cell(record["gflops"], ".2f", 8),
            _cell(record["peak_fraction"], ".3f", 7),
            _cell(None if flops is None else flops / 1e6, ".4g", 9),
        ]
    )


def format_table(result: dict[str, Any]) -> str:
    """The benchmarks of `run_benchmarks`' result as a fixed-column table, one row each:
    images/s, one-image p50 latency (ms, latency rows only), achieved GFLOP/s, fraction of
    the measured peak, and FLOPs per image in millions (training rows: 3x forward)."""
    return "\n".join([TABLE_HEADER, *(format_row(r) for r in result["benchmarks"])])


def format_peak(peak: dict[str, Any]) -> str:
    """One line: the calibrated peak and where it comes from."""
    return (
        f"peak {peak['peak_gflops']:.1f} GFLOP/s float32 ({peak['peak_source']}; "
        f"{peak['n']}x{peak['n']} matmul: NumPy {peak['numpy_gflops']:.1f}, "
        f"tf.matmul {peak['tf_gflops']:.1f})"
    )


def format_ratios(result: dict[str, Any]) -> str:
    """The ratios of `run_benchmarks`' result, one per line; above 1x the package is faster."""
    lines = ["speed-up over plain Keras, measured in this run (>1: mnist_bench faster):"]
    lines += [f"  {name:<44} {value:>7.2f}x" for name, value in result["ratios"].items()]
    return "\n".join(lines)


def write_benchmarks(result: dict[str, Any], out_dir: str | Path = DEFAULT_OUT) -> Path:
    """Write `result` to ``<out_dir>/<device-slug>.json`` atomically; return the path.

    A quick run goes to ``<device-slug>-quick.json``, so a smoke run never replaces a
    published full one.
    """
    stem = device_slug(result["device"]) + ("-quick" if result.get("quick") else "")
    return write_json(Path(out_dir) / f"{stem}.json", result)


# -- the README's performance section -----------------------------------------------------

PERF_BEGIN, PERF_END = "<!-- performance -->", "<!-- /performance -->"

# The performance goals (issue 5), each read from every published benchmark file:
# (label, benchmark name or ratio name, record field (None: a ratio), goal, higher is better).
_BENCH_GOALS = (
    ("training, reference, fraction of peak", "train/reference/mnist_bench",
     "peak_fraction", 0.6, True),
    ("`mnist_bench.predict`, one image, p50 ms, reference",
     "latency/reference/mnist_bench.predict", "p50_ms", 1.0, False),
    ("batched inference over `model.predict`, reference",
     "predict_batched_vs_model_predict/reference", None, 2.0, True),
)  # fmt: skip
REPRODUCTION_GOAL_CPU_S = 20 * 60  # the 30-epoch reference on 2 CPU cores
REPRODUCTION_GOAL_H100_S = 60  # ... and on one H100
REPRODUCTION_GOAL_ACCURACY = 0.997  # ... still reaching the published target


def published_benchmarks(out_dir: str | Path = DEFAULT_OUT) -> list[dict[str, Any]]:
    """The full (not ``--quick``) benchmark files of `out_dir`, sorted by file name."""
    paths = sorted(p for p in Path(out_dir).glob("*.json") if not p.stem.endswith("-quick"))
    return [read_json(p) for p in paths]


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _goal_row(label: str, goal: str, measured: str, met: bool | None, where: str) -> str:
    verdict = "–" if met is None else ("yes" if met else "**no**")
    return f"| {label} | {goal} | {measured} | {verdict} | {where} |"


def _reproduction_goals(metrics: dict | None) -> list[str]:
    pub = (metrics or {}).get("published")
    run = next((r for r in metrics["runs"] if r["run"] == pub["run"]), None) if pub else None
    if run is None:
        return [_goal_row("30-epoch reference, 2 CPU cores", "<= 20 min", "not yet run", None, "–")]
    prov = run["provenance"]
    gpus = prov.get("gpus") or []
    device = (
        ", ".join(gpus) or f"{prov['cpu']['model_name']} ({prov['cpu'].get('affinity_cpus')} CPUs)"
    )
    wall = run["wall_seconds"]
    rows = []
    on_h100 = any("H100" in g for g in gpus)
    goal_s = REPRODUCTION_GOAL_H100_S if on_h100 else REPRODUCTION_GOAL_CPU_S
    label = "30-epoch reference, one H100" if on_h100 else "30-epoch reference, 2 CPU cores"
    # The goal is the time of a run that still reaches the accuracy target.
    accuracy = run["test_accuracy"]
    measured = f"{wall / 60:.1f} min, {accuracy:.2%}"
    met = wall <= goal_s and accuracy >= REPRODUCTION_GOAL_ACCURACY
    rows.append(_goal_row(label, f"<= {goal_s / 60:g} min, >= {REPRODUCTION_GOAL_ACCURACY:.2%}",
                          measured, met, device))  # fmt: skip
    if not on_h100:
        rows.append(_goal_row("30-epoch reference, one H100", "<= 1 min", "not measured", None,
                              "no GPU machine lent to this project's sessions so far"))  # fmt: skip
    return rows


def performance_section(benchmarks: Sequence[dict[str, Any]], metrics: dict | None) -> str:
    """Markdown for the README: the goals with what was measured, each benchmark file's table
    (images/s, p50, GFLOP/s, fraction of peak), its speed-ups over plain Keras, and the
    published runs' time to accuracy. Everything comes from `benchmarks` (the files
    `write_benchmarks` wrote) and `metrics` (results/metrics.json); nothing is typed in."""
    lines = [
        "| goal | target | measured | met | where |",
        "| --- | ---: | ---: | --- | --- |",
        *_reproduction_goals(metrics),
    ]
    if not benchmarks:
        lines += [_goal_row(label, f"{'>=' if higher else '<='} {goal:g}", "not measured", None,
                            "no benchmark file yet")
                  for label, _, _, goal, higher in _BENCH_GOALS]  # fmt: skip
    for result in benchmarks:
        by_name = {b["name"]: b for b in result["benchmarks"]}
        for label, name, key, goal, higher in _BENCH_GOALS:
            value = (
                result["ratios"].get(name) if key is None else (by_name.get(name) or {}).get(key)
            )
            met = None if value is None else (value >= goal if higher else value <= goal)
            target = f"{'>=' if higher else '<='} {goal:g}" + ("x" if key is None else "")
            shown = _fmt(value, ".3g") + ("x" if key is None and value is not None else "")
            lines.append(_goal_row(label, target, shown, met, result["device"]))
    for result in benchmarks:
        prov = result["provenance"]
        lines += [
            "",
            f"**{result['device']}**: {format_peak(result['peak'])}; TensorFlow "
            f"{prov['tensorflow']}, op determinism {'on' if result['op_determinism'] else 'off'}.",
            "",
            "| benchmark | images/s | p50 ms | GFLOP/s | of peak | MFLOP/image |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for b in result["benchmarks"]:
            mflops = None if b["flops_per_image"] is None else b["flops_per_image"] / 1e6
            cells = [
                _fmt(b["images_per_s"], ",.0f"),
                _fmt(b.get("p50_ms"), ".2f"),
                _fmt(b["gflops"], ".1f"),
                _fmt(b["peak_fraction"], ".3f"),
                _fmt(mflops, ".3g"),
            ]
            lines.append(f"| {b['name']} | " + " | ".join(cells) + " |")
        speedups = "; ".join(f"{k} {v:.2f}x" for k, v in result["ratios"].items())
        lines += ["", f"Speed-ups over plain Keras in the same run (> 1: faster): {speedups}."]
        if result.get("profile"):
            lines += ["", *_profile_lines(result["profile"])]
    if not benchmarks:
        lines += ["", "No benchmark file is published in `results/benchmarks/` yet."]
    lines += ["", *_time_to_accuracy_lines(metrics)]
    return "\n".join(lines)


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    lines = [
        f"Where the training time of `{profile['model']}` goes (TensorFlow profiler, "
        f"{profile['images']} images through the package's pipeline, op time summed over "
        "compute threads):",
        "",
        "| op type | share of op time |",
        "| --- | ---: |",
    ]
    return lines + [f"| {row['op']} | {row['share']:.1%} |" for row in profile["top"]]


def _time_to_accuracy_lines(metrics: dict | None) -> list[str]:
    runs = [r for r in (metrics or {}).get("runs", []) if r["time_to_accuracy"]["seconds"]]
    if not runs:
        return ["Time to accuracy: no reference run validated on the test set is recorded yet."]
    marks = list(runs[0]["time_to_accuracy"]["seconds"])
    lines = [
        "Time to test accuracy (DAWNBench-style: cumulative training + validation wall time until "
        "the test accuracy after an epoch first reaches the mark), per recorded reference run:",
        "",
        "| run | device | " + " | ".join(f"{100 * float(m):.1f}%" for m in marks) + " |",
        "| --- | --- |" + " ---: |" * len(marks),
    ]
    for run in runs:
        tta, prov = run["time_to_accuracy"], run["provenance"]
        device = ", ".join(prov.get("gpus") or []) or prov["cpu"]["model_name"]
        cells = [
            "not reached" if tta["seconds"][m] is None
            else f"{tta['seconds'][m] / 60:.1f} min (epoch {tta['epoch'][m]})"
            for m in marks
        ]  # fmt: skip
        lines.append(f"| {run['run']} | {device} | " + " | ".join(cells) + " |")
    return lines


def update_readme_performance(readme_path: str | Path, results_dir: str | Path = "results") -> bool:
    """Regenerate the README's ``<!-- performance -->`` section from ``<results_dir>/benchmarks``
    and ``<results_dir>/metrics.json``; returns whether the file changed."""
    metrics_path = Path(results_dir) / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.exists() else None
    body = performance_section(published_benchmarks(Path(results_dir) / "benchmarks"), metrics)
    return replace_marked(readme_path, PERF_BEGIN, PERF_END, body, "the performance section")
