"""`mnist-bench reproduce` (train, shard, merge, check, replot the published runs) and
`mnist-bench select` (recipe candidates on the holdout)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..published import (
    ARCHITECTURES_MARKERS,
    DEFAULT_SEEDS,
    NOTEBOOK_BESIDE,
    PUBLISHED_DIRS,
    README_MARKERS,
    architectures_table,
    recipe_folder,
    recipe_folders,
    recipe_name,
    recipes_table,
)
from . import _common
from ._common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    CliError,
    _add_data_flag,
    _duration,
    _err,
    _print_readme_update,
    _start_tensorflow,
    _update_table,
)
from .train import _EPOCH_HEADER, _config_line, _print_epoch


def _print_reproduce_summary(metrics: dict[str, Any]) -> None:
    from ..reproduction import n_seeds_text

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
        f"{recipe_name(pub['config'])} over {n_seeds_text(s['n'])}: mean {s['mean']:.3%} ± {sd}, "
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
    from .._io import read_json

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

    def __init__(self, main: str, epochs: dict[str, int]) -> None:
        self.main = main  # the recipe's model: every later run is one of its seeds
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
        timed = self.seconds.get(self.model) or self.seconds.get(self.main)
        if not timed:
            return "time left: estimated once an epoch is timed"
        per_epoch = sum(timed) / len(timed)
        # The later runs are the recipe's seeds; the notebook's model (trained second) is cheaper.
        left = per_epoch * (self.epochs[self.model] - self.done_in_run)
        left += per_epoch * self.epochs[self.main] * self.runs_after
        return f"about {_duration(left)} left at most (at {per_epoch:.0f} s per epoch)"


def _write_architectures(page: str) -> None:
    body = architectures_table("results")
    _update_table(page, ARCHITECTURES_MARKERS, body, "architectures table")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    _start_tensorflow()  # before importing .reproduction, which imports TensorFlow
    from .._io import read_json, read_marked
    from ..reproduction import (
        CHECKS,
        METRICS_FILE,
        check_readme,
        merge_results,
        parse_shard,
        replot,
        reproduce,
        update_readme,
        verify_results,
    )

    recipe = args.recipe or "reference"
    seeds = args.seeds if args.seeds is not None else DEFAULT_SEEDS[recipe]
    notebook = recipe in NOTEBOOK_BESIDE
    out = Path(args.out) if args.out else recipe_folder("results", recipe)
    # --check alone verifies every published recipe's folder under results/
    checked = [out] if args.out or args.recipe else list(recipe_folders("results").values())
    if args.replot:  # no training, no table: the figures only
        if args.check or args.merge or args.shard or args.readme:
            raise CliError("--replot draws the figures only: not with --check, --merge, "
                           "--shard or --readme")  # fmt: skip
        for path in replot(out, data=_common._load_data(args.data)):
            print(f"drew {path}")
        return EXIT_OK
    if args.architectures:  # a page without the markers fails now, not after checking
        read_marked(args.architectures, *ARCHITECTURES_MARKERS, "the architectures table")
        if not args.check:  # no training: the table from what results/ holds
            if args.merge or args.shard or args.readme:
                raise CliError(
                    "--architectures alone draws the table only: not with --merge, --shard or "
                    "--readme (add --check to verify results/ first)"
                )
            _write_architectures(args.architectures)
            return EXIT_OK
    if args.readme:
        check_readme(args.readme)  # a README without markers fails now, not after training
    if not args.check:
        if seeds < 1:
            raise CliError(f"--seeds must be >= 1, got {seeds}")
        smoke = {"epochs": args.epochs, "train_subset": args.train_subset}
        smoke = {field: value for field, value in smoke.items() if value is not None}
        config = TrainConfig.recipe(recipe, **smoke)
        seed_config = TrainConfig.recipe("seed", **smoke)
        print(f"{recipe} runs: {_config_line(config)}", flush=True)
        if notebook:
            print(f"notebook run: {_config_line(seed_config)}", flush=True)
    if args.variants:
        if not args.check:
            raise CliError("--variants runs --check under each kernel and thread setting: "
                           "give --check")  # fmt: skip
        return _check_variants(args)
    runs_dir = args.runs_dir or ("runs/reproduce" if recipe == "reference" else f"runs/{recipe}")
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.check and (shard is not None or args.merge):
        raise CliError("--check verifies a results folder: not with --shard or --merge")
    data = _common._load_data(args.data)
    if args.merge:
        metrics = merge_results(
            args.merge,
            out,
            seeds=seeds,
            data=data,
            config=config,
            seed_config=seed_config,
            notebook_model=notebook,
        )
        if not metrics:
            raise CliError(f"no shard in {', '.join(args.merge)} holds the published seed's run")
        _print_reproduce_summary(metrics)
        print(f"merged {len(args.merge)} shard folder(s) into {out}/")
    elif args.check:
        if not checked:
            raise CliError("no published results found under results/ (no metrics.json)")
        from ..provenance import machine_fingerprint

        print(f"this machine: {machine_fingerprint()}")
        results = {folder: verify_results(folder, data=data) for folder in checked}
        where = " and ".join(f"{folder}/" for folder in checked)
        print(f"checked {where} against the MNIST test set ({len(data.y_test):,} images):")
        for line in CHECKS:
            print(f"  - {line}")
        print("compared by these rules:")
        for rule in (rule for result in results.values() for rule in result.rules):
            print(f"  - {rule}")
        problems = [problem for result in results.values() for problem in result.problems]
        if problems:
            print(f"{len(problems)} problem(s):")
            for problem in problems:
                print(f"  - {problem}")
            _err(f"{len(problems)} problem(s) found in {where}")
            return EXIT_CHECK_FAILED
        for folder in checked:
            if len(checked) > 1:
                print(f"\n{folder}/:")
            _print_reproduce_summary(read_json(folder / METRICS_FILE))
            _print_trust_summary(folder)
        if len(checked) > 1:
            print("\n" + recipes_table("results"))
        metrics = read_json(checked[0] / METRICS_FILE)
        print("results verified")
        if args.architectures:
            _write_architectures(args.architectures)
    else:
        print(
            f"{recipe} seeds 0..{seeds - 1} (published: seed 0, fixed before training)"
            + (" and the notebook's model, seed 0" if notebook else "")
            + f": runs in {runs_dir}/, results into {out}/"
            + (f"; shard {shard[0]}/{shard[1]}: every {shard[1]}th run" if shard else ""),
            flush=True,
        )
        clock = _RunClock(config.model, {config.model: config.epochs, "seed": seed_config.epochs})

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
            seeds=seeds,
            data=data,
            out_dir=out,
            runs_dir=runs_dir,
            config=config,
            seed_config=seed_config,
            notebook_model=notebook,
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
        if len(checked) > 1 and README_MARKERS[0] in Path(args.readme).read_text():
            body = recipes_table("results")
            _update_table(args.readme, README_MARKERS, body, "recipes table")
    return EXIT_OK


def _check_variants(args: argparse.Namespace) -> int:
    """`reproduce --check` once per kernel and thread variant of this machine, each in a fresh
    process (`mnist_bench.variants`); a table of the outcomes; exit 1 if any failed."""
    from ..provenance import gpu_names
    from ..variants import VARIANTS, available_variants, run_variant

    argv = ["reproduce", "--check"]
    for flag, value in (("--out", args.out), ("--recipe", args.recipe), ("--data", args.data)):
        argv += [flag, str(value)] if value else []
    names = available_variants(has_gpu=bool(gpu_names()))
    print(f"`mnist-bench {' '.join(argv)}` under {len(names)} variants of this machine:")
    failed = []
    for name in names:
        result = run_variant(name, argv)
        verdict = "passed" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"  {name:<11} {verdict:<18} {result.seconds:5.0f} s  {VARIANTS[name].description}")
        print(f"  {'':<11} fingerprint: {result.fingerprint or 'not printed'}", flush=True)
        if result.returncode != 0:
            failed.append(result)
    for result in failed:
        print(f"\n--- {result.name}: its output ---\n{result.output.rstrip()}")
    if failed:
        _err(f"reproduce --check failed under {', '.join(r.name for r in failed)}")
        return EXIT_CHECK_FAILED
    print("results verified under every variant")
    return EXIT_OK


def _add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train the published runs (several seeds) and write results/; or --check them",
        description="Train a published recipe (--recipe: reference, the default, robust, "
        "fast, resnet20 or efficientnet_b0) for each seed, and for reference and robust also the "
        "seed notebook's model (seed 0), each in its own folder under --runs-dir (resumable: "
        "kill and restart at any time), then write metrics, histories, the published model "
        "(the first seed, fixed before training) and its plots into --out. --check verifies "
        "--out without training.",
    )
    p.add_argument(
        "--recipe",
        choices=tuple(PUBLISHED_DIRS),
        default=None,
        help="the published recipe to train or check: 'reference' (results/), or 'robust', "
        "'fast', 'resnet20', 'efficientnet_b0' (results/<recipe>/) (default: reference; "
        "--check alone checks every published folder)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds 0..N-1 (default: 5; 3 for resnet20, 2 for efficientnet_b0)",
    )
    p.add_argument(
        "--out", default=None, help="results folder (default: the recipe's, e.g. results)"
    )
    p.add_argument(
        "--runs-dir",
        default=None,
        help="training folders (default: runs/reproduce, or runs/<recipe> for another recipe)",
    )
    _add_data_flag(p)
    p.add_argument(
        "--check",
        action="store_true",
        help="no training: verify --out against the data; exit 1 on any problem (default: off)",
    )
    p.add_argument(
        "--variants",
        action="store_true",
        help="with --check: run the check again in a fresh process under each kernel and "
        "thread setting this machine has (oneDNN on and off, one thread, the GPU hidden if "
        "there is one), a stand-in for other machines' rounding (default: off)",
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
    p.add_argument(
        "--architectures",
        default=None,
        metavar="FILE",
        help="regenerate the architectures table between its markers in this file (e.g. "
        "docs/architectures.md) from results/: alone, no training and no check; with --check, "
        "once verified (default: none)",
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


# -- select -------------------------------------------------------------------------------


def _cmd_select(args: argparse.Namespace) -> int:
    _start_tensorflow()  # selection reads the builders' options, which imports Keras
    from ..selection import (
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
