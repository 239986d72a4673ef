"""Reproduce the published result: the reference recipe over several seeds, the seed notebook's
model beside it, their ensemble, everything written into `results/`, and a checker for it.

    data = load_mnist()
    metrics = reproduce(seeds=5, data=data)  # hours on 2 CPU cores; kill and restart any time
    assert check_results("results", data=data) == []
    update_readme("README.md", metrics)      # the table between the results-table markers

Every run trains into its own folder under `runs_dir` through `train`, which resumes an
interrupted run. As soon as a run finishes it is recorded in `results/` (its metrics entry,
history and test-set softmax; for the first seed also the model and plots) and metrics.json is
rewritten with what is recorded so far (``complete`` false and the ``pending`` runs until all
are in). A recorded run is never retrained, so a reproduction spread over several sessions
(whose run folders are gone) resumes from what was committed. `results/` gets only what a
reader needs: no checkpoints, no per-epoch models.

Spread over machines: ``reproduce(..., shard=(k, n))`` trains only every n-th planned run
starting at the k-th (1-based; a Slurm or Kubernetes job array runs one shard per task, each
into its own out folder or one shared folder), and `merge_results` gathers the shards'
recorded runs into one results folder and writes metrics.json, exactly as one call training
every run would have.

The published model is the run of the FIRST seed in the list, fixed before training. Picking
the best of N seeds on the test set would publish the maximum of N noisy draws as if it were
typical; the spread over seeds is published instead (mean, sd, min, max).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import atomic_path, read_json, read_marked, replace_marked, write_json
from .compare import EXACT, compare
from .config import CONFIG_FILE, METRICS_FILE, TIME_TO_ACCURACY_MARKS, TrainConfig
from .evaluation import evaluate, predict
from .models import (
    H5_NAME,
    KERAS_NAME,
    h5_published,
    load_model,
    newer_keras_needed,
    save_model,
    weights_digest,
)
from .plots import plot_history, plot_report
from .provenance import cpu_label, provenance
from .published import recipe_name
from .selection import accuracy_summary

if TYPE_CHECKING:
    import keras

    from .data import MnistData
    from .evaluation import EvalReport
    from .training import TrainResult

# Time-to-accuracy marks on the test set, DAWNBench-style (time until a fixed accuracy).
TTA_THRESHOLDS = TIME_TO_ACCURACY_MARKS
# Issue 6's targets, all on final-epoch test accuracy.
TARGETS = {"published": 0.997, "mean": 0.997, "ensemble": 0.9975}
MIN_SEEDS_FOR_MEAN = 5  # the mean target counts only over at least this many seeds
SELECTION = "first seed, fixed before training"
HISTORY_DIR = "history"  # per-run history.json
RUNS_DIR = "runs"  # per-run entry of metrics.json, written as soon as the run finishes
PROBS_DIR = "probabilities"  # per-run test-set softmax (10000, 10) float32, for the ensemble
PLOT_FILES = ("confusion_matrix.png", "loss_curves.png", "predictions.png", "misclassified.png")
README_BEGIN, README_END = "<!-- results-table -->", "<!-- /results-table -->"


# -- private helpers ----------------------------------------------------------------------


def _run_name(kind: str, seed: int) -> str:
    return f"{kind}-seed{seed}"


def _check_seeds(seeds: int | Sequence[int]) -> list[int]:
    """`seeds` as a list: an int N means 0..N-1; a sequence must be non-empty and distinct."""
    if isinstance(seeds, bool) or not isinstance(seeds, int | Sequence):
        raise ValueError(f"seeds must be a positive integer or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    out = list(seeds)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds must be a non-empty list of distinct seeds, got {out}")
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) as (K, N); raises ValueError naming the form otherwise."""
    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, e.g. 1/4, got {text!r}")
    return shard


def _plan(
    seeds: list[int], config: TrainConfig, seed_config: TrainConfig | None
) -> list[TrainConfig]:
    """Every run, in order: the published seed first, then the seed notebook's model (cheap,
    and the comparison readers look for; none when `seed_config` is None), then the other
    seeds."""
    reference = [config.replace(seed=s) for s in seeds]
    notebook = [] if seed_config is None else [seed_config.replace(seed=0)]
    return [reference[0], *notebook, *reference[1:]]


