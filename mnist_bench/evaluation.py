"""Evaluate a trained model: predicted digits, loss, accuracy, confusion matrix, per-class report.

`predict(model, images)` returns labels and probabilities; `evaluate(model, data)` returns an
`EvalReport` that round-trips through JSON. Both run the model through one compiled
`tf.function` per model, cached, over fixed-size batches: `model.predict` costs ~90 ms of fixed
overhead per call on a 2-core CPU, which dominates a one-image prediction.

    report = evaluate(model, load_mnist())  # the 10,000 test images
    report.accuracy, report.n_errors, report.confusion  # float, int, (10, 10) int64
    report.ece, report.nll, report.brier  # calibration of the probabilities

Calibration: `calibration_metrics` (expected calibration error over 15 equal-width confidence
bins, negative log-likelihood, Brier score), `reliability_bins` for a reliability diagram,
`fit_temperature` (temperature scaling, Guo et al. 2017: one scalar dividing the logits, fitted
by minimising the NLL on images never used for testing) and `with_temperature`, which returns
the model with its last softmax Dense split into logits / temperature / softmax, built from
stock Keras layers, so the file it is saved to loads with plain `keras.models.load_model` and
`predict` returns the calibrated probabilities.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf
from sklearn.metrics import classification_report, confusion_matrix

from ._io import atomic_path, read_json
from .compare import EXACT, Rule, float32_rule, gamma
from .preprocess import preprocess_images

if TYPE_CHECKING:
    import keras

    from .data import MnistData

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
EPSILON = 1e-7  # keras.backend.epsilon(): Keras clips probabilities to [eps, 1 - eps]
ECE_BINS = 15  # equal-width confidence bins, as Guo et al. 2017 and most papers since
TEMPERATURE_BOUNDS = (0.05, 20.0)  # the search range of fit_temperature; far beyond any fit
TEMPERATURE_LAYER = "temperature"  # name of the Rescaling(1 / T) layer of with_temperature


@dataclass(frozen=True, repr=False)
class EvalReport:
    """The result of `evaluate`: scores, confusion matrix and per-image predictions.

    Attributes
    ----------
    loss : float
        Mean categorical cross-entropy over the `n` images (nats).
    accuracy : float
        Fraction of images whose predicted digit is the true one, in [0, 1].
    n : int
        Number of images evaluated.
    ece : float
        Expected calibration error over 15 equal-width bins of the top-1 probability, in
        [0, 1]: the bin-size-weighted mean of |accuracy - mean confidence| (`calibration_metrics`).
    brier : float
        Multi-class Brier score: mean over images of the squared distance between the
        probability vector and the one-hot label, in [0, 2].
    mean_confidence : float
        Mean top-1 probability, in [0, 1]; equal to the accuracy for a calibrated model.
    confusion : ndarray of shape (10, 10), int64
        ``confusion[i, j]`` counts images of true digit ``i`` predicted as ``j``.
    per_class : dict
        scikit-learn's ``classification_report(output_dict=True)``: keys ``"0"`` .. ``"9"``,
        ``"macro avg"`` and ``"weighted avg"``, each a dict of ``precision``, ``recall``,
        ``f1-score`` and ``support`` (all floats).
    misclassified : ndarray of shape (n_errors,), int64
        Indices, into the evaluated images, of the wrongly predicted ones, ascending.
    predicted : ndarray of shape (n,), uint8
        The predicted digit of every image.
    """

    loss: float
    accuracy: float
    n: int
    ece: float
    brier: float
    mean_confidence: float
    confusion: np.ndarray
    per_class: dict[str, dict[str, float]]
    misclassified: np.ndarray
    predicted: np.ndarray

    def __post_init__(self) -> None:
        # Normalise types so a report read back from JSON equals the one written.
        fields = {
            "loss": float(self.loss),
            "accuracy": float(self.accuracy),
            "n": int(self.n),
            "ece": float(self.ece),
            "brier": float(self.brier),
            "mean_confidence": float(self.mean_confidence),
            "confusion": np.asarray(self.confusion, dtype=np.int64),
            "per_class": {
                k: {m: float(v) for m, v in d.items()} for k, d in self.per_class.items()
            },
            "misclassified": np.asarray(self.misclassified, dtype=np.int64).reshape(-1),
            "predicted": np.asarray(self.predicted, dtype=np.uint8).reshape(-1),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        if self.confusion.shape != (NUM_CLASSES, NUM_CLASSES):
            raise ValueError(f"confusion must have shape (10, 10), got {self.confusion.shape}")
        if self.predicted.shape != (self.n,):
            raise ValueError(f"predicted must have shape ({self.n},), got {self.predicted.shape}")

    @property
    def n_errors(self) -> int:
        """Number of misclassified images."""
        return int(self.misclassified.size)

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood of the true digit (nats): the same number as `loss`."""
        return self.loss

    def __repr__(self) -> str:  # the arrays would bury the scores
        return (
            f"EvalReport(n={self.n}, accuracy={self.accuracy:.4f}, loss={self.loss:.4f}, "
            f"n_errors={self.n_errors})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EvalReport):
            return NotImplemented
        return (
            (self.loss, self.accuracy, self.n, self.per_class)
            == (other.loss, other.accuracy, other.n, other.per_class)
            and (self.ece, self.brier, self.mean_confidence)
            == (other.ece, other.brier, other.mean_confidence)
            and np.array_equal(self.confusion, other.confusion)
            and np.array_equal(self.misclassified, other.misclassified)
            and np.array_equal(self.predicted, other.predicted)
        )

    # -- JSON round trip ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The report as plain Python (lists, ints, floats): ready for `json.dumps`."""
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "n": self.n,
            "ece": self.ece,
            "brier": self.brier,
            "mean_confidence": self.mean_confidence,
            "confusion": self.confusion.tolist(),
            "per_class": {k: dict(d) for k, d in self.per_class.items()},
            "misclassified": self.misclassified.tolist(),
            "predicted": self.predicted.tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalReport:
        """Rebuild a report from `to_dict` output; ``ValueError`` on missing or unknown keys."""
        expected = set(cls.__dataclass_fields__)
        if set(values) != expected:
            missing, unknown = sorted(expected - set(values)), sorted(set(values) - expected)
            raise ValueError(
                f"EvalReport needs exactly the keys {sorted(expected)}; "
                f"missing {missing}, unknown {unknown}"
            )
        return cls(**values)

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as indented JSON; also written (atomically) to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> EvalReport:
        """Parse a report from a JSON string or a path to a JSON file written by `to_json`."""
        if isinstance(text_or_path, Path) or not str(text_or_path).lstrip().startswith("{"):
            return cls.from_dict(read_json(text_or_path))
        return cls.from_dict(json.loads(str(text_or_path)))


# -- private helpers ----------------------------------------------------------------------


def _prepare_images(images: Any) -> np.ndarray:
    """Images as the model takes them: float32 (N, 28, 28, 1) in [0, 1]. See `predict`."""
    x = np.asarray(images)
    if x.shape == (28, 28):  # one image
        x = x[np.newaxis]
    preprocessed = (
        np.issubdtype(x.dtype, np.floating)
        and x.shape[1:] == IMAGE_SHAPE
        and (x.size == 0 or float(x.max()) <= 1.0)
    )
    if preprocessed:
        return x.astype(np.float32, copy=False)
    return preprocess_images(x)  # raises ValueError for any other shape or range


# Compiled inference per model. The function reaches its model through a weak reference so
# the cache entry (value) does not keep its key alive and dies with the model.
_INFERENCE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _inference_fn(model: keras.Model) -> Any:
    """The cached concrete function computing ``model(x, training=False)``, traced once per
    model. Calling the concrete function directly skips `tf.function`'s per-call argument
    matching, about a third of a single image's latency on the 2-core CPU."""
    fn = _INFERENCE.get(model)
    if fn is None:
        model_ref = weakref.ref(model)

        # Batch dimension None: the last, shorter batch reuses the same trace.
        @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32)])
        def forward(x: tf.Tensor) -> tf.Tensor:
            return model_ref()(x, training=False)

        fn = _INFERENCE[model] = forward.get_concrete_function()
    return fn


