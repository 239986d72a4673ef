"""PNG figures of a training history and of an `EvalReport`.

Every function draws on its own `matplotlib.figure.Figure` with the Agg canvas: no pyplot
global state, no display needed, safe in threads and on headless machines. Given a `path`,
it writes the PNG atomically (a temporary file beside it, then a rename) and returns the
path; given ``path=None`` it returns the `Figure` unsaved, for notebooks. matplotlib is
imported inside the functions, so importing this module costs nothing.

    plot_history(result.history, "runs/x/history.png")
    plot_report(report, data.x_test, data.y_test, "runs/x")  # confusion, predictions, errors
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .evaluation import EvalReport

DPI = 100
ERROR_COLOR = "tab:red"
MAX_GRID_IMAGES = 1000  # a grid this large is already 100 rows; Agg caps images at 2**16 px
CELL_INCHES = (1.1, 1.35)  # width, height of one digit and its title in a grid


# -- private helpers ----------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: str | Path | None) -> Path | Figure:
    """Save `fig` as a PNG at `path` atomically and return the path, or return `fig`."""
    if path is None:
        return fig
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def _as_digits(images: Any) -> np.ndarray:
    """Images as (n, 28, 28) from (n, 28, 28), (n, 28, 28, 1) or (n, 784)."""
    x = np.asarray(images)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    elif x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(
            f"images must have shape (n, 28, 28), (n, 28, 28, 1) or (n, 784), got {x.shape}"
        )
    return x


def _check_labels(images: np.ndarray, true: Any, predicted: Any) -> tuple[np.ndarray, ...]:
    t, p = np.asarray(true).reshape(-1), np.asarray(predicted).reshape(-1)
    if not len(images) == len(t) == len(p):
        raise ValueError(
            f"images, true and predicted must have equal lengths, "
            f"got {len(images)}, {len(t)} and {len(p)}"
        )
    return t, p


def _digit_mosaic(
    digits: np.ndarray, titles: list[str], wrong: np.ndarray, ncols: int, header_inches: float
) -> Figure:
    """Digits in rows of `ncols`, each under its title; `wrong` ones framed and titled in red.

    One image and one Axes for the whole grid, with the titles as text: a subplot per digit
    costs ~25 ms each to draw, which made a 1,000-digit grid take over 20 s.
    """
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    n, (h, w) = len(digits), digits.shape[1:3]
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    cell_w, cell_h, title_h = w + 8, h + 14, 11  # mosaic pixels; the title strip is on top
    vmax = 1.0 if np.issubdtype(digits.dtype, np.floating) and digits.max() <= 1.0 else 255
    mosaic = np.zeros((nrows * cell_h, ncols * cell_w), np.float32)
    for i, image in enumerate(digits):
        top, left = (i // ncols) * cell_h + title_h, (i % ncols) * cell_w + 4
        mosaic[top : top + h, left : left + w] = image
    width, height = ncols * CELL_INCHES[0], nrows * CELL_INCHES[1] + header_inches
    fig = _new_figure(max(width, 5.5 if header_inches else 3.0), height)  # room for a header
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - header_inches / height))
    # Black ink on white paper; the pixel range is fixed so faint digits stay faint.
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=vmax, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    from matplotlib.patches import Rectangle

    for i, (title, bad) in enumerate(zip(titles, wrong, strict=True)):
        top, left = (i // ncols) * cell_h, (i % ncols) * cell_w
        color = ERROR_COLOR if bad else "black"
        ax.text(left + cell_w / 2, top + title_h / 2, title, ha="center", va="center",
                fontsize=9, color=color)  # fmt: skip
        if bad:
            ax.add_patch(Rectangle((left + 3, top + title_h - 1), w + 1, h + 1, fill=False,
                                   edgecolor=ERROR_COLOR, linewidth=2.0))  # fmt: skip
    return fig


def _message_figure(text: str) -> Figure:
    fig = _new_figure(4.0, 1.5)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    return fig


def _plot_curves(ax: Axes, history: Mapping[str, Sequence[float]], key: str, label: str) -> None:
    for name, prefix, style in (("train", "", "o-"), ("validation", "val_", "s--")):
        values = history.get(prefix + key)
        if values is None or len(values) == 0:
            continue  # e.g. no validation data: draw only what was recorded
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, style, markersize=3, label=f"{name} (last {values[-1]:.4f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(label)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
        # Integer epochs only: a 3-epoch run would otherwise get ticks at 1.5, 2.5... and a
        # 1-epoch run ticks at 0.95, 1.0, 1.05 (MaxNLocator cannot help with a single point).
        n_epochs = max(len(line.get_xdata()) for line in ax.lines)
        if n_epochs <= 10:
            ax.set_xticks(np.arange(1, n_epochs + 1))
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"no {key} recorded", ha="center", va="center", transform=ax.transAxes)


def _zoom_on_later_epochs(ax: Axes, history: Mapping[str, Any], key: str) -> None:
    # Limits from epochs 2 onwards, with a margin; the title says when epoch 1 falls outside.
    series = [list(history.get(name) or []) for name in (key, f"val_{key}")]
    later = [v for values in series for v in values[1:]]
    if len(later) < 2:
        return
    low, high = min(later), max(later)
    margin = max(0.1 * (high - low), 1e-3)
    ax.set_ylim(low - margin, high + margin)
    if any(values and not low - margin <= values[0] <= high + margin for values in series):
        ax.set_title(f"{ax.get_title()} (epoch 1 off the axis)")


def _focus_on_later_epochs(loss_ax: Axes, acc_ax: Axes, history: Mapping[str, Any]) -> None:
    """Why: the first epoch's validation loss (2.9 for the reference recipe, whose batch norm
    starts untrained) and accuracy (0.1) would squeeze the epochs that matter into a flat
    line, so both axes are scaled to epochs 2 onwards."""
    _zoom_on_later_epochs(loss_ax, history, "loss")
    _zoom_on_later_epochs(acc_ax, history, "accuracy")


# -- public functions ---------------------------------------------------------------------


def plot_history(history: Any, path: str | Path | None) -> Path | Figure:
    """Loss and accuracy per epoch, for training and (if recorded) validation.

    Parameters
    ----------
    history : list of dict, dict of str to list of float, or keras.callbacks.History
        Per-epoch values under ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``: either
        one dict per epoch (`TrainResult.history`, ``history.json``) or one list per key
        (``History.history``); missing keys are not drawn. Epochs are numbered from 1.
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.

    Returns
    -------
    Path or Figure
        `path`, once written; or the Figure when `path` is None.
    """
    history = getattr(history, "history", history)  # accept a keras History object too
    if isinstance(history, Sequence) and history and isinstance(history[0], Mapping):
        history = {key: [row[key] for row in history] for key in history[0]}  # rows -> columns
    if not isinstance(history, Mapping) or not ({"loss", "accuracy"} & set(history)):
        raise ValueError(
            "history must be a dict with 'loss' and/or 'accuracy' lists "
            "(optionally 'val_loss', 'val_accuracy')"
        )
    fig = _new_figure(10.0, 4.0)
    loss_ax, acc_ax = fig.subplots(1, 2)
    _plot_curves(loss_ax, history, "loss", "loss (cross-entropy)")
    _plot_curves(acc_ax, history, "accuracy", "accuracy")
    _focus_on_later_epochs(loss_ax, acc_ax, history)
    fig.tight_layout()
    return _finish(fig, path)


def plot_confusion_matrix(
    confusion: Any, path: str | Path | None, *, title: str = "Confusion matrix"
) -> Path | Figure:
    """A labelled heatmap of a confusion matrix, with the count written in each cell.

    Parameters
    ----------
    confusion : array-like of shape (k, k), int
        ``confusion[i, j]`` counts images of true class ``i`` predicted as ``j`` (k = 10 for
        MNIST), as `EvalReport.confusion` holds it.
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.
    title : str, default="Confusion matrix"
        Figure title; the total count and accuracy are appended.

    Returns
    -------
    Path or Figure
        `path`, once written; or the Figure when `path` is None.
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion must be a square (k, k) matrix, got shape {cm.shape}")
    if not np.issubdtype(cm.dtype, np.integer) or cm.min() < 0:
        raise ValueError("confusion must hold non-negative integer counts")
    k, total = cm.shape[0], int(cm.sum())
    accuracy = np.trace(cm) / total if total else float("nan")
    fig = _new_figure(7.5, 6.5)
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="images")
    threshold = cm.max() / 2  # white text on dark cells, black on light ones
    for (i, j), count in np.ndenumerate(cm):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(f"{title}\n{total} images, accuracy {accuracy:.2%}")
    fig.tight_layout()
    return _finish(fig, path)


