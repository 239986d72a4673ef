"""The `mnist-bench` command line: argument parsing, printing and exit codes.

Only this module reads argv and environment variables, prints, or exits. Each subcommand is a
`_cmd_*` function taking the parsed arguments and returning an exit code:
0 success, 1 a check failed (e.g. data did not verify), 2 bad input (usage, missing or corrupt
files). Library errors (`ValueError`, `OSError`) become a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import (
    MODEL_CHOICES,
    PRECISION_CHOICES,
    SCHEDULE_CHOICES,
    STRATEGY_CHOICES,
    VALIDATION_CHOICES,
    TrainConfig,
)
from .data import MnistData, load_mnist

if TYPE_CHECKING:
    from .data import FileReport

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DATA_ENV = "MNIST_BENCH_DATA"
DEFAULT_BENCH_OUT = "results/benchmarks"


class CliError(Exception):
    """Bad user input: printed as one line to stderr, exit code 2."""


def _err(message: str) -> None:
    print(f"mnist-bench: error: {message}", file=sys.stderr)


def _data_dir_from_env(explicit: str | None) -> str | None:
    """The data folder: the flag if given, else $MNIST_BENCH_DATA, else None (loader decides)."""
    return explicit or os.environ.get(DATA_ENV) or None


# -- data ---------------------------------------------------------------------------------


def _print_file_reports(reports: Sequence[FileReport]) -> None:
    print(f"{'file':<28} {'records':>7}  {'status':<6} problem")
    for r in reports:
        records = "-" if r.records is None else str(r.records)
        status = "ok" if r.ok else "BAD"
        print(f"{r.path.name:<28} {records:>7}  {status:<6} {r.problem or ''}".rstrip())


def _cmd_data_verify(args: argparse.Namespace) -> int:
    from .data import default_cache_dir, verify_mnist

    folder = Path(_data_dir_from_env(args.dir) or default_cache_dir()).expanduser()
    if not folder.is_dir():
        raise CliError(f"{folder}: no such folder")
    reports = verify_mnist(folder)
    _print_file_reports(reports)
    bad = [r.path.name for r in reports if not r.ok]
    if bad:
        _err(f"{len(bad)} of {len(reports)} files in {folder} did not verify: {', '.join(bad)}")
        return EXIT_CHECK_FAILED
    print(f"all {len(reports)} files in {folder} verified")
    return EXIT_OK


def _cmd_data_download(args: argparse.Namespace) -> int:
    from .data import download_mnist, verify_mnist

    folder = download_mnist(args.dir)
    _print_file_reports(verify_mnist(folder))
    print(f"MNIST files downloaded and verified in {folder}")
    return EXIT_OK


def _add_data_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="verify or download the MNIST files")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    verify = data_sub.add_parser(
        "verify", help="check the four IDX files: format, record counts and pinned SHA-256"
    )
    verify.add_argument(
        "dir",
        nargs="?",
        default=None,
        help=f"folder holding the files (default: ${DATA_ENV}, then the cache)",
    )
    verify.set_defaults(func=_cmd_data_verify)
    download = data_sub.add_parser("download", help="download the four files and verify them")
    download.add_argument("--dir", default=None, help="destination (default: the user cache)")
    download.set_defaults(func=_cmd_data_download)


# -- TensorFlow start-up ------------------------------------------------------------------


def _start_tensorflow() -> None:
    """Import TensorFlow with its start-up chatter filtered out (`_tfenv.start_tensorflow`);
    lines that are not known noise still reach stderr."""
    from ._tfenv import start_tensorflow

    for line in start_tensorflow():
        print(line, file=sys.stderr)


# -- train --------------------------------------------------------------------------------

_EPOCH_HEADER = (
    f"{'epoch':>5}  {'loss':>8}  {'acc':>7}  {'val_loss':>8}  {'val_acc':>7}  {'lr':>9}  "
    f"{'sec':>6}  {'img/s':>6}"
)


def _format_epoch(row: dict[str, float]) -> str:
    return (
        f"{row['epoch']:>5d}  {row['loss']:>8.4f}  {row['accuracy']:>7.4f}  "
        f"{row['val_loss']:>8.4f}  {row['val_accuracy']:>7.4f}  {row['lr']:>9.2e}  "
        f"{row['seconds']:>6.1f}  {row['images_per_s']:>6.0f}"
    )


def _print_readme_update(readme: str, section: str, changed: bool) -> None:
    print(f"{readme}: {section} {'updated' if changed else 'already up to date'}")


def _print_epoch(row: dict[str, float]) -> None:
    print(_format_epoch(row), flush=True)


# CLI flag -> TrainConfig field; a flag left out keeps the recipe's (or --config's) value.
_TRAIN_FLAGS = {
    "seed": "seed",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "lr_schedule": "lr_schedule",
    "warmup_epochs": "warmup_epochs",
    "label_smoothing": "label_smoothing",
    "weight_averaging": "weight_averaging",
    "recalibrate_batch_norm": "recalibrate_batch_norm",
    "augment": "augment",
    "rotation_deg": "rotation_deg",
    "shift_px": "shift_px",
    "zoom": "zoom",
    "elastic_alpha": "elastic_alpha",
    "elastic_sigma": "elastic_sigma",
    "model_options": "model_options",
    "validation": "validation",
    "holdout_size": "holdout_size",
    "train_subset": "train_subset",
    "deterministic": "deterministic",
    "strategy": "strategy",
    "precision": "precision",
}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _resolve_config(args: argparse.Namespace) -> TrainConfig:
    if args.config is not None:
        config = TrainConfig.from_json(Path(args.config))
        if args.model is not None and args.model != config.model:
            config = config.replace(model=args.model)
    else:
        config = TrainConfig.recipe(args.model or "reference")
    overrides = {
        field: getattr(args, flag)
        for flag, field in _TRAIN_FLAGS.items()
        if getattr(args, flag) is not None
    }
    return config.replace(**overrides) if overrides else config


def _cmd_train(args: argparse.Namespace) -> int:
    config = _resolve_config(args)
    print("config:", json.dumps(config.to_dict(), sort_keys=True), flush=True)
    data = _load_data(args.data)
    _start_tensorflow()
    from .training import train

    out = Path(args.out)
    print(f"training {config.model!r} for {config.epochs} epochs into {out}/", flush=True)
    print(_EPOCH_HEADER, flush=True)
    result = train(config, data, out, progress=_print_epoch)
    m = result.metrics
    if config.validation == "holdout":
        # A holdout run exists to choose a recipe: its test score must not be what is looked
        # at (metrics.json still holds it, as for every run).
        print(
            f"final epoch {m['final_epoch']}: holdout accuracy {m['val_accuracy']:.4%}, "
            f"holdout loss {m['val_loss']:.4f}"
        )
    else:
        print(
            f"final epoch {m['final_epoch']}: test accuracy {m['test_accuracy']:.4%} "
            f"({m['test_errors']} errors), test loss {m['test_loss']:.4f}"
        )
    print(f"weights digest {m['weights_digest']}")
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    print(f"wrote {out}/: {' '.join(written)}")
    return EXIT_OK


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (seeded, deterministic, resumable) and save it with its metrics",
        description="Train, evaluate on the 10k test set, and write the model, config, history, "
        "metrics and plots into --out. Re-running into the same --out resumes an interrupted "
        "run. Flags override the recipe chosen by --model (or the file given by --config).",
    )
    p.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default=None,
        help="architecture and its recipe (default: reference)",
    )
    p.add_argument(
        "--model-options",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="architecture options as a JSON object, e.g. '{\"widths\": [48, 96, 192]}' "
        "(default: recipe's)",
    )
    p.add_argument("--config", default=None, help="a config.json to start from (default: none)")
    p.add_argument("--out", required=True, help="output folder; resumed if it holds the same run")
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: 30)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: 256)")
    p.add_argument(
        "--lr", type=float, default=None, help="Adam (peak) learning rate (default: recipe's)"
    )
    p.add_argument(
        "--lr-schedule",
        choices=SCHEDULE_CHOICES,
        default=None,
        help="learning-rate schedule (default: recipe's)",
    )
    p.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="linear warm-up, epochs (default: recipe's)",
    )
    p.add_argument("--label-smoothing", type=float, default=None, help="(default: recipe's)")
    p.add_argument(
        "--recalibrate-batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the last epoch, recompute batch-norm statistics on the clean training "
        "images (default: recipe's)",
    )
    p.add_argument(
        "--weight-averaging",
        type=float,
        default=None,
        metavar="MOMENTUM",
        help="validate and save an exponential moving average of the weights with this "
        "momentum per step, e.g. 0.999 (default: recipe's)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random rotation/shift/zoom of training images (default: recipe's)",
    )
    p.add_argument(
        "--rotation-deg",
        type=float,
        default=None,
        help="max |rotation|, degrees (default: recipe's)",
    )
    p.add_argument(
        "--shift-px",
        type=float,
        default=None,
        help="max |shift| per axis, pixels (default: recipe's)",
    )
    p.add_argument(
        "--zoom", type=float, default=None, help="max |relative scale change| (default: recipe's)"
    )
    p.add_argument(
        "--elastic-alpha",
        type=float,
        default=None,
        help="elastic distortion strength, Simard's alpha, e.g. 34; 0 = off (default: recipe's)",
    )
    p.add_argument(
        "--elastic-sigma",
        type=float,
        default=None,
        help="elastic distortion smoothness, Gaussian sigma in pixels (default: 4)",
    )
    p.add_argument(
        "--validation",
        choices=VALIDATION_CHOICES,
        default=None,
        help="validate on the test set (as the seed did) or a holdout (default: test)",
    )
    p.add_argument("--holdout-size", type=int, default=None, help="holdout images (default: 10000)")
    p.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="train on the first N images only, for quick runs (default: all)",
    )
    p.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="TensorFlow op determinism (default: on)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        default=None,
        help="'mirrored': data-parallel over every GPU (or logical CPU device), the batch "
        "split between them (default: one device)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=None,
        help="mixed_bfloat16/mixed_float16: bf16/fp16 compute, float32 weights and softmax, "
        "for GPUs; a variant, never the published recipe (default: float32)",
    )
    p.set_defaults(func=_cmd_train)


# -- evaluate and predict -----------------------------------------------------------------


def _load_data(explicit: str | None) -> MnistData:
    return load_mnist(explicit) if explicit else load_mnist()


def _format_confusion(confusion: Any) -> str:
    header = "true\\pred " + " ".join(f"{j:>5d}" for j in range(len(confusion)))
    rows = [f"{i:>9d} " + " ".join(f"{v:>5d}" for v in row) for i, row in enumerate(confusion)]
    return "\n".join([header, *rows])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    data = _load_data(args.data)
    _start_tensorflow()
    from .evaluation import evaluate
    from .models import load_model

    report = evaluate(load_model(args.model), data)
    print(
        f"test accuracy {report.accuracy:.4%} ({report.n_errors} errors of {report.n}), "
        f"loss {report.loss:.4f}"
    )
    print(_format_confusion(report.confusion))
    if args.json:
        report.to_json(args.json)
        print(f"wrote {args.json}")
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from .preprocess import prepare_image_file

    digits = np.stack([prepare_image_file(path) for path in args.images])  # (n, 28, 28) uint8
    _start_tensorflow()
    from .evaluation import predict
    from .models import load_model

    labels, probabilities = predict(load_model(args.model), digits)
    width = max(len(str(path)) for path in args.images)
    for path, label, probs in zip(args.images, labels, probabilities, strict=True):
        print(f"{path:<{width}}  {int(label)}  {float(probs[label]):.4f}")
    return EXIT_OK


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a saved model")
    p.add_argument("model", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument("--json", default=None, help="also write the full report to this JSON file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="classify your own digit images (PNG, JPEG or .npy)",
        description="Each photo is made MNIST-like first: grayscale, inverted if the "
        "background is light, cropped to the ink, scaled into 20x20 and centred by its centre "
        "of mass in 28x28. A 28x28 image or array is taken as is. Prints file, label, confidence.",
    )
    p.add_argument("model", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument("images", nargs="+", help="image files: .png, .jpg, .jpeg or .npy")
    p.set_defaults(func=_cmd_predict)


# -- reproduce ----------------------------------------------------------------------------


def _print_reproduce_summary(metrics: dict[str, Any]) -> None:
    from .reproduction import n_seeds_text

    print(f"{'run':<18}  {'test_acc':>8}  {'errors':>6}  {'test_loss':>9}  {'wall_s':>8}  digest")
    for run in [*metrics["runs"], metrics["seed_model"]]:
        if run is None:  # the seed notebook's model is not recorded yet
            continue
        print(
            f"{run['run']:<18}  {run['test_accuracy']:>8.4f}  {run['test_errors']:>6d}  "
            f"{run['test_loss']:>9.4f}  {run['wall_seconds']:>8.1f}  {run['weights_digest'][:16]}"
        )
    if metrics.get("pending"):
        print(f"partial results: still to train and record: {', '.join(metrics['pending'])}")
    s, ens, pub = metrics["summary"], metrics["ensemble"], metrics["published"]
    sd = "n/a" if s["sd"] is None else f"{s['sd']:.3%}"
    print(
        f"reference over {n_seeds_text(s['n'])}: mean {s['mean']:.3%} ± {sd}, "
        f"min {s['min']:.2%}, max {s['max']:.2%}"
    )
    print(
        f"ensemble of {ens['n_models']}: {ens['test_accuracy']:.2%} ({ens['test_errors']} errors)"
    )
    print(
        f"published: {pub['run']} ({pub['selection']}): test accuracy {pub['test_accuracy']:.2%}, "
        f"weights digest {pub['weights_digest']}"
    )
    for name in ("published", "mean", "ensemble"):
        target = metrics["targets"][name]
        verdict = "met" if target["met"] else "NOT met"
        if "min_seeds" in target and target["n"] < target["min_seeds"]:
            verdict += f" (needs >= {target['min_seeds']} seeds)"
        print(f"target {name} >= {target['target']:.2%}: {verdict} ({target['value']:.3%})")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    _start_tensorflow()  # before importing .reproduction, which imports TensorFlow
    from ._io import read_json
    from .reproduction import (
        METRICS_FILE,
        check_readme,
        check_results,
        merge_results,
        parse_shard,
        reproduce,
        update_readme,
    )

    out = Path(args.out)
    if args.readme:
        check_readme(args.readme)  # a README without markers fails now, not after training
    if not args.check:
        if args.seeds < 1:
            raise CliError(f"--seeds must be >= 1, got {args.seeds}")
        smoke = {"epochs": args.epochs, "train_subset": args.train_subset}
        smoke = {field: value for field, value in smoke.items() if value is not None}
        config = TrainConfig.recipe("reference", **smoke)
        seed_config = TrainConfig.recipe("seed", **smoke)
        print("reference config:", json.dumps(config.to_dict(), sort_keys=True), flush=True)
        print("seed config:", json.dumps(seed_config.to_dict(), sort_keys=True), flush=True)
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.check and (shard is not None or args.merge):
        raise CliError("--check verifies a results folder: not with --shard or --merge")
    data = _load_data(args.data)
    if args.merge:
        metrics = merge_results(
            args.merge, out, seeds=args.seeds, data=data, config=config, seed_config=seed_config
        )
        if not metrics:
            raise CliError(f"no shard in {', '.join(args.merge)} holds the published seed's run")
        _print_reproduce_summary(metrics)
        print(f"merged {len(args.merge)} shard folder(s) into {out}/")
    elif args.check:
        problems = check_results(out, data=data)
        for problem in problems:
            print(problem)
        if problems:
            _err(f"{len(problems)} problem(s) found in {out}/")
            return EXIT_CHECK_FAILED
        print("results verified")
        metrics = read_json(out / METRICS_FILE) if args.readme else None
    else:
        print(
            f"reference seeds 0..{args.seeds - 1} (published: seed 0, fixed before training) "
            f"and the seed model, seed 0: runs in {args.runs_dir}/, results into {out}/"
            + (f"; shard {shard[0]}/{shard[1]}: every {shard[1]}th run" if shard else ""),
            flush=True,
        )
        current: list[str] = []

        def progress(run: str, row: dict[str, float]) -> None:
            if current[-1:] != [run]:
                current.append(run)
                print(f"{run}:", flush=True)
                print(_EPOCH_HEADER, flush=True)
            _print_epoch(row)

        metrics = reproduce(
            seeds=args.seeds,
            data=data,
            out_dir=out,
            runs_dir=args.runs_dir,
            config=config,
            seed_config=seed_config,
            shard=shard,
            progress=progress,
        )
        if metrics:
            _print_reproduce_summary(metrics)
        else:  # a shard without the published seed: nothing to summarise yet
            print(f"recorded this shard's runs in {out}/; merge the shards with --merge")
        print(f"wrote {out}/")
    if args.readme and metrics:
        changed = update_readme(args.readme, metrics)
        _print_readme_update(args.readme, "results table", changed)
    return EXIT_OK


def _add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train the published runs (several seeds) and write results/; or --check them",
        description="Train the reference recipe for each seed and the seed notebook's model "
        "(seed 0), each in its own folder under --runs-dir (resumable: kill and restart at "
        "any time), then write metrics, histories, the published model (the first seed, fixed "
        "before training) and its plots into --out. --check verifies --out without training.",
    )
    p.add_argument("--seeds", type=int, default=5, help="reference seeds 0..N-1 (default: 5)")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument(
        "--runs-dir", default="runs/reproduce", help="training folders (default: runs/reproduce)"
    )
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument(
        "--check",
        action="store_true",
        help="no training: verify --out against the data; exit 1 on any problem (default: off)",
    )
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the results table between the markers in this file from "
        "--out/metrics.json; with --check, only once verified (default: none)",
    )
    p.add_argument("--epochs", type=int, default=None, help="smoke runs only: epochs (default: 30)")
    p.add_argument(
        "--train-subset",
        type=int,
        default=None,
        help="smoke runs only: train on the first N images (default: all)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="train only runs K, K+N, K+2N, ... of the plan (1-based; a job array runs one "
        "shard per task, e.g. --shard $SLURM_ARRAY_TASK_ID/4 with --array=1-4; "
        "one GPU each: CUDA_VISIBLE_DEVICES=i) (default: every run)",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="DIR",
        help="no training: gather the runs the shards recorded in these --out folders into "
        "--out and write its metrics.json; same --seeds (and smoke flags) as the shards",
    )
    p.set_defaults(func=_cmd_reproduce)


# -- bench --------------------------------------------------------------------------------


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
    from . import bench

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
    """`bench --suite gpu`: devices, the gpu-marked tests, determinism, the 30-epoch
    reference with time to accuracy, the benchmark, one file (see `bench.gpu`)."""
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
    data = _load_data(args.data)
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
    try:
        changed = bench.update_readme_performance(args.readme, results)
    except ValueError as exc:
        print(f"mnist-bench bench: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_readme_update(args.readme, "performance section", changed)
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
        "determinism on the device, the 30-epoch reference with time to accuracy, the "
        "benchmark with a mixed-precision row); with --quick it runs on a CPU in about a minute.",
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
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
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


# -- select -------------------------------------------------------------------------------


def _cmd_select(args: argparse.Namespace) -> int:
    from .selection import (
        candidates_table,
        check_readme,
        record_candidate,
        recorded_candidates,
        update_readme,
    )

    if args.readme:
        check_readme(args.readme)  # a README without markers fails before anything is written
    for run_dir in args.runs:
        record = record_candidate(run_dir, args.out)
        print(
            f"recorded {Path(args.out) / 'holdout' / record['run']}.json: final-epoch holdout "
            f"accuracy {record['holdout_accuracy']:.2%} ({record['holdout_errors']} errors)"
        )
    records = recorded_candidates(args.out)
    print(candidates_table(records))
    if args.readme:
        changed = update_readme(args.readme, records)
        _print_readme_update(args.readme, "holdout table", changed)
    return EXIT_OK


def _add_select_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="record finished holdout runs as recipe candidates and print their table",
        description="Record each finished run folder (trained with --validation holdout) in "
        "--out/holdout/<run>.json: config, final-epoch holdout accuracy, wall time, provenance, "
        "never a test-set score. Then print the table of every recorded candidate, grouped by "
        "recipe, and optionally regenerate it in a README.",
    )
    p.add_argument("runs", nargs="*", help="finished holdout run folders to record (default: none)")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the table between the holdout-table markers in this file (default: none)",
    )
    p.set_defaults(func=_cmd_select)


# -- parser and entry point ---------------------------------------------------------------

_PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data_parser,
    _add_train_parser,
    _add_eval_parsers,
    _add_reproduce_parser,
    _add_select_parser,
    _add_bench_parser,
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mnist-bench",
        description="Reproducible, tested and benchmarked reference CNN for MNIST.",
    )
    parser.add_argument("--version", action="version", version=f"mnist-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _PARSER_BUILDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        _err(str(exc))
        return EXIT_BAD_INPUT
    except (ValueError, OSError) as exc:  # MnistDataError is a ValueError
        _err(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