def _predict_proba(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities float32 (N, 10) for prepared images `x` float32 (N, 28, 28, 1)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if len(x) == 0:
        return np.zeros((0, NUM_CLASSES), dtype=np.float32)
    if hasattr(model, "predict_proba"):  # an exported model (mnist_bench.export predictors)
        return model.predict_proba(x)
    fn = _inference_fn(model)
    if len(x) <= batch_size:  # the common small case: no slicing, no concatenation
        return fn(tf.constant(x)).numpy()
    batches = [fn(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(batches)


def _split_data(data: Any) -> tuple[Any, Any]:
    """(images, labels) from an `MnistData` (its test split) or an ``(images, labels)`` pair."""
    if isinstance(data, tuple | list) and len(data) == 2:
        return data[0], data[1]
    if hasattr(data, "x_test") and hasattr(data, "y_test"):
        return data.x_test, data.y_test
    raise TypeError(
        f"data must be an MnistData or an (images, labels) pair, got {type(data).__name__}"
    )


def _check_labels(labels: Any, n_images: int) -> np.ndarray:
    y = np.asarray(labels)
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()
    )
    if y.ndim != 1 or y.dtype == np.bool_ or not integral:
        raise ValueError(
            f"labels must be integer class indices 0..9 of shape (N,), got dtype {y.dtype} "
            f"and shape {y.shape} (for one-hot labels pass labels.argmax(axis=1))"
        )
    if len(y) != n_images:
        raise ValueError(f"got {n_images} images but {len(y)} labels; they must match")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise ValueError(f"labels must be in 0..9, got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def _cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean categorical cross-entropy, as `keras.losses.categorical_crossentropy` computes it
    from probabilities: renormalise each row, clip to [eps, 1 - eps], average -log p(true)."""
    p = probabilities.astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    p_true = np.clip(p[np.arange(len(labels)), labels], EPSILON, 1.0 - EPSILON)
    return float(-np.log(p_true).mean())


def _per_class_report(labels: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, float]]:
    report = classification_report(
        labels, predicted, labels=range(NUM_CLASSES), output_dict=True, zero_division=0
    )
    # Drop the scalar "accuracy" (or "micro avg") entry: EvalReport.accuracy holds it.
    return {k: v for k, v in report.items() if k not in ("accuracy", "micro avg")}


def _check_probabilities(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != NUM_CLASSES or len(p) == 0:
        raise ValueError(f"probabilities must have shape (N, 10) with N >= 1, got {p.shape}")
    return p, _check_labels(labels, len(p))


def _nll_at(temperature: float, logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of softmax(logits / temperature), float64."""
    from scipy.special import logsumexp

    z = logits / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(labels)), labels]))


