"""Benchmarks (pytest-benchmark) of training, inference, preprocessing and loading, and tests
of `mnist_bench.bench` and `mnist-bench bench`.

    pytest tests/test_bench.py --benchmark-only   # the timings table; a few minutes on 2 cores
    pytest --benchmark-disable tests              # each benchmark once, small: a smoke test
    tox -e bench / tox -e bench-compare           # save a baseline / compare against it

The benchmarks time the workloads `mnist-bench bench` times (`bench.*_workload`), warm-up
rounds untimed, and record in `extra_info`: images_per_s (images per round / the median
round), flops_per_image, gflops, peak_fraction (against the matmul peak, measured once per
module and device) and device. GPU variants run under ``tf.device("/GPU:0")`` and are skipped
when TensorFlow sees no GPU. Nothing here asserts a time: a loaded machine is slow, not wrong.
"""

import contextlib
import copy
import dataclasses
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from mnist_bench import MODEL_NAMES, TrainConfig, bench, build_model, cli, model_flops
from mnist_bench.bench import BENCH_MODELS

REPO_ROOT = Path(__file__).resolve().parents[1]

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("gpu", id="gpu", marks=pytest.mark.gpu)]

# Sizes per round: (smoke, timed). Smoke = --benchmark-disable, where each benchmark runs once.
TRAIN_STEPS = {True: 1, False: 8}  # batches of 256: the epoch slice of one round
INFERENCE_IMAGES = {True: 1024, False: 4096}  # batch 1024
MATMUL_N = {True: 512, False: 2048}
TRAIN_ROUNDS, INFERENCE_ROUNDS, LATENCY_ROUNDS, CPU_ROUNDS = 3, 3, 50, 5

RESULT_KEYS = {"device", "provenance", "peak", "benchmarks", "ratios", "quick", "sizes"}
RESULT_KEYS |= {"op_determinism", "profile"}
# What a quick run measures (`bench.QUICK`): every path for the seed model, the reference
# model as `train` runs it, oneDNN on and off for the seed model (own processes), inference.
EXPECTED_BENCHMARKS = {
    *(f"train/seed/{p}" for p in ("keras", "mnist_bench", "mnist_bench-determinism")),
    "train/reference/mnist_bench",
    "train/seed/onednn-on",
    "train/seed/onednn-off",
    *(f"{kind}/{m}/{method}" for kind in ("inference", "latency") for m in BENCH_MODELS
      for method in bench.INFERENCE_METHODS),
    "preprocess",
    "load",
}  # fmt: skip
EXPECTED_RATIOS = {
    "train_mnist_bench_vs_keras_fit/seed",
    "train_without_vs_with_op_determinism/seed",
    "train_onednn_on_vs_off/seed",
    *(f"predict_{kind}_vs_model_predict/{m}" for kind in ("batched", "single_p50")
      for m in BENCH_MODELS),
}  # fmt: skip


def _tf_device(kind: str) -> str:
    """The TensorFlow device of a "cpu" or "gpu" variant; skips the GPU one without a GPU."""
    if kind == "gpu":
        if not tf.config.list_physical_devices("GPU"):
            pytest.skip("no GPU visible to TensorFlow")
        return "/GPU:0"
    return "/CPU:0"


