"""Choosing the reference recipe on a holdout split, never on the test set, with the evidence
kept in `results/holdout/` and the README table generated from it.

    mnist-bench train --model reference --validation holdout --seed 0 --out runs/holdout/a
    mnist-bench select runs/holdout/a runs/holdout/b --readme README.md

Each candidate is one `train` run validated on the last 10,000 training images
(``validation="holdout"``). `record_candidate` copies what the choice may rest on into
``results/holdout/<run>.json``: the config, the FINAL epoch's holdout accuracy, the wall time
and the provenance. It leaves out the run's test-set scores on purpose (`train` measures them
at the end of every run): a recipe chosen by its test accuracy would make the published test
accuracy an optimistic estimate. `candidates_table` groups the records by recipe (everything
but the seed) and lists, per candidate, how it differs from the current reference recipe, its
holdout accuracy per seed and the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import read_json, read_marked, replace_marked, write_json
from .config import TrainConfig
from .models import model_option_defaults

HOLDOUT_DIR = "holdout"  # under the results folder
CORRUPTED_HOLDOUT_FILE = "robustness-holdout.json"  # in a run folder, beside its model
README_BEGIN, README_END = "<!-- holdout-table -->", "<!-- /holdout-table -->"


def accuracy_summary(accuracies: Sequence[float]) -> dict[str, Any]:
    """``n``, ``mean``, sample ``sd`` (ddof=1; None for one run), ``min`` and ``max`` of
    final-epoch accuracies (fractions)."""
    values = [float(a) for a in accuracies]
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "sd": sd, "min": min(values), "max": max(values)}


def _final_row(run_dir: Path) -> dict[str, Any]:
    history = read_json(run_dir / "history.json")
    if not isinstance(history, list) or not history:
        raise ValueError(f"{run_dir / 'history.json'}: holds no epoch")
    return history[-1]


def record_candidate(
    run_dir: str | Path, out_dir: str | Path = "results", *, name: str | None = None
) -> dict[str, Any]:
    """Record the finished holdout run in `run_dir` as ``out_dir/holdout/<name>.json``
    (`name` defaults to the run folder's name; a search names its trials' records apart).

    Raises ``ValueError`` naming the file when the run is unfinished (no ``metrics.json``),
    validated on the test set (its scores cannot choose a recipe), or unreadable.

    Returns
    -------
    dict
        The record: ``run``, ``config``, ``epochs``, ``holdout_accuracy`` (final epoch, a
        fraction), ``holdout_errors``, ``holdout_size``, ``train_accuracy`` (final epoch's
        mean, augmentation and dropout on), ``wall_seconds`` (sum of epoch times),
        ``flops_per_image``, ``params`` and ``provenance``; with weight averaging also
        ``holdout_accuracy_last_weights`` (the same run's last weights), with batch-norm
        recalibration ``holdout_accuracy_uncalibrated`` (before it); when the run folder holds
        ``robustness-holdout.json`` (``mnist-bench robustness MODEL --split holdout --out
        RUN_DIR``), ``corrupted_holdout``: the mean, min and worst corruption accuracy on the
        corrupted holdout images. No test-set score, clean or corrupted.
    """
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / "metrics.json")
    config = TrainConfig.from_dict(read_json(run_dir / "config.json"))
    if config.validation != "holdout":
        raise ValueError(
            f"{run_dir / 'config.json'}: validated on the {config.validation} set; only runs "
            "validated on a holdout of the training images may choose a recipe"
        )
    history = read_json(run_dir / "history.json")
    last = _final_row(run_dir)
    if last["epoch"] != config.epochs:
        raise ValueError(
            f"{run_dir / 'history.json'}: ends at epoch {last['epoch']} of {config.epochs}"
        )
    name = run_dir.name if name is None else name
    record = {
        "run": name,
        "config": config.to_dict(),
        "epochs": last["epoch"],
        "holdout_accuracy": last["val_accuracy"],
        "holdout_errors": round((1.0 - last["val_accuracy"]) * config.holdout_size),
        "holdout_size": config.holdout_size,
        # The same run scored without its final steps, on the same images (paired): without
        # weight averaging (the last weights), without batch-norm recalibration.
        **{
            name: last[key]
            for name, key in (
                ("holdout_accuracy_last_weights", "last_val_accuracy"),
                ("holdout_accuracy_uncalibrated", "uncalibrated_val_accuracy"),
            )
            if key in last
        },
        "train_accuracy": last["accuracy"],
        "wall_seconds": math.fsum(row["seconds"] for row in history),
        "flops_per_image": metrics["flops_per_image"],
        "params": metrics["params"],
        "provenance": metrics["provenance"],
        **_corrupted_holdout(run_dir, metrics.get("weights_digest")),
    }
    write_json(Path(out_dir) / HOLDOUT_DIR / f"{name}.json", record)
    return record


def _corrupted_holdout(run_dir: Path, digest: str | None) -> dict[str, Any]:
    path = run_dir / CORRUPTED_HOLDOUT_FILE
    if not path.exists():
        return {}
    record = read_json(path)
    model = record["model"]
    if record.get("split") != "holdout" or model.get("weights_digest") != digest:
        raise ValueError(
            f"{path}: not this run's model scored on the holdout split (weights digest or split "
            "differs); score it again with `mnist-bench robustness MODEL --split holdout`"
        )
    keys = ("mean_accuracy", "min_accuracy", "worst")
    return {"corrupted_holdout": {key: model[key] for key in keys}}


def recorded_candidates(out_dir: str | Path = "results") -> list[dict[str, Any]]:
    """Every record in ``out_dir/holdout/``, by file name. Hidden files are left out: they are
    the temporary files of writes in progress (`_io.atomic_path`), or of one that was killed."""
    folder = Path(out_dir) / HOLDOUT_DIR
    paths = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    return [read_json(path) for path in paths]


def recipe_changes(config: dict[str, Any], recipe: dict[str, Any]) -> str:
    """How `config` differs from `recipe`, seed and validation aside, as ``field=value``."""
    ignored = {"seed", "validation", "extra"}
    parts = []
    for key in sorted(config):
        if key in ignored or config[key] == recipe.get(key):
            continue
        if key == "model_options" and config["model"] == recipe["model"]:
            # One entry per option; an option left out means the builder's default.
            defaults = model_option_defaults(config["model"])
            options, reference = {**defaults, **config[key]}, {**defaults, **recipe[key]}
            parts += [f"{k}={v}" for k, v in sorted(options.items()) if v != reference[k]]
        else:
            parts.append(f"{key}={config[key]}")
    return ", ".join(parts) or "the reference recipe"


def candidates_table(records: list[dict[str, Any]], recipe: TrainConfig | None = None) -> str:
    """A Markdown table of the candidates in `records`: one row per recipe (all fields but
    the seed), how it differs from `recipe` (default: the current reference recipe), the final
    holdout accuracy of each seed, their mean and sample sd (ddof=1, "–" for one seed), and
    the mean wall time and forward FLOPs."""
    recipe_dict = (recipe or TrainConfig.recipe("reference")).to_dict()
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        # Through TrainConfig: a record written before a field existed gets its default.
        config = TrainConfig.from_dict(record["config"]).to_dict()
        groups.setdefault(recipe_changes(config, recipe_dict), []).append(record)
    lines = [
        "| candidate (differences from the reference recipe) | MFLOP/image | seeds | "
        "final-epoch holdout accuracy per seed | mean | sd | corrupted holdout: mean, worst | "
        "minutes per run |",
        "| --- | ---: | --- | --- | ---: | ---: | --- | ---: |",
    ]
    for changes, runs in groups.items():
        runs = sorted(runs, key=lambda r: r["config"]["seed"])
        accuracies = [r["holdout_accuracy"] for r in runs]
        summary = accuracy_summary(accuracies)
        sd = "–" if summary["sd"] is None else f"{summary['sd']:.3%}"
        per_seed = ", ".join(f"{a:.2%} ({r['holdout_errors']})" for a, r in zip(
            accuracies, runs, strict=True))  # fmt: skip
        minutes = math.fsum(r["wall_seconds"] for r in runs) / len(runs) / 60
        lines.append(
            f"| {changes} | {runs[0]['flops_per_image']['forward'] / 1e6:.1f} | "
            f"{', '.join(str(r['config']['seed']) for r in runs)} | {per_seed} | "
            f"{summary['mean']:.3%} | {sd} | {_corrupted_cell(runs)} | {minutes:.1f} |"
        )
    return "\n".join(lines)


def _corrupted_cell(runs: list[dict[str, Any]]) -> str:
    """Per seed scored, the mean accuracy over the corruptions and the worst one; "–" when
    no seed was scored (records from before the corruption suite)."""
    scored = [r["corrupted_holdout"] for r in runs if "corrupted_holdout" in r]
    return (
        "; ".join(
            f"{c['mean_accuracy']:.2%}, {c['worst'].replace('_', ' ')} {c['min_accuracy']:.2%}"
            for c in scored
        )
        or "–"
    )


def check_readme(readme_path: str | Path) -> str:
    """The text of `readme_path` once it holds the holdout-table markers; else ``ValueError``."""
    return read_marked(readme_path, README_BEGIN, README_END, "the holdout table")


def update_readme(readme_path: str | Path, records: list[dict[str, Any]]) -> bool:
    """Replace the text between ``<!-- holdout-table -->`` and ``<!-- /holdout-table -->`` in
    `readme_path` with `candidates_table(records)`. Returns whether the file changed; raises
    ``ValueError`` naming the file when the markers are missing."""
    body = candidates_table(records)
    return replace_marked(readme_path, README_BEGIN, README_END, body, "the holdout table")
