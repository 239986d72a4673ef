"""`mnist-bench bench`: the benchmark suite, its README sections, the GPU command."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import _common
from ._common import (
    DEFAULT_BENCH_OUT,
    EXIT_BAD_INPUT,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    _add_data_flag,
    _data_dir_from_env,
    _err,
    _print_readme_update,
    _start_tensorflow,
)


def _bench_out(args: argparse.Namespace) -> Path | None:
    """Where `bench` writes: --out; by default results/benchmarks for a full run and nothing
    for a quick one (a smoke run leaves the work tree as it was)."""
    if args.no_write:
        return None
    if args.out is not None:
        return Path(args.out)
    return None if args.quick else Path(DEFAULT_BENCH_OUT)


def _cmd_bench(args: argparse.Namespace) -> int:
    _start_tensorflow()
    from .. import bench

    if args.report:  # render only
        return _bench_readme(bench, args)
    if args.suite == "gpu":
        return _cmd_bench_gpu(bench, args)

    def show(kind: str, record: dict[str, Any]) -> None:  # a live table, one row per result
        if kind == "peak":
            print(f"device: {record['device']}")
            print(bench.format_peak(record))
            print(bench.TABLE_HEADER, flush=True)
        elif kind == "profile":
            print(bench.format_profile(record), flush=True)
        elif kind == "peak_final":
            start, end = record["calibrated_gflops"]
            print(f"peak calibrated again: {end:.1f} GFLOP/s (first {start:.1f}); the "
                  f"fractions written use {record['peak_gflops']:.1f}", flush=True)  # fmt: skip
        else:
            print(bench.format_row(record), flush=True)

    data_dir = _data_dir_from_env(args.data)
    result = bench.run_benchmarks(data_dir=data_dir, quick=args.quick, progress=show)
    print(bench.format_ratios(result))
    out = _bench_out(args)
    if out is not None:
        print(f"wrote {bench.write_benchmarks(result, out)}")
    return _bench_readme(bench, args)


def _cmd_bench_gpu(bench: Any, args: argparse.Namespace) -> int:
    """`bench --suite gpu`: devices, the gpu-marked tests, determinism, the two input paths,
    the 30-epoch reference with time to accuracy, the benchmark, one file (see `bench.gpu`)."""
    import subprocess

    out = _bench_out(args)
    if args.quick and out is None and not args.no_write:
        out = Path(tempfile.mkdtemp(prefix="mnist-bench-gpu-quick-"))
    tests = Path(__file__).resolve().parents[1] / "tests"
    if args.gpu_tests and tests.is_dir():
        print(f"gpu-marked tests: pytest -m gpu {tests}", flush=True)
        argv = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
        code = subprocess.run([*argv, str(tests)], check=False).returncode
        if code not in (0, 5):  # 5: none collected
            _err(f"the gpu-marked tests failed (pytest exit {code})")
            return EXIT_CHECK_FAILED
    data = _common._load_data(args.data)
    result = bench.gpu.run_gpu_suite(
        data=data,
        data_dir=_data_dir_from_env(args.data),
        quick=args.quick,
        progress=lambda line: print(line, flush=True),
    )
    print(bench.format_table(result))
    print(bench.format_ratios(result))
    if out is not None:
        print(f"wrote {bench.write_benchmarks(result, out)}")
    if not result["gpu_suite"]["determinism"]["same_digest"]:
        _err("training twice with the same seed gave different weights on this device")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _bench_readme(bench: Any, args: argparse.Namespace) -> int:
    if args.readme is None:
        if args.report:
            print("mnist-bench bench: --report needs --readme FILE", file=sys.stderr)
            return EXIT_BAD_INPUT
        return EXIT_OK
    out = Path(args.out if args.out is not None else DEFAULT_BENCH_OUT)
    results = out.parent  # results/benchmarks -> results (metrics.json)
    # The full section (docs/performance.md) or the short summary (README.md), or both:
    # whichever markers the file holds; neither is an error naming both.
    try:
        text = Path(args.readme).read_text()
    except OSError as exc:
        print(f"mnist-bench bench: {args.readme}: cannot read: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    updates = [
        (bench.PERF_BEGIN, bench.update_readme_performance, "performance section"),
        (bench.SUMMARY_BEGIN, bench.update_readme_summary, "performance summary"),
    ]
    present = [(update, what) for marker, update, what in updates if marker in text]
    try:
        if not present:  # let the full section's check name the missing markers
            bench.update_readme_performance(args.readme, results)
        for update, what in present:
            _print_readme_update(args.readme, what, update(args.readme, results))
    except ValueError as exc:
        print(f"mnist-bench bench: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def _add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure training/inference throughput against this machine's matmul peak",
        description="Calibrate the dense float32 peak, then time training (plain model.fit and "
        "the package's pipeline, op determinism on and off, and on a CPU oneDNN on and off, "
        "each in its own process), batched and single-image inference (model.predict and "
        "mnist_bench.predict), preprocessing and loading. Prints the device and peak, a table "
        "(images/s, GFLOP/s, fraction of peak, FLOPs/image) and the speed-ups, then writes "
        "<out>/<device>.json. Never asserts a time. <= 5 minutes on 2 CPU cores. "
        "--suite gpu: the one command for a GPU machine (devices, gpu-marked tests, "
        "determinism on the device, host against on-device input, the 30-epoch reference with "
        "time to accuracy, the benchmark with a mixed-precision row; trainings make their "
        "batches on the device); with --quick it runs on a CPU in about a minute.",
    )
    p.add_argument(
        "--suite",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: the benchmark; gpu: the GPU machine's whole check (default: cpu)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="every item tiny: a smoke run, figures are no results; writes nothing unless "
        "--out is given, then <device>-quick.json (default: off)",
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"folder (default: {DEFAULT_BENCH_OUT}; with --quick: write nothing, or with "
        "--suite gpu a temporary folder)",
    )
    _add_data_flag(p)
    p.add_argument(
        "--no-write", action="store_true", help="print only, write no JSON (default: write)"
    )
    p.add_argument(
        "--no-gpu-tests",
        dest="gpu_tests",
        action="store_false",
        help="--suite gpu: skip running the gpu-marked tests (default: run them)",
    )
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the performance section between the markers in this file from the "
        "benchmark files in --out and the metrics.json beside that folder (default: none)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="measure nothing: only regenerate --readme from the files already written",
    )
    p.set_defaults(func=_cmd_bench)
