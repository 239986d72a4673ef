"""Tests of the PNG figures: each is a valid, non-empty PNG of plausible size, written
atomically (no temporary files left behind), and the edge cases (no validation curves, no
errors) still draw."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from mnist_bench.plots import (
    plot_confusion_matrix,
    plot_history,
    plot_misclassified,
    plot_predictions,
    plot_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = {
    "loss": [0.9, 0.4, 0.25, 0.2],
    "accuracy": [0.7, 0.88, 0.93, 0.95],
    "val_loss": [0.5, 0.3, 0.22, 0.21],
    "val_accuracy": [0.85, 0.91, 0.94, 0.945],
    "seconds": [1.0, 1.0, 1.0, 1.0],  # other keys are ignored
}


def _assert_png(path: Path, *, min_width: int = 200, min_height: int = 100) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels.shape[0] >= min_height and pixels.shape[1] >= min_width
    assert pixels.std() > 0.01  # something was drawn
    return pixels


def _only(folder: Path, *names: str) -> None:
    """`folder` holds exactly `names`: no temporary file was left behind."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


@pytest.fixture(scope="module")
def digits() -> SimpleNamespace:
    """30 random 'digits' (uint8 blobs), their labels and predictions with 4 errors."""
    rng = np.random.default_rng(0)
    images = ((rng.random((30, 28, 28)) < 0.25) * rng.integers(0, 256, (30, 28, 28))).astype(
        np.uint8
    )
    true = rng.integers(0, 10, 30)
    predicted = true.copy()
    wrong = np.array([1, 7, 12, 29])
    predicted[wrong] = (true[wrong] + 1) % 10
    return SimpleNamespace(images=images, true=true, predicted=predicted, wrong=wrong)


def test_plot_history(tmp_path):
    path = plot_history(HISTORY, tmp_path / "history.png")
    assert path == tmp_path / "history.png"
    pixels = _assert_png(path, min_width=800, min_height=300)
    assert pixels.shape[1] > pixels.shape[0]  # two panels side by side
    _only(tmp_path, "history.png")


@pytest.mark.parametrize(
    "keys",
    [("loss", "accuracy"), ("loss",), ("accuracy", "val_accuracy"), ("loss", "val_loss")],
)
def test_plot_history_missing_keys(tmp_path, keys):
    history = {k: HISTORY[k] for k in keys}
    _assert_png(plot_history(history, tmp_path / "h.png"))


def test_plot_history_single_epoch_and_keras_history(tmp_path):
    history = SimpleNamespace(history={"loss": [0.5], "accuracy": [0.8]})  # like keras History
    _assert_png(plot_history(history, tmp_path / "h.png"))


def test_plot_history_rejects_no_curves(tmp_path):
    with pytest.raises(ValueError, match="'loss' and/or 'accuracy'"):
        plot_history({"seconds": [1.0]}, tmp_path / "h.png")
    _only(tmp_path)


def test_plot_confusion_matrix(tmp_path):
    rng = np.random.default_rng(0)
    confusion = np.diag(rng.integers(900, 1200, 10)) + rng.integers(0, 6, (10, 10))
    path = plot_confusion_matrix(confusion, tmp_path / "sub" / "cm.png", title="Test set")
    _assert_png(path, min_width=500, min_height=500)
    _only(tmp_path / "sub", "cm.png")


@pytest.mark.parametrize(
    "confusion",
    [np.zeros((10, 9), int), np.zeros(10, int), np.full((3, 3), 0.5), -np.eye(3, dtype=int)],
)
def test_plot_confusion_matrix_rejects_bad_input(tmp_path, confusion):
    with pytest.raises(ValueError, match="confusion must"):
        plot_confusion_matrix(confusion, tmp_path / "cm.png")


def test_plot_predictions(tmp_path, digits):
    path = plot_predictions(digits.images, digits.true, digits.predicted, tmp_path / "p.png")
    _assert_png(path, min_width=400, min_height=500)  # 5 x 5 grid
    _only(tmp_path, "p.png")


def test_plot_predictions_layouts_and_small_n(tmp_path, digits):
    flat = digits.images.reshape(30, 784)
    _assert_png(
        plot_predictions(flat, digits.true, digits.predicted, tmp_path / "a.png", n=3, ncols=5)
    )
    scaled = digits.images[..., np.newaxis] / np.float32(255)  # preprocessed floats
    _assert_png(plot_predictions(scaled, digits.true, digits.predicted, tmp_path / "b.png", n=40))


def test_plot_predictions_rejects_bad_input(tmp_path, digits):
    with pytest.raises(ValueError, match="equal lengths"):
        plot_predictions(digits.images, digits.true[:5], digits.predicted, tmp_path / "p.png")
    with pytest.raises(ValueError, match=r"images must have shape"):
        plot_predictions(digits.images[:, :27], digits.true, digits.predicted, tmp_path / "p.png")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        plot_predictions(digits.images, digits.true, digits.predicted, tmp_path / "p.png", n=0)
    _only(tmp_path)


def test_plot_misclassified(tmp_path, digits):
    path = plot_misclassified(digits.images, digits.true, digits.predicted, tmp_path / "m.png")
    _assert_png(path, min_width=300, min_height=100)
    _only(tmp_path, "m.png")


def test_plot_misclassified_no_errors(tmp_path, digits):
    path = plot_misclassified(digits.images, digits.true, digits.true, tmp_path / "m.png")
    _assert_png(path, min_width=200, min_height=100)


def test_path_none_returns_figure(digits):
    figures = [
        plot_history(HISTORY, None),
        plot_confusion_matrix(np.eye(10, dtype=int), None),
        plot_predictions(digits.images, digits.true, digits.predicted, None),
        plot_misclassified(digits.images, digits.true, digits.predicted, None),
    ]
    assert all(isinstance(f, Figure) for f in figures)


def test_overwrite_keeps_one_file(tmp_path):
    plot_history(HISTORY, tmp_path / "h.png")
    plot_history({"loss": [1.0, 0.5]}, tmp_path / "h.png")
    _assert_png(tmp_path / "h.png")
    _only(tmp_path, "h.png")


def test_plot_report(tmp_path, digits):
    from mnist_bench.evaluation import EvalReport

    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (digits.true, digits.predicted), 1)
    report = EvalReport(
        loss=0.3,
        accuracy=26 / 30,
        n=30,
        ece=0.05,
        brier=0.2,
        mean_confidence=0.9,
        confusion=confusion,
        per_class={},
        misclassified=digits.wrong,
        predicted=digits.predicted,
    )
    paths = plot_report(report, digits.images, digits.true, tmp_path / "run")
    assert set(paths) == {"confusion_matrix", "predictions", "misclassified"}
    for path in paths.values():
        _assert_png(path)
    _only(tmp_path / "run", "confusion_matrix.png", "predictions.png", "misclassified.png")
    with pytest.raises(ValueError, match="report covers 30 images but got 5 labels"):
        plot_report(report, digits.images[:5], digits.true[:5], tmp_path / "run")
