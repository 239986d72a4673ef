"""The transfer experiment: how many of a new population's labelled digits does fine-tuning
need? Measured on scikit-learn's UCI handwritten digits, a second population of writers.

    mnist-bench transfer --out results --docs docs/transfer.md    # resumable, point by point

The UCI digits (`sklearn.datasets.load_digits`: 1,797 digits by 43 writers, 8x8 pixels of
0..16, shipped with scikit-learn, no download) are rendered into MNIST's format by
`render_uci_digits`: intensities scaled 0..16 -> 0..255, then `preprocess.prepare_photo`,
the same preparation a user's photo gets (crop to the ink, longer side scaled to 20 pixels
with anti-aliasing, centre of mass on (14, 14) of a 28x28 field). They are split once, by
`SPLIT_SEED`, into a labelled pool (`POOL_PER_CLASS` per digit) and a held-out part (the
other 1,297), which only ever scores. For each number of labels per class in `SHOTS` and each
seed in `SEEDS`, that many digits per class are drawn from the pool (nested: the 5 of a seed
hold its 1) and three models are scored on the held-out digits: the published model with no
labels; the published model fine-tuned on them (`transfer.finetune`, default config); the same
network trained from scratch on them (same steps, learning rate `SCRATCH_LEARNING_RATE`).

The UCI digits serve this experiment only: no MNIST recipe is chosen on them, and the
fine-tuning defaults were fixed before the held-out digits were scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ._io import read_json, write_json
from .evaluation import predict
from .preprocess import prepare_photo
from .provenance import device_text
from .transfer import FinetuneConfig, finetune

SHOTS = (1, 5, 10, 50)  # labelled digits per class
SEEDS = (0, 1, 2)  # draws of those digits (and fine-tuning seeds)
SPLIT_SEED = 0  # the one split of the UCI digits into pool and held-out part
POOL_PER_CLASS = 50  # labelled pool: 500 digits; held out: the other 1,297
UCI_MAX = 16.0  # UCI pixels count the inked cells of a 4x4 block of a 32x32 bitmap: 0..16
SCRATCH_LEARNING_RATE = 1e-3  # Adam's default: fresh weights need larger steps
METHODS = ("no labels", "fine-tuned", "from scratch")
TABLE_MARKERS = ("<!-- transfer-table -->", "<!-- /transfer-table -->")


# -- the data -----------------------------------------------------------------------------


def render_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 UCI digits in MNIST's format.

    Returns
    -------
    images : ndarray of shape (1797, 28, 28), uint8 in [0, 255]
        Light ink on black, the longer side of the ink 20 pixels, centre of mass at (14, 14)
        (to the pixel); see the module docstring.
    labels : ndarray of shape (1797,), uint8 in [0, 9]
    """
    from sklearn.datasets import load_digits

    uci = load_digits()
    pixels = uci.images * (255.0 / UCI_MAX)  # (1797, 8, 8) float64 in [0, 255]
    images = np.stack([prepare_photo(image) for image in pixels])
    return images, uci.target.astype(np.uint8)


def split_pool(labels: np.ndarray, *, per_class: int = POOL_PER_CLASS, seed: int = SPLIT_SEED):
    """Indices of the labelled pool (`per_class` of each digit, in a seeded random order) and
    of the held-out rest (sorted).

    Returns
    -------
    pool : ndarray of shape (10, per_class), int64
        Row d: the pool's digits d, in the order they are drawn.
    held_out : ndarray of shape (n - 10 * per_class,), int64
    """
    rng = np.random.default_rng(seed)
    pool = np.stack([rng.permutation(np.flatnonzero(labels == d))[:per_class] for d in range(10)])
    held_out = np.setdiff1d(np.arange(len(labels)), pool.ravel())
    return pool, held_out


