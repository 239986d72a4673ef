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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import (
    MODEL_CHOICES,
    PRECISION_CHOICES,
    RECIPE_ALIASES,
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


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(seconds: float) -> str:
    """'42 s', '7 min', '2 h 05 min': a human-sized time span."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class _StepBar:
    """The steps of the running epoch as a bar redrawn in place on stderr, when stderr is a
    terminal; nothing otherwise, so logs, CI and notebooks keep one line per epoch."""

    def __init__(self, prefix: Callable[[], str] = str, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.prefix = prefix
        self.started = self.drawn = 0.0

    def __call__(self, epoch: int, step: int, steps: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if step == 1:
            self.started = now
        if step < steps and now - self.drawn < 0.2:  # redraw at most 5 times a second
            return
        self.drawn = now
        done = int(30 * step / steps)
        left = (now - self.started) / step * (steps - step)
        line = f"{self.prefix()}epoch {epoch} [{'#' * done}{'.' * (30 - done)}] {step}/{steps}"
        line += f", {_duration(left)} left" if step > 1 else ""
        end = "\r" + " " * len(line) + "\r" if step == steps else ""  # the epoch row follows
        self.stream.write(f"\r{line}{end}")
        self.stream.flush()


def _config_line(config: TrainConfig) -> str:
    """The recipe a run starts from and what differs from it, instead of every field."""
    recipe = TrainConfig.recipe(config.model).to_dict()
    changed = {k: v for k, v in config.to_dict().items() if recipe[k] != v}
    differs = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))
    return f"config: the {config.model!r} recipe" + (f" with {differs}" if differs else "")


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
    "contrast": "contrast",
    "brightness": "brightness",
    "noise_std": "noise_std",
    "erasing": "erasing",
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
    model = RECIPE_ALIASES.get(args.model, args.model)
    if args.config is not None:
        config = TrainConfig.from_json(Path(args.config))
        if model is not None and model != config.model:
            config = config.replace(model=model)
    else:
        config = TrainConfig.recipe(model or "reference")
    overrides = {
        field: getattr(args, flag)
        for flag, field in _TRAIN_FLAGS.items()
        if getattr(args, flag) is not None
    }
    return config.replace(**overrides) if overrides else config


def _cmd_train(args: argparse.Namespace) -> int:
    config = _resolve_config(args)
    print(_config_line(config), flush=True)
    data = _load_data(args.data)
    _start_tensorflow()
    from .training import train

    out = Path(args.out)
    print(
        f"training {config.model!r} for {_plural(config.epochs, 'epoch')} into {out}/ "
        f"(full config: {out / 'config.json'})",
        flush=True,
    )
    trained: list[dict[str, float]] = []

    def on_epoch(row: dict[str, float]) -> None:
        if not trained:
            print(_EPOCH_HEADER, flush=True)
        trained.append(row)
        _print_epoch(row)

    result = train(config, data, out, progress=on_epoch, step_progress=_StepBar())
    if not trained:
        print(f"already complete: {out}/ holds all {_plural(config.epochs, 'epoch')}")
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
        choices=(*MODEL_CHOICES, *RECIPE_ALIASES),
        default=None,
        help="architecture and its recipe: 'reference' (published) or 'notebook' (alias "
        "'seed': the original notebook project's CNN and settings) (default: reference)",
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
        "--contrast",
        type=float,
        default=None,
        help="max relative contrast reduction, e.g. 0.7 = factor 0.3..1 (default: 0, off)",
    )
    p.add_argument(
        "--brightness",
        type=float,
        default=None,
        help="max brightness offset added, in [0, 1] (default: 0, off)",
    )
    p.add_argument(
        "--erasing",
        type=float,
        default=None,
        metavar="P",
        help="probability per image of one random rectangle filled with a random grey "
        "(default: 0, off)",
    )
    p.add_argument(
        "--noise-std",
        type=float,
        default=None,
        help="max sigma of added Gaussian noise, in [0, 1] (default: 0, off)",
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
    from .export import load_predictor

    report = evaluate(load_predictor(args.model), data)
    print(
        f"test accuracy {report.accuracy:.4%} ({report.n_errors} errors of {report.n}), "
        f"loss {report.loss:.4f}"
    )
    print(
        f"calibration: ECE {report.ece:.4%} (15 bins), NLL {report.nll:.4f}, "
        f"Brier {report.brier:.4f}, mean confidence {report.mean_confidence:.4f}"
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
    from .export import load_predictor

    labels, probabilities = predict(load_predictor(args.model), digits)
    width = max(len("file"), *(len(str(path)) for path in args.images))
    print(f"{'file':<{width}}  digit  probability")
    for path, label, probs in zip(args.images, labels, probabilities, strict=True):
        print(f"{path:<{width}}  {int(label):>5d}  {float(probs[label]):>11.4f}")
    return EXIT_OK


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a saved model")
    p.add_argument(
        "model",
        help="a .keras/.h5 file or a folder holding one; or an exported model (`mnist-bench "
        "export`): a .tflite file or a SavedModel folder",
    )
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
    p.add_argument(
        "model", help="a .keras/.h5 file or a folder holding one, a .tflite file or a SavedModel"
    )
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


def _print_trust_summary(out: Path) -> None:
    """One line each for the robustness and calibration files, when `out` holds them."""
    from ._io import read_json

    if (out / "robustness.json").is_file():
        model = read_json(out / "robustness.json")["model"]
        worst = model["worst"]
        print(
            f"robustness over {len(model['accuracy'])} corruptions: mean accuracy "
            f"{model['mean_accuracy']:.4f}, worst {worst} {model['accuracy'][worst]:.4f}"
        )
    if (out / "calibration.json").is_file():
        calibration = read_json(out / "calibration.json")
        before, after = (calibration["test"][k]["ece"] for k in ("uncalibrated", "calibrated"))
        print(
            f"calibration: test ECE {before:.2%}, {after:.2%} after temperature scaling "
            f"(T = {calibration['temperature']:.3f}, fitted on the holdout)"
        )


class _RunClock:
    """Time left in `reproduce`, from the epochs timed so far in this process: each model's
    mean seconds per epoch times the epochs still to train (runs recorded earlier cost 0)."""

    def __init__(self, epochs: dict[str, int]) -> None:
        self.epochs = epochs  # model name -> epochs per run
        self.seconds: dict[str, list[float]] = {}
        self.model = ""

    def start(self, run: str, runs_after: int) -> str:
        self.model = run.split("-seed")[0]
        self.done_in_run = 0
        self.runs_after = runs_after
        return self.estimate()

    def epoch_done(self, row: dict[str, float]) -> None:
        self.seconds.setdefault(self.model, []).append(row["seconds"])
        self.done_in_run += 1

    def estimate(self) -> str:
        timed = self.seconds.get(self.model) or self.seconds.get("reference")
        if not timed:
            return "time left: estimated once an epoch is timed"
        per_epoch = sum(timed) / len(timed)
        # The later runs are reference seeds; the notebook's model (trained second) is cheaper.
        left = per_epoch * (self.epochs[self.model] - self.done_in_run)
        left += per_epoch * self.epochs["reference"] * self.runs_after
        return f"about {_duration(left)} left at most (at {per_epoch:.0f} s per epoch)"


def _cmd_reproduce(args: argparse.Namespace) -> int:
    _start_tensorflow()  # before importing .reproduction, which imports TensorFlow
    from ._io import read_json
    from .reproduction import (
        CHECKS,
        METRICS_FILE,
        check_readme,
        check_results,
        merge_results,
        parse_shard,
        replot,
        reproduce,
        update_readme,
    )

    out = Path(args.out)
    if args.replot:  # no training, no table: the figures only
        if args.check or args.merge or args.shard or args.readme:
            raise CliError("--replot draws the figures only: not with --check, --merge, "
                           "--shard or --readme")  # fmt: skip
        for path in replot(out, data=_load_data(args.data)):
            print(f"drew {path}")
        return EXIT_OK
    if args.readme:
        check_readme(args.readme)  # a README without markers fails now, not after training
    if not args.check:
        if args.seeds < 1:
            raise CliError(f"--seeds must be >= 1, got {args.seeds}")
        smoke = {"epochs": args.epochs, "train_subset": args.train_subset}
        smoke = {field: value for field, value in smoke.items() if value is not None}
        config = TrainConfig.recipe("reference", **smoke)
        seed_config = TrainConfig.recipe("seed", **smoke)
        print(f"reference runs: {_config_line(config)}", flush=True)
        print(f"notebook run: {_config_line(seed_config)}", flush=True)
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
        metrics = read_json(out / METRICS_FILE)
        print(f"checked {out}/ against the MNIST test set ({len(data.y_test):,} images):")
        for line in CHECKS:
            print(f"  - {line}")
        _print_reproduce_summary(metrics)
        _print_trust_summary(out)
        print("results verified")
    else:
        print(
            f"reference seeds 0..{args.seeds - 1} (published: seed 0, fixed before training) "
            f"and the notebook's model, seed 0: runs in {args.runs_dir}/, results into {out}/"
            + (f"; shard {shard[0]}/{shard[1]}: every {shard[1]}th run" if shard else ""),
            flush=True,
        )
        clock = _RunClock({"reference": config.epochs, "seed": seed_config.epochs})

        def on_run(k: int, n: int, run: str, recorded: bool) -> None:
            if recorded:
                print(f"run {k} of {n}: {run}: already recorded in {out}/, not retrained")
                return
            # The later runs of the plan that are this shard's (0-based plan indices k..n-1).
            later = [j for j in range(k, n) if shard is None or j % shard[1] == shard[0] - 1]
            print(f"run {k} of {n}: {run}, {clock.start(run, len(later))}", flush=True)
            print(_EPOCH_HEADER, flush=True)

        def progress(run: str, row: dict[str, float]) -> None:
            clock.epoch_done(row)
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
            on_run=on_run,
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
        "--replot",
        action="store_true",
        help="no training: draw the published run's figures in --out again from its recorded "
        "history and model (default: off)",
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


# -- export, serve ------------------------------------------------------------------------


def _cmd_export(args: argparse.Namespace) -> int:
    from ._io import read_json

    results_file = Path(args.results)
    if args.report:
        if not args.readme:
            raise CliError("--report needs --readme FILE")
    else:
        if not args.model or not args.format:
            raise CliError("give MODEL and --format (or --report --readme FILE)")
        _export_and_record(args, results_file)
    if args.readme:
        from .export import EXPORT_TABLE_MARKERS, export_table

        table = export_table(read_json(results_file))
        _update_table(args.readme, EXPORT_TABLE_MARKERS, table, "export table")
    return EXIT_OK


def _export_and_record(args: argparse.Namespace, results_file: Path) -> None:
    data = _load_data(args.data)
    _start_tensorflow()
    from .evaluation import evaluate
    from .export import (
        DEFAULT_NAMES,
        FORMATS,
        export_model,
        export_record,
        load_predictor,
        merge_export_results,
    )
    from .models import load_model

    formats = list(FORMATS) if args.format == "all" else [args.format]
    model = load_model(args.model)
    keras_report = evaluate(model, data)
    print(f"keras: test accuracy {keras_report.accuracy:.4%} ({keras_report.n_errors} errors)")
    records = []
    for fmt in formats:
        out = Path(args.out) / DEFAULT_NAMES[fmt] if args.format == "all" else Path(args.out)
        export_model(model, fmt, out, representative_images=data.x_train)
        report = evaluate(load_predictor(out), data)
        records.append(export_record(fmt, out, report.accuracy, report.n_errors, args.model))
        print(
            f"{fmt}: wrote {out}: test accuracy {report.accuracy:.4%} ({report.n_errors} "
            f"errors), {report.accuracy - keras_report.accuracy:+.4%} vs keras"
        )
    content = merge_export_results(results_file, records, keras_report.accuracy)
    if "int8_loss_vs_float32" in content:
        verdict = "within" if content["int8_within_limit"] else "OVER"
        print(
            f"int8 loses {content['int8_loss_vs_float32']:.4%} vs float32 LiteRT: {verdict} "
            f"the {content['int8_max_loss']:.2%} limit"
        )
    print(f"wrote {results_file}")


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    from .export import FORMATS

    p = sub.add_parser(
        "export",
        help="export a model to SavedModel / LiteRT / LiteRT int8 and record its test accuracy",
        description="Export MODEL (Keras 3 model.export, then TFLiteConverter.from_saved_model), "
        "measure the exported file's accuracy on the 10k test images and record it in "
        "--results (other formats' records are kept). litert-int8 is calibrated on 300 "
        "training images (seed 0). --format all writes every format into the folder --out.",
    )
    p.add_argument("model", nargs="?", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument(
        "--format",
        choices=[*FORMATS, "all"],
        default=None,
        help="format, or all three (required unless --report)",
    )
    p.add_argument(
        "--out",
        default="results/export",
        help="file or folder to write; with --format all, a folder (default: results/export)",
    )
    p.add_argument(
        "--results",
        default="results/export.json",
        help="accuracy record to update (default: results/export.json)",
    )
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the table between the export-table markers in this file (default: none)",
    )
    p.add_argument("--report", action="store_true", help="export nothing: only regenerate --readme")
    p.set_defaults(func=_cmd_export)


def _cmd_export_bench(args: argparse.Namespace) -> int:
    from ._io import read_json, write_json

    out = Path(args.out)
    if not args.report:
        if not args.model:
            raise CliError("give MODEL (or --report --readme FILE)")
        data = _load_data(args.data)
        _start_tensorflow()
        from .export import DEFAULT_NAMES
        from .export_bench import BATCH, ratios, run_inference_bench
        from .models import load_model
        from .preprocess import preprocess_images
        from .provenance import provenance

        exports = {
            fmt: Path(args.exports) / name
            for fmt, name in DEFAULT_NAMES.items()
            if (Path(args.exports) / name).exists()
        }
        print(f"exported files found: {', '.join(map(str, exports.values())) or 'none'}")
        print(
            f"{'runtime':<28} {'threads':>7} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>8}", flush=True
        )

        def show(r: dict[str, Any]) -> None:
            threads = "-" if r["threads"] is None else str(r["threads"])
            print(
                f"{r['name']:<28} {threads:>7} {r['single_p50_ms']:>8.3f} "
                f"{r['single_p99_ms']:>8.3f} {r['batch_images_per_s']:>8.0f}",
                flush=True,
            )

        images = preprocess_images(data.x_test[:2000])
        load_before = os.getloadavg()[0]
        rows = run_inference_bench(load_model(args.model), exports, images, progress=show)
        content = {
            # Other processes' CPU use skews the times; recorded so a reader can tell.
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
            "rows": rows,
            "batch": BATCH,
            "ratios": ratios(rows),
            "model": str(args.model),
            "provenance": provenance(),
        }
        q = content["ratios"]
        print(
            f"fastest one image: {q['fastest_single']} p50 {q['fastest_single_p50_ms']:.3f} ms "
            f"({q['single_speedup_vs_package']:.1f}x mnist_bench.predict); fastest batched: "
            f"{q['fastest_batch']} ({q['batch_speedup_vs_model_predict']:.1f}x model.predict)"
        )
        print(f"wrote {write_json(out, content)}")
    elif not args.readme:
        raise CliError("--report needs --readme FILE")
    if args.readme:
        from .export_bench import INFERENCE_TABLE_MARKERS, inference_table

        _update_table(
            args.readme, INFERENCE_TABLE_MARKERS, inference_table(read_json(out)), "inference table"
        )
    return EXIT_OK


def _add_export_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-bench",
        help="time one-image latency and batched throughput of every runtime, in one run",
        description="Keras model.predict, mnist_bench.predict, and the files `mnist-bench export "
        "--format all` wrote into --exports (SavedModel, LiteRT float32 and int8 at 1 and 2 "
        "threads): one image p50/p99 and batched images/s; prints them and writes --out.",
    )
    p.add_argument("model", nargs="?", help="the Keras model the files were exported from")
    p.add_argument(
        "--exports", default="results/export", help="exported files (default: results/export)"
    )
    p.add_argument(
        "--out", default="results/inference.json", help="(default: results/inference.json)"
    )
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the table between the inference-table markers (default: none)",
    )
    p.add_argument("--report", action="store_true", help="measure nothing: only --readme")
    p.set_defaults(func=_cmd_export_bench)


def _cmd_serve(args: argparse.Namespace) -> int:
    if Path(args.model).suffix != ".tflite":
        _start_tensorflow()  # a Keras model is converted to LiteRT at start-up
    from .serving import create_app, load_for_serving, serve

    predictor, info = load_for_serving(args.model, runtime=args.runtime)
    print(f"serving {args.model} ({info['runtime']}, sha256 {info['sha256'][:16]})", flush=True)
    print(f"open http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        serve(create_app(predictor.predict_proba, model_info=info), host=args.host, port=args.port)
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then re-raises Ctrl-C
        print("stopped")
    return EXIT_OK


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the draw-a-digit page and POST /predict over HTTP",
        description="Load MODEL once (a Keras model is converted to LiteRT float32 at start-up "
        "when ai-edge-litert is installed; a .tflite file is served as is) and serve GET / "
        "(draw a digit), POST /predict (PNG/JPEG or a JSON 28x28 array) and GET /healthz.",
    )
    p.add_argument("model", help="a .keras/.h5 file or folder, a .tflite file, a SavedModel")
    p.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument(
        "--runtime",
        choices=["auto", "keras"],
        default="auto",
        help="auto: LiteRT when installed, else Keras (default: auto)",
    )
    p.set_defaults(func=_cmd_serve)


def _print_serve_load(content: dict[str, Any]) -> None:
    load, malformed, q = content["load"], content["malformed"], content["sequential"]
    c = load["latency_ms"]
    print(
        f"{load['n_ok']} ok, {load['n_errors']} errors, {load['requests_per_s']:.0f} req/s, "
        f"p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms, in-server p50 "
        f"{load['server_latency_ms']['p50']:.3f} ms; served accuracy {load['served_accuracy']:.2%}"
    )
    if q is not None:
        print(
            f"then one client, {q['n_requests']} requests: p50 {q['latency_ms']['p50']:.2f} ms, "
            f"p99 {q['latency_ms']['p99']:.2f} ms, {q['n_errors']} errors"
        )
    print(
        f"malformed burst: {malformed['n_requests']} requests, {len(malformed['unexpected'])} "
        f"unexpected statuses; then a valid request: HTTP {content['after']}"
    )
    for line in [*load["errors"], *malformed["unexpected"]]:
        print(f"  {line}")


def _cmd_serve_load(args: argparse.Namespace) -> int:
    from ._io import read_json, write_json

    out = Path(args.out)
    if not args.report:
        if not args.model:
            raise CliError("give MODEL (or --report --readme FILE)")
        if args.requests < 1 or args.concurrency < 1:
            raise CliError("--requests and --concurrency must be >= 1")
        data = _load_data(args.data)
        from .serving.load import load_test_passed, measure_serving

        print(
            f"starting `mnist-bench serve {args.model}` on 127.0.0.1, then {args.requests} "
            f"requests from {args.concurrency} clients",
            flush=True,
        )
        content = measure_serving(
            args.model,
            data.x_test[: args.requests],
            data.y_test[: args.requests],
            n_requests=args.requests,
            concurrency=args.concurrency,
        )
        _print_serve_load(content)
        print(f"wrote {write_json(out, content)}")
        if not load_test_passed(content):
            _err("the server did not pass the load test")
            return EXIT_CHECK_FAILED
    elif not args.readme:
        raise CliError("--report needs --readme FILE")
    if args.readme:
        from .serving.load import SERVE_LOAD_TABLE_MARKERS, serve_load_table

        _update_table(
            args.readme,
            SERVE_LOAD_TABLE_MARKERS,
            serve_load_table(read_json(out)),
            "serve-load table",
        )
    return EXIT_OK


def _add_serve_load_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve-load",
        help="load-test `mnist-bench serve` on 127.0.0.1 and record latency and requests/s",
        description="Start `mnist-bench serve MODEL` in a child process on a free port, send "
        "--requests JSON requests (test images) from --concurrency keep-alive clients, then a "
        "burst of malformed requests and one valid request; write --out. Exit 1 on any error.",
    )
    p.add_argument("model", nargs="?", help="model to serve (as `mnist-bench serve` takes)")
    p.add_argument("--requests", type=int, default=2000, help="requests (default: 2000)")
    p.add_argument("--concurrency", type=int, default=16, help="clients (default: 16)")
    p.add_argument(
        "--out", default="results/serve_load.json", help="(default: results/serve_load.json)"
    )
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument(
        "--readme",
        default=None,
        help="regenerate the table between the serve-load-table markers (default: none)",
    )
    p.add_argument("--report", action="store_true", help="measure nothing: only --readme")
    p.set_defaults(func=_cmd_serve_load)


# -- select -------------------------------------------------------------------------------


def _cmd_select(args: argparse.Namespace) -> int:
    _start_tensorflow()  # selection reads the builders' options, which imports Keras
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


# -- robustness and calibration -----------------------------------------------------------

ROBUSTNESS_MARKERS = ("<!-- robustness-table -->", "<!-- /robustness-table -->")
CALIBRATION_MARKERS = ("<!-- calibration-table -->", "<!-- /calibration-table -->")


def _update_table(readme: str, markers: tuple[str, str], body: str, what: str) -> None:
    from ._io import replace_marked

    changed = replace_marked(readme, *markers, body, what)
    _print_readme_update(readme, what, changed)


def _print_robustness(record: dict[str, Any]) -> None:
    from .corruptions import CORRUPTIONS

    model, base = record["model"], record["baseline"]
    print(f"{'corruption':<14}  {'seed':>4}  {'accuracy':>8}  {'baseline':>8}  {'CE':>6}")
    for name in CORRUPTIONS:
        b = f"{base['accuracy'][name]:>8.4f}" if base else f"{'-':>8}"
        ce = record["ce"][name] if record["ce"] else None
        print(
            f"{name:<14}  {record['corruptions'][name]['seed']:>4d}  "
            f"{model['accuracy'][name]:>8.4f}  {b}  {'-' if ce is None else f'{ce:.3f}':>6}"
        )
    line = (
        f"{record['n_images']} {record['split']} digits: clean {model['clean_accuracy']:.4f}, "
        f"mean over 15 corruptions {model['mean_accuracy']:.4f}, min {model['min_accuracy']:.4f} "
        f"({model['worst']})"
    )
    if base:
        line += f"; baseline mean {base['mean_accuracy']:.4f}; mCE {record['mce']:.3f}"
        line += f", relative mCE {record['relative_mce']:.3f}"
    print(line)


def _cmd_robustness(args: argparse.Namespace) -> int:
    _start_tensorflow()
    from ._io import read_json
    from .robustness import (
        HOLDOUT_ROBUSTNESS_FILE,
        ROBUSTNESS_FILE,
        holdout_robustness,
        measure_robustness,
        previous_baseline,
        robustness_figure,
        robustness_table,
        write_robustness,
    )

    out = Path(args.out)
    holdout = args.split == "holdout"
    path = out / (HOLDOUT_ROBUSTNESS_FILE if holdout else ROBUSTNESS_FILE)
    if args.readme and holdout:
        raise CliError("--readme publishes test-set numbers; it does not go with --split holdout")
    if args.table_only:
        if not args.readme:
            raise CliError("--table-only writes the README table: give --readme")
        _update_table(args.readme, ROBUSTNESS_MARKERS, robustness_table(read_json(path)),
                      "robustness table")  # fmt: skip
        return EXIT_OK
    if args.model is None:
        raise CliError("give the MODEL to measure (or --table-only with --readme)")
    if args.readme:
        from ._io import read_marked

        read_marked(args.readme, *ROBUSTNESS_MARKERS, "the robustness table")  # fail early
    from .models import load_model

    data = _load_data(args.data)
    model = load_model(args.model)
    if args.baseline:
        baseline: Any = load_model(args.baseline)
        baseline_path = args.baseline
    else:
        baseline = None if holdout else previous_baseline(path)
        baseline_path = baseline.get("path") if baseline else None
        if baseline is not None:
            print(f"baseline: the numbers of {baseline_path} carried over from {path}")
    if holdout:
        record = holdout_robustness(
            model, data, holdout_size=args.holdout_size, base_seed=args.seed, baseline=baseline
        )
    else:
        n = len(data.x_test) if args.images is None else args.images
        if not 0 < n <= len(data.x_test):
            raise CliError(f"--images must be in 1..{len(data.x_test)}, got {n}")
        record = measure_robustness(
            model, data.x_test[:n], data.y_test[:n], base_seed=args.seed, baseline=baseline
        )
    _print_robustness(record)
    write_robustness(record, path, model_path=args.model, baseline_path=baseline_path)
    print(f"wrote {path}")
    if not holdout:
        figure = robustness_figure(record, data.x_test, out / "corruptions.png")
        print(f"wrote {figure}")
    if args.readme:
        _update_table(args.readme, ROBUSTNESS_MARKERS, robustness_table(record),
                      "robustness table")  # fmt: skip
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    _start_tensorflow()
    from ._io import read_json
    from .robustness import CALIBRATION_FILE, calibrate, calibration_table, write_calibration

    out = Path(args.out)
    if args.table_only:
        if not args.readme:
            raise CliError("--table-only writes the README table: give --readme")
        record = read_json(out / CALIBRATION_FILE)
        _update_table(args.readme, CALIBRATION_MARKERS, calibration_table(record),
                      "calibration table")  # fmt: skip
        return EXIT_OK
    if args.model is None:
        raise CliError("give the MODEL to calibrate (or --table-only with --readme)")
    if args.readme:
        from ._io import read_marked

        read_marked(args.readme, *CALIBRATION_MARKERS, "the calibration table")  # fail early
    from .models import load_model

    data = _load_data(args.data)
    calibrated, record = calibrate(load_model(args.model), data, holdout_size=args.holdout_size)
    print(f"temperature {record['temperature']:.4f} (fitted on {record['fit']['images']})")
    for split in ("holdout", "test"):
        for key in ("uncalibrated", "calibrated"):
            m = record[split][key]
            print(
                f"{split:<8} {key:<13} accuracy {m['accuracy']:.4f}  confidence "
                f"{m['mean_confidence']:.4f}  ECE {m['ece']:.4%}  NLL {m['nll']:.4f}  "
                f"Brier {m['brier']:.4f}"
            )
    paths = write_calibration(calibrated, record, out, model_path=args.model)
    print(f"wrote {' '.join(str(p) for p in paths.values())}")
    if args.readme:
        _update_table(args.readme, CALIBRATION_MARKERS, calibration_table(record),
                      "calibration table")  # fmt: skip
    return EXIT_OK


def _add_robustness_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness",
        help="accuracy under the 15 MNIST-C corruptions; writes robustness.json and a figure",
        description="Corrupt the test digits with each of the 15 MNIST-C corruptions (seeded: "
        "corruption i uses --seed + i), classify them, and write OUT/robustness.json and "
        "OUT/corruptions.png: accuracy per corruption, mean, min, and the corruption error "
        "against --baseline (the seed notebook's model). --split holdout measures the last "
        "--holdout-size training images instead (for choosing a recipe), into "
        "OUT/robustness-holdout.json.",
    )
    p.add_argument("model", nargs="?", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument(
        "--baseline",
        default=None,
        help="the model CE is relative to, e.g. the seed notebook's (default: the baseline "
        "numbers already in OUT/robustness.json, else none)",
    )
    p.add_argument("--images", type=int, default=None, help="first N test digits (default: all)")
    p.add_argument(
        "--split", choices=("test", "holdout"), default="test", help="digits (default: test)"
    )
    p.add_argument("--holdout-size", type=int, default=10_000, help="(default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="base corruption seed (default: 0)")
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument(
        "--readme",
        default=None,
        help=f"also write the table between {ROBUSTNESS_MARKERS[0]} and "
        f"{ROBUSTNESS_MARKERS[1]} in this file (default: none)",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="measure nothing: write the --readme table from OUT/robustness.json",
    )
    p.set_defaults(func=_cmd_robustness)

    p = sub.add_parser(
        "calibrate",
        help="fit a temperature on the holdout split; publish ECE before and after",
        description="Fit temperature scaling on the last --holdout-size training images "
        "(never the test set); write OUT/model_calibrated.keras (the model with its "
        "temperature, loadable with plain Keras; MODEL itself is left as it is), "
        "OUT/calibration.json (test and holdout ECE, NLL, Brier before and after) and "
        "OUT/reliability.png.",
    )
    p.add_argument("model", nargs="?", help="a .keras/.h5 file, or a folder holding one")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--holdout-size", type=int, default=10_000, help="(default: 10000)")
    p.add_argument("--data", default=None, help=f"MNIST folder (default: ${DATA_ENV}, then cache)")
    p.add_argument(
        "--readme",
        default=None,
        help=f"also write the table between {CALIBRATION_MARKERS[0]} and "
        f"{CALIBRATION_MARKERS[1]} in this file (default: none)",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="calibrate nothing: write the --readme table from OUT/calibration.json",
    )
    p.set_defaults(func=_cmd_calibrate)


# -- parser and entry point ---------------------------------------------------------------

_PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data_parser,
    _add_train_parser,
    _add_eval_parsers,
    _add_reproduce_parser,
    _add_select_parser,
    _add_bench_parser,
    _add_export_parser,
    _add_export_bench_parser,
    _add_serve_parser,
    _add_serve_load_parser,
    _add_robustness_parsers,
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
