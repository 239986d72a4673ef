"""Calibration: ECE, NLL and Brier against hand-computed cases; temperature scaling; the
calibrated model as a plain Keras file."""

import keras
import numpy as np
import pytest

from mnist_bench import build_model, evaluate, predict
from mnist_bench.evaluation import (
    calibration_metrics,
    fit_temperature,
    model_temperature,
    predict_logits,
    reliability_bins,
    with_temperature,
)


def _rows(*top: tuple[int, float]) -> np.ndarray:
    """Probability rows (n, 10): each puts `p` on digit `d`, the rest evenly elsewhere."""
    p = np.empty((len(top), 10))
    for i, (digit, prob) in enumerate(top):
        p[i] = (1 - prob) / 9
        p[i, digit] = prob
    return p


# Four images: confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.35 (wrong).
# Bins of width 1/15: 0.95 -> (14/15, 1], 0.55 -> (8/15, 9/15], 0.35 -> (5/15, 6/15].
# ECE = 2/4 |0.5 - 0.95| + 1/4 |1 - 0.55| + 1/4 |0 - 0.35| = 0.225 + 0.1125 + 0.0875 = 0.425
HAND_PROBS = _rows((3, 0.95), (3, 0.95), (7, 0.55), (1, 0.35))
HAND_LABELS = np.array([3, 4, 7, 2])


def test_ece_of_a_hand_computed_case():
    assert calibration_metrics(HAND_PROBS, HAND_LABELS)["ece"] == pytest.approx(0.425)


def test_reliability_bins_of_the_hand_case():
    bins = reliability_bins(HAND_PROBS, HAND_LABELS)
    assert bins["count"].tolist() == [0] * 5 + [1] + [0] * 2 + [1] + [0] * 5 + [2]
    assert bins["accuracy"][14] == 0.5 and bins["confidence"][14] == pytest.approx(0.95)
    assert np.isnan(bins["accuracy"][0])
    np.testing.assert_allclose(bins["edges"], np.arange(16) / 15)


def test_nll_brier_accuracy_and_confidence_of_the_hand_case():
    m = calibration_metrics(HAND_PROBS, HAND_LABELS)
    p_true = [0.95, 0.05 / 9, 0.55, 0.65 / 9]
    assert m["nll"] == pytest.approx(-np.mean(np.log(p_true)))
    # Brier per row: (1 - p_true)^2 + the squares of the other nine entries
    right = lambda p: (1 - p) ** 2 + 9 * ((1 - p) / 9) ** 2  # noqa: E731
    wrong = lambda p: p**2 + (1 - (1 - p) / 9) ** 2 + 8 * ((1 - p) / 9) ** 2  # noqa: E731
    expected = np.mean([right(0.95), wrong(0.95), right(0.55), wrong(0.35)])
    assert m["brier"] == pytest.approx(expected)
    assert m["accuracy"] == 0.5 and m["mean_confidence"] == pytest.approx(0.7)


def test_a_perfectly_calibrated_case_has_zero_ece():
    # in the (14/15, 1] bin: 20 images at 0.95, one wrong -> accuracy 0.95 = confidence
    probs = _rows(*[(0, 0.95)] * 20)
    labels = np.zeros(20, int)
    labels[0] = 1
    assert calibration_metrics(probs, labels)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_confidence_one_falls_in_the_last_bin():
    bins = reliability_bins(np.eye(10)[[2]], np.array([2]))
    assert bins["count"][-1] == 1


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.ones((2, 9)) / 9, [0, 1], r"shape \(N, 10\)"),
        (np.ones((0, 10)), [], r"shape \(N, 10\) with N >= 1"),
        (np.ones((2, 10)) / 10, [0], "got 2 images but 1 labels"),
    ],
    ids=["classes", "empty", "labels"],
)
def test_calibration_metrics_refuses_bad_input(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        calibration_metrics(probs, np.asarray(labels, int))


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(20_000, 10))
    p = np.exp(logits / 2.5)
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)


# -- the calibrated model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model("seed")  # untrained: random but fixed weights are enough here


@pytest.fixture(scope="module")
def digits(mnist) -> tuple[np.ndarray, np.ndarray]:
    return mnist.x_test[:64], mnist.y_test[:64]


def test_with_temperature_divides_the_logits(model, digits):
    x, _ = digits
    logits = predict_logits(model, x).astype(np.float64)
    _, probs = predict(model, x)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(axis=1, keepdims=True), atol=1e-6)
    _, scaled = predict(with_temperature(model, 0.25), x)
    z = logits / 0.25
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(scaled, expected / expected.sum(axis=1, keepdims=True), atol=1e-5)
    assert np.array_equal(scaled.argmax(axis=1), probs.argmax(axis=1))


def test_the_calibrated_model_loads_with_plain_keras(model, digits, tmp_path):
    calibrated = with_temperature(model, 1.7)
    calibrated.save(tmp_path / "model_calibrated.keras")
    loaded = keras.models.load_model(tmp_path / "model_calibrated.keras")
    assert model_temperature(loaded) == pytest.approx(1.7) and model_temperature(model) is None
    np.testing.assert_array_equal(predict(loaded, digits[0])[1], predict(calibrated, digits[0])[1])


def test_with_temperature_refuses_what_it_cannot_scale(model):
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        with_temperature(model, 0.0)
    linear = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(10)])  # fmt: skip
    with pytest.raises(ValueError, match="must end in a Dense layer with a softmax"):
        with_temperature(linear, 2.0)
    with pytest.raises(ValueError, match="ends in Softmax"):
        with_temperature(with_temperature(model, 2.0), 2.0)


def test_evaluate_reports_the_calibration_of_its_probabilities(model, digits):
    report = evaluate(model, digits)
    expected = calibration_metrics(predict(model, digits[0])[1], digits[1])
    assert (report.ece, report.brier, report.mean_confidence, report.nll) == (
        expected["ece"],
        expected["brier"],
        expected["mean_confidence"],
        expected["nll"],
    )