def plot_predictions(
    images: Any,
    true: Any,
    predicted: Any,
    path: str | Path | None,
    *,
    n: int = 25,
    ncols: int = 5,
) -> Path | Figure:
    """The first `n` digits with their predictions; wrong ones get a red title and frame.

    Parameters
    ----------
    images : array-like of shape (N, 28, 28), (N, 28, 28, 1) or (N, 784)
        Pixel values 0..255 (uint8), or floats in [0, 1].
    true, predicted : array-like of shape (N,), int
        True and predicted digit of each image.
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.
    n : int, default=25
        How many images to show (all if fewer than `n`).
    ncols : int, default=5
        Images per row.

    Returns
    -------
    Path or Figure
        `path`, once written; or the Figure when `path` is None.
    """
    digits = _as_digits(images)
    t, p = _check_labels(digits, true, predicted)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = min(n, len(digits))
    if n == 0:
        return _finish(_message_figure("no images to show"), path)
    titles = [f"pred {pi} / true {ti}" for ti, pi in zip(t[:n], p[:n], strict=True)]
    fig = _digit_mosaic(digits[:n], titles, t[:n] != p[:n], ncols, header_inches=0.0)
    return _finish(fig, path)


def plot_misclassified(
    images: Any,
    true: Any,
    predicted: Any,
    path: str | Path | None,
    *,
    ncols: int = 10,
) -> Path | Figure:
    """Every misclassified digit (``true != predicted``), each titled "true→pred".

    With no errors, a small figure saying so. A grid holds at most `MAX_GRID_IMAGES` (1,000)
    digits, the first ones; the header says when more were left out.

    Parameters
    ----------
    images : array-like of shape (N, 28, 28), (N, 28, 28, 1) or (N, 784)
        Pixel values 0..255 (uint8), or floats in [0, 1].
    true, predicted : array-like of shape (N,), int
        True and predicted digit of each image.
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.
    ncols : int, default=10
        Images per row.

    Returns
    -------
    Path or Figure
        `path`, once written; or the Figure when `path` is None.
    """
    digits = _as_digits(images)
    t, p = _check_labels(digits, true, predicted)
    wrong = np.flatnonzero(t != p)
    if wrong.size == 0:
        return _finish(_message_figure("no misclassified digits"), path)
    shown = wrong[:MAX_GRID_IMAGES]
    titles = [f"{t[i]}→{p[i]}" for i in shown]
    fig = _digit_mosaic(digits[shown], titles, np.zeros(len(shown), bool), ncols, 0.5)
    header = f"{wrong.size} misclassified of {len(digits)} (true→predicted)"
    if shown.size < wrong.size:
        header += f", first {shown.size} shown"
    fig.suptitle(header, fontsize=11, y=1 - 0.12 / fig.get_figheight(), va="top")
    return _finish(fig, path)