def _softmax_dense(model: keras.Model) -> Any:
    """The last layer of `model` once it is known to be a Dense with a softmax."""
    import keras

    last = model.layers[-1] if model.layers else None
    if not isinstance(last, keras.layers.Dense) or last.get_config()["activation"] != "softmax":
        name = type(last).__name__ if last is not None else "nothing"
        raise ValueError(
            f"model {model.name!r} must end in a Dense layer with a softmax activation to take "
            f"a temperature; it ends in {name}"
        )
    return last


def _logits_graph(model: keras.Model) -> tuple[Any, Any]:
    """(inputs, logits) tensors: `model`'s layers in order, the last Dense without its softmax,
    sharing every other layer (and so its weights) with `model`."""
    import keras

    last = _softmax_dense(model)
    if isinstance(model, keras.Sequential):  # a chain: the small CNNs of models.cnn
        inputs = keras.Input(IMAGE_SHAPE, name="images")
        x = inputs
        for layer in model.layers[:-1]:
            x = layer(x)
    else:  # a graph (ResNet's shortcuts): its own input, up to what its last Dense reads
        inputs, x = model.inputs[0], last.input
    dense = keras.layers.Dense(last.units, name="logits")
    logits = dense(x)
    dense.set_weights(last.get_weights())
    return inputs, logits


