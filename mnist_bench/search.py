"""Recipe search on Optuna: each trial is one seeded holdout run of a candidate recipe, scored
on the objectives the command line names, never on the test set.

    mnist-bench search --study fast --trials 40                  # one worker, SQLite file
    mnist-bench search --study fast --trials 40 --worker $K \\
        --storage postgresql://user@db-host/optuna              # one such command per worker
    mnist-bench search --study fast --report --readme docs/recipe.md   # search_report

A trial: Optuna's sampler picks values for the search space (`suggest_config`: the reference
frame's network and training options); `training.train` runs that config with
``validation="holdout"`` and ``score_test=False`` into ``runs/search/<study>/trial-N`` (the
test set is neither scored nor, from the CLI, even loaded); with the ``corrupted`` objective
the model is also scored on the corrupted holdout (`robustness.holdout_robustness`); then the
run is recorded as `mnist-bench select` records runs, ``results/holdout/<study>-trial-N.json``,
so the holdout table stays generated from files. The objectives come from that record:
``accuracy`` (final-epoch holdout accuracy, maximised), ``minutes`` (the run's wall time, the
sum of its epochs' seconds, minimised) and ``corrupted`` (mean accuracy over the 15
corruptions of the holdout, maximised). With two or more, the study is multi-objective and
its Pareto front is `optuna.Study.best_trials`.

Storage: an SQLite file, ``results/search/<study>.db``, by default (one machine); any
database URL Optuna's `RDBStorage` takes (``postgresql://...``) for workers on many machines.
Every worker joins the study by name (``load_if_exists``) and must run it with the same
objectives, base recipe and pinned values (checked against what the first worker stored).

Killed workers: each running trial writes a heartbeat; a trial whose heartbeat is older than
twice the interval is failed by the next worker that starts a trial, and retried once more as a
new trial with the same values (`optuna.storages.RetryHeartbeatStaleTrialCallback`), in the same
run folder, so training resumes from the killed run's last checkpoint. Every file is written
atomically and the record last: a killed trial leaves no record.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import TrainConfig
from .provenance import device_text

if TYPE_CHECKING:
    import optuna

    from .data import MnistData

# Each objective's direction; values come from the trial's holdout record.
OBJECTIVES = {"accuracy": "maximize", "minutes": "minimize", "corrupted": "maximize"}
DEFAULT_OBJECTIVES = ("accuracy", "minutes")
SEARCH_DIR = "search"  # under the results folder: <study>.db, <study>.json, <study>-front.png
DEFAULT_RUNS = "runs/search"  # trial run folders: <runs>/<study>/trial-N
HEARTBEAT_S = 60  # seconds between a running trial's heartbeats; stale after twice that
MAX_RETRY = 1  # a trial killed twice is left failed: it may be what kills its worker
SETTINGS_ATTR = "mnist_bench"  # the study's user attribute: objectives, base, pinned values
RUN_ATTR = "run"  # a trial's user attribute: the trial number that names its run folder
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The names `suggest_config` suggests (in order); `--fix NAME=VALUE` pins any of them.
SPACE = (
    "convs_per_stage",
    "widths",
    "dense_units",
    "dropout",
    "epochs",
    "batch_size",
    "learning_rate",
    "lr_schedule",
    "warmup_epochs",
    "label_smoothing",
    "weight_averaging",
    "recalibrate_batch_norm",
    "augment_scale",
    "augment_on",
)


# -- the search space ----------------------------------------------------------------------


def suggest_config(
    trial: optuna.Trial, base: TrainConfig, fixed: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The candidate recipe of `trial`: `base` (the reference recipe, validated on the holdout)
    with the values the sampler picks for `SPACE`, names in `fixed` pinned instead.

    The space stays in the seed notebook's frame (Conv2D, MaxPooling, Flatten, Dense, Dropout)
    plus what the reference recipe already uses (batch norm, Adam with warm-up and cosine
    decay, label smoothing, weight averaging, batch-norm recalibration, affine augmentation);
    it leans towards cheaper networks and fewer epochs, the levers of issue #22.
    """
    fixed = dict(fixed or {})

    def pick(name: str, suggest: Callable[[str], Any]) -> Any:
        return fixed[name] if name in fixed else suggest(name)

    categorical = trial.suggest_categorical
    # The network: convolutions per stage and stage widths set the FLOPs (1,1,1 at 32/64/128
    # is 16.3 MFLOP per image, the reference's 1,2,2 45.2); lists as strings for Optuna.
    convs = pick("convs_per_stage", lambda n: categorical(n, ["1,1,1", "1,1,2", "1,2,2"]))
    widths = pick("widths", lambda n: categorical(n, ["16,32,64", "24,48,96", "32,64,128"]))
    dense = pick("dense_units", lambda n: categorical(n, [128, 256]))
    dropout = pick("dropout", lambda n: trial.suggest_float(n, 0.1, 0.4, step=0.05))
    # Training: the reference runs 30 epochs of batch 256 at a peak step of 3e-3.
    epochs = pick("epochs", lambda n: trial.suggest_int(n, 8, 30, step=2))
    batch = pick("batch_size", lambda n: categorical(n, [128, 256, 512]))
    lr = pick("learning_rate", lambda n: trial.suggest_float(n, 1e-3, 1e-2, log=True))
    schedule = pick("lr_schedule", lambda n: categorical(n, ["cosine", "constant"]))
    warmup = pick("warmup_epochs", lambda n: categorical(n, [0.0, 0.5, 1.0, 2.0]))
    smoothing = pick("label_smoothing", lambda n: categorical(n, [0.0, 0.1]))
    averaging = pick("weight_averaging", lambda n: categorical(n, [None, 0.99, 0.999]))
    recalibrate = pick("recalibrate_batch_norm", lambda n: categorical(n, [True, False]))
    # Augmentation strength as a multiple of the base's rotation, shift and zoom (0: none).
    scale = pick("augment_scale", lambda n: categorical(n, [0.0, 0.5, 1.0, 1.5]))
    # Where batches are augmented: the same numbers either way on a CPU, only the time differs.
    augment_on = pick("augment_on", lambda n: categorical(n, ["host", "device"]))
    geometry = {
        "rotation_deg": round(base.rotation_deg * scale, 6),
        "shift_px": round(base.shift_px * scale, 6),
        "zoom": round(base.zoom * scale, 6),
    }
    return base.replace(
        model_options={
            **base.model_options,
            "convs_per_stage": _ints(convs),
            "widths": _ints(widths),
            "dense_units": dense,
            "dropout": round(dropout, 6),  # Optuna's steps of 0.05 come as 0.15000000000000002
        },
        epochs=epochs,
        batch_size=batch,
        learning_rate=float(f"{lr:.3g}"),  # 3 significant digits: readable, as precise as needed
        lr_schedule=schedule,
        warmup_epochs=min(float(warmup), float(epochs)),  # epochs pinned low (tests) stay valid
        label_smoothing=smoothing,
        weight_averaging=averaging,
        recalibrate_batch_norm=recalibrate,
        augment=scale > 0,
        **(geometry if scale > 0 else {}),  # no augmentation: the base's values, unused
        augment_on=augment_on,
        validation="holdout",
    )


