"""Saving and loading trained models (legacy .h5 and native .keras), and the weights digest
that identifies a model's weights across processes."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import keras
import numpy as np

from .._io import atomic_path

H5_NAME = "network_for_mnist.h5"  # the seed notebook's file name
KERAS_NAME = "model.keras"  # Keras 3's native format: architecture + weights + optimizer


def weights_digest(model: keras.Model) -> str:
    """SHA-256 (hex) over every weight of `model`: trainable ones and batch-norm statistics.

    Layer names are left out on purpose (Keras numbers them per process), so equal weights
    give equal digests across processes. Each array's dtype and shape go in with its bytes.
    A property of the model, not of training: measuring code (robustness, checks) uses it
    without importing `mnist_bench.training`.
    """
    digest = hashlib.sha256()
    for index, weight in enumerate(model.weights):
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{index}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_model(
    model: keras.Model, directory: str | Path, *, training_state: bool = True
) -> dict[str, Path]:
    """Save `model` into `directory` as `network_for_mnist.h5` (the seed's file, legacy
    HDF5) and `model.keras` (Keras 3's native zip format). Creates the folder if needed.

    A model the legacy HDF5 format cannot hold (`h5_round_trips` is False) is saved as
    `model.keras` only. With ``training_state=False`` the files hold the layers and weights
    only, uncompiled: no optimizer and no Adam moments, which are two thirds of a compiled
    model's file (a published model predicts, evaluates, exports and is fine-tuned with a
    fresh optimizer; training resumes from its run's checkpoint, never from these files).

    Returns
    -------
    dict
        ``{"h5": path, "keras": path}`` of the files written (no ``"h5"`` for such a model).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not training_state:  # the same layers and weights, without the compiled state
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    paths = {"h5": directory / H5_NAME, "keras": directory / KERAS_NAME}
    if not h5_round_trips(model):
        del paths["h5"]
        (directory / H5_NAME).unlink(missing_ok=True)  # an older save's: another model now
    for path in paths.values():
        with atomic_path(path) as tmp:  # a crash mid-save never leaves a half-written model
            _save_keeping_compile_config(model, tmp)
    return paths


def h5_round_trips(model: keras.Model) -> bool:
    """Whether `keras.models.load_model` gives `model` back from a legacy ``.h5`` file. Keras
    3.15's HDF5 loader drops a layer's ``axis`` when it is a list of more than one axis
    (keras/src/legacy/saving/saving_utils.py), e.g. the per-image standardisation of
    `build_reference(standardize=True)`, which would then load normalising over channels."""
    return not any(
        isinstance(layer.get_config().get("axis"), list | tuple)
        and len(layer.get_config()["axis"]) > 1
        for layer in model.layers
    )


def h5_published(model_options: dict) -> bool:
    """Whether a model built with these `build_model` options is saved as ``.h5`` too (see
    `h5_round_trips`): all but the standardising ones."""
    return not model_options.get("standardize", False)


def _save_keeping_compile_config(model: keras.Model, path: Path) -> None:
    # Keras' legacy HDF5 writer pops "optimizer" out of the model's own compile config
    # (keras/src/legacy/saving/saving_utils.py, model_metadata): every later .keras save would
    # then drop the optimizer, and loading it would compile a default RMSprop instead.
    compile_config = getattr(model, "_compile_config", None)
    saved = dict(compile_config.config) if compile_config is not None else None
    try:
        model.save(path)
    finally:
        if saved is not None:
            compile_config.config = saved


# The first bytes of each format's container, to tell a damaged file from a missing one
# (Keras reports a file that is not a zip archive as "File not found").
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_container(path: Path) -> None:
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: damaged or not a .keras file (not a zip archive)")
    if path.suffix == ".h5":
        with path.open("rb") as f:
            if f.read(8) != _HDF5_SIGNATURE:
                raise ValueError(f"{path}: damaged or not an .h5 file (no HDF5 signature)")


def load_model(path: str | Path) -> keras.Model:
    """Load a model saved by `save_model`: a `.keras` or `.h5` file, or a folder holding
    `model.keras` (preferred) or `network_for_mnist.h5`.

    Raises ``ValueError`` naming the path when it is missing or not a readable Keras model.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / KERAS_NAME, path / H5_NAME]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ValueError(f"{path}: folder holds neither {KERAS_NAME} nor {H5_NAME}")
        path = found
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    if path.suffix not in (".keras", ".h5"):
        raise ValueError(f"{path}: not a model file (expected a .keras or .h5 file)")
    _check_container(path)
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types (OSError, ValueError, zipfile errors...)
        what = newer_keras_needed(path) or "not a readable Keras model"
        raise ValueError(f"{path}: {what} ({type(exc).__name__}: {exc})") from exc


def newer_keras_needed(path: str | Path) -> str | None:
    """Why `path` may not load here when the Keras that saved it is newer than this one:
    "saved by Keras 3.15.1, not readable by the older Keras 3.14.0 installed here: pip install
    --upgrade 'keras>=3.15.1'"; None when it is not (or the file does not say).

    An older Keras meets arguments it does not know (Keras 3.14 and the published models'
    initializers, for one) and says only that deserialising failed: callers add this to the
    error of a model that did not load.
    """
    saved = _saved_by(Path(path))
    if saved is None or _release(saved) <= _release(keras.__version__):
        return None
    return (
        f"saved by Keras {saved}, not readable by the older Keras {keras.__version__} installed "
        f"here: pip install --upgrade 'keras>={saved}'"
    )


def _saved_by(path: Path) -> str | None:
    """The Keras version that wrote `path`, as the file records it (a .keras archive's
    metadata.json, an .h5 file's ``keras_version`` attribute); None where it records none."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return str(json.loads(archive.read("metadata.json"))["keras_version"])
        import h5py  # Keras' own HDF5 reader

        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
        if isinstance(version, bytes):
            version = version.decode()
        return None if version is None else str(version)
    except Exception:  # a damaged file: the caller reports Keras' own error
        return None


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: "3.15.1" -> (3, 15, 1)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])
