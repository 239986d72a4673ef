"""The CNN architectures, their FLOP counts, and saving/loading trained models.

`build_model(name)` returns an UNCOMPILED `keras.Model` taking float32 images of shape
(N, 28, 28, 1) in [0, 1] and returning softmax probabilities of shape (N, 10). Training
(`mnist_bench.train`) compiles it with the optimizer and schedule of its `TrainConfig`, so
the architecture and the recipe stay separate. This module knows nothing about data files.
"""

from __future__ import annotations

import inspect
import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
from keras import layers

from ._io import atomic_path

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
H5_NAME = "network_for_mnist.h5"  # the seed notebook's file name
KERAS_NAME = "model.keras"  # Keras 3's native format: architecture + weights + optimizer


def build_seed() -> keras.Model:
    """The seed notebook's CNN, as its README lists it: Conv2D, MaxPooling, Flatten, Dense, Dropout.

    The seed names the layer types but not their sizes; these are the classic Keras MNIST
    sizes (32 and 64 3x3 filters, 128 hidden units, dropout 0.5). Nothing is added.

    225,034 parameters; 5.3 MFLOP forward per image (multiply-adds counted as 2).
    """
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(32, 3, activation="relu"),  # (26, 26, 32)
            layers.MaxPooling2D(),  # (13, 13, 32)
            layers.Conv2D(64, 3, activation="relu"),  # (11, 11, 64)
            layers.MaxPooling2D(),  # (5, 5, 64)
            layers.Flatten(),  # (1600,)
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"),  # also when mixed
        ],
        name="seed",
    )


def _conv_bn_relu(filters: int, kernel: int) -> list[keras.layers.Layer]:
    # A conv inside a stage, before its last one: no pooling, so the usual order.
    return [
        layers.Conv2D(filters, kernel, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
    ]


def _conv_pool_bn_relu(filters: int, kernel: int) -> list[keras.layers.Layer]:
    # Pool BEFORE batch norm and ReLU: max-pooling commutes with ReLU, and batch norm then
    # normalises the pooled map, so the element-wise layers (and their gradients) touch a
    # quarter of the values. Measured 1.4-1.6x faster training on the 2-core CPU than
    # conv -> BN -> ReLU -> pool, at the same FLOPs. No conv bias: the BN shift replaces it.
    return [
        layers.Conv2D(filters, kernel, padding="same", use_bias=False),
        layers.MaxPooling2D(),
        layers.BatchNormalization(),
        layers.ReLU(),
    ]


def _stage(filters: int, kernel: int, convs: int) -> list[keras.layers.Layer]:
    """`convs` convolutions at one resolution (the first `kernel` x `kernel`, the others
    3x3), the last one followed by 2x2 max pooling, which halves H and W."""
    kernels = [kernel] + [3] * (convs - 1)
    inner = [layer for k in kernels[:-1] for layer in _conv_bn_relu(filters, k)]
    return [*inner, *_conv_pool_bn_relu(filters, kernels[-1])]


def _per_image_standardization() -> keras.layers.Layer:
    # Normalising over H, W and C of each image, with no learned shift or scale: exactly
    # (x - mean(x)) / sqrt(var(x) + epsilon) per image. The epsilon keeps a blank image finite.
    return layers.LayerNormalization(
        axis=(1, 2, 3), center=False, scale=False, epsilon=1e-3, name="per_image_standardization"
    )


def _check_positive_ints(name: str, values: Sequence[int], length: int) -> tuple[int, ...]:
    if (
        isinstance(values, str | bytes)
        or len(values) != length
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)
    ):
        raise ValueError(f"{name} must be {length} positive integers, got {values!r}")
    return tuple(values)