def draw_labelled(pool: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """`shots` pool indices per class for `seed`; nested: a seed's first k are the same for
    every larger `shots`. Returns ndarray of shape (10 * shots,), int64."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(row)[:shots] for row in pool])


# -- the experiment -----------------------------------------------------------------------


def _accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict(model, images)[0] == labels))


def _point_key(method: str, shots: int, seed: int) -> str:
    return f"{method}/{shots}/{seed}"


def run_point(
    base: Any, data: dict[str, np.ndarray], method: str, shots: int, seed: int
) -> dict[str, Any]:
    """Train (unless "no labels") and score one point of the curve on the held-out digits."""
    start = time.perf_counter()
    x, y = data["images"], data["labels"]
    if method == "no labels":
        model = base
    else:
        chosen = draw_labelled(data["pool"], shots, seed)
        config = FinetuneConfig(seed=seed)
        if method == "from scratch":
            config = replace(config, layers="scratch", learning_rate=SCRATCH_LEARNING_RATE)
        model = finetune(base, x[chosen], y[chosen], config)
    held = data["held_out"]
    return {
        "method": method,
        "shots": shots,
        "seed": seed,
        "accuracy": _accuracy(model, x[held], y[held]),
        "seconds": round(time.perf_counter() - start, 2),
    }


def experiment_setup(base_file: str, base_sha256: str) -> dict[str, Any]:
    """What every point depends on: a recorded point is reused only under the same setup."""
    return {
        "base_model": base_file,
        "base_sha256": base_sha256,
        "shots": list(SHOTS),
        "seeds": list(SEEDS),
        "split_seed": SPLIT_SEED,
        "pool_per_class": POOL_PER_CLASS,
        "finetune": FinetuneConfig().to_dict(),
        "scratch_learning_rate": SCRATCH_LEARNING_RATE,
        "data": "sklearn.datasets.load_digits, rendered by render_uci_digits",
    }


def _plan() -> list[tuple[str, int, int]]:
    points = [("no labels", 0, 0)]
    for shots in SHOTS:
        for seed in SEEDS:
            points += [("fine-tuned", shots, seed), ("from scratch", shots, seed)]
    return points


def run_experiment(
    base: Any,
    setup: dict[str, Any],
    out_file: str | Path,
    *,
    provenance: dict[str, Any],
    progress: Callable[[dict[str, Any], int, int], None] | None = None,
    max_points: int | None = None,
) -> dict[str, Any]:
    """Run every point not yet in `out_file`, writing the file after each one (resumable).

    Parameters
    ----------
    base : keras.Model
        The published model the curve starts from.
    setup : dict
        `experiment_setup`; points recorded under another setup are discarded.
    out_file : path
        results/transfer.json: read if present, rewritten atomically after every point.
    provenance : dict
        `mnist_bench.provenance.provenance()`, stored with the file.
    progress : callable, optional
        ``progress(point, done, total)`` after each point.
    max_points : int, optional
        Stop after running this many new points (the rest on a later call).

    Returns
    -------
    dict
        The file's content: ``setup``, ``points`` (one dict per point), ``complete``,
        ``provenance``, ``held_out`` and ``pool`` sizes.
    """
    out_file = Path(out_file)
    old = read_json(out_file) if out_file.exists() else {}
    points = old.get("points", {}) if old.get("setup") == setup else {}
    images, labels = render_uci_digits()
    pool, held_out = split_pool(labels)
    data = {"images": images, "labels": labels, "pool": pool, "held_out": held_out}
    plan, ran = _plan(), 0
    for method, shots, seed in plan:
        key = _point_key(method, shots, seed)
        if key in points:
            continue
        if max_points is not None and ran >= max_points:
            break
        points[key] = run_point(base, data, method, shots, seed)
        ran += 1
        content = {
            "setup": setup,
            "points": points,
            "complete": len(points) == len(plan),
            "n_pool": int(pool.size),
            "n_held_out": len(held_out),
            "provenance": provenance,
        }
        write_json(out_file, content)
        if progress:
            progress(points[key], len(points), len(plan))
    return read_json(out_file)


# -- summaries ----------------------------------------------------------------------------


def curve(content: dict[str, Any]) -> dict[str, dict[int, list[float]]]:
    """Held-out accuracies by method and labels per class: {method: {shots: [per seed]}};
    "no labels" has one value, at shots 0."""
    by: dict[str, dict[int, list[float]]] = {m: {} for m in METHODS}
    for point in content["points"].values():
        by[point["method"]].setdefault(point["shots"], []).append(point["accuracy"])
    return by


def transfer_table(content: dict[str, Any]) -> str:
    """The Markdown table of the held-out accuracy per labels per class and method."""
    by = curve(content)
    base = by["no labels"].get(0, [float("nan")])[0]
    rows = [
        "| labels per class | published model, no labels | fine-tuned (mean ± sd) "
        "| from scratch (mean ± sd) | seeds |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for shots in content["setup"]["shots"]:
        tuned, scratch = by["fine-tuned"].get(shots, []), by["from scratch"].get(shots, [])
        rows.append(
            f"| {shots} | {base:.2%} | {_mean_sd(tuned)} | {_mean_sd(scratch)} "
            f"| {min(len(tuned), len(scratch))} |"
        )
    setup, prov = content["setup"], content["provenance"]
    cpu = device_text(prov) if "cpu" in prov else "an unknown machine"
    seconds = sum(p["seconds"] for p in content["points"].values())
    state = "" if content["complete"] else " Incomplete: run the command again to finish."
    return "\n".join(rows) + (
        f"\n\nHeld out: {content['n_held_out']} UCI digits, never trained on; labelled pool "
        f"{content['n_pool']} (split seed {setup['split_seed']}). Base: "
        f"`{setup['base_model']}`. Fine-tuning: {setup['finetune']['steps']} steps of "
        f"{setup['finetune']['batch_size']}, Adam {setup['finetune']['learning_rate']:g}, "
        f"layers {setup['finetune']['layers']!r}; from scratch: Adam "
        f"{setup['scratch_learning_rate']:g}. {seconds / 60:.1f} min of runs on {cpu}. "
        f"Written by `mnist-bench transfer`.{state}"
    )


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.2%} ± {sd:.2%}"
