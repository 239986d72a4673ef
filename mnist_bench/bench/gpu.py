"""The one command for a GPU machine: ``mnist-bench bench --suite gpu``.

In order: what TensorFlow sees (build, CUDA/cuDNN, devices); the ``gpu``-marked tests (run by
the CLI); determinism on the device (the same seed trained twice must give the same weights
digest); the two input paths side by side (`compare_input_paths`: 2 epochs each, host tf.data
against batches made on the device); the 30-epoch reference recipe and the 18-epoch fast
recipe once each, with their time to 99.0 / 99.5 / 99.7% test accuracy; the benchmark
(`run_benchmarks`), plus the reference recipe trained in mixed precision as its own row
beside the float32 one. The suite's trainings gather and augment their batches on the device
(``augment_on="device"``, `mnist_bench.device_input`), the path worth running on a GPU.
Everything lands in one result, written as ``results/benchmarks/<device>.json`` with
provenance. About 9 minutes on one H100-class GPU before the fast recipe joined (not yet run
with it).

``--quick`` makes every part tiny (a 512-image determinism check, input-path comparison and
the precision rows with the seed model, the two recipes for 1 epoch on 1,024 images,
scores on 1,000 test images, the quick benchmark): it runs on a CPU in about a minute, so
CI runs it and it cannot rot.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import tensorflow as tf

from ..config import AUGMENT_ON_CHOICES, TIME_TO_ACCURACY_MARKS, TrainConfig
from ..data import MnistData
from ..models import weights_digest
from ..provenance import gpu_names
from ..training import train
from .core import device_name
from .suite import _measure_group, ratios, run_benchmarks
from .workloads import train_workload

TTA_MARKS = TIME_TO_ACCURACY_MARKS  # test accuracy, as a run's record
MIXED_PRECISION = "mixed_bfloat16"  # bf16: no loss scaling needed, Ampere and newer
QUICK_DETERMINISM_SUBSET = 512
QUICK_TRAIN_SUBSET = 1024
QUICK_TEST_IMAGES = 1000  # quick mode scores on the first 1,000 test images
AUGMENT_ON = "device"  # where the suite's trainings make their batches (TrainConfig.augment_on)
RECIPE_RUNS = ("reference", "fast")  # the recipes trained in full, one seed each, in this order


def tensorflow_devices() -> dict[str, Any]:
    """What TensorFlow sees: version, CUDA build, cuDNN/CUDA versions, devices, GPU names."""
    build = tf.sysconfig.get_build_info()
    return {
        "tensorflow": tf.__version__,
        "built_with_cuda": bool(tf.test.is_built_with_cuda()),
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "physical_devices": [d.name for d in tf.config.list_physical_devices()],
        "gpus": gpu_names(),
    }


def check_determinism(config: TrainConfig, data: MnistData) -> dict[str, Any]:
    """Train `config` twice in this process; the weights digests must be equal.

    Returns ``config``, ``digests`` (the two), ``same_digest`` and ``device``.
    """
    digests = [weights_digest(train(config, data).model) for _ in range(2)]
    return {
        "config": config.to_dict(),
        "digests": digests,
        "same_digest": digests[0] == digests[1],
        "device": device_name(),
    }


def compare_input_paths(config: TrainConfig, data: MnistData) -> dict[str, Any]:
    """Train `config` once per input path (``augment_on`` "host", then "device").

    Returns ``config``; ``runs``, per path (``"host"``, ``"device"``) its last epoch's
    ``seconds`` (training and validation; the first epoch also pays for tracing),
    ``images_per_s`` and ``weights_digest``; ``same_digest`` (true on a CPU,
    tests/test_device_input.py; on a GPU the augmentation runs on other kernels, whose
    floats may differ); ``speedup`` (host seconds over device seconds); and ``device``.
    """
    runs: dict[str, Any] = {}
    for augment_on in AUGMENT_ON_CHOICES:
        result = train(config.replace(augment_on=augment_on), data)
        last = result.history[-1]
        runs[augment_on] = {
            "seconds": last["seconds"],
            "images_per_s": last["images_per_s"],
            "weights_digest": result.metrics["weights_digest"],
        }
    host, device = runs["host"], runs["device"]
    return {
        "config": config.to_dict(),
        "runs": runs,
        "same_digest": host["weights_digest"] == device["weights_digest"],
        "speedup": host["seconds"] / device["seconds"],
        "device": device_name(),
    }


def time_to_accuracy(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Cumulative epoch seconds (training + validation) until the validation accuracy (the
    test set, with ``validation="test"``) first reaches each of `TTA_MARKS`; None if never.
    """
    out: dict[str, dict[str, Any]] = {}
    for mark in TTA_MARKS:
        elapsed, hit = 0.0, None
        for row in history:
            elapsed += row["seconds"]
            if row["val_accuracy"] >= mark:
                hit = {"seconds": elapsed, "epoch": row["epoch"]}
                break
        out[f"{mark:.3f}"] = hit or {"seconds": None, "epoch": None}
    return out