@pytest.fixture(scope="module")
def smoke(request: pytest.FixtureRequest) -> bool:
    """True under --benchmark-disable: every benchmark runs once, so sizes shrink."""
    config = request.config
    return bool(config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"))


@pytest.fixture(scope="module")
def peak(smoke: bool) -> Callable[[str], dict[str, Any]]:
    """`peak(tf_device)`: `bench.matmul_peak` of that device, measured once per module."""
    measured: dict[str, dict[str, Any]] = {}

    def get(device: str) -> dict[str, Any]:
        if device not in measured:
            repeats = 2 if smoke else 5
            measured[device] = bench.matmul_peak(MATMUL_N[smoke], repeats=repeats, device=device)
        return measured[device]

    return get


def _record(benchmark: Any, workload: bench.Workload, peak: Callable, device: str) -> None:
    """Fill `extra_info` from the benchmark's own stats (None under --benchmark-disable)."""
    info: dict[str, Any] = {
        "flops_per_image": workload.flops_per_image,
        "device": workload.device,
        "images_per_round": workload.images,
        "op_determinism": bench.op_determinism(),  # on if a training ran earlier in the session
        **workload.info,
    }
    if benchmark.stats:
        top = peak(device)["peak_gflops"]  # measured after the rounds, never during them
        record = bench.entry(workload, [benchmark.stats["median"]], peak_gflops=top)
        info.update({k: record[k] for k in ("images_per_s", "gflops", "peak_fraction")})
        info["peak_gflops"] = top
    else:
        info.update(images_per_s=None, gflops=None, peak_fraction=None)
    benchmark.extra_info.update(info)


# -- benchmarks ---------------------------------------------------------------------------


def test_calibration_numpy_matmul(benchmark: Any, smoke: bool, peak: Callable) -> None:
    n = MATMUL_N[smoke]
    call, flops = bench.matmul_call(n, library="numpy")
    benchmark.pedantic(call, rounds=CPU_ROUNDS, warmup_rounds=1)
    gflops = flops / benchmark.stats["min"] / 1e9 if benchmark.stats else None  # best, as the peak
    benchmark.extra_info.update(n=n, gflops=gflops, device=bench.device_name("/CPU:0"))
    benchmark.extra_info["peak_gflops"] = peak("/CPU:0")["peak_gflops"]


@pytest.mark.parametrize("device", DEVICES)
def test_calibration_tf_matmul(benchmark: Any, device: str, smoke: bool, peak: Callable) -> None:
    tf_device, n = _tf_device(device), MATMUL_N[smoke]
    call, flops = bench.matmul_call(n, library="tf", device=tf_device)
    benchmark.pedantic(call, rounds=CPU_ROUNDS, warmup_rounds=1)
    gflops = flops / benchmark.stats["min"] / 1e9 if benchmark.stats else None
    benchmark.extra_info.update(n=n, gflops=gflops, device=bench.device_name(tf_device))
    benchmark.extra_info["peak_gflops"] = peak(tf_device)["peak_gflops"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pipeline", bench.PIPELINES)
@pytest.mark.parametrize("model_name", BENCH_MODELS)
def test_train_throughput(
    benchmark: Any, model_name: str, pipeline: str, device: str, smoke: bool, peak: Callable
) -> None:
    tf_device = _tf_device(device)
    workload = bench.train_workload(
        model_name, batch_size=256, steps=TRAIN_STEPS[smoke], pipeline=pipeline, device=tf_device
    )
    benchmark.pedantic(workload.run, rounds=TRAIN_ROUNDS, warmup_rounds=1)
    _record(benchmark, workload, peak, tf_device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", bench.INFERENCE_METHODS)
@pytest.mark.parametrize("model_name", BENCH_MODELS)
def test_inference_throughput(
    benchmark: Any, model_name: str, method: str, device: str, smoke: bool, peak: Callable
) -> None:
    tf_device = _tf_device(device)
    with tf.device(tf_device):
        model = bench.recipe_model(model_name)
    workload = bench.inference_workload(
        model, batch_size=1024, images=INFERENCE_IMAGES[smoke], method=method, device=tf_device
    )
    benchmark.pedantic(workload.run, rounds=INFERENCE_ROUNDS, warmup_rounds=1)
    _record(benchmark, workload, peak, tf_device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", bench.INFERENCE_METHODS)
@pytest.mark.parametrize("model_name", BENCH_MODELS)
def test_single_image_latency(
    benchmark: Any, model_name: str, method: str, device: str, peak: Callable
) -> None:
    tf_device = _tf_device(device)
    with tf.device(tf_device):
        model = bench.recipe_model(model_name)
    workload = bench.latency_workload(model, method=method, device=tf_device)
    benchmark.pedantic(workload.run, rounds=LATENCY_ROUNDS, warmup_rounds=3)
    _record(benchmark, workload, peak, tf_device)
    if benchmark.stats:
        benchmark.extra_info["p50_ms"] = 1000 * benchmark.stats["median"]


def test_preprocess_throughput(benchmark: Any, mnist: Any, peak: Callable) -> None:
    workload = bench.preprocess_workload(mnist.x_train, mnist.y_train)
    benchmark.pedantic(workload.run, rounds=CPU_ROUNDS, warmup_rounds=1)
    _record(benchmark, workload, peak, "/CPU:0")


def test_load_throughput(benchmark: Any, mnist_dir: Path, peak: Callable) -> None:
    workload = bench.load_workload(mnist_dir)
    benchmark.pedantic(workload.run, rounds=3, warmup_rounds=1)
    _record(benchmark, workload, peak, "/CPU:0")


# -- the library and the command ----------------------------------------------------------


@dataclass(frozen=True)
class BenchRun:
    """One `mnist-bench bench --quick` run, with what `run_benchmarks` was called with and
    returned (spied on), so the library's result and the command's output are checked from
    the same run: a second quick run would double this file's time."""

    code: int
    out: str
    err: str
    out_dir: Path
    kwargs: dict[str, Any]
    result: dict[str, Any]


@pytest.fixture(scope="module")
def quick_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    out_dir = tmp_path_factory.mktemp("bench")
    calls: list[tuple[dict, dict]] = []
    real = bench.run_benchmarks

    def spy(**kwargs: Any) -> dict[str, Any]:
        calls.append((kwargs, real(**kwargs)))
        return calls[-1][1]

    out, err = io.StringIO(), io.StringIO()
    argv = ["bench", "--quick", "--out", str(out_dir), "--data", str(mnist_dir)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench, "run_benchmarks", spy)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    assert len(calls) == 1, err.getvalue()
    return BenchRun(code, out.getvalue(), err.getvalue(), out_dir, *calls[0])


def test_run_benchmarks_quick_returns_every_benchmark(quick_run: BenchRun) -> None:
    result = quick_run.result
    assert quick_run.kwargs["quick"] is True
    assert set(result) == RESULT_KEYS
    assert result["quick"] is True
    assert result["peak"]["peak_gflops"] == max(
        result["peak"]["numpy_gflops"], result["peak"]["tf_gflops"]
    )
    assert result["peak"]["peak_gflops"] > 0
    assert {b["name"] for b in result["benchmarks"]} == EXPECTED_BENCHMARKS
    for record in result["benchmarks"]:
        assert record["images_per_s"] > 0, record["name"]
        assert record["device"], record["name"]
        if record["name"] == "load":  # reading files: no FLOPs to speak of
            assert record["flops_per_image"] is None
        else:
            assert record["flops_per_image"] > 0, record["name"]
            assert record["gflops"] > 0 and record["peak_fraction"] > 0, record["name"]
    assert set(result["ratios"]) == EXPECTED_RATIOS
    assert all(value > 0 for value in result["ratios"].values())
    json.dumps(result, allow_nan=False)  # what write_benchmarks stores


def test_profile_splits_the_training_time_by_op_type(quick_run: BenchRun) -> None:
    profile = quick_run.result["profile"]
    assert profile["model"] == bench.QUICK.profile_model and profile["wall_seconds"] > 0
    ops = profile["op_seconds"]
    # A conv net's training runs its convolutions forward and both ways backward (the quick
    # run profiles the seed model, whose second convolution needs its input's gradient). Where
    # TensorFlow enables oneDNN (CPUs with AVX-512 VNNI/BF16 or AMX) the op types carry its
    # prefix: _MklNativeConv2D, _MklMatMul.
    # Convolutions with a bias and ReLU may run fused (_FusedConv2D, ...WithBias).
    base_types = {re.sub(r"^_Mkl(Native)?", "", op) for op in ops}
    for kind in ("Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput", "MatMul"):
        assert any(kind in op for op in base_types), (kind, sorted(base_types))
    assert any("Conv2D" in op and "Backprop" not in op for op in base_types)
    assert all(seconds >= 0 for seconds in ops.values())
    # Executor containers (ExecutorState::Process) hold the ops: counting them too would
    # double the total (they showed up as a "Process" op with half of all the time).
    assert "Process" not in ops
    shares = [row["share"] for row in profile["top"]]
    assert math.isclose(sum(shares), 1.0, rel_tol=1e-9)
    assert shares[:-1] == sorted(shares[:-1], reverse=True)  # ranked, "other" last
    assert profile["top"][-1]["op"] == "other"
    assert "where training time goes" in quick_run.out


def test_flops_per_image_follow_the_model(quick_run: BenchRun) -> None:
    records = {b["name"]: b for b in quick_run.result["benchmarks"]}
    for m in BENCH_MODELS:
        forward = records[f"inference/{m}/model.predict"]["flops_per_image"]
        assert records[f"train/{m}/mnist_bench"]["flops_per_image"] == 3 * forward
        assert records[f"latency/{m}/mnist_bench.predict"]["flops_per_image"] == forward


def test_format_table_has_one_row_per_benchmark(quick_run: BenchRun) -> None:
    lines = bench.format_table(quick_run.result).splitlines()
    assert lines[0] == bench.TABLE_HEADER
    assert [line.split()[0] for line in lines[1:]] == [
        b["name"] for b in quick_run.result["benchmarks"]
    ]
    assert len({len(line) for line in lines}) == 1  # fixed columns


def test_write_benchmarks_writes_json_atomically(quick_run: BenchRun, tmp_path: Path) -> None:
    result = {**quick_run.result, "quick": False}
    path = bench.write_benchmarks(result, tmp_path)
    assert path == tmp_path / f"{bench.device_slug(result['device'])}.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    with pytest.raises(TypeError):  # unserialisable: the file already there stays whole
        bench.write_benchmarks({**result, "peak": object()}, tmp_path)
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_cli_bench_quick_prints_device_peak_table_ratios(quick_run: BenchRun) -> None:
    assert quick_run.code == 0, quick_run.err
    result, out = quick_run.result, quick_run.out
    first, again = result["peak"]["calibrated_gflops"]
    assert out.startswith(f"device: {result['device']}\npeak {first:.1f} GFLOP/s float32 (")
    assert result["peak"]["peak_gflops"] == max(first, again)
    # the live table: one row per record as measured (its fractions from the first peak)
    assert bench.TABLE_HEADER in out
    for record in result["benchmarks"]:
        assert f"\n{record['name']:<40} {record['images_per_s']:>10,.0f} " in out
    assert f"peak calibrated again: {again:.1f} GFLOP/s" in out
    assert bench.format_ratios(result) in out
    written = quick_run.out_dir / f"{bench.device_slug(result['device'])}-quick.json"
    assert out.endswith(f"wrote {written}\n")
    assert json.loads(written.read_text())["benchmarks"] == json.loads(
        json.dumps(result["benchmarks"])
    )
    assert quick_run.kwargs["data_dir"] is not None


def test_cli_bench_no_write(
    quick_run: BenchRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The flags' wiring only: the measurement itself is the quick run's, replayed.
    seen = {}

    def replay(**kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        for record in [quick_run.result["peak"], *quick_run.result["benchmarks"]]:
            kwargs["progress"]("peak" if "peak_gflops" in record else "benchmark", record)
        return quick_run.result

    monkeypatch.setattr(bench, "run_benchmarks", replay)
    assert cli.main(["bench", "--no-write", "--out", str(tmp_path / "out")]) == 0
    assert seen["quick"] is False
    assert bench.format_table(quick_run.result) in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    # A quick run without --out leaves the work tree as it was (issue 15)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--quick"]) == 0
    assert seen["quick"] is True
    assert "wrote" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


# -- helpers ------------------------------------------------------------------------------


def test_device_name_and_slug() -> None:
    assert bench.device_name("/CPU:0").endswith("cpus)")
    assert " (family " in bench.device_name("/CPU:0")
    assert bench.device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert bench.device_slug("AMD EPYC (2 cpus)") == "amd-epyc-2-cpus"
    slug = bench.device_slug()
    assert slug and all(c.isalnum() or c == "-" for c in slug) and slug == slug.lower()


def test_two_cpus_of_one_model_name_get_two_names_and_two_files(monkeypatch) -> None:
    """ "AMD EPYC" is a Zen 3, a Zen 4 or a Zen 5: the family and model keep their benchmark
    files apart (one used to overwrite the other)."""
    names = []
    for family_model in ("25/1", "25/17"):
        cpu = {"model_name": "AMD EPYC", "affinity_cpus": 2, "logical_cpus": 2,
               "vendor_family_model_stepping": f"AuthenticAMD/{family_model}/1"}  # fmt: skip
        monkeypatch.setattr(bench.core, "cpu_description", lambda cpu=cpu: cpu)
        names.append(bench.device_name("/CPU:0"))
    assert names == [
        "AMD EPYC (family 25 model 1, 2 cpus)", "AMD EPYC (family 25 model 17, 2 cpus)"
    ]  # fmt: skip
    assert [bench.device_slug(n) for n in names] == [
        "amd-epyc-family-25-model-1-2-cpus", "amd-epyc-family-25-model-17-2-cpus"
    ]  # fmt: skip


def test_entry_counts_median_gflops_and_peak_fraction() -> None:
    workload = bench.Workload("w", lambda: None, 1000, 2_000_000, "cpu", {"model": "m"})
    record = bench.entry(workload, [2.0, 1.0, 4.0], peak_gflops=10.0)
    assert record["seconds"] == 2.0 and record["repeats"] == 3
    assert record["images_per_s"] == 500.0
    assert record["gflops"] == pytest.approx(1.0)  # 500 images/s x 2 MFLOP
    assert record["peak_fraction"] == pytest.approx(0.1)
    assert record["model"] == "m"
    assert bench.entry(workload, [1.0])["peak_fraction"] is None
    with pytest.raises(ValueError, match="at least one"):
        bench.entry(workload, [])


def test_compared_workloads_are_timed_in_alternating_turns_after_their_warm_ups() -> None:
    calls: list[str] = []

    def workload(name: str) -> bench.Workload:
        return bench.Workload(name, lambda: calls.append(name), 1, 1, "cpu")

    seconds = bench._timed_together([workload("a"), workload("b")], repeats=3, warmups=2)
    # warm-ups untimed, then rounds in turn, every other one reversed: A B, B A, A B
    assert calls == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"]
    assert [len(s) for s in seconds] == [3, 3]
    assert all(t >= 0 for s in seconds for t in s)


def test_ratios_read_as_speedups() -> None:
    records = [
        {"name": "train/seed/keras", "images_per_s": 100.0},
        {"name": "train/seed/mnist_bench", "images_per_s": 150.0},
        {"name": "latency/seed/model.predict", "p50_ms": 90.0},
        {"name": "latency/seed/mnist_bench.predict", "p50_ms": 3.0},
        {"name": "train/seed/mnist_bench-determinism", "images_per_s": 180.0},
        {"name": "train/seed/onednn-on", "images_per_s": 200.0},
        {"name": "train/seed/onednn-off", "images_per_s": 100.0},
    ]
    assert bench.ratios(records) == {
        "train_mnist_bench_vs_keras_fit/seed": 1.5,
        "predict_single_p50_vs_model_predict/seed": 30.0,
        "train_without_vs_with_op_determinism/seed": 1.2,
        "train_onednn_on_vs_off/seed": 2.0,
    }


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_benchmarks_time_the_network_the_recipe_trains(model_name: str) -> None:
    # The reference recipe sets model_options: the default network would be the wrong one.
    config = TrainConfig.recipe(model_name)
    trained = model_flops(build_model(model_name, **config.model_options))
    workload = bench.train_workload(model_name, steps=1)
    assert workload.flops_per_image == trained["training"]
    assert model_flops(bench.recipe_model(model_name)) == trained


@pytest.mark.parametrize("determinism", [True, False])
def test_training_workload_runs_with_op_determinism_as_asked_then_restores_it(
    monkeypatch: pytest.MonkeyPatch, determinism: bool
) -> None:
    before, seen = bench.op_determinism(), []
    real = bench.workloads.epoch_dataset

    def spy(*args: Any, **kwargs: Any) -> Any:  # called inside the workload's timed call
        seen.append(bench.op_determinism())
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.workloads, "epoch_dataset", spy)
    workload = bench.train_workload(
        "seed", steps=1, pipeline="mnist_bench", determinism=determinism
    )
    workload.run()
    assert seen == [determinism]
    assert bench.op_determinism() == before
    # `train` runs with op determinism on: that is the plain name; off is the variant
    assert workload.name == "train/seed/mnist_bench" + ("" if determinism else "-determinism")
    assert workload.info["op_determinism"] is determinism


def test_bad_choices_name_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="pipeline must be one of"):
        bench.train_workload("seed", pipeline="torch")
    with pytest.raises(ValueError, match="library must be one of"):
        bench.matmul_call(8, library="cupy")
    with pytest.raises(ValueError, match="method must be one of"):
        bench.latency_workload(build_model("seed"), method="serve")


def test_training_inputs_come_from_given_images() -> None:
    images = np.zeros((10, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="need 256 images, got 10"):
        bench.train_workload("seed", steps=1, images=images)


# -- the README's performance section -----------------------------------------------------


def _goal_cells(section: str, label: str) -> list[list[str]]:
    """The cells of every goal row of `section` whose label is `label`."""
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row] for row in rows if row[0].strip() == label]


def test_performance_section_judges_each_goal_from_the_files(quick_run: BenchRun) -> None:
    result = copy.deepcopy(quick_run.result)
    by_name = {b["name"]: b for b in result["benchmarks"]}
    by_name["train/reference/mnist_bench"]["peak_fraction"] = 0.61  # just over 0.6
    by_name["latency/reference/mnist_bench.predict"]["p50_ms"] = 1.2  # over 1 ms
    result["ratios"]["predict_batched_vs_model_predict/reference"] = 2.0  # exactly the goal
    section = bench.performance_section([result], None)
    verdicts = {
        "training, reference, fraction of peak": ("0.61", "yes"),
        "`mnist_bench.predict`, one image, p50 ms, reference": ("1.2", "**no**"),
        "batched inference over `model.predict`, reference": ("2x", "yes"),
    }
    for label, (measured, met) in verdicts.items():
        [cells] = _goal_cells(section, label)
        assert cells[2:4] == [measured, met], cells
    for record in result["benchmarks"]:  # one table row per benchmark
        assert f"| {record['name']} | " in section
    for row in result["profile"]["top"]:  # and the op-type profile
        assert f"| {row['op']} | {row['share']:.1%} |" in section
    assert "not yet run" in _goal_cells(section, "30-epoch reference, 2 CPU cores")[0]


@pytest.mark.parametrize(
    ("minutes", "accuracy", "met"),
    [(15.0, 0.9972, "yes"), (15.0, 0.9960, "**no**"), (25.0, 0.9975, "**no**")],
    ids=["fast-and-accurate", "fast-not-accurate", "accurate-not-fast"],
)
def test_reproduction_goal_needs_both_the_time_and_the_accuracy(
    minutes: float, accuracy: float, met: str
) -> None:
    run = {
        "run": "reference-seed0",
        "wall_seconds": minutes * 60,
        "test_accuracy": accuracy,
        "provenance": {
            "gpus": [],
            "cpu": {
                "model_name": "AMD EPYC",
                "vendor_family_model_stepping": "AuthenticAMD/25/17/1",
                "affinity_cpus": 2,
            },
        },
    }
    metrics = {"published": {"run": "reference-seed0"}, "runs": [run]}
    [row, h100] = bench._reproduction_goals(metrics)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "30-epoch reference, 2 CPU cores", "<= 20 min, >= 99.70%",
        f"{minutes:.1f} min, {accuracy:.2%}", met, "AMD EPYC (family 25 model 17, 2 CPUs)",
    ]  # fmt: skip
    assert "not measured" in h100


def test_performance_section_without_files_says_so() -> None:
    section = bench.performance_section([], None)
    assert "No benchmark file is published" in section
    assert _goal_cells(section, "training, reference, fraction of peak")[0][2] == "not measured"
    assert "no reference run validated on the test set" in section


def test_docs_performance_section_matches_the_published_files() -> None:
    """docs/performance.md's generated section is what the committed results/ files render to."""
    page = (REPO_ROOT / "docs" / "performance.md").read_text()
    section = page.split(bench.PERF_BEGIN)[1].split(bench.PERF_END)[0].strip("\n")
    metrics = json.loads((REPO_ROOT / "results" / "metrics.json").read_text())
    files = bench.published_benchmarks(REPO_ROOT / "results" / "benchmarks")
    assert section == bench.performance_section(files, metrics), (
        "docs/performance.md is stale: "
        "run `mnist-bench bench --report --readme docs/performance.md`"
    )


def test_readme_performance_summary_matches_the_published_files() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    summary = readme.split(bench.SUMMARY_BEGIN)[1].split(bench.SUMMARY_END)[0].strip("\n")
    files = bench.published_benchmarks(REPO_ROOT / "results" / "benchmarks")
    assert summary == bench.performance_summary(files), (
        "README.md is stale: run `mnist-bench bench --report --readme README.md`"
    )


def test_summary_shows_both_onednn_settings_and_their_ratio() -> None:
    record = {
        "device": "Some CPU (2 cpus)",  # as files named CPUs before family and model
        "provenance": {
            "cpu": {
                "model_name": "Some CPU",
                "affinity_cpus": 2,
                "vendor_family_model_stepping": "Vendor/6/7/1",
            }
        },
        "benchmarks": [
            {"name": "train/reference/onednn-on", "images_per_s": 600.0},
            {"name": "train/reference/onednn-off", "images_per_s": 300.0},
        ],
        "ratios": {
            "train_onednn_on_vs_off/reference": 2.0,
            "train_without_vs_with_op_determinism/reference": 1.1,
        },
    }
    lines = bench.performance_summary([record]).splitlines()
    assert lines[2] == (
        "| Some CPU (family 6 model 7, 2 cpus) | reference | 600 | 300 | 2.00x | 1.10x |"
    )
    assert len(lines) == 3  # no seed rows without their ratio
    assert "not measured" in bench.performance_summary([])


def test_cli_bench_report_rewrites_only_the_readme_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.PERF_BEGIN}\nold\n{bench.PERF_END}\nend\n")
    (tmp_path / "benchmarks").mkdir()
    argv = ["bench", "--report", "--readme", str(readme), "--out", str(tmp_path / "benchmarks")]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(argv) == 0
    expected = bench.performance_section([], None)
    assert readme.read_text() == f"intro\n{bench.PERF_BEGIN}\n{expected}\n{bench.PERF_END}\nend\n"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["bench", "--report"]) == 2
    assert "--report needs --readme" in err.getvalue()


