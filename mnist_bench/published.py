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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._io import read_json
from .config import RECIPES, TrainConfig

# Each published recipe's folder, relative to the results root ("." is the root itself).
PUBLISHED_DIRS = {"reference": ".", "robust": "robust"}
README_MARKERS = ("<!-- recipes-table -->", "<!-- /recipes-table -->")
METRICS, ROBUSTNESS, CALIBRATION = "metrics.json", "robustness.json", "calibration.json"


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


def _cpu_name(cpu: Mapping[str, Any]) -> str:
    """``"AMD EPYC (family 25 model 17)"``: the model name alone does not tell Zen 3 from
    Zen 4."""
    _, family, model, _ = (cpu.get("vendor_family_model_stepping") or "?/?/?/?").split("/")
    return f"{cpu['model_name']} (family {family} model {model})"


def _time_cells(metrics: Mapping[str, Any]) -> list[str]:
    """Mean wall time per run and the published run's time to 99.5% / 99.7% test accuracy
    (cumulative epoch seconds, from its recorded history), with the CPU they were timed on:
    times compare only on one CPU."""
    runs = metrics["runs"]
    mean = sum(run["wall_seconds"] for run in runs) / len(runs)
    cpus = sorted({_cpu_name(run["provenance"]["cpu"]) for run in runs})
    tta = runs[0]["time_to_accuracy"]["seconds"] or {}
    reach = " / ".join(_minutes(tta.get(key)) for key in ("0.995", "0.997"))
    return [f"{mean / 60:.1f} min", reach, ", ".join(cpus)]


def recipes_table(root: str | Path = "results") -> str:
    """A Markdown table, one row per published recipe under the results root `root`
    (`recipe_folders`): the published model's clean test
    accuracy, the mean over seeds, the ensemble, the mean and worst accuracy under the 15
    corruptions, the test ECE before -> after temperature scaling, the mean wall time per
    run, the published run's time to 99.5% and 99.7%, and the CPU the runs were timed on."""
    lines = [
        "| recipe (folder) | published model | mean over seeds | ensemble "
        "| corrupted: mean of 15 | corrupted: worst | ECE -> with temperature "
        "| wall time per run | time to 99.5% / 99.7% | timed on |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [_row(name, folder, Path(root)) for name, folder in recipe_folders(root).items()]
    return "\n".join(lines)