def plot_report(
    report: EvalReport, images: Any, labels: Any, out_dir: str | Path
) -> dict[str, Path]:
    """Write confusion_matrix.png, predictions.png and misclassified.png for `report`.

    Parameters
    ----------
    report : EvalReport
        What `evaluate` returned for these images and labels.
    images : array-like of shape (N, 28, 28), (N, 28, 28, 1) or (N, 784)
        The evaluated images (for an `MnistData`, its ``x_test``).
    labels : array-like of shape (N,), int
        Their true digits (``y_test``).
    out_dir : str or Path
        Folder to write into; created if needed.

    Returns
    -------
    dict
        ``{"confusion_matrix": path, "predictions": path, "misclassified": path}``.
    """
    if len(labels) != report.n:
        raise ValueError(f"report covers {report.n} images but got {len(labels)} labels")
    out_dir = Path(out_dir)
    predicted = report.predicted
    return {
        "confusion_matrix": plot_confusion_matrix(
            report.confusion, out_dir / "confusion_matrix.png"
        ),
        "predictions": plot_predictions(images, labels, predicted, out_dir / "predictions.png"),
        "misclassified": plot_misclassified(
            images, labels, predicted, out_dir / "misclassified.png"
        ),
    }


def plot_corruptions(
    examples: Mapping[str, Any],
    accuracies: Mapping[str, Mapping[str, float]],
    labels: Mapping[str, str],
    path: str | Path | None,
) -> Path | Figure:
    """One digit under every corruption (top row) and the accuracy per corruption of one or
    more models side by side (bars below).

    Parameters
    ----------
    examples : dict of str to array-like of shape (28, 28)
        Title -> digit (0..255), drawn in order, e.g. ``"clean"`` then each corruption.
    accuracies : dict of str to dict of str to float
        Model key -> corruption name -> accuracy in [0, 1]; the first model's names give the
        bars' order.
    labels : dict of str to str
        Model key -> legend label.
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.

    Returns
    -------
    Path or Figure
    """
    if not examples or not accuracies:
        raise ValueError("need at least one example digit and one model's accuracies")
    names = list(next(iter(accuracies.values())))
    fig = _new_figure(max(10.0, 0.75 * len(examples)), 7.0)
    grid = fig.add_gridspec(2, len(examples), height_ratios=[1, 2.6])
    for i, (title, digit) in enumerate(examples.items()):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(np.asarray(digit).reshape(28, 28), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title.replace("_", "\n"), fontsize=7)
        ax.set_xticks([])  # a frame, not axis("off"): white corruptions meet a white page
        ax.set_yticks([])
    bars = fig.add_subplot(grid[1, :])
    width = 0.8 / len(accuracies)
    x = np.arange(len(names))
    for k, (key, values) in enumerate(accuracies.items()):
        heights = [values[name] for name in names]
        bars.bar(x + (k - (len(accuracies) - 1) / 2) * width, heights, width, label=labels[key])
    bars.set_xticks(x, [name.replace("_", " ") for name in names], rotation=40, ha="right")
    bars.set_ylim(0, 1)
    bars.set_ylabel("accuracy on the corrupted digits")
    bars.axhline(0.1, color="grey", linestyle=":", linewidth=1)  # chance
    bars.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)