def _time_to_accuracy(history: list[dict], config: TrainConfig) -> dict[str, Any]:
    """Cumulative epoch seconds (training + validation) until val accuracy first reaches each
    mark of `TTA_THRESHOLDS`; None where never reached. Only meaningful when validation is the
    test set: a holdout accuracy is not a test accuracy, so nothing is recorded then."""
    keys = [f"{t:.3f}" for t in TTA_THRESHOLDS]
    if config.validation != "test":
        return {
            "on": config.validation,
            "seconds": None,
            "epoch": None,
            "why_null": f"validated on a {config.holdout_size}-image holdout of the training "
            "set, not on the test set: no test accuracy was measured per epoch",
        }
    seconds = dict.fromkeys(keys)
    epoch = dict.fromkeys(keys)
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        for key, mark in zip(keys, TTA_THRESHOLDS, strict=True):
            if seconds[key] is None and row["val_accuracy"] >= mark:
                seconds[key], epoch[key] = elapsed, row["epoch"]
    return {"on": "test", "seconds": seconds, "epoch": epoch, "why_null": None}


def _run_entry(name: str, result: TrainResult) -> dict[str, Any]:
    """One run's line in metrics.json: final epoch only, never the best epoch."""
    m = result.metrics
    return {
        "run": name,
        "seed": result.config.seed,
        "config": result.config.to_dict(),
        "epochs": len(result.history),
        "train_accuracy": m["train_accuracy"],  # last epoch's mean, dropout/augmentation on
        "train_loss": m["train_loss"],
        "test_accuracy": m["test_accuracy"],
        "test_loss": m["test_loss"],
        "test_errors": m["test_errors"],
        "weights_digest": m["weights_digest"],
        "wall_seconds": sum(row["seconds"] for row in result.history),
        "time_to_accuracy": _time_to_accuracy(result.history, result.config),
        "provenance": m["provenance"],
    }


