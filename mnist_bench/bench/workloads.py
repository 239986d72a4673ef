"""The benchmarked units of work (training slices, inference, latency, preprocessing, loading)
and the functions that time one of them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..config import TrainConfig
from ..data import load_mnist
from ..evaluation import predict
from ..models import build_model, model_flops
from ..preprocess import one_hot, preprocess_images
from ..training import compile_model, dtype_policy, epoch_dataset
from .core import (
    LATENCY_WARMUPS,
    Workload,
    _check_choice,
    _cpu_name,
    _latency_entry,
    _measure,
    _on,
    _op_determinism,
    _timed,
    _timed_together,
    device_name,
    entry,
)

PIPELINES = ("keras", "mnist_bench")  # plain model.fit on NumPy arrays; training.epoch_dataset
INFERENCE_METHODS = ("model.predict", "mnist_bench.predict")
PIXELS = 28 * 28
PREPROCESS_FLOPS = PIXELS  # one float32 divide per pixel; the cast and the one-hot are copies


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
    precision: str | None = None,
) -> Workload:
    """A freshly built, compiled `model_name` and a call training it on `steps` batches.

    ``pipeline="keras"``: ``model.fit`` on NumPy arrays, Keras' own batching and shuffling
    (the baseline). ``pipeline="mnist_bench"``: ``model.fit`` on `training.epoch_dataset`
    exactly as `train` runs an epoch (seeded order, the model's recipe's augmentation, tf.data
    prefetch); each call is the next epoch. Both compile with `training.compile_model` and the
    model's recipe (`TrainConfig.recipe`). `images` (uint8 (N, 28, 28)) and `labels` default
    to random ones; N must be at least ``steps * batch_size``. `determinism`: every call
    (the warm-up's tracing included) runs with TensorFlow op determinism on (True) or off
    (False, the name then ending ``-determinism``); None: as it is. Plain Keras shuffles
    with unseeded random ops, which op determinism refuses: with `determinism` True the
    keras baseline sets Keras' global seed first, as a plain-Keras user would. `precision`:
    a `TrainConfig.precision` to build the model in, the name then ending ``@<precision>``;
    None: the recipe's (float32).
    """
    _check_choice("pipeline", pipeline, PIPELINES)
    config = TrainConfig.recipe(model_name, batch_size=batch_size)
    if precision is not None:
        config = config.replace(precision=precision)
    n = steps * batch_size
    x, y = preprocess_images(_pixels(n, images)), one_hot(_labels(n, labels))
    with _on(device):
        with dtype_policy(config.precision):
            model = recipe_model(model_name)
        compile_model(model, config, steps_per_epoch=steps)
    epochs = itertools.count()
    if pipeline == "keras" and determinism:
        keras.utils.set_random_seed(0)  # model.fit's shuffle needs a seed under determinism

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
    info["precision"] = config.precision
    info["jit_compile"] = bool(model.jit_compile)  # Keras' "auto": XLA on a GPU, not on a CPU
    suffix = "-determinism" if determinism is False else ""
    suffix += "" if precision is None else f"@{precision}"
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


def load_throughput(
    data_dir: str | Path | None = None, *, repeats: int = 3, warm: bool = False
) -> dict[str, Any]:
    """Images/s of `load_mnist` (70,000 images, verified). The warm-up load, untimed, fills
    the OS file cache (and downloads into the loader's cache if `data_dir` is None and the
    files are nowhere); the timed loads never download. `warm`: the caller has just loaded
    the files (as `run_benchmarks` does first), so no warm-up load."""
    if not warm:
        load_mnist(data_dir)  # warm-up
    workload = load_workload(data_dir)
    return entry(workload, _timed(workload.run, repeats))