def _ints(value: str | Sequence[int]) -> list[int]:
    return [int(v) for v in value.split(",")] if isinstance(value, str) else list(value)


def check_fixed(fixed: Mapping[str, Any]) -> dict[str, Any]:
    """`fixed` when every name is in `SPACE`; else ``ValueError`` listing the allowed names."""
    unknown = sorted(set(fixed) - set(SPACE))
    if unknown:
        raise ValueError(f"cannot pin {unknown}: not in the search space; allowed: {list(SPACE)}")
    return dict(fixed)


def parse_objectives(text: str) -> tuple[str, ...]:
    """``"accuracy,minutes"`` -> ``("accuracy", "minutes")``; ``ValueError`` for an unknown
    or repeated name, naming the allowed ones."""
    names = tuple(part.strip() for part in text.split(","))
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            f"objectives must be distinct names from {list(OBJECTIVES)}, comma-separated; "
            f"got {text!r}"
        )
    return names


def check_study_name(name: str) -> str:
    """`name` when it can name files (letters, digits, ``_.-``, at most 64); else ValueError."""
    if not _STUDY_NAME.fullmatch(name):
        raise ValueError(
            f"study name must be 1-64 letters, digits, '_', '.' or '-' (not first), got {name!r}"
        )
    return name


# -- storage and study ---------------------------------------------------------------------


