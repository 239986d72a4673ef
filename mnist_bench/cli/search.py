"""`mnist-bench search`: a recipe search on Optuna (`mnist_bench.search`), one worker per
command; with ``--report``, the study's Pareto front as a JSON summary, a figure and a table."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import (
    EXIT_OK,
    CliError,
    _add_data_flag,
    _show_table,
    _start_tensorflow,
)


def _fixed_pair(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (NAME, VALUE as JSON when it parses, else the string)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value  # e.g. convs_per_stage=1,1,1


def _number_above(kind: type, low: float, what: str) -> Callable[[str], Any]:
    """An argparse `type`: `kind(text)`, refused unless > `low`, naming `what` it must be."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = low
        if not value > low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_positive_int = _number_above(int, 0, "a positive integer")
_index = _number_above(int, -1, "an integer >= 0")  # a worker index: 0, 1, 2, ...
_positive_float = _number_above(float, 0.0, "a positive number")


def _trial_line(trial: Any, objectives: tuple[str, ...], worker: int) -> str:
    attrs = trial.user_attrs
    if trial.state.name != "COMPLETE":
        return f"trial {trial.number} (worker {worker}): {trial.state.name.lower()}"
    parts = [f"holdout accuracy {attrs['accuracy']:.2%}", f"{attrs['minutes']:.1f} min"]
    if "corrupted" in attrs:
        parts.append(f"corrupted holdout {attrs['corrupted']:.2%}")
    params = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    )
    return f"trial {trial.number} (worker {worker}): {', '.join(parts)} | {params}"


def _report(args: argparse.Namespace, storage_url: str) -> int:
    import optuna

    from ..search import display_url, open_storage
    from ..search_report import (
        README_MARKERS,
        figure_path,
        search_figure,
        search_table,
        study_summary,
        write_summary,
    )

    storage = open_storage(storage_url)
    try:
        study = optuna.load_study(study_name=args.study, storage=storage)
    except KeyError as exc:
        raise CliError(f"no study {args.study!r} in {display_url(storage_url)}") from exc
    summary = study_summary(study, args.out)
    print(f"wrote {write_summary(summary, args.out)}")
    if summary["trials"]:
        print(f"wrote {search_figure(summary, figure_path(args.study, args.out))}")
    _show_table(search_table(summary), args.readme, README_MARKERS, "search table")
    return EXIT_OK


def _cmd_search(args: argparse.Namespace) -> int:
    _start_tensorflow()
    import optuna

    from ..config import TrainConfig
    from ..data import load_mnist
    from ..search import (
        DEFAULT_RUNS,
        OBJECTIVES,
        check_fixed,
        check_study_name,
        default_storage,
        display_url,
        open_storage,
        open_study,
        parse_objectives,
        run_search,
        run_trial,
        study_settings,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from here
    check_study_name(args.study)
    objectives = parse_objectives(args.objectives)
    storage_url = args.storage or default_storage(args.study, args.out)
    if args.report:
        return _report(args, storage_url)
    if args.readme:
        raise CliError("--readme goes with --report")
    fixed = check_fixed(dict(args.fix))
    base = TrainConfig.recipe(
        args.recipe,
        seed=args.seed,
        validation="holdout",
        holdout_size=args.holdout_size,
        train_subset=args.train_subset,
    )
    storage = open_storage(storage_url, heartbeat_interval=args.heartbeat)
    study = open_study(
        args.study, storage, study_settings(objectives, base, fixed), worker=args.worker
    )
    data = load_mnist(args.data, test=False)  # the test files are not even opened
    runs = args.runs or DEFAULT_RUNS
    print(
        f"study {args.study} ({display_url(storage_url)}), worker "
        f"{args.worker}: {len(study.trials)} trials so far; objectives "
        + ", ".join(f"{o} ({OBJECTIVES[o]})" for o in objectives)
        + f"; runs in {Path(runs) / args.study}, records in {Path(args.out) / 'holdout'}",
        flush=True,
    )

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        return run_trial(
            trial,
            data=data,
            base=base,
            fixed=fixed,
            objectives=objectives,
            runs_dir=runs,
            results_dir=args.out,
        )

    run_search(
        study,
        objective,
        n_trials=args.trials,
        timeout=args.timeout,
        on_trial=lambda t: print(_trial_line(t, objectives, args.worker), flush=True),
    )
    front = sorted(t.number for t in study.best_trials)
    print(f"study {args.study}: {len(study.trials)} trials; Pareto front: trials {front}")
    return EXIT_OK


def _add_search_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search recipes on the holdout with Optuna; run once per worker",
        description="Run trials of an Optuna study: each one a seeded --validation holdout "
        "training of a candidate recipe (mnist_bench.search.suggest_config), recorded in "
        "OUT/holdout/STUDY-trial-N.json; the test set is never read. Workers join one study "
        "by name through --storage (default: an SQLite file OUT/search/STUDY.db, one machine; "
        "postgresql://... for many). --report writes OUT/search/STUDY.json, the Pareto-front "
        "figure OUT/search/STUDY-front.png and the table.",
    )
    p.add_argument("--study", required=True, help="study name (letters, digits, _ . -)")
    p.add_argument(
        "--objectives",
        default="accuracy,minutes",
        help="comma-separated, from accuracy, minutes, corrupted (default: accuracy,minutes)",
    )
    p.add_argument("--storage", default=None, help="database URL (default: OUT/search/STUDY.db)")
    p.add_argument(
        "--trials",
        type=_positive_int,
        default=None,
        help="trials for this worker (default: no limit)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        help="seconds for this worker (default: none)",
    )
    p.add_argument(
        "--worker",
        type=_index,
        default=0,
        help="this worker's index: seeds its sampler (default: 0)",
    )
    p.add_argument(
        "--fix",
        type=_fixed_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pin a search-space value, e.g. epochs=12 or convs_per_stage=1,1,1 (repeatable)",
    )
    p.add_argument(
        "--recipe",
        choices=("reference", "robust"),
        default="reference",
        help="base (default: reference)",
    )
    p.add_argument("--seed", type=int, default=0, help="every trial's training seed (default: 0)")
    p.add_argument("--holdout-size", type=_positive_int, default=10_000, help="(default: 10000)")
    p.add_argument(
        "--train-subset",
        type=_positive_int,
        default=None,
        help="first N training images (default: all)",
    )
    p.add_argument("--runs", default=None, help="run folders' root (default: runs/search)")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument(
        "--heartbeat",
        type=_positive_int,
        default=60,
        help="seconds between a trial's heartbeats; a trial silent for twice that is retried "
        "(default: 60)",
    )
    p.add_argument("--report", action="store_true", help="summary, figure and table; no trials")
    p.add_argument(
        "--readme", default=None, help="with --report: regenerate the search table in this file"
    )
    _add_data_flag(p)
    p.set_defaults(func=_cmd_search)
