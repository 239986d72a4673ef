"""Export a trained model to TensorFlow SavedModel and LiteRT (float32 and int8), and run it.

The route is Keras 3's `model.export(format="tf_saved_model")` followed by
`tf.lite.TFLiteConverter.from_saved_model`: `from_keras_model` and tf2onnx break on Keras 3
models. The int8 file is post-training quantised (weights and activations) with a seeded
sample of TRAINING images as its representative set, never test images.

`load_predictor(path)` opens any saved form (``.keras``/``.h5``, a SavedModel folder, a
``.tflite`` file) behind one contract, `predict_proba`: float32 (N, 28, 28, 1) in [0, 1] ->
float32 (N, 10) probabilities; `mnist_bench.predict` and `mnist_bench.evaluate` accept the
exported predictors in place of a Keras model.

    export_model("results/model.keras", "litert", "results/export/model.tflite")
    predictor = load_predictor("results/export/model.tflite")
    labels, probabilities = predictor.predict(images)  # as mnist_bench.predict
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_path

# No TensorFlow at import: serving a .tflite file needs only LiteRT (start-up in a second,
# not ten). TensorFlow and the Keras-side helpers are imported where used.

FORMATS = ("saved_model", "litert", "litert-int8")
FORMAT_SUFFIX = {"saved_model": "", "litert": ".tflite", "litert-int8": ".tflite"}
REPRESENTATIVE_IMAGES = 300  # training images calibrating the int8 ranges
REPRESENTATIVE_SEED = 0
# Threads for the LiteRT interpreter, from `mnist-bench export-bench` on the 2-core Xeon
# (results/inference.json): 1 thread is fastest for one image (p50 0.50 vs 0.63 ms float32,
# 0.148 vs 0.153 ms int8: no thread hand-off). For batches 1 and 2 threads measured within
# the noise of the shared machine (1,000 images: 1,052 vs 1,025 img/s float32); 2 is kept so
# a batch uses both cores when they are free. Chunks of 32, 64 and 256 images: also within
# the noise, so the largest (fewest calls) is kept.
SINGLE_THREADS = 1
BATCH_THREADS = 2
# Batches run through interpreters sized to a power of two up to this, padded with zeros:
# a resize re-plans XNNPACK (milliseconds), so sizes are few and each interpreter is kept.
MAX_CHUNK = 256
NUM_CLASSES = 10


# -- private helpers ----------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")


def _representative_sample(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` images float32 (n, 28, 28, 1) in [0, 1], drawn without replacement, seeded."""
    from .evaluation import _prepare_images

    x = _prepare_images(images)
    if len(x) == 0:
        raise ValueError("representative_images is empty: int8 export needs training images")
    rng = np.random.default_rng(seed)
    return x[rng.choice(len(x), size=min(n, len(x)), replace=False)]


def _export_saved_model(model: Any, out_dir: Path) -> None:
    """Keras 3's SavedModel export; the serving signature takes float32 (None, 28, 28, 1)."""
    model.export(str(out_dir), format="tf_saved_model", verbose=False)


def _convert(saved_model_dir: Path, representative: np.ndarray | None) -> bytes:
    """A LiteRT flatbuffer from a SavedModel; int8 when a representative set is given."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if representative is not None:

        def calibration() -> Iterator[list[np.ndarray]]:
            for image in representative:
                yield [image[np.newaxis]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        # Input and output stay float32 (quantise/dequantise ops at the ends) so the
        # predictor contract is the same for every format.
    return converter.convert()


def _replace_dir(tmp_dir: Path, target: Path) -> None:
    """Move the finished folder `tmp_dir` to `target`, replacing an older export there."""
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp_dir, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, target)


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, or of a folder's files in sorted path order."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def size_bytes(path: str | Path) -> int:
    """Size of a file, or the total of a folder's files."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# -- export -------------------------------------------------------------------------------


def export_model(
    model: Any,
    fmt: str,
    out: str | Path,
    *,
    representative_images: np.ndarray | None = None,
    n_representative: int = REPRESENTATIVE_IMAGES,
    seed: int = REPRESENTATIVE_SEED,
) -> Path:
    """Export a Keras model to a SavedModel folder or a LiteRT (``.tflite``) file.

    Parameters
    ----------
    model : keras.Model or path
        The model, or a path `mnist_bench.load_model` accepts.
    fmt : {"saved_model", "litert", "litert-int8"}
        ``saved_model``: a folder; ``litert``: float32 flatbuffer; ``litert-int8``: weights
        and activations quantised to int8 (input and output stay float32).
    out : path
        The folder (saved_model) or file (litert) to write, atomically: an existing one is
        replaced only once the new one is complete.
    representative_images : array-like of shape (n, 28, 28), uint8, optional
        Required for ``litert-int8``: TRAINING images (raw pixels 0..255) to calibrate the
        int8 ranges; `n_representative` of them are drawn with `seed`.
    n_representative : int, default=300
    seed : int, default=0

    Returns
    -------
    Path
        `out`.

    Raises
    ------
    ValueError
        For an unknown `fmt`, or ``litert-int8`` without representative images.
    """
    _check_format(fmt)
    if fmt == "litert-int8" and representative_images is None:
        raise ValueError("litert-int8 export needs representative_images (training images)")
    if not hasattr(model, "export"):
        from .models import load_model

        model = load_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as tmp:
        saved_model_dir = Path(tmp) / "saved_model"
        _export_saved_model(model, saved_model_dir)
        if fmt == "saved_model":
            _replace_dir(saved_model_dir, out)
            return out
        representative = None
        if fmt == "litert-int8":
            representative = _representative_sample(representative_images, n_representative, seed)
        flatbuffer = _convert(saved_model_dir, representative)
    with atomic_path(out) as tmp_file:
        tmp_file.write_bytes(flatbuffer)
    return out