def _ensemble(probabilities: list[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Accuracy of the mean softmax output; probabilities: float32 (10000, 10) per model."""
    mean = np.mean(np.stack(probabilities), axis=0, dtype=np.float64)  # (10000, 10)
    predicted = mean.argmax(axis=1)
    return {
        "n_models": len(probabilities),
        "test_accuracy": float(np.mean(predicted == labels)),
        "test_errors": int(np.sum(predicted != labels)),
    }


def _targets(published: float, summary: dict, ensemble: float) -> dict[str, Any]:
    mean_ok = summary["n"] >= MIN_SEEDS_FOR_MEAN and summary["mean"] >= TARGETS["mean"]
    return {
        "published": {
            "target": TARGETS["published"],
            "value": published,
            "met": published >= TARGETS["published"],
        },
        "mean": {
            "target": TARGETS["mean"],
            "min_seeds": MIN_SEEDS_FOR_MEAN,
            "n": summary["n"],
            "value": summary["mean"],
            "met": mean_ok,
        },
        "ensemble": {
            "target": TARGETS["ensemble"],
            "value": ensemble,
            "met": ensemble >= TARGETS["ensemble"],
        },
    }


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` byte for byte; `dst` appears only once complete."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _expected_files(metrics: dict) -> list[str]:
    """Every file `reproduce` writes into out_dir, relative to it."""
    names = [run["run"] for run in metrics.get("runs", [])]
    if metrics.get("seed_model"):
        names.append(metrics["seed_model"]["run"])
    kinds = ((HISTORY_DIR, "json"), (RUNS_DIR, "json"), (PROBS_DIR, "npy"))
    per_run = [f"{folder}/{n}.{ext}" for n in names for folder, ext in kinds]
    return [METRICS_FILE, *_model_files(metrics), CONFIG_FILE, *PLOT_FILES, *per_run]


def _model_files(metrics: dict) -> list[str]:
    """The published model's files: `model.keras`, and the seed's `.h5` where that format
    holds the model (`models.h5_published`)."""
    options = metrics.get("published", {}).get("config", {}).get("model_options", {})
    return [KERAS_NAME, H5_NAME] if h5_published(options) else [KERAS_NAME]


def _publish(
    run_dir: Path, out: Path, history: list[dict], report: EvalReport, digest: str, data: MnistData
) -> None:
    """Save the published run's model into `out` without its training state (its weights,
    not the optimizer's moments: `save_model(training_state=False)`), copy its config byte
    for byte, and draw its plots from `report`. First checks that the run's model file holds
    the weights its metrics.json describes (`digest`), so an inconsistent run folder never
    reaches `out`."""
    model = load_model(run_dir / KERAS_NAME)
    found = weights_digest(model)
    if found != digest:
        raise ValueError(
            f"{run_dir / KERAS_NAME}: weights digest {found} differs from the run's "
            f"{METRICS_FILE} ({digest}); the run folder is inconsistent"
        )
    save_model(model, out, training_state=False)  # .h5 too, where that format holds it
    _copy_atomic(run_dir / CONFIG_FILE, out / CONFIG_FILE)
    plot_history(history, out / "loss_curves.png")
    plot_report(report, data.x_test, data.y_test, out)


def replot(out_dir: str | Path = "results", *, data: MnistData) -> list[Path]:
    """Draw the published run's figures in `out_dir` again (loss curves, confusion matrix,
    predictions, misclassified digits) from its recorded history and model, without training:
    for when the plots change and the results do not. Returns the files written."""
    out = Path(out_dir)
    metrics = read_json(out / METRICS_FILE)
    history = read_json(out / HISTORY_DIR / f"{metrics['published']['run']}.json")
    report = evaluate(load_model(out / KERAS_NAME), data)
    paths = [plot_history(history, out / "loss_curves.png")]
    return paths + list(plot_report(report, data.x_test, data.y_test, out).values())


def _check_published_model(
    out: Path,
    name: str,
    published: dict,
    data: MnistData,
    reports: dict[str, EvalReport],
    loaded: dict[str, keras.Model],
) -> list[str]:
    """Load out/name with plain Keras (into `loaded[name]`, for the checks after it); compare
    its digest, accuracy and errors (exact: a hash and counts) with metrics.json's published
    entry.

    `reports` carries the test-set reports of the files checked before, by architecture and
    weights: a second file (the .h5 beside the .keras) that loads into the same architecture
    with the same weights computes the same function in this process, so its report is
    reused rather than measured again (4 s on a 2-core CPU).
    """
    import keras

    path = out / name
    if not path.is_file():
        return []  # reported once, with the other missing files
    try:
        model = keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a bad file
        what = newer_keras_needed(path) or "not a loadable Keras model"
        return [f"{path}: {what} ({type(exc).__name__}: {exc})"]
    loaded[name] = model
    digest = weights_digest(model)
    key = json.dumps(model.get_config(), sort_keys=True, default=str) + digest
    report = reports[key] = reports[key] if key in reports else evaluate(model, data)
    measured = {"weights_digest": digest, "test_accuracy": report.accuracy,
                "test_errors": report.n_errors}  # fmt: skip
    recorded = {key: published.get(key) for key in measured}
    where = f"{path} (re-measured) against {METRICS_FILE}"
    return [str(problem) for problem in compare(where, "published", recorded, measured)]


def _check_consistency(out: Path, metrics: dict, labels: np.ndarray) -> list[str]:
    """Numbers in metrics.json that must follow from other numbers in it or from config.json
    (exact: the same arithmetic on the same recorded numbers)."""
    where, problems = str(out / METRICS_FILE), []
    runs, published = metrics["runs"], metrics["published"]
    recomputed = accuracy_summary([run["test_accuracy"] for run in runs])
    problems += compare(where, "summary", metrics["summary"], recomputed)
    first = runs[0]
    problems += compare(where, "published (the run of the first seed)",
                        [published["seed"], published["weights_digest"]],
                        [first["seed"], first["weights_digest"]])  # fmt: skip
    probs = [out / PROBS_DIR / f"{run['run']}.npy" for run in runs]
    if all(p.is_file() for p in probs):
        ensemble = _ensemble([np.load(p) for p in probs], labels)
        problems += compare(f"{where} (recomputed from {out / PROBS_DIR}/)",
                            "ensemble.test_accuracy", metrics["ensemble"]["test_accuracy"],
                            ensemble["test_accuracy"])  # fmt: skip
    targets = _targets(published["test_accuracy"], recomputed, metrics["ensemble"]["test_accuracy"])
    problems += compare(where, "targets", metrics["targets"], targets)
    config_path = out / CONFIG_FILE
    if config_path.is_file():
        problems += compare(f"{config_path} vs {where}", "published.config",
                            published["config"], read_json(config_path))  # fmt: skip
    return [str(problem) for problem in problems]


def n_seeds_text(n: int) -> str:
    """``"1 seed"``, ``"5 seeds"``: how the table and the CLI summary count runs."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def _minutes(value: float | None) -> str:
    # One unit for every duration in the table, so a column reads at a glance.
    return "–" if value is None else f"{value / 60:.1f} min"


def _table_row(label: str, run: dict) -> str:
    return (
        f"| {label} | {_pct(run['test_accuracy'])} | {run['test_errors']} | "
        f"{run['test_loss']:.4f} | {_pct(run['train_accuracy'])} | "
        f"{_minutes(run['wall_seconds'])} |"
    )


def _tta_line(run: dict) -> str:
    tta = run["time_to_accuracy"]
    if tta["seconds"] is None:
        return f"Time to accuracy of the published run: not measured ({tta['why_null']})."
    parts = []
    for key, seconds in tta["seconds"].items():
        epoch = tta["epoch"][key]
        reached = "not reached" if seconds is None else f"{_minutes(seconds)} (epoch {epoch})"
        parts.append(f"{_pct(float(key), 1)}: {reached}")
    lead = "Time to test accuracy of the published run (cumulative training + validation time)"
    return f"{lead}: {'; '.join(parts)}."


def _device_line(prov: dict) -> str:
    cpu = prov["cpu"]
    cpus = cpu.get("affinity_cpus") or cpu.get("logical_cpus")
    gpus = ", ".join(prov.get("gpus") or []) or "no GPU"
    git = prov.get("git") or {}
    commit = git.get("commit", "")[:10] or "unknown"
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    return (
        f"Trained on {cpu_label(cpu, more=f', {cpus} CPUs')}, {gpus}; "
        f"TensorFlow {prov['tensorflow']}, "
        f"Keras {prov['keras']}, Python {prov['python']}; commit {commit}{dirty}."
    )


# -- public functions ---------------------------------------------------------------------


def reproduce(
    *,
    seeds: int | Sequence[int] = 5,
    data: MnistData,
    out_dir: str | Path = "results",
    runs_dir: str | Path = "runs/reproduce",
    config: TrainConfig | None = None,
    seed_config: TrainConfig | None = None,
    notebook_model: bool = True,
    shard: tuple[int, int] | None = None,
    progress: Callable[[str, dict[str, float]], None] | None = None,
    on_run: Callable[[int, int, str, bool], None] | None = None,
) -> dict[str, Any]:
    """Train the reference recipe for each seed and the seed notebook's model, then publish.

    Each run trains into ``runs_dir/reference-seed{s}`` (and ``runs_dir/seed-seed0``) with
    `train`, which resumes an interrupted run from its checkpoint; a run already recorded in
    ``out_dir/runs/`` is not retrained. Order: the first seed, the seed notebook's model, the
    other seeds; after each, ``metrics.json`` is rewritten with every run recorded so far.
    The published model is the run of the first seed in `seeds`, fixed before training (never
    the best seed picked on the test set).

    Parameters
    ----------
    seeds : int or sequence of int, default=5
        An int N means seeds 0..N-1; a sequence gives the seeds, distinct, first = published.
    data : MnistData
        The dataset; every score is on its 10,000 test images.
    out_dir : str or Path, default="results"
        Receives ``metrics.json``, ``runs/<run>.json`` (its entry), ``history/<run>.json``
        and ``probabilities/<run>.npy`` (test-set softmax) for every run, the published model
        (``network_for_mnist.h5``, ``model.keras``: the run's weights, no optimizer state), its
        ``config.json`` and ``confusion_matrix.png``, ``loss_curves.png``,
        ``predictions.png``, ``misclassified.png``. Each file is written atomically. No
        checkpoints.
    runs_dir : str or Path, default="runs/reproduce"
        Holds one training folder per run (with its checkpoint, for resuming).
    config : TrainConfig, optional
        The reference recipe; default ``TrainConfig.recipe("reference")``. Its seed is
        replaced by each of `seeds`.
    seed_config : TrainConfig, optional
        The seed notebook's recipe, trained faithfully with seed 0; default
        ``TrainConfig.recipe("seed")``.
    notebook_model : bool, default=True
        Whether the seed notebook's model is one of the runs. The deeper networks' folders
        leave it out (`published.NOTEBOOK_BESIDE`): results/ already publishes it, and the
        robustness baseline is carried over from results/robustness.json.
    shard : (int, int), optional
        ``(k, n)``: train only the planned runs k, k+n, k+2n, ... (1-based, in the order
        below) and record them; merge the shards' folders with `merge_results`. None: all.
    progress : callable, optional
        ``progress(run_name, row)`` after each trained epoch (`train`'s history row).
    on_run : callable, optional
        ``on_run(k, n, run_name, recorded)`` before run k (1-based) of the n planned ones;
        `recorded` is True for a run already in `out_dir`, which is not trained again.

    Returns
    -------
    dict
        What ``metrics.json`` holds (accuracies are fractions in [0, 1], final epoch only):

        - ``complete``: whether every planned run is recorded; ``pending``: those that are not;
        - ``published``: the first seed's run: ``run``, ``seed``, ``config``,
          ``test_accuracy``, ``test_loss``, ``test_errors``, ``weights_digest``,
          ``machine_fingerprint`` (where it was trained: digests compare only there),
          ``train_accuracy``, ``train_loss``, ``wall_seconds``, ``selection``;
        - ``runs``: per reference seed, in order: ``run``, ``seed``, ``config``, ``epochs``,
          ``train_accuracy``/``train_loss`` (last epoch's mean, dropout and augmentation
          on), ``test_accuracy``, ``test_loss``, ``test_errors``, ``weights_digest``,
          ``wall_seconds`` (sum of epoch seconds), ``time_to_accuracy`` (``on``, then
          ``seconds`` and ``epoch`` per mark "0.990", "0.995", "0.997", None if never
          reached; both None, with ``why_null``, when validation was not the test set),
          ``provenance`` (the run's own);
        - ``summary``: ``n``, ``mean``, ``sd`` (ddof=1, None for n=1), ``min``, ``max``;
        - ``ensemble``: ``n_models``, ``seeds``, ``test_accuracy``, ``test_errors``;
        - ``seed_model``: the seed notebook's run, fields as in ``runs`` (None while not
          recorded, then in ``pending``; or when `notebook_model` is False);
        - ``targets``: ``published``, ``mean`` (also ``min_seeds``, ``n``), ``ensemble``,
          each ``target``, ``value`` and ``met``;
        - ``provenance``: of this call.

        Empty while the published seed's run is not recorded in `out_dir` (a shard without
        it).
    """
    seed_list = _check_seeds(seeds)
    config = config if config is not None else TrainConfig.recipe("reference")
    seed_config = _seed_config(seed_config, notebook_model)
    out, runs = Path(out_dir), Path(runs_dir)
    plan = _plan(seed_list, config, seed_config)
    k, n = shard if shard is not None else (1, 1)
    for index, cfg in enumerate(plan):
        if index % n != k - 1:
            continue  # another shard's run
        name = _run_name(cfg.model, cfg.seed)
        recorded = _recorded(out, name, cfg)
        if on_run is not None:
            on_run(index + 1, len(plan), name, recorded)
        if recorded:
            continue  # recorded in results/ by an earlier call, perhaps in another session
        on_epoch = None if progress is None else (lambda row, n=name: progress(n, row))
        from .training import train  # only here: checks and tables never import training

        result = train(cfg, data, runs / name, progress=on_epoch)
        _record_run(out, name, result, data, publish=index == 0)
        del result  # one model in memory at a time
        _write_metrics(out, seed_list, plan, data)
    return _write_metrics(out, seed_list, plan, data)


def merge_results(
    shard_dirs: Sequence[str | Path],
    out_dir: str | Path = "results",
    *,
    seeds: int | Sequence[int] = 5,
    data: MnistData,
    config: TrainConfig | None = None,
    seed_config: TrainConfig | None = None,
    notebook_model: bool = True,
) -> dict[str, Any]:
    """Gather the runs the shards of a ``reproduce(..., shard=...)`` recorded into `out_dir`
    and write its metrics.json, as one `reproduce` of every run would have.

    Copies each shard folder's ``runs/``, ``history/`` and ``probabilities/`` files byte for
    byte (a run found in two shards must be byte-identical there), and the published model,
    config and plots from the shard holding the first seed's run. `seeds`, `config` and
    `seed_config` must be those the shards ran with: each recorded run is checked against
    them. Returns what metrics.json holds (see `reproduce`); ``complete`` says whether every
    planned run was found.
    """
    seed_list = _check_seeds(seeds)
    config = config if config is not None else TrainConfig.recipe("reference")
    seed_config = _seed_config(seed_config, notebook_model)
    out = Path(out_dir)
    plan = _plan(seed_list, config, seed_config)
    names = [_run_name(cfg.model, cfg.seed) for cfg in plan]
    for shard in map(Path, shard_dirs):
        if not shard.is_dir():
            raise ValueError(f"{shard}: no such shard folder")
        for cfg, name in zip(plan, names, strict=True):
            if shard.resolve() == out.resolve() or not _recorded(shard, name, cfg):
                continue
            for folder, ext in ((PROBS_DIR, "npy"), (HISTORY_DIR, "json"), (RUNS_DIR, "json")):
                src, dst = shard / folder / f"{name}.{ext}", out / folder / f"{name}.{ext}"
                if dst.exists() and dst.read_bytes() != src.read_bytes():
                    raise ValueError(f"{src} differs from {dst}: two shards recorded {name}")
                _copy_atomic(src, dst)  # runs/ last: it marks the run as recorded
            if name == names[0]:  # the published run: its model, config and plots
                for file in (H5_NAME, KERAS_NAME, CONFIG_FILE, *PLOT_FILES):
                    if file != H5_NAME or (shard / file).is_file():
                        _copy_atomic(shard / file, out / file)
    return _write_metrics(out, seed_list, plan, data)


def _seed_config(seed_config: TrainConfig | None, notebook_model: bool) -> TrainConfig | None:
    if not notebook_model:
        return None
    return seed_config if seed_config is not None else TrainConfig.recipe("seed")


def _recorded(out: Path, name: str, config: TrainConfig) -> bool:
    """Whether run `name` is recorded in `out` with exactly `config`. A run recorded with
    another config (an older recipe) is an error: counting it would mix two recipes in one
    summary, and retraining over it would silently discard published results."""
    path = out / RUNS_DIR / f"{name}.json"
    if not path.exists():
        return False
    recorded = TrainConfig.from_dict(read_json(path)["config"])
    if recorded != config:
        old, new = recorded.to_dict(), config.to_dict()
        fields = sorted(k for k in new if old[k] != new[k])
        raise ValueError(
            f"{path}: recorded with another config (differs in {', '.join(fields)}); "
            f"move {out} aside or reproduce into another --out folder"
        )
    return True


def _record_run(
    out: Path, name: str, result: TrainResult, data: MnistData, *, publish: bool
) -> None:
    """Write one finished run into results/ at once: its entry, history and test-set softmax
    (for the ensemble); for the published run also the model files and plots. Results thus
    accumulate across sessions: a run recorded here is never retrained."""
    if publish:
        # `train` evaluated the final weights in this process, even for a finished run it
        # only reloaded: the published scores are what this machine measures.
        _publish(_run_dir(result), out, result.history, result.report,
                 result.metrics["weights_digest"], data)  # fmt: skip
    probabilities = predict(result.model, data.x_test)[1]  # (10000, 10) float32
    with atomic_path(out / PROBS_DIR / f"{name}.npy") as tmp:
        np.save(tmp, probabilities)
    write_json(out / HISTORY_DIR / f"{name}.json", result.history)
    entry = _run_entry(name, result)
    if publish:
        entry["published_scores"] = {
            "test_accuracy": result.report.accuracy,
            "test_loss": result.report.loss,
            "test_errors": result.report.n_errors,
        }
    write_json(out / RUNS_DIR / f"{name}.json", entry)  # last: marks the run as recorded


def _run_dir(result: TrainResult) -> Path:
    if result.out_dir is None:
        raise ValueError("a published run needs its run folder")
    return result.out_dir


def _write_metrics(out: Path, seeds: list[int], plan: list[TrainConfig], data: MnistData) -> dict:
    """Aggregate every recorded run into metrics.json; `complete` once all planned runs are."""
    names = [_run_name(cfg.model, cfg.seed) for cfg in plan]
    recorded = {n: read_json(out / RUNS_DIR / f"{n}.json") for n in names
                if (out / RUNS_DIR / f"{n}.json").exists()}  # fmt: skip
    reference_names = [_run_name(plan[0].model, s) for s in seeds]
    if reference_names[0] not in recorded:
        return {}
    scores = recorded[reference_names[0]].pop("published_scores")  # only in runs/<first>.json
    entries = [recorded[n] for n in reference_names if n in recorded]
    first = entries[0]
    published = {
        "run": first["run"],
        "seed": first["seed"],
        "config": first["config"],
        **scores,
        "weights_digest": first["weights_digest"],  # _publish checked the model file
        "machine_fingerprint": first["provenance"]["machine_fingerprint"],
        "train_accuracy": first["train_accuracy"],
        "train_loss": first["train_loss"],
        "wall_seconds": first["wall_seconds"],
        "selection": SELECTION,
    }
    probabilities = [np.load(out / PROBS_DIR / f"{e['run']}.npy") for e in entries]
    summary = accuracy_summary([e["test_accuracy"] for e in entries])
    ensemble = {**_ensemble(probabilities, data.y_test), "seeds": [e["seed"] for e in entries]}
    # the notebook's run, second in the plan when there is one (`_plan`)
    seed_names = [n for cfg, n in zip(plan[1:], names[1:], strict=True) if cfg.model == "seed"]
    metrics = {
        "complete": len(recorded) == len(names),
        "pending": [n for n in names if n not in recorded],
        "published": published,
        "runs": entries,
        "summary": summary,
        "ensemble": ensemble,
        "seed_model": recorded.get(seed_names[0]) if seed_names else None,
        "targets": _targets(scores["test_accuracy"], summary, ensemble["test_accuracy"]),
        "provenance": provenance(),
    }
    write_json(out / METRICS_FILE, metrics)
    return read_json(out / METRICS_FILE)  # exactly what the file holds


# What `check_results` verifies, in words (printed by `mnist-bench reproduce --check`).
CHECKS = (
    "model.keras (and network_for_mnist.h5, where that format holds the model) load with plain "
    "keras.models.load_model; each one's test accuracy and errors equal metrics.json's "
    "published ones, and its weights digest the published digest",
    "the mean, sd, min and max over the seeds and the targets recomputed from runs/*.json",
    "the ensemble's accuracy recomputed from the stored test-set probabilities/*.npy",
    "config.json is the published run's config; every file reproduce writes is present",
    "robustness.json and calibration.json (when present) are of the published model (weights "
    "digest), their summaries follow from their per-corruption and per-bin numbers, the first "
    "corrupted test digits are re-measured, and the calibrated model is loaded with plain Keras "
    "and its test calibration re-measured",
    "the comparison rule (mnist_bench.compare): counts, digests and hashes exactly; floats "
    "exactly on the machine fingerprint that recorded them, else within float32 rounding "
    "over the terms they sum",
)


def check_results(out_dir: str | Path = "results", *, data: MnistData) -> list[str]:
    """Verify a results folder written by `reproduce` against the data, without retraining.

    Every comparison follows `mnist_bench.compare`'s rule (`verify_results` also says which
    rule each group used). Loads ``model.keras`` and ``network_for_mnist.h5`` with plain
    `keras.models.load_model`, evaluates each on the test set and compares its accuracy and
    errors (counts: exact), and its weights digest,
    with ``metrics.json``'s ``published`` entry; recomputes the summary and the targets from
    the per-run numbers and the ensemble accuracy from the stored test-set probabilities;
    checks ``config.json`` and that every file `reproduce` writes exists. Where ``mnist-bench
    robustness`` and ``mnist-bench calibrate`` wrote ``robustness.json`` and
    ``calibration.json`` into the folder, checks them too: both must be of the published
    model; the robustness summary is recomputed and its first-200-digit subset re-measured,
    the calibrated model beside it loaded with plain Keras and its test calibration
    re-measured (exact on the recording fingerprint, within float32 rounding elsewhere).

    Parameters
    ----------
    out_dir : str or Path, default="results"
        The folder `reproduce` wrote.
    data : MnistData
        The dataset; its 10,000 test images are evaluated.

    Returns
    -------
    list of str
        Human-readable problems, each naming the file concerned; empty when all is well.
    """
    return verify_results(out_dir, data=data).problems


@dataclass(frozen=True)
class Verification:
    """What `verify_results` found: ``problems`` (one line each: file, field, recorded,
    re-measured, difference, rule; empty when all is well) and ``rules`` (each comparison
    group and the `mnist_bench.compare` rule it used)."""

    problems: list[str]
    rules: list[str]


def verify_results(out_dir: str | Path = "results", *, data: MnistData) -> Verification:
    """`check_results`, also saying by which rule each group of numbers was compared."""
    out = Path(out_dir)
    rules = [f"{out / METRICS_FILE}, {', '.join(_model_files_or_default(out))}: every field "
             f"(counts, digests, sums of recorded numbers): {EXACT}"]  # fmt: skip
    try:
        metrics = read_json(out / METRICS_FILE)
        published = metrics["published"]
        problems = _check_consistency(out, metrics, data.y_test)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        return Verification([detail if str(out) in detail else f"{out / METRICS_FILE}: {detail}"],
                            rules)  # fmt: skip
    problems += [f"{out / name}: missing" for name in _expected_files(metrics)
                 if not (out / name).is_file()]  # fmt: skip
    reports: dict[str, EvalReport] = {}
    loaded: dict[str, keras.Model] = {}
    for name in _model_files(metrics):
        problems += _check_published_model(out, name, published, data, reports, loaded)
    trust = _check_trust_files(out, loaded.get(KERAS_NAME), data, rules)
    return Verification(problems + trust, rules)


def _model_files_or_default(out: Path) -> list[str]:
    try:
        return _model_files(read_json(out / METRICS_FILE))
    except (ValueError, KeyError, TypeError):
        return [KERAS_NAME]


def _check_trust_files(
    out: Path, model: keras.Model | None, data: MnistData, rules: list[str]
) -> list[str]:
    """`robustness.check_robustness` and `check_calibration` on the files `mnist-bench
    robustness` and `mnist-bench calibrate` wrote into `out`, when they are there, against
    `model` (out/model.keras as loaded; None when it was missing or not loadable, which is
    reported already)."""
    from .robustness import (
        CALIBRATION_FILE,
        ROBUSTNESS_FILE,
        check_calibration,
        check_robustness,
    )

    present = [name for name in (ROBUSTNESS_FILE, CALIBRATION_FILE) if (out / name).is_file()]
    if not present or model is None:
        return []
    checks = {ROBUSTNESS_FILE: check_robustness, CALIBRATION_FILE: check_calibration}
    return [problem for name in present
            for problem in checks[name](out / name, model, data, rules=rules)]  # fmt: skip


def _seed_model_row(seed_model: dict | None, pending: list[str]) -> str:
    if seed_model:
        return _table_row(f"seed notebook's model, seed {seed_model['seed']}", seed_model)
    if _run_name("seed", 0) in pending:
        return "| seed notebook's model | pending | | | | |"
    return "| seed notebook's model | not trained with this recipe (see results/) | | | | |"


def results_table(metrics: dict) -> str:
    """A Markdown summary of ``metrics.json``: the published model, every seed, mean ± sd,
    min, max, the ensemble and the seed notebook's model; the targets; the published run's
    time to accuracy; the device and versions it was trained with."""
    runs, summary, ens = metrics["runs"], metrics["summary"], metrics["ensemble"]
    pub, seed_model = metrics["published"], metrics["seed_model"]
    sd = "n/a (1 run)" if summary["sd"] is None else _pct(summary["sd"], 3)
    recipe = recipe_name(pub["config"])
    lines = [
        "| model | test accuracy | test errors | test loss | train accuracy | wall time |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        _table_row(f"**published**: {recipe}, seed {pub['seed']} ({pub['selection']})", pub),
        *(_table_row(f"{recipe}, seed {run['seed']}", run) for run in runs),
        f"| {recipe}, mean ± sd over {n_seeds_text(summary['n'])} "
        f"| {_pct(summary['mean'], 3)} ± {sd} | | | | |",
        f"| {recipe}, min / max | {_pct(summary['min'])} / {_pct(summary['max'])} | | | | |",
        f"| ensemble of {ens['n_models']} (mean softmax) | {_pct(ens['test_accuracy'])} | "
        f"{ens['test_errors']} | | | |",
        _seed_model_row(seed_model, metrics.get("pending", [])),
        "",
        "| target (final epoch, 10k test set) | goal | measured | met |",
        "| --- | ---: | ---: | --- |",
    ]
    labels = {
        "published": "published model",
        "mean": f"mean over >= {MIN_SEEDS_FOR_MEAN} seeds",
        "ensemble": "ensemble",
    }
    for key, label in labels.items():
        target = metrics["targets"][key]
        measured = _pct(target["value"], 3 if key == "mean" else 2)
        if "n" in target:
            measured += f" (n = {target['n']})"
        met = "yes" if target["met"] else "**no**"
        lines.append(f"| {label} | >= {_pct(target['target'])} | {measured} | {met} |")
    lines += ["", _tta_line(runs[0]), _device_line(runs[0]["provenance"])]
    if not metrics.get("complete", True):
        pending = ", ".join(metrics["pending"])
        lines.append(f"Partial results: still to train and record: {pending}.")
    return "\n".join(lines)


def check_readme(readme_path: str | Path) -> str:
    """The text of `readme_path`, once it is known to hold exactly one ``<!-- results-table
    -->`` followed by one ``<!-- /results-table -->``. Raises ``ValueError`` naming the file
    otherwise (the CLI calls this before training, not hours later)."""
    return read_marked(readme_path, README_BEGIN, README_END, "the results table")


def update_readme(readme_path: str | Path, metrics: dict) -> bool:
    """Replace the text between ``<!-- results-table -->`` and ``<!-- /results-table -->`` in
    `readme_path` with `results_table(metrics)`; the rest of the file is left as it is.

    Returns whether the file changed. Raises ``ValueError`` naming the file when it cannot be
    read or does not hold exactly one pair of markers, in that order.
    """
    body = results_table(metrics)
    return replace_marked(readme_path, README_BEGIN, README_END, body, "the results table")