def recipe_run(config: TrainConfig, data: MnistData) -> dict[str, Any]:
    """Train `config` once: wall seconds, final test accuracy, digest, time to accuracy."""
    start = time.perf_counter()
    result = train(config, data)
    return {
        "config": config.to_dict(),
        "wall_seconds": time.perf_counter() - start,
        "test_accuracy": result.report.accuracy,
        "test_errors": result.report.n_errors,
        "weights_digest": result.metrics["weights_digest"],
        "time_to_accuracy": time_to_accuracy(result.history),
        "device": device_name(),
    }


def precision_rows(
    data: MnistData,
    *,
    model: str = "reference",
    steps: int,
    repeats: int,
    peak_gflops: float | None,
) -> list[dict[str, Any]]:
    """`model`'s recipe's training slice in float32 and in `MIXED_PRECISION`, each its own
    row (``train/<model>/mnist_bench@<precision>``), timed together in turns. The mixed row
    is a variant beside the float32 reference, never a replacement for it."""
    makers = [
        partial(
            train_workload,
            model,
            steps=steps,
            pipeline="mnist_bench",
            images=data.x_train,
            labels=data.y_train,
            determinism=True,
            precision=precision,
        )
        for precision in ("float32", MIXED_PRECISION)
    ]
    return _measure_group(makers, repeats, peak_gflops)


def run_gpu_suite(
    *,
    data: MnistData,
    data_dir: str | None = None,
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the GPU machine's checks and benchmark (the CLI runs the gpu-marked tests first).

    Parameters
    ----------
    data : MnistData
    data_dir : str, optional
        MNIST folder, for the benchmark's loading item.
    quick : bool, default False
        Every part tiny: runs on a CPU in about a minute (CI).
    progress : callable, optional
        Called with one line of text per finished step.

    Returns
    -------
    dict
        `run_benchmarks`' result (its ``benchmarks`` with the two precision rows added) plus
        ``suite`` = ``"gpu"`` and ``gpu_suite``: ``tensorflow_devices``, ``determinism``
        (`check_determinism`), ``input_paths`` (`compare_input_paths`), ``reference_run`` and
        ``fast_run`` (`recipe_run` of each recipe) and ``wall_seconds``.
    """
    say = progress or (lambda line: None)
    start = time.perf_counter()
    if quick:  # each pass over 10,000 test images would cost seconds on a CPU
        data = dataclasses.replace(
            data, x_test=data.x_test[:QUICK_TEST_IMAGES], y_test=data.y_test[:QUICK_TEST_IMAGES]
        )
    devices = tensorflow_devices()
    say(f"tensorflow {devices['tensorflow']} (CUDA build: {devices['built_with_cuda']}, "
        f"CUDA {devices['cuda_version']}, cuDNN {devices['cudnn_version']}); "
        f"devices: {', '.join(devices['physical_devices'])}")  # fmt: skip
    # Quick mode checks the wiring with the cheap model: tracing dominates a tiny run.
    model = "seed" if quick else "reference"
    tiny = {"epochs": 1, "train_subset": QUICK_DETERMINISM_SUBSET} if quick else {"epochs": 1}
    determinism = check_determinism(TrainConfig.recipe(model, augment_on=AUGMENT_ON, **tiny), data)
    say(f"determinism on {determinism['device']}: same seed, same digest twice: "
        f"{determinism['same_digest']} ({determinism['digests'][0][:16]})")  # fmt: skip
    # The seed recipe does not augment; quick mode asks for it, to time the augmentation too.
    two = {**tiny, "epochs": 2}  # the second epoch is traced already: steady-state time
    paths = compare_input_paths(TrainConfig.recipe(model, augment=True, **two), data)
    say(f"input paths: host {paths['runs']['host']['seconds']:.1f} s, device "
        f"{paths['runs']['device']['seconds']:.1f} s per epoch ({paths['speedup']:.2f}x); "
        f"same digest: {paths['same_digest']}")  # fmt: skip
    smoke = {"epochs": 1, "train_subset": QUICK_TRAIN_SUBSET} if quick else {}
    runs = {}
    for recipe in RECIPE_RUNS:  # the claim, then the time-to-99.7% recipe (issue #22)
        run = recipe_run(TrainConfig.recipe(recipe, augment_on=AUGMENT_ON, **smoke), data)
        tta = ", ".join(
            f"{float(m):.1%} "
            + ("not reached" if v["seconds"] is None else f"{v['seconds']:.1f} s")
            for m, v in run["time_to_accuracy"].items()
        )
        say(f"{recipe}, {run['config']['epochs']} epochs: {run['wall_seconds']:.1f} s, test "
            f"accuracy {run['test_accuracy']:.2%}; time to accuracy: {tta}")  # fmt: skip
        runs[recipe] = run
    result = run_benchmarks(data_dir=data_dir, quick=quick, onednn=not quick)
    result["benchmarks"] += precision_rows(
        data,
        model=model,
        steps=result["sizes"]["train_steps"],
        repeats=result["sizes"]["train_repeats"],
        peak_gflops=result["peak"]["peak_gflops"],
    )
    result["ratios"] = ratios(result["benchmarks"])
    result["suite"] = "gpu"
    result["gpu_suite"] = {
        "tensorflow_devices": devices,
        "determinism": determinism,
        "input_paths": paths,
        "reference_run": runs["reference"],
        "fast_run": runs["fast"],
        "wall_seconds": time.perf_counter() - start,
    }
    return result