# -- predictors ---------------------------------------------------------------------------


class _Predictor:
    """Shared `predict` on top of a subclass's `predict_proba`."""

    runtime = "?"

    def predict_proba(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """As `mnist_bench.predict`: labels uint8 (N,) and probabilities float32 (N, 10)."""
        from .evaluation import _prepare_images

        probabilities = self.predict_proba(_prepare_images(images))
        return probabilities.argmax(axis=1).astype(np.uint8), probabilities


class LiteRTPredictor(_Predictor):
    """A LiteRT model (``.tflite``) on the XNNPACK CPU delegate.

    One image runs through a batch-1 interpreter with `single_threads` threads; a batch of
    N runs in chunks of at most `max_chunk` images, each through an interpreter sized to the
    next power of two (zero-padded), with `batch_threads` threads. Interpreters are created
    on first use and kept. Calls are serialised by a lock: an interpreter is not thread-safe.

    Parameters
    ----------
    path : path
        The ``.tflite`` file, input float32 (N, 28, 28, 1), output float32 (N, 10).
    single_threads, batch_threads : int, default 1 and 2
    max_chunk : int, default 256
    """

    runtime = "litert"

    def __init__(
        self,
        path: str | Path,
        *,
        single_threads: int = SINGLE_THREADS,
        batch_threads: int = BATCH_THREADS,
        max_chunk: int = MAX_CHUNK,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such LiteRT file")
        if max_chunk < 1 or max_chunk & (max_chunk - 1):
            raise ValueError(f"max_chunk must be a power of two >= 1, got {max_chunk}")
        self._model = self.path.read_bytes()
        self.single_threads, self.batch_threads, self.max_chunk = (
            single_threads,
            batch_threads,
            max_chunk,
        )
        self._interpreters: dict[int, Any] = {}
        self._lock = threading.Lock()
        try:
            self._interpreter(1)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{self.path}: not a readable LiteRT model ({exc})") from exc

    def _interpreter(self, n: int) -> Any:
        """(interpreter, input index, output index) for a batch of exactly `n` images."""
        entry = self._interpreters.get(n)
        if entry is None:
            from ai_edge_litert.interpreter import Interpreter

            threads = self.single_threads if n == 1 else self.batch_threads
            interp = Interpreter(model_content=self._model, num_threads=threads)
            inp = interp.get_input_details()[0]
            if tuple(inp["shape"][1:]) != (28, 28, 1):
                raise ValueError(f"expected input (N, 28, 28, 1), got {tuple(inp['shape'])}")
            interp.resize_tensor_input(inp["index"], [n, 28, 28, 1], strict=False)
            interp.allocate_tensors()
            entry = (interp, inp["index"], interp.get_output_details()[0]["index"])
            self._interpreters[n] = entry
        return entry

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (n, 10) for n <= max_chunk images, padded to a power of two."""
        n = len(x)
        size = 1 << (n - 1).bit_length()
        if size != n:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), np.float32)])
        interp, inp, out = self._interpreter(size)
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)[:n]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities float32 (N, 10) of prepared images `x`, float32 (N, 28, 28, 1)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        with self._lock:
            if len(x) <= self.max_chunk:
                return self._run(x).copy()
            step = self.max_chunk
            return np.concatenate([self._run(x[i : i + step]) for i in range(0, len(x), step)])


class SavedModelPredictor(_Predictor):
    """A SavedModel folder written by `export_model`, through its ``serve`` signature."""

    runtime = "saved_model"

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        self.path = Path(path)
        try:
            loaded = tf.saved_model.load(str(self.path))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: not a readable SavedModel ({exc})") from exc
        self._loaded = loaded  # keeps the variables alive
        if not hasattr(loaded, "serve"):
            raise ValueError(f"{self.path}: no `serve` endpoint (not written by export_model)")
        # The endpoint's concrete function, not signatures["serving_default"]: the signature's
        # keyword-argument dispatch cost ~6 ms per call on the 2-core CPU, the function ~2.
        self._fn = loaded.serve.get_concrete_function(tf.TensorSpec((None, 28, 28, 1), tf.float32))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities float32 (N, 10) of prepared images `x`, float32 (N, 28, 28, 1)."""
        import tensorflow as tf

        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        batches = [x[i : i + 1024] for i in range(0, len(x), 1024)]
        return np.concatenate([self._fn(tf.constant(b)).numpy() for b in batches])


def is_exported(path: str | Path) -> bool:
    """Whether `path` is a ``.tflite`` file or a SavedModel folder."""
    path = Path(path)
    return path.suffix == ".tflite" or (path / "saved_model.pb").is_file()


def load_predictor(path: str | Path) -> Any:
    """Open a saved model of any form for `mnist_bench.predict` / `evaluate`.

    Returns a `LiteRTPredictor` for a ``.tflite`` file, a `SavedModelPredictor` for a
    SavedModel folder, and the Keras model (`mnist_bench.load_model`) otherwise.
    Raises ``ValueError`` naming the path when it cannot be read.
    """
    path = Path(path)
    if path.suffix == ".tflite":
        return LiteRTPredictor(path)
    if (path / "saved_model.pb").is_file():
        return SavedModelPredictor(path)
    from .models import load_model

    return load_model(path)


# -- recorded accuracies ------------------------------------------------------------------

EXPORT_TABLE_MARKERS = ("<!-- export-table -->", "<!-- /export-table -->")
DEFAULT_NAMES = {
    "saved_model": "saved_model",
    "litert": "model.tflite",
    "litert-int8": "model-int8.tflite",
}
INT8_MAX_LOSS = 0.0005  # int8 may lose at most 0.05 percentage points of test accuracy


def export_record(
    fmt: str, path: str | Path, accuracy: float, n_errors: int, source: str | Path
) -> dict[str, Any]:
    """What results/export.json holds for one exported file (JSON-serialisable)."""
    _check_format(fmt)
    return {
        "format": fmt,
        "path": str(path),
        "sha256": file_sha256(path),
        "size_bytes": size_bytes(path),
        "test_accuracy": float(accuracy),
        "test_errors": int(n_errors),
        "source": str(source),
        "source_sha256": file_sha256(source),
    }


def merge_export_results(
    results_file: str | Path, records: list[dict[str, Any]], keras_accuracy: float
) -> dict[str, Any]:
    """Write `records` into `results_file` (results/export.json), keeping other formats'
    records; each gets its accuracy change against the Keras model and the int8 check.
    Returns the whole file's content."""
    from ._io import read_json, write_json
    from .provenance import provenance

    results_file = Path(results_file)
    existing = read_json(results_file) if results_file.is_file() else {"formats": {}}
    formats = dict(existing.get("formats", {}))
    for record in records:
        record = dict(record, delta_vs_keras=record["test_accuracy"] - keras_accuracy)
        formats[record["format"]] = record
    content = {
        "keras_test_accuracy": keras_accuracy,
        "formats": formats,
        "int8_max_loss": INT8_MAX_LOSS,
        "provenance": provenance(),
    }
    float_acc = formats.get("litert", {}).get("test_accuracy", keras_accuracy)
    if "litert-int8" in formats:
        loss = float_acc - formats["litert-int8"]["test_accuracy"]
        content["int8_loss_vs_float32"] = loss
        content["int8_within_limit"] = bool(loss <= INT8_MAX_LOSS + 1e-12)
    write_json(results_file, content)
    return content


def read_export_results(path: str | Path) -> dict[str, Any]:
    """results/export.json as `merge_export_results` wrote it; ``ValueError`` naming the file
    when it is missing, malformed or lacks a key."""
    from ._io import read_json

    content = read_json(path)
    missing = {"keras_test_accuracy", "formats", "provenance"} - set(content)
    if missing:
        raise ValueError(f"{path}: not an export record, missing {sorted(missing)}")
    return content


def export_table(content: dict[str, Any]) -> str:
    """The Markdown table of results/export.json: format, file, size, test accuracy."""
    rows = [
        "| format | file | size | test accuracy | vs Keras |",
        "| --- | --- | ---: | ---: | ---: |",
        f"| Keras (`.keras`) | the published model | | {content['keras_test_accuracy']:.2%} | |",
    ]
    for fmt in FORMATS:
        r = content["formats"].get(fmt)
        if r is None:
            continue
        rows.append(
            f"| {fmt} | `{r['path']}` | {r['size_bytes'] / 1e6:.2f} MB | "
            f"{r['test_accuracy']:.2%} ({r['test_errors']} errors) | "
            f"{r['delta_vs_keras'] * 100:+.2f} pt |"
        )
    from .provenance import cpu_text

    cpu = cpu_text(content["provenance"]["cpu"])
    rows.append("")
    rows.append(
        f"Int8: representative set of {REPRESENTATIVE_IMAGES} training images (seed "
        f"{REPRESENTATIVE_SEED}); limit {INT8_MAX_LOSS * 100:.2f} pt of float32 accuracy. "
        f"Written by `mnist-bench export` on {cpu}."
    )
    return "\n".join(rows)