def plot_reliability(
    panels: Mapping[str, Mapping[str, Sequence[float | None]]],
    eces: Sequence[float],
    path: str | Path | None,
) -> Path | Figure:
    """Reliability diagrams side by side: accuracy against mean confidence per confidence
    bin, the diagonal being perfect calibration, with each panel's ECE in its title.

    Parameters
    ----------
    panels : dict of str to dict
        Title -> bins as `evaluation.reliability_bins` returns them (lists are fine; None or
        NaN marks an empty bin): ``edges`` (n_bins + 1,), ``count``, ``accuracy`` and
        ``confidence`` (n_bins,).
    eces : sequence of float
        The ECE of each panel, in [0, 1].
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.

    Returns
    -------
    Path or Figure
    """
    if len(panels) != len(eces) or not panels:
        raise ValueError(f"need one ECE per panel, got {len(panels)} panels, {len(eces)} ECEs")
    fig = _new_figure(5.0 * len(panels), 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, bins), ece in zip(axes, panels.items(), eces, strict=True):
        edges = np.asarray(bins["edges"], dtype=np.float64)
        accuracy = np.array([np.nan if v is None else v for v in bins["accuracy"]], float)
        confidence = np.array([np.nan if v is None else v for v in bins["confidence"]], float)
        filled = np.isfinite(accuracy)
        ax.bar(edges[:-1][filled], accuracy[filled], np.diff(edges)[filled], align="edge",
               edgecolor="black", label="accuracy in bin")  # fmt: skip
        ax.plot(confidence[filled], accuracy[filled], "o", color=ERROR_COLOR, markersize=3,
                label="(mean confidence, accuracy)")  # fmt: skip
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 probability (confidence)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}\nECE {ece:.2%} ({len(edges) - 1} bins)", fontsize=10)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _finish(fig, path)