def build_reference(
    *,
    widths: Sequence[int] = (32, 64, 128),
    convs_per_stage: Sequence[int] = (1, 1, 1),
    dense_units: int = 256,
    dropout: float = 0.3,
    standardize: bool = False,
) -> keras.Model:
    """The reference CNN: three conv stages with batch norm, then one dense layer.

    Stage i runs ``convs_per_stage[i]`` convolutions of ``widths[i]`` filters (the first
    conv of the first stage 5x5, every other 3x3, all "same" padded), then max pooling:
    28 -> 14 -> 7 -> 3 pixels. Each stage ends conv -> max-pool -> batch norm -> ReLU (cheaper
    than pooling last, see `_conv_pool_bn_relu`). Dropout before and after the dense layer.
    Defaults: 392,362 parameters; 16.3 MFLOP forward per image (multiply-adds counted as 2),
    about 3x the seed's compute. The published recipe (`TrainConfig.recipe("reference")`)
    builds it with ``convs_per_stage=(1, 2, 2)``, chosen on the holdout: 577,450 parameters,
    45.2 MFLOP. `model_flops` counts any option set.

    ``standardize=True`` first standardises each image to zero mean and unit variance over
    its 784 pixels (a parameter-free `LayerNormalization`, epsilon 1e-3), so a uniform
    brightness offset of the input leaves the network's view unchanged, and a contrast change
    nearly so (the epsilon against a digit's pixel variance of about 0.1).
    """
    widths = _check_positive_ints("widths", widths, 3)
    convs = _check_positive_ints("convs_per_stage", convs_per_stage, 3)
    _check_positive_ints("dense_units", [dense_units], 1)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if not isinstance(standardize, bool):
        raise ValueError(f"standardize must be true or false, got {standardize!r}")
    kernels = (5, 3, 3)
    # A built-in layer (no custom code), so the saved model loads with plain Keras.
    per_image = [_per_image_standardization()] if standardize else []
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            *per_image,  # (28, 28, 1), zero mean and unit variance per image
            *_stage(widths[0], kernels[0], convs[0]),  # (14, 14, widths[0])
            *_stage(widths[1], kernels[1], convs[1]),  # (7, 7, widths[1])
            *_stage(widths[2], kernels[2], convs[2]),  # (3, 3, widths[2])
            layers.Flatten(),  # (9 * widths[2],)
            layers.Dropout(dropout),
            layers.Dense(dense_units, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Dropout(dropout),
            layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"),  # also when mixed
        ],
        name="reference",
    )


_BUILDERS: dict[str, Callable[[], keras.Model]] = {
    "seed": build_seed,
    "reference": build_reference,
}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def model_options(name: str) -> tuple[str, ...]:
    """The keyword options `build_model(name, **options)` accepts (empty for ``"seed"``)."""
    return tuple(model_option_defaults(name))


def model_option_defaults(name: str) -> dict[str, Any]:
    """Each keyword option of `build_model(name)` with its default, in JSON form (sequences
    as lists): what an option left out of a config's ``model_options`` means."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(MODEL_NAMES)}")
    parameters = inspect.signature(_BUILDERS[name]).parameters.values()
    return {p.name: list(p.default) if isinstance(p.default, tuple) else p.default
            for p in parameters}  # fmt: skip


def build_model(name: str, **options: Any) -> keras.Model:
    """Build the architecture `name` (one of `MODEL_NAMES`), uncompiled, with fresh weights.

    `options` are passed to the architecture's builder (see `model_options`); an unknown one
    is a ``ValueError`` naming the allowed ones.

    Weights are drawn from Keras' global seed: call `keras.utils.set_random_seed` first
    for reproducible initial weights (`mnist_bench.train` does).

    Returns
    -------
    keras.Model
        Input float32 (N, 28, 28, 1) in [0, 1]; output float32 (N, 10) softmax probabilities.
    """
    unknown = sorted(set(options) - set(model_options(name)))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for model {name!r}; "
            f"allowed: {list(model_options(name)) or 'none'}"
        )
    return _BUILDERS[name](**options)


# -- FLOP counting ------------------------------------------------------------------------


def _layer_forward_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs per image of one layer; a multiply-add counts as 2."""
    if isinstance(layer, layers.Conv2D):
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        c_in = layer.input.shape[-1] // layer.groups  # each filter sees its group's channels
        return 2 * h * w * c_out * kh * kw * c_in
    if isinstance(layer, layers.Dense):
        # Dense acts on the last axis, once per position of any axes before it.
        positions = math.prod(layer.input.shape[1:-1])
        return 2 * positions * layer.input.shape[-1] * layer.units
    return 0  # pooling, batch norm, activations: memory-bound, negligible in FLOPs


def model_flops(model: keras.Model) -> dict[str, int]:
    """FLOPs per image of `model`, counted from its Conv2D and Dense layers.

    Returns
    -------
    dict
        ``forward``: one inference pass; ``training``: forward plus backward, taken as
        3x forward (the backward pass computes gradients for both inputs and weights,
        each costing about one forward), the convention of the DAWNBench/MLPerf reports.
    """
    forward = sum(_layer_forward_flops(layer) for layer in model.layers)
    return {"forward": int(forward), "training": int(3 * forward)}


# -- saving and loading -------------------------------------------------------------------


def save_model(model: keras.Model, directory: str | Path) -> dict[str, Path]:
    """Save `model` into `directory` as `network_for_mnist.h5` (the seed's file, legacy
    HDF5) and `model.keras` (Keras 3's native zip format). Creates the folder if needed.

    A model the legacy HDF5 format cannot hold (`h5_round_trips` is False) is saved as
    `model.keras` only.

    Returns
    -------
    dict
        ``{"h5": path, "keras": path}`` of the files written (no ``"h5"`` for such a model).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
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
        raise ValueError(
            f"{path}: not a readable Keras model ({type(exc).__name__}: {exc})"
        ) from exc
