"""The whole suite: sizes, the measurements in order, the ratios, and the result file."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .._io import write_json
from ..data import MnistData, load_mnist
from ..provenance import gpu_names, provenance
from .calibration import matmul_peak
from .core import (
    LATENCY_WARMUPS,
    Workload,
    _latency_entry,
    _on,
    _on_gpu,
    _timed_together,
    device_name,
    device_slug,
    entry,
    op_determinism,
)
from .onednn import compare_onednn, start_workers
from .profile import profile_training
from .workloads import (
    INFERENCE_METHODS,
    inference_workload,
    latency_workload,
    load_throughput,
    preprocess_throughput,
    recipe_model,
    train_workload,
)

DEFAULT_OUT = Path("results/benchmarks")


# The networks the suite times: the small CNNs the README's speed figures are about. The
# deeper ones (resnet20, efficientnet_b0) would multiply the suite's 5 minutes; their training
# speed is in docs/architectures.md's wall times.
BENCH_MODELS = ("seed", "reference")


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
    latency_warmups: int  # untimed calls first: tracing, then the first calls that allocate
    preprocess_repeats: int  # each over all 60,000 training images
    load_repeats: int  # each loads and verifies all four files
    # Models trained through every path (plain Keras, op determinism off); the others only
    # as `train` runs them. Tracing a model's training dominates a quick run.
    compare_models: tuple[str, ...] = BENCH_MODELS
    # Models trained with oneDNN on and off, each setting in its own process (`onednn`).
    onednn_models: tuple[str, ...] = BENCH_MODELS
    profile_model: str = "reference"  # whose training time is split by op type


# The full suite fits in 5 minutes on 2 cores (issue 14): short timed calls, but five of
# each, in alternating turns, so the median holds on a shared machine.
FULL = Sizes(
    matmul_n=2048,
    matmul_repeats=5,
    # 3,072 images per fit: model.fit's per-call set-up on NumPy arrays (a new data adapter
    # each call, ~0.1 s) stays a few percent of a fit; at 8 steps it dominated.
    train_steps=12,
    train_repeats=5,
    inference_images=5120,  # five batches of 1024
    inference_repeats=5,
    latency_repeats=30,  # model.predict: ~90 ms each
    latency_warmups=LATENCY_WARMUPS,
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
    latency_warmups=1,  # the trace; a smoke run's latencies are no results
    preprocess_repeats=1,
    load_repeats=1,
    compare_models=("seed",),
    onednn_models=("seed",),  # two more TensorFlow imports: the cheap model only
    profile_model="seed",
)


# -- the whole suite ----------------------------------------------------------------------

# ratio name -> (numerator benchmark, denominator benchmark, field compared). Every ratio
# reads "the first path is this many times faster than the second": the package's path
# against plain Keras, training without op determinism against with it (its cost), and
# oneDNN on against off (each in its own process).
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
        "train/{m}/mnist_bench",  # op determinism on, as `train` runs
        "images_per_s",
    ),
    "train_mixed_bfloat16_vs_float32/{m}": (
        "train/{m}/mnist_bench@mixed_bfloat16",
        "train/{m}/mnist_bench@float32",
        "images_per_s",
    ),
    "train_onednn_on_vs_off/{m}": (
        "train/{m}/onednn-on",
        "train/{m}/onednn-off",
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
    determinism off over on), where above 1 determinism costs time; and
    ``train_onednn_on_vs_off/<model>``, above 1 where oneDNN is faster; and
    ``train_mixed_bfloat16_vs_float32/<model>`` (the GPU suite's precision rows). Pairs not measured
    are left out.
    """
    by_name = {b["name"]: b for b in benchmarks}
    out = {}
    for template, (top, bottom, key) in _RATIO_TEMPLATES.items():
        for m in BENCH_MODELS:
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
    onednn: bool,
    onednn_workers: list | None = None,
    kept: dict[str, Workload] | None = None,
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The measurements of `run_benchmarks`, in order, each a call returning its records.
    Workloads whose figures are compared (the training paths of one model, the inference
    methods of one model) are timed together, in turn (`_timed_together`)."""
    # Plain Keras and the package's pipeline, both with op determinism on (what `train`
    # runs), then the pipeline with it off: what determinism costs, in the same run.
    every_path = [("keras", True), ("mnist_bench", True), ("mnist_bench", False)]
    for name in BENCH_MODELS:
        trainings = every_path if name in sizes.compare_models else every_path[1:2]
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
            keep=kept,
        )
    if onednn and sizes.onednn_models:
        yield partial(
            compare_onednn,
            sizes.onednn_models,
            steps=sizes.train_steps,
            repeats=sizes.train_repeats,
            data_dir=None if data_dir is None else str(data_dir),
            peak_gflops=peak_gflops,
            workers=onednn_workers,
        )
    for name in BENCH_MODELS:
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
            warmups=sizes.latency_warmups,
        )
    yield lambda: [
        preprocess_throughput(
            data.x_train, data.y_train, repeats=sizes.preprocess_repeats, peak_gflops=peak_gflops
        )
    ]
    # run_benchmarks loaded the files first: the OS cache is warm
    yield lambda: [load_throughput(data_dir, repeats=sizes.load_repeats, warm=True)]


def _measure_group(
    makers: Sequence[Callable[[], Workload]],
    repeats: int,
    peak_gflops: float,
    *,
    latency: bool = False,
    warmups: int = 1,
    keep: dict[str, Workload] | None = None,
) -> list[dict[str, Any]]:
    """Build the workloads (their set-up is never timed), time them together after `warmups`
    untimed calls each, one record each. `keep` receives the workloads by name, warmed up,
    for a later use (the profile)."""
    workloads = [make() for make in makers]
    timings = _timed_together(workloads, repeats, warmups=warmups)
    if keep is not None:
        keep.update((w.name, w) for w in workloads)
    if latency:
        return [_latency_entry(w, t, peak_gflops) for w, t in zip(workloads, timings, strict=True)]
    return [entry(w, t, peak_gflops=peak_gflops) for w, t in zip(workloads, timings, strict=True)]


def _calibrate(sizes: Sizes, device: str | None) -> dict[str, Any]:
    """`matmul_peak` at ``matmul_n`` and at a quarter of it; the faster counts. On a shared
    2-core machine the large product, which does not fit in cache, ran at half the speed
    of a 512 one: the machine's practical peak is the best dense rate it shows."""
    tried = [
        matmul_peak(n, repeats=sizes.matmul_repeats, device=device)
        for n in dict.fromkeys((sizes.matmul_n, max(sizes.matmul_n // 4, 1)))
    ]
    best = max(tried, key=lambda p: p["peak_gflops"])
    return {**best, "tried_gflops": {str(p["n"]): p["peak_gflops"] for p in tried}}


def _recalibrated(
    peak: dict[str, Any], sizes: Sizes, device: str | None, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The peak calibrated again after the suite; the higher of the two counts, and every
    record's ``peak_fraction`` is recomputed from it. On a shared machine one calibration
    can fall in a busy minute and understate the peak (fractions above 1 were seen)."""
    again = _calibrate(sizes, device)
    best = max(peak, again, key=lambda p: p["peak_gflops"])
    best = {**best, "calibrated_gflops": [peak["peak_gflops"], again["peak_gflops"]]}
    for record in records:
        if record["gflops"] is not None:
            record["peak_fraction"] = record["gflops"] / best["peak_gflops"]
    return best


def run_benchmarks(
    *,
    data_dir: str | Path | None = None,
    quick: bool = False,
    device: str | None = None,
    onednn: bool = True,
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
    onednn : bool, default True
        On a CPU, also train `Sizes.onednn_models` with oneDNN on and off, each setting in
        its own process (`compare_onednn`); never on a GPU, where oneDNN does not run.
    progress : callable, optional
        Called as ``progress("peak", peak)`` after calibration, then as
        ``progress("benchmark", record)`` when each record is done (for a live table), then
        as ``progress("profile", profile)``, and as ``progress("peak_final", peak)`` once the
        peak is calibrated again (`_recalibrated`: the fractions in the result use the
        higher of the two).

    Returns
    -------
    dict
        ``device``, ``provenance``, ``peak`` (`matmul_peak` at the size that ran fastest,
        the higher of two calibrations, before and after, both in ``calibrated_gflops``),
        ``benchmarks`` (`entry` records,
        in order), ``ratios`` (`ratios`), ``quick``, ``sizes`` (`Sizes` as a dict) and
        ``op_determinism`` (whether TensorFlow op determinism was on: it is process-wide)
        and ``profile`` (`profile_training` of `Sizes.profile_model`: time per op type).
    """
    notify = progress or (lambda kind, record: None)
    sizes = QUICK if quick else FULL
    onednn = onednn and bool(sizes.onednn_models) and not _on_gpu(device, gpu_names())
    # A quick run starts the two oneDNN processes first: their TensorFlow imports and set-up
    # (seconds) overlap the rest instead of adding to it. A full run starts them when their
    # turn comes, so no other timing shares the machine with two imports.
    first = dict(steps=sizes.train_steps, data_dir=None if data_dir is None else str(data_dir))
    early = start_workers(sizes.onednn_models[0], **first) if quick and onednn else None
    try:
        peak = _calibrate(sizes, device)
        notify("peak", peak)
        data = load_mnist(data_dir)  # may download; nothing is timed yet
        records: list[dict[str, Any]] = []
        kept: dict[str, Workload] = {}  # the training workloads, warmed up: one is profiled
        suite = _suite(sizes, peak["peak_gflops"], data, data_dir, device, onednn, early, kept)
        for measure in suite:
            for record in measure():
                records.append(record)
                notify("benchmark", record)
    finally:
        for worker in early or []:
            worker.close()  # compare_onednn closed them already, unless it failed or never ran
    profile = profile_training(
        sizes.profile_model, steps=sizes.train_steps, images=data.x_train, labels=data.y_train,
        device=device, workload=kept.get(f"train/{sizes.profile_model}/mnist_bench"),
    )  # fmt: skip
    notify("profile", profile)
    peak = _recalibrated(peak, sizes, device, records)
    notify("peak_final", peak)
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


def write_benchmarks(result: dict[str, Any], out_dir: str | Path = DEFAULT_OUT) -> Path:
    """Write `result` to ``<out_dir>/<device-slug>.json`` atomically; return the path.

    A quick run goes to ``<device-slug>-quick.json``, so a smoke run never replaces a
    published full one.
    """
    stem = device_slug(result["device"]) + ("-quick" if result.get("quick") else "")
    return write_json(Path(out_dir) / f"{stem}.json", result)
