"""A recipe search's results (`mnist_bench.search`): the study's complete trials and Pareto
front as a JSON summary, a figure (holdout accuracy against minutes, the reference recipe's
holdout runs marked) and a Markdown table, all from the summary file.

    mnist-bench search --study fast --report --readme docs/recipe.md

writes ``results/search/fast.json``, ``results/search/fast-front.png`` and the table between
the ``<!-- search-table -->`` markers. The summary holds what the table and the figure show, so
both can be redrawn from ``results/`` alone, the study's database aside.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import read_json, write_json
from .config import TrainConfig
from .provenance import device_text
from .search import OBJECTIVES, SEARCH_DIR, SETTINGS_ATTR, check_study_name
from .selection import recipe_changes, recorded_candidates

if TYPE_CHECKING:
    import optuna

README_MARKERS = ("<!-- search-table -->", "<!-- /search-table -->")


def reference_runs(results_dir: str | Path = "results") -> list[dict[str, Any]]:
    """The reference recipe's holdout runs recorded in ``results_dir/holdout`` (any seed):
    run name, seed, final-epoch holdout accuracy, minutes, MFLOP per image and device, by
    seed."""
    reference = TrainConfig.recipe("reference", validation="holdout")
    runs = []
    for record in recorded_candidates(results_dir):
        config = TrainConfig.from_dict(record["config"])
        if config.replace(seed=0, extra={}) == reference:
            runs.append(
                {
                    "run": record["run"],
                    "seed": config.seed,
                    "holdout_accuracy": record["holdout_accuracy"],
                    "minutes": record["wall_seconds"] / 60,
                    "mflops": record["flops_per_image"]["forward"] / 1e6,
                    "device": device_text(record["provenance"]),
                }
            )
    return sorted(runs, key=lambda r: (r["seed"], r["run"]))


def study_summary(study: optuna.Study, results_dir: str | Path = "results") -> dict[str, Any]:
    """Everything the table and figure show, from the study and ``results_dir/holdout``:
    settings, trial counts by state, every complete trial (values, changes from the reference
    recipe, MFLOP per image, device, whether on the Pareto front) and the reference runs."""
    import optuna

    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = {t.number for t in study.best_trials} if complete else set()
    reference = TrainConfig.recipe("reference").to_dict()
    rows = [
        {
            "trial": t.number,
            "pareto": t.number in front,
            "values": dict(zip(settings.get("objectives", []), t.values, strict=False)),
            "accuracy": t.user_attrs["accuracy"],
            "minutes": t.user_attrs["minutes"],
            **({"corrupted": t.user_attrs["corrupted"]} if "corrupted" in t.user_attrs else {}),
            "changes": recipe_changes(
                TrainConfig.from_dict(t.user_attrs["config"]).to_dict(), reference
            ),
            "mflops": t.user_attrs["mflops"],
            "device": _device(t.user_attrs, results_dir),
            "record": t.user_attrs["record"],
        }
        for t in complete
    ]
    return {
        "study": study.study_name,
        "settings": settings,
        "states": states,
        "trials": rows,
        "reference_runs": reference_runs(results_dir),
    }


def _device(attrs: Mapping[str, Any], results_dir: str | Path) -> str:
    """The device of a trial from its holdout record's provenance (what the record says now),
    else what the worker stored."""
    record = Path(results_dir) / "holdout" / f"{attrs['record']}.json"
    return device_text(read_json(record)["provenance"]) if record.is_file() else attrs["device"]


def summary_path(study: str, results_dir: str | Path = "results") -> Path:
    return Path(results_dir) / SEARCH_DIR / f"{check_study_name(study)}.json"


def write_summary(summary: Mapping[str, Any], results_dir: str | Path = "results") -> Path:
    """``results_dir/search/<study>.json``, atomically."""
    return write_json(summary_path(summary["study"], results_dir), dict(summary))


def read_summary(study: str, results_dir: str | Path = "results") -> dict[str, Any]:
    return read_json(summary_path(study, results_dir))


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def search_table(summary: Mapping[str, Any]) -> str:
    """A Markdown table of the study's Pareto front (by minutes), the reference recipe's
    holdout runs below it, and a line saying what the study holds."""
    corrupted = "corrupted" in summary["settings"].get("objectives", [])
    head = ["trial", "differences from the reference recipe", "MFLOP/image", "holdout accuracy"]
    head += ["corrupted holdout mean"] * corrupted + ["minutes", "device"]
    align = ["---", "---", *["---:"] * (len(head) - 3), "---"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    front = sorted((r for r in summary["trials"] if r["pareto"]), key=lambda r: r["minutes"])
    for row in front:
        cells = [str(row["trial"]), row["changes"], f"{row['mflops']:.1f}", _pct(row["accuracy"])]
        cells += [_pct(row["corrupted"]) if "corrupted" in row else "–"] * corrupted
        lines.append("| " + " | ".join([*cells, f"{row['minutes']:.1f}", row["device"]]) + " |")
    runs = summary["reference_runs"]
    if runs:
        accuracy = math.fsum(r["holdout_accuracy"] for r in runs) / len(runs)
        minutes = math.fsum(r["minutes"] for r in runs) / len(runs)
        seeds = ", ".join(str(r["seed"]) for r in runs)
        devices = ", ".join(sorted({r["device"] for r in runs}))
        mflops = f"{runs[0]['mflops']:.1f}"
        cells = ["reference", f"the reference recipe, mean of seeds {seeds}", mflops]
        cells += [_pct(accuracy), *(["–"] * corrupted), f"{minutes:.1f}", devices]
        lines.append("| " + " | ".join(cells) + " |")
    states = ", ".join(f"{n} {s}" for s, n in sorted(summary["states"].items()))
    objectives = ", ".join(
        f"{o} ({OBJECTIVES[o]})" for o in summary["settings"].get("objectives", [])
    )
    lines += [
        "",
        f"Study `{summary['study']}`: {states or 'no'} trials; objectives {objectives}; "
        f"Pareto front by Optuna (`study.best_trials`), one seed per trial "
        f"(seed {summary['settings'].get('base', {}).get('seed', '?')}), final epoch.",
    ]
    return "\n".join(lines)


def search_figure(summary: Mapping[str, Any], path: str | Path) -> Path:
    """The Pareto front of `summary` (holdout accuracy against minutes) as a PNG at `path`,
    the reference recipe's holdout runs marked on it."""
    from .plots import plot_search_front

    rows, runs = summary["trials"], summary["reference_runs"]
    return plot_search_front(
        [r["minutes"] for r in rows],
        [r["accuracy"] for r in rows],
        [r["pareto"] for r in rows],
        [r["minutes"] for r in runs],
        [r["holdout_accuracy"] for r in runs],
        path,
        labels=[str(r["trial"]) for r in rows],
        title=f"study {summary['study']}: {len(rows)} complete trials",
    )


def figure_path(study: str, results_dir: str | Path = "results") -> Path:
    return Path(results_dir) / SEARCH_DIR / f"{check_study_name(study)}-front.png"