def default_storage(study: str, results_dir: str | Path = "results") -> str:
    """The SQLite file of `study` under the results folder, as a database URL."""
    return f"sqlite:///{Path(results_dir) / SEARCH_DIR / check_study_name(study)}.db"


def display_url(url: str) -> str:
    """`url` with its password hidden, for messages; as given when it does not parse."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(
    url: str, *, heartbeat_interval: int = HEARTBEAT_S, max_retry: int = MAX_RETRY
) -> optuna.storages.RDBStorage:
    """Optuna's `RDBStorage` at `url`, with heartbeats every `heartbeat_interval` seconds and
    stale trials retried up to `max_retry` times.

    Raises ``ValueError`` naming the URL (its password hidden) when it is not a database URL,
    names a database without a driver here, or cannot be opened.
    """
    import optuna
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ValueError(
            f"storage {url!r} is not a database URL (e.g. sqlite:///results/search/NAME.db or "
            "postgresql://USER@HOST/DB)"
        ) from exc
    shown = parsed.render_as_string(hide_password=True)
    engine_kwargs: dict[str, Any] = {}
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(
                f"storage {shown}: an in-memory database cannot be shared; name a file"
            )
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Workers in several processes write one file: wait for each other's locks (seconds).
        # isolation_level None: Python's sqlite3 emits no BEGIN of its own (see below).
        engine_kwargs = {"connect_args": {"timeout": 60, "isolation_level": None}}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=2 * heartbeat_interval,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=max_retry
                ),
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"storage {shown}: cannot open the database: {reason}") from exc
    if sqlite:
        # Optuna reads a trial's state, then updates it (taking a queued trial, failing a
        # stale one), trusting SELECT ... FOR UPDATE to lock the row; SQLite ignores it and
        # Python's sqlite3 opens a transaction only at the first write, so two workers could
        # both take one queued trial and train it twice (optuna/optuna#4621). Every
        # transaction takes SQLite's write lock at its start instead: they run one at a time.
        sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
    return storage


def _begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def study_settings(
    objectives: Sequence[str], base: TrainConfig, fixed: Mapping[str, Any]
) -> dict[str, Any]:
    """What every worker of a study must agree on, as stored in the study (JSON values)."""
    return {"objectives": list(objectives), "base": base.to_dict(), "fixed": dict(fixed)}


def open_study(
    name: str,
    storage: optuna.storages.BaseStorage,
    settings: Mapping[str, Any],
    *,
    worker: int = 0,
) -> optuna.Study:
    """Create study `name` in `storage`, or join it, with this worker's sampler.

    The sampler is TPE (multi-objective TPE for two or more objectives), seeded with `worker`
    and the number of trials stored when it joins: a worker's suggestions are a function of
    its index and the trials it sees, and a restarted worker does not repeat itself. TPE rather
    than NSGA-II because a trial costs minutes: NSGA-II wants generations of ~50 trials before
    it moves, TPE models every finished trial from its 10th on (random before).
    ``constant_liar`` lets workers running at once avoid proposing the same point.

    Raises ``ValueError`` when the stored study was made with other `settings` (objectives,
    base recipe, pinned values): its trials would not be comparable.
    """
    import optuna

    check_study_name(name)
    directions = [OBJECTIVES[o] for o in settings["objectives"]]
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions, load_if_exists=True
    )
    # Seeded by the worker index AND the trials stored when it joins: a worker restarted on
    # a study it already ran must not propose its first points again (a fresh RNG seeded by
    # the index alone would repeat them).
    with warnings.catch_warnings():  # constant_liar is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        seed = worker * 1_000_003 + len(study.trials)
        study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, json.loads(json.dumps(settings)))
    elif stored != json.loads(json.dumps(settings)):
        differ = sorted(k for k in settings if stored.get(k) != settings[k])
        raise ValueError(
            f"study {name!r} was created with other {', '.join(differ)}: "
            + "; ".join(f"{k}: stored {stored.get(k)!r}" for k in differ if k != "base")
            + (" (base recipe differs)" if "base" in differ else "")
        )
    return study


# -- trials --------------------------------------------------------------------------------


def objective_values(record: Mapping[str, Any], objectives: Sequence[str]) -> tuple[float, ...]:
    """The values of `objectives` in a holdout record (`selection.record_candidate`)."""
    available = {
        "accuracy": record["holdout_accuracy"],
        "minutes": record["wall_seconds"] / 60,
        "corrupted": record.get("corrupted_holdout", {}).get("mean_accuracy"),
    }
    missing = [o for o in objectives if available[o] is None]
    if missing:
        raise ValueError(f"record {record['run']!r} holds no value for {missing}")
    return tuple(float(available[o]) for o in objectives)


def run_trial(
    trial: optuna.Trial,
    *,
    data: MnistData,
    base: TrainConfig,
    fixed: Mapping[str, Any],
    objectives: Sequence[str],
    runs_dir: str | Path = DEFAULT_RUNS,
    results_dir: str | Path = "results",
) -> tuple[float, ...]:
    """Train `trial`'s candidate on the holdout, record it, return its objective values.

    The run goes to ``runs_dir/<study>/trial-N`` and its record to
    ``results_dir/holdout/<study>-trial-N.json``, N the number of the trial it retries if any
    (its run folder is resumed), else its own. The test set is never read.
    """
    import keras

    from .robustness import HOLDOUT_ROBUSTNESS_FILE, holdout_robustness, write_robustness
    from .selection import record_candidate
    from .training import train

    study = trial.study.study_name
    number = int(trial.user_attrs.get(RUN_ATTR, trial.number))  # a retry inherits it
    trial.set_user_attr(RUN_ATTR, number)
    config = suggest_config(trial, base, fixed)
    config = config.replace(extra={**config.extra, "search": {"study": study, "trial": number}})
    if config.validation != "holdout":  # the one rule of a search: never choose on the test set
        raise ValueError(f"trial {trial.number}: validation must be 'holdout'")
    run_dir = Path(runs_dir) / study / f"trial-{number}"
    keras.backend.clear_session()  # one process trains many models: free the last one's graph
    result = train(config, data, run_dir, score_test=False)
    if "corrupted" in objectives:
        scored = holdout_robustness(result.model, data, holdout_size=config.holdout_size)
        write_robustness(
            scored,
            run_dir / HOLDOUT_ROBUSTNESS_FILE,
            model_path=str(run_dir / "model.keras"),
            baseline_path=None,
        )
    record = record_candidate(run_dir, results_dir, name=f"{study}-trial-{number}")
    values = {"accuracy": record["holdout_accuracy"], "minutes": record["wall_seconds"] / 60}
    if "corrupted_holdout" in record:
        values["corrupted"] = record["corrupted_holdout"]["mean_accuracy"]
    for key, value in {
        **values,
        "record": record["run"],
        "config": config.to_dict(),
        "mflops": record["flops_per_image"]["forward"] / 1e6,
        "device": device_text(record["provenance"]),
    }.items():
        trial.set_user_attr(key, value)
    return objective_values(record, objectives)


def run_search(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], tuple[float, ...]],
    *,
    n_trials: int | None,
    timeout: float | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run `n_trials` trials of `objective` in this process (other workers add theirs), or
    until `timeout` seconds have passed; `on_trial(frozen_trial)` after each one."""
    callbacks = [] if on_trial is None else [lambda _study, frozen: on_trial(frozen)]
    study.optimize(
        objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks, gc_after_trial=True
    )