# -- the GPU machine's command, in its quick mode on this CPU ------------------------------


def test_gpu_suite_quick_runs_on_a_cpu_and_writes_one_file(
    quick_run: BenchRun,
    mnist: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """`mnist-bench bench --suite gpu --quick`: every step but the benchmark runs for real
    (the benchmark is the quick run's, replayed: measuring it again would double this file's
    time). CI runs this, so the GPU command cannot rot on machines without a GPU."""
    small = dataclasses.replace(mnist, x_test=mnist.x_test[:1000], y_test=mnist.y_test[:1000])
    monkeypatch.setattr(cli._common, "_load_data", lambda explicit: small)
    monkeypatch.setattr(bench.gpu, "run_benchmarks", lambda **kw: copy.deepcopy(quick_run.result))
    argv = ["bench", "--suite", "gpu", "--quick", "--no-gpu-tests", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    [written] = tmp_path.iterdir()
    assert out.endswith(f"wrote {written}\n") and written.name.endswith("-quick.json")
    result = json.loads(written.read_text())
    suite = result["gpu_suite"]
    assert result["suite"] == "gpu" and result["provenance"]["machine_fingerprint"]
    assert suite["tensorflow_devices"]["tensorflow"] == tf.__version__
    assert suite["determinism"]["same_digest"] is True
    assert len(set(suite["determinism"]["digests"])) == 1
    assert suite["determinism"]["config"]["augment_on"] == "device"  # the suite's input path
    paths = suite["input_paths"]  # on a CPU the two input paths give the same bits
    assert paths["same_digest"] is True and paths["config"]["augment"] is True
    assert paths["runs"]["host"]["seconds"] > 0 and paths["runs"]["device"]["seconds"] > 0
    for key, recipe in (("reference_run", "reference"), ("fast_run", "fast")):
        run = suite[key]
        assert (
            run["config"]
            == TrainConfig.recipe(
                recipe, epochs=1, train_subset=1024, augment_on="device"
            ).to_dict()
        )
        assert 0 < run["test_accuracy"] <= 1
        assert set(run["time_to_accuracy"]) == {"0.990", "0.995", "0.997"}
        assert f"{recipe}, 1 epochs: " in out
    rows = {b["name"]: b for b in result["benchmarks"]}
    for precision in ("float32", "mixed_bfloat16"):  # the variant is a row of its own
        assert rows[f"train/seed/mnist_bench@{precision}"]["precision"] == precision
    assert rows["train/seed/mnist_bench"]["precision"] == "float32"  # the recipe's row stays
    assert result["ratios"]["train_mixed_bfloat16_vs_float32/seed"] > 0
    assert "same seed, same digest twice: True" in out and "time to accuracy" in out
    assert "input paths: host " in out and "same digest: True" in out
