"""The published recipes side by side: where each lives under the results folder, and one
table of their clean, corrupted and calibration numbers.

``results/`` publishes the `reference` recipe (the clean-accuracy claim); ``results/robust/``
publishes the `robust` recipe beside it, written by the same commands with ``--recipe robust``
(or ``--out results/robust``). Every number in the tables comes from the files those commands
wrote: ``metrics.json``, ``robustness.json`` and ``calibration.json`` of each folder.

    folders = recipe_folders("results")   # {"reference": results, "robust": results/robust}
    print(recipes_table("results"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ._io import read_json
from .config import RECIPES, TIME_TO_ACCURACY_MARKS, TrainConfig
from .provenance import cpu_label

# Each published recipe's folder, relative to the results root ("." is the root itself).
PUBLISHED_DIRS = {
    "reference": ".",
    "robust": "robust",
    "fast": "fast",
    "resnet20": "resnet20",
    "efficientnet_b0": "efficientnet_b0",
}
# The recipes whose reproduction also trains the seed notebook's model (seed 0) beside them.
# The deeper networks' folders leave it out: results/ publishes it (runs/seed-seed0.json), and
# their robustness baseline is carried over from results/robustness.json, so a sixth run of
# it per folder would only repeat a recorded one.
NOTEBOOK_BESIDE = ("reference", "robust")
# Seeds a reproduction trains by default: 5 for the small CNNs; 3 for ResNet-20 and 2 for
# EfficientNet-B0, whose 30-epoch runs take hours on a CPU (issue #21: 3 seeds, 2 where a run
# passes 90 min, as EfficientNet-B0's does on the AVX2 CPUs: docs/architectures.md).
DEFAULT_SEEDS = {"reference": 5, "robust": 5, "fast": 5, "resnet20": 3, "efficientnet_b0": 2}
README_MARKERS = ("<!-- recipes-table -->", "<!-- /recipes-table -->")
METRICS, ROBUSTNESS, CALIBRATION = "metrics.json", "robustness.json", "calibration.json"
# The time-to-accuracy marks of the recipes table, as a run's record keys them.
RECIPE_TTA_MARKS = tuple(f"{mark:.3f}" for mark in TIME_TO_ACCURACY_MARKS)


def recipe_folder(root: str | Path, recipe: str) -> Path:
    """The folder under the results root `root` that publishes `recipe`."""
    if recipe not in PUBLISHED_DIRS:
        raise ValueError(f"recipe must be one of {list(PUBLISHED_DIRS)}, got {recipe!r}")
    return Path(root) / PUBLISHED_DIRS[recipe]


def recipe_folders(root: str | Path) -> dict[str, Path]:
    """The published recipes whose folder under `root` holds a ``metrics.json``, in
    `PUBLISHED_DIRS` order: name -> folder."""
    folders = {name: recipe_folder(root, name) for name in PUBLISHED_DIRS}
    return {name: path for name, path in folders.items() if (path / METRICS).is_file()}


def recipe_records(root: str | Path, file: str) -> dict[str, dict[str, Any]]:
    """Each published recipe's `file` (e.g. robustness.json) under the results root `root`,
    where it was written: name -> its JSON. The reference's must be there (else the error
    names it)."""
    folders = {name: recipe_folder(root, name) for name in PUBLISHED_DIRS}
    records = {name: read_json(f / file) for name, f in folders.items() if (f / file).is_file()}
    if "reference" not in records:
        read_json(Path(root) / file)  # raises, naming the missing file
    return records


def recipe_name(config: Mapping[str, Any]) -> str:
    """The name of the recipe `config` (a ``TrainConfig`` dict) is, up to its seed and the
    smoke-run fields (epochs, train_subset); its architecture's name if it is none of them."""
    run = TrainConfig.from_dict(dict(config))
    loose = {"seed": 0, "epochs": 30, "train_subset": None}
    for name in RECIPES:
        if TrainConfig.recipe(name, **loose) == run.replace(**loose):
            return name
    return run.model