# -- public functions ---------------------------------------------------------------------


def predict(
    model: keras.Model, images: Any, *, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Predict the digit of each image.

    Parameters
    ----------
    model : keras.Model or exported predictor
        Takes float32 (N, 28, 28, 1) in [0, 1], returns softmax probabilities (N, 10); or an
        object with such a ``predict_proba`` method (`mnist_bench.export.load_predictor`).
    images : array-like
        Either raw pixel values 0..255 of shape (N, 28, 28), (N, 28, 28, 1) or (N, 784), or
        one image of shape (28, 28) (treated as N = 1); or images already preprocessed by
        `preprocess_images`, float32 (N, 28, 28, 1) in [0, 1]. The rule telling them apart:
        an integer dtype is raw pixels; a floating dtype of shape (N, 28, 28, 1) whose maximum
        is <= 1 is preprocessed; any other floating array is raw pixels. (A raw float image
        whose pixels are all <= 1 is thus read as preprocessed: pass raw pixels as integers.)
    batch_size : int, default=1024
        Images per forward pass; only memory and speed depend on it, not the result.

    Returns
    -------
    labels : ndarray of shape (N,), uint8
        The most probable digit of each image.
    probabilities : ndarray of shape (N, 10), float32
        The model's output for each image.

    Raises
    ------
    ValueError
        If `images` has none of the layouts above, or `batch_size` is not a positive integer.
    """
    probabilities = _predict_proba(model, _prepare_images(images), batch_size)
    return probabilities.argmax(axis=1).astype(np.uint8), probabilities


def evaluate(
    model: keras.Model,
    data: MnistData | tuple[Any, Any],
    *,
    batch_size: int = 1024,
) -> EvalReport:
    """Score `model` on labelled images.

    Parameters
    ----------
    model : keras.Model or exported predictor
        As for `predict`: a Keras model, or a `mnist_bench.export.load_predictor` result.
    data : MnistData or tuple (images, labels)
        An `MnistData` is evaluated on its test split (10,000 images). A pair holds images in
        any layout `predict` accepts and labels, integers 0..9 of shape (N,).
    batch_size : int, default=1024
        Images per forward pass; the report does not depend on it.

    Returns
    -------
    EvalReport
        Loss (mean categorical cross-entropy computed from the probabilities, clipped to
        [1e-7, 1 - 1e-7] as Keras does; also the NLL), accuracy, calibration (ECE over 15
        bins, Brier score, mean confidence), confusion matrix, per-class report and the
        predicted digit of every image.

    Raises
    ------
    ValueError
        If the numbers of images and labels differ, a label is outside 0..9, the images
        have no accepted layout, or there are no images.
    """
    images, labels = _split_data(data)
    x = _prepare_images(images)
    y = _check_labels(labels, len(x))
    if len(x) == 0:
        raise ValueError("nothing to evaluate: got 0 images")
    probabilities = _predict_proba(model, x, batch_size)
    predicted = probabilities.argmax(axis=1)
    calibration = calibration_metrics(probabilities, y)
    return EvalReport(
        loss=_cross_entropy(probabilities, y),
        accuracy=float(np.mean(predicted == y)),
        n=len(y),
        ece=calibration["ece"],
        brier=calibration["brier"],
        mean_confidence=calibration["mean_confidence"],
        confusion=confusion_matrix(y, predicted, labels=range(NUM_CLASSES)),
        per_class=_per_class_report(y, predicted),
        misclassified=np.flatnonzero(predicted != y),
        predicted=predicted,
    )


# -- calibration --------------------------------------------------------------------------


def reliability_bins(probabilities: Any, labels: Any, *, n_bins: int = ECE_BINS) -> dict:
    """Images binned by their top-1 probability, for ECE and a reliability diagram.

    Parameters
    ----------
    probabilities : array-like of shape (N, 10)
        Each row a probability vector.
    labels : array-like of shape (N,)
        True digits, integers 0..9.
    n_bins : int, default=15
        Equal-width bins of (0, 1]; bin ``b`` holds confidences in ``(b / n, (b + 1) / n]``.

    Returns
    -------
    dict
        ``edges`` ndarray (n_bins + 1,) float64; ``count`` ndarray (n_bins,) int64; and
        ``accuracy`` and ``confidence``, ndarrays (n_bins,) float64: the fraction correct and
        the mean top-1 probability of the images in each bin (NaN for an empty bin).
    """
    p, y = _check_probabilities(probabilities, labels)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {"edges": edges, "count": count, "accuracy": accuracy, "confidence": mean_conf}


def calibration_metrics(probabilities: Any, labels: Any, *, n_bins: int = ECE_BINS) -> dict:
    """How well the probabilities match the frequencies of being right.

    Parameters
    ----------
    probabilities : array-like of shape (N, 10)
        Each row a probability vector (as `predict` returns).
    labels : array-like of shape (N,)
        True digits, integers 0..9.
    n_bins : int, default=15
        Equal-width confidence bins for the ECE.

    Returns
    -------
    dict of str to float
        ``ece``: sum over bins of (bin size / N) * |accuracy - mean confidence|, in [0, 1];
        ``nll``: mean -log p(true digit), clipped to [1e-7, 1 - 1e-7] as Keras' loss is;
        ``brier``: mean squared distance to the one-hot label, in [0, 2];
        ``accuracy`` and ``mean_confidence`` (mean top-1 probability), in [0, 1].
    """
    p, y = _check_probabilities(probabilities, labels)
    bins = reliability_bins(p, y, n_bins=n_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    one_hot = np.eye(NUM_CLASSES)[y]
    return {
        "ece": float(np.sum(bins["count"][filled] * gaps) / len(y)),
        "nll": _cross_entropy(p, y),
        "brier": float(np.mean(np.sum((p - one_hot) ** 2, axis=1))),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "mean_confidence": float(np.mean(p.max(axis=1))),
    }


def calibration_rules(
    probabilities: Any, labels: Any, *, same_fingerprint: bool, n_bins: int = ECE_BINS
) -> dict[str, Rule]:
    """How each of `calibration_metrics`' numbers, re-measured from `probabilities`, is compared
    with a recorded one (`mnist_bench.compare`): exact on the recording machine fingerprint
    and for the accuracy (a count); elsewhere within float32 rounding over the terms each
    number sums.

    The magnitudes: NLL, Brier score and mean confidence sum non-negative terms (their own
    value); the ECE sums ``confidence - correct`` within bins (the mean of ``|confidence -
    correct|``). An ECE also jumps when a confidence crosses a bin edge: each image whose
    confidence lies within ``2 gamma(10) * confidence`` of an edge (the rounding of the
    softmax's own 10-term sum) adds ``2 |confidence - correct| / N``, the most its move can
    change the ECE.

    Parameters
    ----------
    probabilities : array-like of shape (N, 10)
    labels : array-like of shape (N,)
    same_fingerprint : bool
        Whether this machine's fingerprint recorded the numbers (then every rule is exact).
    n_bins : int, default=15

    Returns
    -------
    dict of str to Rule
        ``ece``, ``nll``, ``brier``, ``accuracy``, ``mean_confidence``.
    """
    p, y = _check_probabilities(probabilities, labels)
    n = len(y)
    confidence = p.max(axis=1).astype(np.float64)
    off = np.abs(confidence - (p.argmax(axis=1) == y))  # |confidence - correct| per image
    edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    near = (
        np.min(np.abs(confidence[:, None] - edges[None, :]), axis=1)
        <= 2 * gamma(NUM_CLASSES) * confidence
    )
    metrics = calibration_metrics(p, y, n_bins=n_bins)

    def rule(n_terms: int, magnitude: float, slack: float = 0.0) -> Rule:
        return float32_rule(
            n_terms=n_terms, magnitude=magnitude, slack=slack, same_fingerprint=same_fingerprint
        )

    return {
        "ece": rule(n, float(off.mean()), float(2 * off[near].sum() / n)),
        "nll": rule(n, metrics["nll"]),
        "brier": rule(n * NUM_CLASSES, metrics["brier"]),
        "accuracy": EXACT,
        "mean_confidence": rule(n, metrics["mean_confidence"]),
    }


def predict_logits(model: keras.Model, images: Any, *, batch_size: int = 1024) -> np.ndarray:
    """The pre-softmax outputs of a model ending in a softmax Dense layer.

    Parameters
    ----------
    model : keras.Model
        As `predict` takes; its last layer must be a Dense with a softmax activation.
    images : array-like
        Any layout `predict` accepts.
    batch_size : int, default=1024
        Images per forward pass.

    Returns
    -------
    ndarray of shape (N, 10), float32
        Logits; ``softmax(logits)`` is what `predict` returns.

    Raises
    ------
    ValueError
        If the model does not end in a softmax Dense layer, or for bad images.
    """
    import keras

    inputs, logits = _logits_graph(model)
    return _predict_proba(keras.Model(inputs, logits), _prepare_images(images), batch_size)


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature T minimising the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    Fit it on images that are not the test set. Dividing by T > 0 never changes the
    predicted digit, only the confidence: T > 1 softens, T < 1 sharpens.

    Parameters
    ----------
    logits : array-like of shape (N, 10)
        Pre-softmax outputs (`predict_logits`).
    labels : array-like of shape (N,)
        True digits, integers 0..9.

    Returns
    -------
    float
        T in [0.05, 20], to about 1e-6 relative (a bounded search over log T).
    """
    from scipy.optimize import minimize_scalar

    z, y = _check_probabilities(logits, labels)
    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: _nll_at(float(np.exp(log_t)), z, y),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """A copy of `model` whose probabilities are ``softmax(logits / temperature)``.

    The last softmax Dense becomes three stock Keras layers: ``Dense`` named ``logits``
    (same weights, no activation), ``Rescaling(1 / temperature)`` named ``temperature`` and
    ``Softmax``. Saved with ``model.save``, it loads with plain `keras.models.load_model`, and
    `predict` on it returns calibrated probabilities. The other layers are shared with `model`.

    Parameters
    ----------
    model : keras.Model
        A model of `mnist_bench.models`: a chain of layers ending in a softmax Dense.
    temperature : float
        T > 0, e.g. from `fit_temperature`.

    Returns
    -------
    keras.Model
        Uncompiled, named ``<model.name>_calibrated``; inputs and outputs as `model`'s.
    """
    import keras

    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    inputs, logits = _logits_graph(model)
    scaled = keras.layers.Rescaling(1.0 / float(temperature), name=TEMPERATURE_LAYER)(logits)
    outputs = keras.layers.Softmax(name="probabilities")(scaled)
    return keras.Model(inputs, outputs, name=f"{model.name}_calibrated")


def model_temperature(model: keras.Model) -> float | None:
    """The temperature a `with_temperature` model divides its logits by, else None."""
    try:
        layer = model.get_layer(TEMPERATURE_LAYER)
    except ValueError:
        return None
    return 1.0 / float(layer.scale)
