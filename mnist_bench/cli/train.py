"""`mnist-bench train`: flags onto `TrainConfig`, one row per epoch, a progress bar on a
terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import (
    AUGMENT_ON_CHOICES,
    PRECISION_CHOICES,
    RECIPE_ALIASES,
    RECIPES,
    SCHEDULE_CHOICES,
    STRATEGY_CHOICES,
    VALIDATION_CHOICES,
    TrainConfig,
)
from . import _common
from ._common import (
    EXIT_OK,
    _add_data_flag,
    _duration,
    _plural,
    _start_tensorflow,
)

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


def _print_epoch(row: dict[str, float]) -> None:
    print(_format_epoch(row), flush=True)


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
    """The recipe a run is closest to (fewest fields changed) and what differs from it,
    instead of every field."""
    values = config.to_dict()

    def changes(name: str) -> dict[str, Any]:
        recipe = TrainConfig.recipe(name).to_dict()
        return {k: v for k, v in values.items() if recipe[k] != v}

    candidates = [name for name in RECIPES if RECIPES[name]["model"] == config.model]
    name = min(candidates, key=lambda n: len(changes(n)))  # ties: the first, e.g. reference
    changed = changes(name)
    differs = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))
    return f"config: the {name!r} recipe" + (f" with {differs}" if differs else "")


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
    "augment_on": "augment_on",
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
        if model is not None and RECIPES[model]["model"] != config.model:
            config = config.replace(model=RECIPES[model]["model"])
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
    data = _common._load_data(args.data)
    _start_tensorflow()
    from ..training import train

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
        choices=(*RECIPES, *RECIPE_ALIASES),
        default=None,
        help="the recipe (architecture and settings): 'reference' (published in results/), "
        "'robust' (reference + intensity augmentation, results/robust/), 'fast' (time to "
        "99.7%%, results/fast/), 'notebook' (alias "
        "'seed': the original notebook project's CNN and settings), or the deeper networks on "
        "the reference protocol, 'resnet20' and 'efficientnet_b0' (docs/architectures.md) "
        "(default: reference)",
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
    _add_data_flag(p)
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
    p.add_argument(
        "--augment-on",
        choices=AUGMENT_ON_CHOICES,
        default=None,
        help="'device': gather and augment each batch inside the train step from images kept "
        "on the GPU, no per-step host work; the same bits as 'host' on a CPU; one device "
        "only (default: host, a tf.data pipeline)",
    )
    p.set_defaults(func=_cmd_train)
