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


def _draw_digit(ax: Axes, image: np.ndarray, title: str, *, wrong: bool) -> None:
    # Black ink on white paper; the pixel range is fixed so faint digits stay faint.
    vmax = 1.0 if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0 else 255
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    color = ERROR_COLOR if wrong else "black"
    ax.set_title(title, fontsize=9, color=color, pad=3)
    for spine in ax.spines.values():
        spine.set_visible(wrong)
        spine.set_color(ERROR_COLOR)
        spine.set_linewidth(2.5)


def _digit_grid(n: int, ncols: int, header_inches: float) -> tuple[Figure, list[Axes]]:
    """A figure with `n` digit cells in rows of `ncols`, leaving `header_inches` at the top."""
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    width, height = ncols * CELL_INCHES[0], nrows * CELL_INCHES[1] + header_inches
    fig = _new_figure(max(width, 3.0), height)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.1 / height, top=1 - header_inches / height, hspace=0.35
    )
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


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
        # Integer epochs only: a 3-epoch run would otherwise get ticks at 1.5, 2.5...
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"no {key} recorded", ha="center", va="center", transform=ax.transAxes)


# -- public functions ---------------------------------------------------------------------


def plot_history(history: Any, path: str | Path | None) -> Path | Figure:
    """Loss and accuracy per epoch, for training and (if recorded) validation.

    Parameters
    ----------
    history : dict of str to list of float, or keras.callbacks.History
        Per-epoch values under ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``
        (``History.history``'s keys); missing keys are not drawn. Epochs are numbered from 1.
    path : str or Path or None
        Where to write the PNG; None returns the Figure unsaved.

    Returns
    -------
    Path or Figure
        `path`, once written; or the Figure when `path` is None.
    """
    history = getattr(history, "history", history)  # accept a keras History object too
    if not isinstance(history, Mapping) or not ({"loss", "accuracy"} & set(history)):
        raise ValueError(
            "history must be a dict with 'loss' and/or 'accuracy' lists "
            "(optionally 'val_loss', 'val_accuracy')"
        )
    fig = _new_figure(10.0, 4.0)
    loss_ax, acc_ax = fig.subplots(1, 2)
    _plot_curves(loss_ax, history, "loss", "loss (cross-entropy)")
    _plot_curves(acc_ax, history, "accuracy", "accuracy")
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
    fig, axes = _digit_grid(n, ncols, header_inches=0.2)
    for ax, image, ti, pi in zip(axes, digits[:n], t[:n], p[:n], strict=True):
        _draw_digit(ax, image, f"pred {pi} / true {ti}", wrong=ti != pi)
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
    fig, axes = _digit_grid(len(shown), ncols, header_inches=0.5)
    for ax, i in zip(axes, shown, strict=True):
        _draw_digit(ax, digits[i], f"{t[i]}→{p[i]}", wrong=False)
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
