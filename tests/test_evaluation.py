"""Tests of `predict`, `evaluate` and `EvalReport` on a tiny model whose outputs numpy recomputes.

The model is Flatten -> Dense(10, softmax) with weights from a seeded RNG, so its predictions
are known exactly from a float64 numpy forward pass; the labels are then built from those
predictions with every third one changed, so accuracy, confusion matrix and misclassified
indices are known exactly too.
"""

from __future__ import annotations

import gc
import json
import os
import weakref
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_bench.evaluation import EvalReport, _inference_fn, evaluate, predict

N = 240  # images in the fixture set
WRONG = np.arange(0, N, 3)  # indices whose label is made to disagree with the model


def _tiny_model(seed: int = 0) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.15, (784, 10)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, 10).astype(np.float32)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    model.layers[-1].set_weights([weights, bias])
    return model, weights, bias


def _numpy_forward(images: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = images.reshape(len(images), 784) / 255.0 @ weights.astype(np.float64) + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))  # (N, 10)
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def case() -> SimpleNamespace:
    """The model, N sparse random uint8 images, the expected outputs and the labels."""
    model, weights, bias = _tiny_model()
    rng = np.random.default_rng(1)
    images = ((rng.random((N, 28, 28)) < 0.2) * rng.integers(0, 256, (N, 28, 28))).astype(np.uint8)
    probabilities = _numpy_forward(images, weights, bias)
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 1e-4  # no near-ties: float32 argmax must agree
    predicted = probabilities.argmax(axis=1)
    labels = predicted.copy()
    labels[WRONG] = (labels[WRONG] + 3) % 10
    return SimpleNamespace(
        model=model,
        images=images,
        probabilities=probabilities,
        predicted=predicted,
        labels=labels.astype(np.uint8),
    )


# -- predict ----------------------------------------------------------------------------------


def test_predict_matches_numpy(case):
    labels, probabilities = predict(case.model, case.images)
    assert labels.shape == (N,) and labels.dtype == np.uint8
    assert probabilities.shape == (N, 10) and probabilities.dtype == np.float32
    np.testing.assert_array_equal(labels, case.predicted)
    np.testing.assert_allclose(probabilities, case.probabilities, atol=1e-6)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda x: x[..., np.newaxis], id="uint8 (N,28,28,1)"),
        pytest.param(lambda x: x.reshape(len(x), 784), id="uint8 (N,784)"),
        pytest.param(lambda x: x.astype(np.int64), id="int64"),
        pytest.param(lambda x: x.astype(np.float64), id="raw float64 0..255"),
        pytest.param(lambda x: x.reshape(len(x), 784).astype(np.float32), id="raw float (N,784)"),
        pytest.param(
            lambda x: (x[..., np.newaxis] / np.float32(255)).astype(np.float32), id="preprocessed"
        ),
    ],
)
def test_predict_layouts_agree(case, convert):
    reference_labels, reference_probabilities = predict(case.model, case.images)
    labels, probabilities = predict(case.model, convert(case.images))
    np.testing.assert_array_equal(labels, reference_labels)
    np.testing.assert_allclose(probabilities, reference_probabilities, atol=1e-6)


def test_predict_single_image(case):
    labels, probabilities = predict(case.model, case.images[5])
    assert labels.shape == (1,) and probabilities.shape == (1, 10)
    assert labels[0] == case.predicted[5]
    np.testing.assert_allclose(probabilities[0], case.probabilities[5], atol=1e-6)


@pytest.mark.parametrize("shape", [(0, 28, 28), (0, 28, 28, 1), (0, 784)])
def test_predict_no_images(case, shape):
    labels, probabilities = predict(case.model, np.zeros(shape, np.uint8))
    assert labels.shape == (0,) and labels.dtype == np.uint8
    assert probabilities.shape == (0, 10) and probabilities.dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 28, 27), (4, 28, 28, 3), (4, 783), (28,), (28, 28, 1)])
def test_predict_rejects_bad_shape(case, shape):
    with pytest.raises(ValueError, match=r"images must have shape .*got shape"):
        predict(case.model, np.zeros(shape, np.uint8))


