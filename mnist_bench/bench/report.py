"""Reporting: the fixed-column table, the ratios, and the README's performance section."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import read_json, replace_marked
from ..provenance import device_text
from .core import cpu_device_name
from .suite import DEFAULT_OUT

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


def device_label(result: dict[str, Any]) -> str:
    """The device a benchmark file was measured on: its GPU, or its CPU with family and model
    (`core.cpu_device_name`), also for files written before the device name carried them
    (``"AMD EPYC (2 cpus)"``: a Zen 3, a Zen 4 or a Zen 5)."""
    cpu = result["provenance"]["cpu"]
    if not result["device"].startswith(f"{cpu['model_name']} ("):
        return result["device"]  # a GPU
    return cpu_device_name(cpu)


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
    device = device_text(prov)
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
            lines.append(_goal_row(label, target, shown, met, device_label(result)))
    for result in benchmarks:
        prov = result["provenance"]
        lines += [
            "",
            f"**{device_label(result)}**: {format_peak(result['peak'])}; TensorFlow "
            f"{prov['tensorflow']}, {_onednn_text(prov)}; rows without a determinism suffix "
            f"{_determinism_text(result)}.",
            *_gpu_suite_lines(result),
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


def _onednn_text(prov: dict[str, Any]) -> str:
    onednn = prov.get("onednn")
    if not onednn:
        return "oneDNN setting not recorded (TensorFlow's default for the CPU)"
    state = {True: "on", False: "off", None: "unknown"}[onednn.get("enabled")]
    return f"oneDNN {state} in the main process ({onednn.get('set_by') or 'not recorded'})"


def _determinism_text(result: dict[str, Any]) -> str:
    if any(b["name"].endswith("+determinism") for b in result["benchmarks"]):  # older files
        return f"ran with op determinism {'on' if result['op_determinism'] else 'off'}"
    return "ran with op determinism on, as `train` runs"


def _recipe_run_text(name: str, run: dict[str, Any]) -> str:
    tta = ", ".join(
        f"{100 * float(m):.1f}% "
        + ("not reached" if v["seconds"] is None else f"{v['seconds']:.0f} s (epoch {v['epoch']})")
        for m, v in run["time_to_accuracy"].items()
    )
    return (
        f"{name} recipe, {run['config']['epochs']} epochs: {run['wall_seconds']:.0f} s, test "
        f"accuracy {run['test_accuracy']:.2%}; time to accuracy: {tta}"
    )


def _gpu_suite_lines(result: dict[str, Any]) -> list[str]:
    """The GPU command's checks (`gpu.run_gpu_suite`): determinism and the recipes' runs."""
    suite = result.get("gpu_suite")
    if not suite:
        return []
    det = suite["determinism"]
    runs = [_recipe_run_text("reference", suite["reference_run"])]
    if "fast_run" in suite:  # files written before the fast recipe existed have none
        runs.append(_recipe_run_text("fast", suite["fast_run"]))
    return [
        "",
        f"`mnist-bench bench --suite gpu`: same seed, same digest twice on the device: "
        f"{'yes' if det['same_digest'] else '**no**'}; {'; '.join(runs)}; whole command "
        f"{suite['wall_seconds'] / 60:.1f} min.",
    ]


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
        device = device_text(prov)
        cells = [
            "not reached" if tta["seconds"][m] is None
            else f"{tta['seconds'][m] / 60:.1f} min (epoch {tta['epoch'][m]})"
            for m in marks
        ]  # fmt: skip
        lines.append(f"| {run['run']} | {device} | " + " | ".join(cells) + " |")
    return lines


SUMMARY_BEGIN, SUMMARY_END = "<!-- performance-summary -->", "<!-- /performance-summary -->"


def _rate(by_name: dict[str, dict], name: str) -> str:
    return _fmt((by_name.get(name) or {}).get("images_per_s"), ",.0f")


def performance_summary(benchmarks: Sequence[dict[str, Any]]) -> str:
    """A short Markdown table for the README's front page: per benchmark file (one CPU or
    GPU), training images/s of both networks with oneDNN on and off and what op determinism
    costs, each ratio measured in the same run. The full tables: `performance_section`."""
    lines = [
        "| device | network | train img/s, oneDNN on | oneDNN off | on / off | "
        "without / with op determinism |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for result in benchmarks:
        by_name = {b["name"]: b for b in result["benchmarks"]}
        for model in ("seed", "reference"):
            on_off = result["ratios"].get(f"train_onednn_on_vs_off/{model}")
            determinism = result["ratios"].get(f"train_without_vs_with_op_determinism/{model}")
            if on_off is None:
                continue  # a file from before both settings were timed
            cells = [
                _rate(by_name, f"train/{model}/onednn-on"),
                _rate(by_name, f"train/{model}/onednn-off"),
                f"{on_off:.2f}x",
                _fmt(determinism, ".2f") + ("x" if determinism is not None else ""),
            ]
            name = "notebook (`seed`)" if model == "seed" else model
            lines.append(f"| {device_label(result)} | {name} | " + " | ".join(cells) + " |")
    if len(lines) == 2:
        lines.append("| – | – | not measured | | | |")
    return "\n".join(lines)


def update_readme_summary(readme_path: str | Path, results_dir: str | Path = "results") -> bool:
    """Regenerate the ``<!-- performance-summary -->`` table from ``<results_dir>/benchmarks``;
    returns whether the file changed."""
    body = performance_summary(published_benchmarks(Path(results_dir) / "benchmarks"))
    return replace_marked(readme_path, SUMMARY_BEGIN, SUMMARY_END, body, "the performance summary")


def update_readme_performance(readme_path: str | Path, results_dir: str | Path = "results") -> bool:
    """Regenerate the README's ``<!-- performance -->`` section from ``<results_dir>/benchmarks``
    and ``<results_dir>/metrics.json``; returns whether the file changed."""
    metrics_path = Path(results_dir) / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.exists() else None
    body = performance_section(published_benchmarks(Path(results_dir) / "benchmarks"), metrics)
    return replace_marked(readme_path, PERF_BEGIN, PERF_END, body, "the performance section")
