"""Throughput and latency of training, inference, preprocessing and loading, measured against
this machine's own dense float32 peak.

Run it::

    mnist-bench bench                  # <= 5 min on 2 CPU cores: prints the table, writes
                                       # results/benchmarks/<device>.json
    mnist-bench bench --quick          # every item tiny: a smoke run (seconds, nearly all
                                       # graph tracing); writes nothing unless --out is given
    mnist-bench bench --suite gpu      # the GPU machine's command (`gpu`); --quick on a CPU
    pytest tests/test_bench.py --benchmark-only  # the same workloads under pytest-benchmark

or from Python: ``result = run_benchmarks(); print(format_table(result))``.

What is measured (`run_benchmarks`):

- calibration: an n x n float32 matmul with NumPy and with `tf.matmul`, best of several
  repeats; the faster is the machine's practical dense peak (`peak_gflops`);
- training throughput of an epoch slice (`steps` batches of 256) for the ``seed`` and
  ``reference`` models, through plain `model.fit` on NumPy arrays (the baseline) and through the
  package's own input path as `train` runs it (`training.epoch_dataset`: seeded order, tf.data
  prefetch, and the model's recipe's augmentation: on for ``reference``, off for ``seed``),
  both compiled by `training.compile_model` and with op determinism on, as `train` runs;
  the package's path once more with op determinism off (its cost); each model is the
  network its recipe trains (`TrainConfig.recipe(name).model_options`);
- on a CPU, the package's training with TensorFlow's oneDNN kernels on and off, each setting
  in its own process since TensorFlow reads it at import (`onednn.compare_onednn`);
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

The modules, by concern: `core` (devices, op determinism, timed calls in alternating turns,
records), `calibration` (the matmul peak), `workloads` (the units of work and their single
measurements), `profile` (time per op type), `onednn` (oneDNN on against off, one process
each), `suite` (sizes, the whole run, ratios, the result file), `report` (tables and the
README section) and `gpu` (the one command for a GPU machine).

FLOPs per image come from the model's Conv2D and Dense layers (`models.model_flops`; a
multiply-add counts 2; training = 3x forward). Achieved GFLOP/s = images/s x FLOPs/image / 1e9,
and ``peak_fraction`` divides it by the calibration's peak. Pooling, batch norm, activations,
the optimizer update and the input pipeline cost time but are not counted: the gap between the
fraction and 1 is where that time goes.
"""

from __future__ import annotations

from . import gpu
from .calibration import MATMUL_LIBRARIES, matmul_call, matmul_peak
from .core import (
    Workload,
    _timed_together,
    device_name,
    device_slug,
    entry,
    op_determinism,
)
from .onednn import compare_onednn
from .profile import format_profile, profile_training
from .report import (
    PERF_BEGIN,
    PERF_END,
    SUMMARY_BEGIN,
    SUMMARY_END,
    TABLE_HEADER,
    _reproduction_goals,
    format_peak,
    format_ratios,
    format_row,
    format_table,
    performance_section,
    performance_summary,
    published_benchmarks,
    update_readme_performance,
    update_readme_summary,
)
from .suite import (
    BENCH_MODELS,
    DEFAULT_OUT,
    FULL,
    QUICK,
    Sizes,
    ratios,
    run_benchmarks,
    write_benchmarks,
)
from .workloads import (
    INFERENCE_METHODS,
    PIPELINES,
    inference_throughput,
    inference_workload,
    latency_workload,
    load_throughput,
    load_workload,
    preprocess_throughput,
    preprocess_workload,
    recipe_model,
    single_image_latency,
    train_throughput,
    train_workload,
)

__all__ = [
    "BENCH_MODELS",
    "DEFAULT_OUT",
    "FULL",
    "INFERENCE_METHODS",
    "MATMUL_LIBRARIES",
    "PERF_BEGIN",
    "PERF_END",
    "PIPELINES",
    "QUICK",
    "SUMMARY_BEGIN",
    "SUMMARY_END",
    "TABLE_HEADER",
    "Sizes",
    "Workload",
    "compare_onednn",
    "device_name",
    "device_slug",
    "entry",
    "format_peak",
    "format_profile",
    "format_ratios",
    "format_row",
    "format_table",
    "gpu",
    "inference_throughput",
    "inference_workload",
    "latency_workload",
    "load_throughput",
    "load_workload",
    "matmul_call",
    "matmul_peak",
    "op_determinism",
    "performance_section",
    "performance_summary",
    "preprocess_throughput",
    "preprocess_workload",
    "profile_training",
    "published_benchmarks",
    "ratios",
    "recipe_model",
    "run_benchmarks",
    "single_image_latency",
    "train_throughput",
    "train_workload",
    "update_readme_performance",
    "update_readme_summary",
    "write_benchmarks",
]  # fmt: skip
_PRIVATE_FOR_TESTS = (_timed_together, _reproduction_goals)  # tested on purpose