def plot_transfer(
    curves: Mapping[str, Mapping[int, Sequence[float]]],
    examples: Any,
    path: str | Path | None,
) -> Path | Figure:
    """The transfer experiment's learning curve, and a few of the new population's digits.

    Parameters
    ----------
    curves : dict of str to dict of int to list of float
        Method -> labels per class -> held-out accuracy per seed in [0, 1]
        (`transfer_experiment.curve`); a method with the single key 0 ("no labels") is
        drawn as a horizontal line.
    examples : array-like of shape (n, 28, 28), 0..255
        Digits drawn beside the curve (the first 10).
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.
    """
    digits = _as_digits(examples)[:10]
    fig = _new_figure(10.0, 4.2)
    grid = fig.add_gridspec(2, 7)
    ax = fig.add_subplot(grid[:, 2:])
    for method, by_shots in curves.items():
        if list(by_shots) == [0]:
            ax.axhline(np.mean(by_shots[0]), color="grey", linestyle="--", label=method)
            continue
        shots = sorted(by_shots)
        means = [np.mean(by_shots[k]) for k in shots]
        ax.plot(shots, means, marker="o", label=method)
        for k in shots:  # every seed, so the spread is visible
            ax.scatter([k] * len(by_shots[k]), by_shots[k], s=10, alpha=0.5, color="black")
    ax.set_xscale("log")
    ticks = sorted({k for by_shots in curves.values() for k in by_shots if k > 0})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labelled digits per class")
    ax.set_ylabel("accuracy on the held-out digits")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    mosaic = fig.add_subplot(grid[:, :2])
    rows = [np.hstack(list(digits[r : r + 2])) for r in range(0, len(digits) - 1, 2)]  # 2 wide
    mosaic.imshow(np.vstack(rows), cmap="gray", vmin=0, vmax=255)
    mosaic.set_title("UCI digits, rendered", fontsize=9)
    mosaic.axis("off")
    fig.tight_layout()
    return _finish(fig, path)


def plot_search_front(
    minutes: Sequence[float],
    accuracy: Sequence[float],
    on_front: Sequence[bool],
    reference_minutes: Sequence[float],
    reference_accuracy: Sequence[float],
    path: str | Path | None,
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Path | Figure:
    """A recipe search's trials as holdout accuracy against minutes per run: every trial a
    grey dot, the Pareto front joined and labelled, the reference recipe's runs as stars.

    Parameters
    ----------
    minutes, accuracy : sequence of float of length n_trials
        Each complete trial's wall time (minutes) and final-epoch holdout accuracy in [0, 1].
    on_front : sequence of bool of length n_trials
        Whether the trial is on the Pareto front.
    reference_minutes, reference_accuracy : sequence of float of length n_runs
        The reference recipe's holdout runs (may be empty).
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.
    labels : sequence of str of length n_trials, optional
        A label per trial, written beside the front's points (e.g. the trial number).
    title : str, default ""

    Returns
    -------
    Path or Figure
    """
    x, y = np.asarray(minutes, float), 100 * np.asarray(accuracy, float)
    front = np.asarray(on_front, bool)
    if not (len(x) == len(y) == len(front)) or (labels is not None and len(labels) != len(x)):
        raise ValueError("minutes, accuracy, on_front (and labels) must have one entry per trial")
    fig = _new_figure(7.0, 4.8)
    ax = fig.add_subplot()
    ax.scatter(x[~front], y[~front], s=18, color="lightgrey", label="trial")
    order = np.argsort(x[front])
    ax.plot(x[front][order], y[front][order], "o-", color="tab:blue", label="Pareto front")
    for i in np.flatnonzero(front) if labels is not None else []:
        ax.annotate(labels[i], (x[i], y[i]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if len(reference_minutes):
        ax.scatter(
            reference_minutes,
            100 * np.asarray(reference_accuracy, float),
            marker="*",
            s=120,
            color=ERROR_COLOR,
            label="reference recipe (holdout runs)",
        )
    # Zoomed on the front and the reference: the trials far below them would squash it.
    shown = np.concatenate([y[front], 100 * np.asarray(reference_accuracy, float)])
    below = 0
    if len(shown):
        margin = 0.1 * (shown.max() - shown.min()) + 0.05
        ax.set_ylim(shown.min() - margin, shown.max() + margin)
        below = int(np.sum(y < shown.min() - margin))
    ax.set_xlabel("minutes per run (training and validation)")
    ax.set_ylabel("final-epoch holdout accuracy (%)")
    ax.set_title(title + (f" ({below} below the axis)" if below else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _finish(fig, path)
