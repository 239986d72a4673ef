"""Trust beyond the clean test set: accuracy under the 15 MNIST-C corruptions, and calibrated
probabilities. Writes ``results/robustness.json`` and ``results/calibration.json``.

Robustness (``mnist-bench robustness MODEL``): every test digit is corrupted by each of the 15
corruptions of `mnist_bench.corruptions` (corruption ``i`` seeded with ``base_seed + i``) and
the model classifies the corrupted digits in batches. Reported: the accuracy per corruption,
their mean and minimum, and, against a baseline model (the seed notebook's), the corruption
error ``CE_c = err_model_c / err_baseline_c`` and its mean, mCE, as MNIST-C (Mu & Gilmer 2019)
and ImageNet-C (Hendrycks & Dietterich 2019) report them, plus the relative mCE (the errors
less the clean error). The first `SUBSET_IMAGES` test digits are measured on their own too,
so the fast tests and ``reproduce --check`` re-measure those exactly in seconds.

To choose a recipe, `holdout_robustness` does the same on the holdout split (the last 10,000
training images, as `training.split_data` defines it), never on the test set.

Calibration (``mnist-bench calibrate MODEL``): a temperature is fitted on the holdout images
(`evaluation.fit_temperature`), the model with its temperature saved beside it as
``model_calibrated.keras`` (the published ``model.keras`` stays byte-identical), and ECE, NLL
and Brier score on the test set published before and after, with a reliability diagram.

    record = measure_robustness(model, data.x_test, data.y_test, baseline=seed_model)
    record["model"]["mean_accuracy"], record["mce"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import atomic_path, read_json, write_json
from .compare import EXACT, Rule, compare
from .corruptions import CORRUPTIONS, SEVERITIES
from .evaluation import (
    ECE_BINS,
    calibration_metrics,
    fit_temperature,
    predict,
    predict_logits,
    reliability_bins,
    with_temperature,
)
from .models import newer_keras_needed, weights_digest

if TYPE_CHECKING:
    import keras

    from .data import MnistData

ROBUSTNESS_FILE = "robustness.json"
HOLDOUT_ROBUSTNESS_FILE = "robustness-holdout.json"  # never beside the test-set numbers' name
CORRUPTIONS_FIGURE = "corruptions.png"
CALIBRATION_FILE = "calibration.json"
CALIBRATED_MODEL = "model_calibrated.keras"
RELIABILITY_FIGURE = "reliability.png"
SUBSET_IMAGES = 200  # re-measured by the fast tests: 15 x 200 digits, a few seconds
SEED_RUN_FILE = "seed-seed0.json"  # results/runs/: the run record of the baseline, if published
HOLDOUT_SIZE = 10_000  # TrainConfig.holdout_size's default
BATCH = 1024  # inference batch: only speed depends on it
HOLDOUT_NOTE = (
    "The temperature is fitted on the holdout split: the last {n} training images, as "
    "training.split_data defines it, never on the test set. A model trained on all 60,000 "
    "training images (validation='test', as the published one) has seen these images, so "
    "the fit sees it more accurate and confident than on new digits: the calibrated test ECE "
    "is the honest number, the holdout numbers are optimistic."
)


# -- private helpers ----------------------------------------------------------------------


def _check_batch(images: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(images), np.asarray(labels)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"images must be uint8 of shape (N, 28, 28), got {x.dtype} {x.shape}")
    if y.shape != (len(x),) or len(x) == 0:
        raise ValueError(f"need N >= 1 images and N labels, got {len(x)} and shape {y.shape}")
    return x, y.astype(np.int64)


def _accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    predicted, _ = predict(model, images, batch_size=BATCH)
    return float(np.mean(predicted == labels))


def _digest(model: keras.Model) -> str:
    return weights_digest(model)


def _mean(values: Any) -> float:
    """The mean, independent of the order of `values` (JSON files hold keys sorted):
    `math.fsum` is exactly rounded."""
    values = list(values)
    return math.fsum(values) / len(values)


def _summary(accuracy: Mapping[str, float], clean: float) -> dict[str, Any]:
    # ties go to the first in CORRUPTIONS order, whatever the order of `accuracy` (JSON files
    # hold their keys sorted)
    order = {name: i for i, name in enumerate(CORRUPTIONS)}
    worst = min(accuracy, key=lambda name: (accuracy[name], order.get(name, len(order)), name))
    return {
        "clean_accuracy": clean,
        "accuracy": dict(accuracy),
        "mean_accuracy": _mean(accuracy.values()),
        "min_accuracy": accuracy[worst],
        "worst": worst,
    }


def _corruption_errors(model: dict, baseline: dict) -> dict[str, Any]:
    """CE per corruption, mCE and relative mCE of `model` against `baseline` (both
    `_summary` dicts). A corruption the baseline gets all right has no defined CE: None."""
    ce, relative = {}, {}
    for name, acc in model["accuracy"].items():
        base_err = 1.0 - baseline["accuracy"][name]
        gap = base_err - (1.0 - baseline["clean_accuracy"])
        ce[name] = (1.0 - acc) / base_err if base_err > 0 else None
        excess = (1.0 - acc) - (1.0 - model["clean_accuracy"])
        relative[name] = excess / gap if gap > 0 else None
    defined = [v for v in ce.values() if v is not None]
    rel_defined = [v for v in relative.values() if v is not None]
    return {
        "ce": ce,
        "mce": _mean(defined) if defined else None,
        "relative_ce": relative,
        "relative_mce": _mean(rel_defined) if rel_defined else None,
    }


def _measure(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    seeds: Mapping[str, int],
    cache: dict[tuple[str, int], np.ndarray] | None = None,
) -> dict:
    """`_summary` of `model` on `x` under every corruption. `cache` keeps the corrupted
    digits per (name, N), so the baseline is measured on them without corrupting again
    (15 x 10,000 digits: 118 MB)."""
    cache = {} if cache is None else cache
    accuracy = {}
    for name, seed in seeds.items():
        if (name, len(x)) not in cache:
            cache[name, len(x)] = CORRUPTIONS[name](x, seed)
        accuracy[name] = _accuracy(model, cache[name, len(x)], y)
    return _summary(accuracy, _accuracy(model, x, y))


def _baseline_block(
    baseline: keras.Model | Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    seeds: dict,
    n_sub: int,
    cache: dict[tuple[str, int], np.ndarray],
) -> dict[str, Any]:
    """The baseline's numbers: measured now for a model; for a dict (a previous record's
    ``baseline`` block) reused once its seeds and image counts are known to match."""
    if isinstance(baseline, Mapping):
        if baseline.get("seeds") != seeds or baseline.get("n_images") != len(x):
            raise ValueError(
                "the baseline numbers given were measured with other seeds or another number "
                f"of images (seeds {baseline.get('seeds')}, n_images {baseline.get('n_images')});"
                " measure the baseline model again"
            )
        if baseline.get("subset", {}).get("n_images") != n_sub:
            raise ValueError(f"the baseline numbers given hold no subset of {n_sub} images")
        return dict(baseline)
    block = _measure(baseline, x, y, seeds, cache)
    subset = _measure(baseline, x[:n_sub], y[:n_sub], seeds, cache)
    block.update(
        weights_digest=_digest(baseline),
        name=baseline.name,
        seeds=dict(seeds),
        n_images=len(x),
        subset={"n_images": n_sub, "accuracy": subset["accuracy"]},
    )
    return block


# -- robustness ---------------------------------------------------------------------------


def corruption_seeds(base_seed: int = 0) -> dict[str, int]:
    """The seed of each corruption: ``base_seed + i`` for the i-th of `CORRUPTIONS`."""
    if isinstance(base_seed, bool) or not isinstance(base_seed, int) or base_seed < 0:
        raise ValueError(f"base_seed must be a non-negative integer, got {base_seed!r}")
    return {name: base_seed + i for i, name in enumerate(CORRUPTIONS)}


def subset_accuracy(
    model: keras.Model, images: Any, labels: Any, *, seeds: Mapping[str, int], n: int
) -> dict[str, float]:
    """Accuracy per corruption on the first `n` images alone (their own corruption draws):
    what a record's ``subset`` holds, re-measured in seconds.

    Returns
    -------
    dict of str to float
        Corruption name -> accuracy in [0, 1], in `CORRUPTIONS` order.
    """
    x, y = _check_batch(images, labels)
    return _measure(model, x[:n], y[:n], seeds)["accuracy"]


def measure_robustness(
    model: keras.Model,
    images: Any,
    labels: Any,
    *,
    base_seed: int = 0,
    baseline: keras.Model | Mapping[str, Any] | None = None,
    subset: int = SUBSET_IMAGES,
    split: str = "test",
) -> dict[str, Any]:
    """Accuracy of `model` under every corruption, and its corruption error against `baseline`.

    Parameters
    ----------
    model : keras.Model
        Takes float32 (N, 28, 28, 1) in [0, 1], returns probabilities (N, 10).
    images : ndarray of shape (N, 28, 28), uint8
        Clean digits; each corruption is applied to all of them (batched).
    labels : ndarray of shape (N,), integers 0..9
    base_seed : int, default=0
        Corruption ``i`` (in `CORRUPTIONS` order) is seeded with ``base_seed + i``.
    baseline : keras.Model or dict, optional
        The reference for CE / mCE (the seed notebook's model): a model, measured on the same
        corrupted digits, or the ``baseline`` block of an earlier record with the same seeds
        and image counts, reused as is. None: no CE.
    subset : int, default=200
        The first `subset` images are also measured on their own (``record["subset"]``).
    split : str, default="test"
        Recorded as the name of the images' split (``"test"`` or ``"holdout"``).

    Returns
    -------
    dict
        JSON-ready: ``split``, ``n_images``, ``base_seed``, ``corruptions`` (seed and
        MNIST-C parameters of each), ``model`` (clean and per-corruption accuracy, mean,
        min, worst, weights digest), ``baseline`` (the same, or None), ``ce``, ``mce``,
        ``relative_ce``, ``relative_mce`` (None without a baseline) and ``subset``.
    """
    x, y = _check_batch(images, labels)
    seeds = corruption_seeds(base_seed)
    if isinstance(subset, bool) or not isinstance(subset, int) or subset < 1:
        raise ValueError(f"subset must be a positive integer, got {subset!r}")
    n_sub = min(subset, len(x))
    cache: dict[tuple[str, int], np.ndarray] = {}
    block = _measure(model, x, y, seeds, cache)
    block.update(weights_digest=_digest(model), name=model.name)
    record: dict[str, Any] = {
        "split": split,
        "n_images": len(x),
        "base_seed": base_seed,
        "corruptions": {n: {"seed": s, "parameters": SEVERITIES[n]} for n, s in seeds.items()},
        "model": block,
        "subset": {
            "n_images": n_sub,
            "accuracy": _measure(model, x[:n_sub], y[:n_sub], seeds, cache)["accuracy"],
        },
        "baseline": None,
        "ce": None,
        "mce": None,
        "relative_ce": None,
        "relative_mce": None,
    }
    if baseline is not None:
        record["baseline"] = _baseline_block(baseline, x, y, seeds, n_sub, cache)
        record.update(_corruption_errors(block, record["baseline"]))
    return record


def holdout_images(data: MnistData, holdout_size: int = HOLDOUT_SIZE) -> tuple[np.ndarray, ...]:
    """The holdout split: the LAST `holdout_size` training images and labels, exactly as
    `training.split_data` holds them out with ``validation="holdout"``.

    Returns
    -------
    images : ndarray of shape (holdout_size, 28, 28), uint8
    labels : ndarray of shape (holdout_size,), uint8
    """
    if not 0 < holdout_size < len(data.x_train):
        raise ValueError(f"holdout_size must be in 1..{len(data.x_train) - 1}, got {holdout_size}")
    cut = len(data.x_train) - holdout_size
    return data.x_train[cut:], data.y_train[cut:]


def holdout_robustness(
    model: keras.Model,
    data: MnistData,
    *,
    holdout_size: int = HOLDOUT_SIZE,
    base_seed: int = 0,
    baseline: keras.Model | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`measure_robustness` on the corrupted holdout images, never the test set: the score
    to choose a recipe by. Only meaningful for a model trained with
    ``validation="holdout"`` (one trained on all 60k has seen these digits).

    Returns
    -------
    dict
        As `measure_robustness`, with ``split="holdout"``; ``record["model"]["mean_accuracy"]``
        and ``record["model"]["min_accuracy"]`` are the numbers the targets speak of.
    """
    x, y = holdout_images(data, holdout_size)
    return measure_robustness(model, x, y, base_seed=base_seed, baseline=baseline, split="holdout")


def write_robustness(
    record: dict[str, Any], path: str | Path, *, model_path: str, baseline_path: str | None
) -> Path:
    """Write `record` with its provenance and the model files' paths, atomically, as JSON."""
    from .provenance import provenance

    record = {**record, "provenance": provenance()}
    record["model"] = {**record["model"], "path": model_path}
    if record["baseline"] is not None and baseline_path is not None:
        record["baseline"] = {**record["baseline"], "path": baseline_path}
    return write_json(path, record)


def previous_baseline(path: str | Path) -> dict[str, Any] | None:
    """The ``baseline`` block of an existing robustness JSON file, else None."""
    path = Path(path)
    return read_json(path).get("baseline") if path.is_file() else None


def robustness_figure(
    record: Mapping[str, Any], images: np.ndarray, path: str | Path, *, index: int = 0
) -> Path:
    """The figure of a record: test digit `index` under every corruption (its seed), and the
    per-corruption accuracy of the model beside the baseline's."""
    from .plots import plot_corruptions

    digit = np.asarray(images)[index : index + 1]
    examples = {"clean": digit[0]}
    for name, spec in record["corruptions"].items():
        examples[name] = CORRUPTIONS[name](digit, spec["seed"])[0]
    accuracies = {"model": record["model"]["accuracy"]}
    labels = {"model": f"{record['model']['name']} (mean {record['model']['mean_accuracy']:.3f})"}
    if record["baseline"] is not None:
        accuracies["baseline"] = record["baseline"]["accuracy"]
        labels["baseline"] = (
            f"{record['baseline']['name']} (mean {record['baseline']['mean_accuracy']:.3f})"
        )
    return plot_corruptions(examples, accuracies, labels, path)


def robustness_table(records: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of robustness records, one per published recipe (name -> record, the
    first the published model's): accuracy per corruption of each recipe's model and of the
    first record's baseline (the seed notebook's model), then the mean, the minimum and the
    mCE against that baseline."""
    names = list(records)
    first = records[names[0]]
    base = first["baseline"]
    rows: list[list[str]] = [
        [f"corruption ({first['n_images']:,} {first['split']} digits)",
         *(f"{n} (published)" if i == 0 else n for i, n in enumerate(names)),
         "seed notebook's model"],
        ["---", *["---:"] * (len(names) + 1)],
        ["none (clean)", *(_pct(r["model"]["clean_accuracy"]) for r in records.values()),
         _pct(base["clean_accuracy"]) if base else ""],
    ]  # fmt: skip
    for name in CORRUPTIONS:  # MNIST-C's order (JSON files hold keys sorted)
        rows.append([name.replace("_", " "),
                     *(_pct(r["model"]["accuracy"][name]) for r in records.values()),
                     _pct(base["accuracy"][name]) if base else ""])  # fmt: skip
    rows += [
        [f"**mean over {len(CORRUPTIONS)}**",
         *(f"**{_pct(r['model']['mean_accuracy'])}**" for r in records.values()),
         _pct(base["mean_accuracy"]) if base else ""],
        ["min", *(f"{_pct(r['model']['min_accuracy'])} ({r['model']['worst']})"
                  for r in records.values()),
         f"{_pct(base['min_accuracy'])} ({base['worst']})" if base else ""],
        ["mCE (vs the notebook's model; < 1 is better)",
         *("" if r["mce"] is None else f"{r['mce']:.2f}" for r in records.values()), "1"],
    ]  # fmt: skip
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def check_robustness(
    path: Path, model: keras.Model, data: MnistData, *, rules: list[str] | None = None
) -> list[str]:
    """Problems with a robustness JSON file against `model` (the published one): its weights
    digest; the mean, minimum and mCE recomputed from the per-corruption accuracies; and the
    accuracy on the first corrupted test digits re-measured. All exact: the summaries are
    arithmetic on the file's own numbers and an accuracy is a count (`mnist_bench.compare`).
    Appends the rule to `rules`, when given. Empty when all is well."""
    name = str(path)
    try:
        record = read_json(path)
        block, seeds = record["model"], {n: c["seed"] for n, c in record["corruptions"].items()}
        problems = compare(name, "model.weights_digest", block["weights_digest"], _digest(model))
        if sorted(seeds) != sorted(CORRUPTIONS):  # nothing else compares then
            problems += compare(name, "corruptions", sorted(seeds), sorted(CORRUPTIONS))
            return [str(problem) for problem in problems]
        recomputed = _summary(block["accuracy"], block["clean_accuracy"])
        problems += compare(name, "model", {k: block[k] for k in recomputed}, recomputed)
        seed_run = path.parent / "runs" / SEED_RUN_FILE  # the seed notebook's recorded run
        base = record["baseline"]
        if base is not None and seed_run.is_file():
            problems += compare(name, "baseline.weights_digest", base["weights_digest"],
                                read_json(seed_run)["weights_digest"])  # fmt: skip
        if base is not None:
            errors = _corruption_errors(block, base)
            problems += compare(name, "", {k: record[k] for k in errors}, errors)
        n = record["subset"]["n_images"]
        if record["split"] == "test":
            again = subset_accuracy(model, data.x_test, data.y_test, seeds=seeds, n=n)
            problems += compare(f"{name} (the first {n} corrupted test digits)",
                                "subset.accuracy", record["subset"]["accuracy"], again)  # fmt: skip
        if rules is not None:
            rules.append(f"{path}: every field: {EXACT}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"{path}: unreadable robustness record ({type(exc).__name__}: {exc})"]
    return [str(problem) for problem in problems]


# -- calibration --------------------------------------------------------------------------


def _calibration_pair(
    model: keras.Model, calibrated: keras.Model, x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    _, before = predict(model, x, batch_size=BATCH)
    _, after = predict(calibrated, x, batch_size=BATCH)
    return {
        "uncalibrated": calibration_metrics(before, y),
        "calibrated": calibration_metrics(after, y),
        "bins": {
            "uncalibrated": _bins_json(reliability_bins(before, y)),
            "calibrated": _bins_json(reliability_bins(after, y)),
        },
    }


def _bins_json(bins: dict[str, np.ndarray]) -> dict[str, list]:
    return {k: [None if np.isnan(v) else float(v) for v in bins[k]] for k in bins}


def calibrate(
    model: keras.Model,
    data: MnistData,
    *,
    holdout_size: int = HOLDOUT_SIZE,
) -> tuple[keras.Model, dict[str, Any]]:
    """Fit a temperature for `model` on the holdout images; score it on the test set.

    Parameters
    ----------
    model : keras.Model
        Ends in a softmax Dense layer (every model of `mnist_bench.models`).
    data : MnistData
        Its last `holdout_size` training images fit the temperature; its test images are
        only scored.
    holdout_size : int, default=10000

    Returns
    -------
    calibrated : keras.Model
        `evaluation.with_temperature(model, T)`: save it to get calibrated probabilities
        from `load_model` + `predict`.
    record : dict
        JSON-ready: ``temperature``, ``fit`` (split, images, note), ``n_bins`` (15),
        ``test`` and ``holdout``, each with ``uncalibrated`` and ``calibrated`` metrics
        (``ece``, ``nll``, ``brier``, ``accuracy``, ``mean_confidence``) and reliability
        ``bins``; ``model`` (name, weights digest).
    """
    x_fit, y_fit = holdout_images(data, holdout_size)
    temperature = fit_temperature(predict_logits(model, x_fit, batch_size=BATCH), y_fit)
    calibrated = with_temperature(model, temperature)
    cut = len(data.x_train) - holdout_size
    record = {
        "temperature": temperature,
        "fit": {
            "split": "holdout",
            "images": f"training images {cut}..{len(data.x_train) - 1}",
            "objective": "negative log-likelihood of softmax(logits / T), T in [0.05, 20]",
            "note": HOLDOUT_NOTE.format(n=f"{holdout_size:,}"),
        },
        "n_bins": ECE_BINS,
        "model": {"name": model.name, "weights_digest": _digest(model)},
        "test": _calibration_pair(model, calibrated, data.x_test, data.y_test),
        "holdout": _calibration_pair(model, calibrated, x_fit, y_fit),
    }
    return calibrated, record


def write_calibration(
    calibrated: keras.Model, record: dict[str, Any], out_dir: str | Path, *, model_path: str
) -> dict[str, Path]:
    """Write ``model_calibrated.keras``, ``calibration.json`` (with provenance) and
    ``reliability.png`` into `out_dir`, each atomically. Returns the paths by kind."""
    from .plots import plot_reliability
    from .provenance import provenance

    out = Path(out_dir)
    paths = {
        "model": out / CALIBRATED_MODEL,
        "json": out / CALIBRATION_FILE,
        "figure": out / RELIABILITY_FIGURE,
    }
    with atomic_path(paths["model"]) as tmp:
        calibrated.save(tmp)
    full = {**record, "provenance": provenance(), "calibrated_model": CALIBRATED_MODEL}
    full["model"] = {**record["model"], "path": model_path}
    write_json(paths["json"], full)
    t = record["temperature"]
    panels = {
        f"{record['model']['name']}, as trained": record["test"]["bins"]["uncalibrated"],
        f"with temperature T = {t:.3f}": record["test"]["bins"]["calibrated"],
    }
    eces = [record["test"][k]["ece"] for k in ("uncalibrated", "calibrated")]
    plot_reliability(panels, eces, paths["figure"])
    return paths


def calibration_table(records: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of calibration records, one per published recipe (name -> record):
    test-set accuracy, mean confidence, ECE, NLL and Brier score before and after
    temperature scaling."""
    lines = [
        "| model (10,000 test digits) | accuracy | mean confidence | ECE (15 bins) | NLL | Brier |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for recipe, record in records.items():
        for key, label in (("uncalibrated", "as trained"), ("calibrated", "temperature-scaled")):
            m = record["test"][key]
            suffix = f", T = {record['temperature']:.3f}" if key == "calibrated" else ""
            lines.append(
                f"| {recipe}, {label}{suffix} | {_pct(m['accuracy'])} | "
                f"{m['mean_confidence']:.4f} | {_pct(m['ece'])} | {m['nll']:.4f} | "
                f"{m['brier']:.4f} |"
            )
    return "\n".join(lines)


def check_calibration(
    path: Path, model: keras.Model, data: MnistData, *, rules: list[str] | None = None
) -> list[str]:
    """Problems with a calibration JSON file: it must be of `model` (the published one), and
    the calibrated model beside it, loaded with plain Keras, must hold its temperature and
    score its test-set calibration as recorded: exact on the recording machine fingerprint,
    within float32 rounding elsewhere (`evaluation.calibration_rules`). Appends the rules it
    compared by to `rules`, when given. Empty when all is well."""
    import keras

    from .evaluation import calibration_rules, model_temperature
    from .provenance import fingerprints_match

    try:
        record = read_json(path)
        problems = compare(str(path), "model.weights_digest", record["model"]["weights_digest"],
                           _digest(model))  # fmt: skip
        calibrated_path = path.parent / record["calibrated_model"]
        try:
            calibrated = keras.models.load_model(calibrated_path)
        except Exception as exc:  # Keras raises many types for a bad file
            what = newer_keras_needed(calibrated_path) or "not loadable"
            return [*map(str, problems),
                    f"{calibrated_path}: {what} ({type(exc).__name__}: {exc})"]  # fmt: skip
        temperature = record["temperature"]
        # The model stores 1 / T: 1 / (1 / T) may differ from T in its last bits.
        round_trip = Rule("float64", 1e-12 * abs(temperature), "1 / (1 / T) in float64")
        problems += compare(f"{calibrated_path} (its temperature)", "temperature", temperature,
                            model_temperature(calibrated), round_trip)  # fmt: skip
        _, probabilities = predict(calibrated, data.x_test, batch_size=BATCH)
        same = fingerprints_match(record["provenance"]["machine_fingerprint"])
        by_metric = calibration_rules(probabilities, data.y_test, same_fingerprint=same)
        field = "test.calibrated"
        problems += compare(str(path), field, record[field.split(".")[0]]["calibrated"],
                            calibration_metrics(probabilities, data.y_test), by_metric)  # fmt: skip
        if rules is not None:
            rules += [f"{path}: {field}.{name}: {rule}" for name, rule in by_metric.items()]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{path}: unreadable calibration record ({type(exc).__name__}: {exc})"]
    return [str(problem) for problem in problems]