def _pct(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def _row(name: str, folder: Path, root: Path) -> str:
    metrics = read_json(folder / METRICS)
    where = "results/" if folder == root else f"results/{folder.relative_to(root).as_posix()}/"
    cells = [
        f"`{name}` ({where})",
        _pct(metrics["published"]["test_accuracy"]),
        f"{_pct(metrics['summary']['mean'], 3)} (n = {metrics['summary']['n']})",
        _pct(metrics["ensemble"]["test_accuracy"]),
    ]
    if (folder / ROBUSTNESS).is_file():
        model = read_json(folder / ROBUSTNESS)["model"]
        worst = model["worst"].replace("_", " ")
        cells += [_pct(model["mean_accuracy"]), f"{_pct(model['min_accuracy'])} ({worst})"]
    else:
        cells += ["not measured", "not measured"]
    if (folder / CALIBRATION).is_file():
        test = read_json(folder / CALIBRATION)["test"]
        cells.append(f"{_pct(test['uncalibrated']['ece'])} -> {_pct(test['calibrated']['ece'])}")
    else:
        cells.append("not measured")
    return "| " + " | ".join(cells + _time_cells(metrics)) + " |"


def _minutes(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.1f} min"


def _time_cells(metrics: Mapping[str, Any]) -> list[str]:
    """Mean wall time per run and the mean time to 99.0% / 99.5% / 99.7% test accuracy over
    the seeds that reached it (cumulative epoch seconds, from each run's recorded history),
    with the machine they were timed on: times compare only on one machine, so runs timed on
    several are averaged per machine, "; " between machines, in the "timed on" order."""
    groups = _by_machine(metrics["runs"])
    reach = _per_machine(
        groups, lambda runs: " / ".join(_tta_cell(runs, mark) for mark in RECIPE_TTA_MARKS)
    )
    return [_per_machine(groups, _mean_wall), reach, _machines_cell(groups)]


def recipes_table(root: str | Path = "results") -> str:
    """A Markdown table, one row per published recipe under the results root `root`
    (`recipe_folders`): the published model's clean test
    accuracy, the mean over seeds, the ensemble, the mean and worst accuracy under the 15
    corruptions, the test ECE before -> after temperature scaling, the mean wall time per
    run, the mean time to 99.0%, 99.5% and 99.7% over the seeds that reached it, and the CPU
    the runs were timed on."""
    lines = [
        "| recipe (folder) | published model | mean over seeds | ensemble "
        "| corrupted: mean of 15 | corrupted: worst | ECE -> with temperature "
        "| wall time per run | time to 99.0% / 99.5% / 99.7% (mean over seeds) | timed on |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [_row(name, folder, Path(root)) for name, folder in recipe_folders(root).items()]
    return "\n".join(lines)


# -- the architectures table --------------------------------------------------------------

ARCHITECTURES_MARKERS = ("<!-- architectures-table -->", "<!-- /architectures-table -->")
NOTEBOOK_RUN = "runs/seed-seed0.json"  # under the results root: the seed notebook's model
TTA_MARKS = ("0.995", "0.997")  # the time-to-accuracy marks the architectures table shows
PENDING = "pending"


def _size_cells(config: Mapping[str, Any]) -> list[str]:
    """Parameters and forward MFLOP per image of the network `config` trains, counted on the
    built (untrained) network: properties of the architecture, known before any result."""
    from .models import build_model, model_flops  # Keras: only when a table is drawn

    model = build_model(config["model"], **config["model_options"])
    return [f"{model.count_params():,}", f"{model_flops(model)['forward'] / 1e6:.1f}"]


def _tta_cell(runs: list[dict[str, Any]], mark: str) -> str:
    """Mean minutes to `mark` test accuracy over the runs that reached it, and how many did."""
    tta = [run["time_to_accuracy"] for run in runs]
    if any(t["seconds"] is None for t in tta):
        return "not measured"  # validated on a holdout: no test accuracy per epoch
    reached = [t["seconds"][mark] for t in tta if t["seconds"][mark] is not None]
    if not reached:
        return "not reached" if len(runs) == 1 else f"reached by none of {len(runs)}"
    text = _minutes(sum(reached) / len(reached))
    return text if len(reached) == len(runs) else f"{text} ({len(reached)} of {len(runs)} reached)"


def _machine_label(run: Mapping[str, Any]) -> str:
    prov = run["provenance"]
    gpus = ", ".join(prov.get("gpus") or [])
    return cpu_label(prov["cpu"]) + (f" + {gpus}" if gpus else "")


def _by_machine(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The runs grouped by the machine (CPU, and GPUs if any) that timed them, in run order:
    a deep network's seeds may be trained over several sessions on different CPUs, and a
    mean over two CPUs' minutes would describe neither."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_machine_label(run), []).append(run)
    return groups


def _machines_cell(groups: Mapping[str, list[dict[str, Any]]]) -> str:
    """The "timed on" cell: the one machine, or each with its count of runs."""
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(
        f"{label} ({len(runs)} run{'s' if len(runs) > 1 else ''})" for label, runs in groups.items()
    )


def _per_machine(
    groups: Mapping[str, list[dict[str, Any]]], cell: Callable[[list[dict[str, Any]]], str]
) -> str:
    """One time cell: `cell` of each machine's runs, "; " between machines."""
    return "; ".join(cell(runs) for runs in groups.values())


def _mean_wall(runs: list[dict[str, Any]]) -> str:
    return _minutes(sum(run["wall_seconds"] for run in runs) / len(runs))


def _trust_cells(robustness: dict | None, calibration: dict | None) -> list[str]:
    cells = ["not measured"] * 2
    if robustness is not None:
        worst = robustness["worst"].replace("_", " ")
        cells = [_pct(robustness["mean_accuracy"]), f"{_pct(robustness['min_accuracy'])} ({worst})"]
    if calibration is None:
        return [*cells, "not measured"]
    test = calibration["test"]
    return [*cells, f"{_pct(test['uncalibrated']['ece'])} -> {_pct(test['calibrated']['ece'])}"]


def _row_cells(label: str, runs: list[dict], summary: dict, trust: list[str]) -> list[str]:
    sd = "" if summary["sd"] is None else f" ± {_pct(summary['sd'], 3)}"
    groups = _by_machine(runs)  # times per machine, as in the recipes table
    return [
        label,
        f"{_pct(summary['mean'], 3)}{sd} (n = {summary['n']})",
        *_size_cells(runs[0]["config"]),
        _per_machine(groups, _mean_wall),
        *(_per_machine(groups, partial(_tta_cell, mark=mark)) for mark in TTA_MARKS),
        *trust,
        _machines_cell(groups),
    ]


def _notebook_cells(root: Path) -> list[str]:
    label = "notebook's model (`seed`, results/runs/)"
    if not (root / NOTEBOOK_RUN).is_file():
        return [label, PENDING, *_size_cells(TrainConfig.recipe("seed").to_dict()), *[PENDING] * 7]
    run = read_json(root / NOTEBOOK_RUN)
    summary = {"mean": run["test_accuracy"], "sd": None, "n": 1}
    # Its corruption numbers are the baseline block of results/robustness.json, when that
    # baseline is this very model (same weights digest); it has no calibration file.
    baseline = None
    if (root / ROBUSTNESS).is_file():
        baseline = read_json(root / ROBUSTNESS).get("baseline")
        if baseline is not None and baseline.get("weights_digest") != run["weights_digest"]:
            baseline = None
    return _row_cells(label, [run], summary, _trust_cells(baseline, None))


def _recipe_cells(name: str, root: Path) -> list[str]:
    folder = recipe_folder(root, name)
    where = "results/" if folder == root else f"results/{folder.relative_to(root).as_posix()}/"
    label = f"`{name}` ({where})"
    if not (folder / METRICS).is_file():
        config = TrainConfig.recipe(name).to_dict()
        return [label, PENDING, *_size_cells(config), *[PENDING] * 7]
    metrics = read_json(folder / METRICS)
    robustness = (
        read_json(folder / ROBUSTNESS)["model"] if (folder / ROBUSTNESS).is_file() else None
    )
    calibration = read_json(folder / CALIBRATION) if (folder / CALIBRATION).is_file() else None
    trust = _trust_cells(robustness, calibration)
    return _row_cells(label, metrics["runs"], metrics["summary"], trust)


def architectures_table(root: str | Path = "results") -> str:
    """A Markdown table of every network the results root `root` publishes, side by side:
    the seed notebook's model (``runs/seed-seed0.json``), then each recipe of
    `PUBLISHED_DIRS`. Per row: final-epoch test accuracy, mean ± sd over the seeds (n);
    parameters and forward MFLOP per image (of the network built from the recorded config);
    mean wall time per run and mean minutes to 99.5% / 99.7% test accuracy (over the runs
    that reached it); mean and worst accuracy under the 15 corruptions (robustness.json);
    test ECE before -> after temperature scaling (calibration.json); the machine the runs
    were timed on. A recipe whose folder holds no metrics.json yet reads "pending"."""
    root = Path(root)
    header = [
        "network (folder)", "test accuracy, mean ± sd (n)", "parameters", "MFLOP / image",
        "wall time / run", "to 99.5%", "to 99.7%", "corrupted: mean of 15", "corrupted: worst",
        "ECE -> with temperature", "timed on",
    ]  # fmt: skip
    rows = [_notebook_cells(root), *(_recipe_cells(name, root) for name in PUBLISHED_DIRS)]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * 9 + " --- |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