def test_predict_rejects_bad_pixels(case):
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        predict(case.model, np.full((2, 28, 28), 300, np.int64))
    with pytest.raises(ValueError, match="NaN"):  # NaN max is not <= 1: read as raw pixels
        predict(case.model, np.full((2, 28, 28, 1), np.nan, np.float32))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_predict_rejects_bad_batch_size(case, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        predict(case.model, case.images, batch_size=batch_size)


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_predict_invariant_to_batch_size(case, data):
    n = data.draw(st.integers(1, 40), label="n")
    batch_size = data.draw(st.integers(1, n), label="batch_size")
    reference_labels, reference_probabilities = predict(case.model, case.images[:n])
    labels, probabilities = predict(case.model, case.images[:n], batch_size=batch_size)
    np.testing.assert_array_equal(labels, reference_labels)
    np.testing.assert_allclose(probabilities, reference_probabilities, rtol=0, atol=1e-6)


def test_predict_traces_once_per_model():
    model, _, _ = _tiny_model(seed=2)
    images = np.zeros((10, 28, 28), np.uint8)
    predict(model, images)
    predict(model, images[:3], batch_size=2)  # other batch sizes, a short last batch
    predict(model, images[0])
    fn = _inference_fn(model)
    assert fn is _inference_fn(model)  # cached
    # One concrete function: a single traced graph whose batch dimension is free, so every
    # batch size above ran through it (a concrete function cannot retrace).
    assert isinstance(fn, tf.types.experimental.ConcreteFunction)
    assert fn.inputs[0].shape.as_list() == [None, 28, 28, 1]


def test_predict_cache_does_not_keep_model_alive():
    model, _, _ = _tiny_model(seed=3)
    predict(model, np.zeros((2, 28, 28), np.uint8))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


# -- evaluate ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(case) -> EvalReport:
    return evaluate(case.model, (case.images, case.labels), batch_size=64)


def test_evaluate_scores(case, report):
    assert report.n == N
    assert report.accuracy == (N - len(WRONG)) / N
    assert report.n_errors == len(WRONG)
    np.testing.assert_array_equal(report.misclassified, WRONG)
    assert report.misclassified.dtype == np.int64
    np.testing.assert_array_equal(report.predicted, case.predicted)
    assert report.predicted.dtype == np.uint8


def test_evaluate_loss_is_mean_cross_entropy(case, report):
    p_true = np.clip(case.probabilities[np.arange(N), case.labels], 1e-7, 1.0)
    assert report.loss == pytest.approx(-np.log(p_true).mean(), rel=1e-5)
    # ... and what Keras' own loss gives on the same probabilities
    keras_loss = keras.losses.CategoricalCrossentropy()(
        keras.utils.to_categorical(case.labels, 10), case.probabilities.astype(np.float32)
    )
    assert report.loss == pytest.approx(float(keras_loss), rel=1e-5)


def test_evaluate_confusion_matrix(case, report):
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (case.labels, case.predicted), 1)
    np.testing.assert_array_equal(report.confusion, expected)
    assert report.confusion.dtype == np.int64
    assert report.confusion.sum() == N
    assert np.trace(report.confusion) == N - len(WRONG)
    np.testing.assert_array_equal(report.confusion.sum(axis=1), np.bincount(case.labels, None, 10))


def test_evaluate_per_class(report):
    assert set(report.per_class) == {*map(str, range(10)), "macro avg", "weighted avg"}
    for digit in range(10):
        entry = report.per_class[str(digit)]
        assert set(entry) == {"precision", "recall", "f1-score", "support"}
        row = report.confusion[digit]
        assert entry["support"] == row.sum()
        assert entry["recall"] == pytest.approx(row[digit] / row.sum() if row.sum() else 0.0)
    assert all(type(v) is float for d in report.per_class.values() for v in d.values())


def test_evaluate_accepts_mnist_data(case, report):
    data = SimpleNamespace(x_train=None, y_train=None, x_test=case.images, y_test=case.labels)
    assert evaluate(case.model, data, batch_size=64) == report


def test_evaluate_independent_of_batch_size(case, report):
    other = evaluate(case.model, (case.images, case.labels), batch_size=7)
    np.testing.assert_array_equal(other.predicted, report.predicted)
    np.testing.assert_array_equal(other.confusion, report.confusion)
    assert other.loss == pytest.approx(report.loss, rel=1e-6)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros(N - 1, np.uint8), f"got {N} images but {N - 1} labels"),
        (np.full(N, 10), r"labels must be in 0\.\.9, got values from 10 to 10"),
        (np.full(N, -1), r"labels must be in 0\.\.9, got values from -1 to -1"),
        (np.zeros((N, 10)), r"shape \(N,\).*one-hot"),
        (np.full(N, 1.5), "integer class indices"),
    ],
    ids=["length", "too large", "negative", "one-hot", "non-integer"],
)
def test_evaluate_rejects_bad_labels(case, labels, message):
    with pytest.raises(ValueError, match=message):
        evaluate(case.model, (case.images, labels))


def test_evaluate_rejects_bad_input(case):
    with pytest.raises(ValueError, match="images must have shape"):
        evaluate(case.model, (np.zeros((3, 27, 28), np.uint8), np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(case.model, (np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)))
    with pytest.raises(TypeError, match="MnistData or an"):
        evaluate(case.model, case.images)


# -- EvalReport -------------------------------------------------------------------------------


def test_report_json_round_trip(report, tmp_path):
    values = report.to_dict()
    text = json.dumps(values)  # plain Python: serialisable as is
    assert EvalReport.from_dict(json.loads(text)) == report
    assert EvalReport.from_json(report.to_json()) == report
    path = tmp_path / "report.json"
    assert report.to_json(path) == path.read_text()
    assert EvalReport.from_json(path) == report
    assert EvalReport.from_json(str(path)) == report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temp files left


def test_report_types_survive_round_trip(report):
    back = EvalReport.from_dict(json.loads(report.to_json()))
    assert back.confusion.dtype == np.int64 and back.confusion.shape == (10, 10)
    assert back.misclassified.dtype == np.int64
    assert back.predicted.dtype == np.uint8 and back.predicted.shape == (N,)
    assert type(back.loss) is float and type(back.n) is int
    assert back.n_errors == report.n_errors


def test_report_repr_is_short(report):
    assert (
        repr(report) == f"EvalReport(n={N}, accuracy=0.6667, loss={report.loss:.4f}, n_errors=80)"
    )


def test_report_rejects_bad_dicts(report):
    values = report.to_dict()
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        EvalReport.from_dict({**values, "extra": 1})
    with pytest.raises(ValueError, match=r"missing \['loss'\]"):
        EvalReport.from_dict({k: v for k, v in values.items() if k != "loss"})
    with pytest.raises(ValueError, match=r"confusion must have shape \(10, 10\)"):
        EvalReport.from_dict({**values, "confusion": [[0]]})
    with pytest.raises(ValueError, match="predicted must have shape"):
        EvalReport.from_dict({**values, "n": N + 1})
