"""The CNN architectures, their FLOP counts, and saving/loading trained models.

`build_model(name)` returns an UNCOMPILED `keras.Model` taking float32 images of shape
(N, 28, 28, 1) in [0, 1] and returning softmax probabilities of shape (N, 10). Training
(`mnist_bench.train`) compiles it with the optimizer and schedule of its `TrainConfig`, so
the architecture and the recipe stay separate. This package knows nothing about data files.

    cnn.py      the seed notebook's CNN and the reference network (Sequential)
    deep.py     ResNet-20 and EfficientNet-B0 (functional)
    flops.py    FLOPs per image, counted from the conv and dense layers
    saving.py   .keras / .h5 save and load, `weights_digest`
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import keras

from ._shapes import INPUT_SHAPE, NUM_CLASSES
from .cnn import build_reference, build_seed
from .deep import build_efficientnet_b0, build_resnet20
from .flops import model_flops
from .saving import (
    H5_NAME,
    KERAS_NAME,
    h5_published,
    h5_round_trips,
    load_model,
    newer_keras_needed,
    save_model,
    weights_digest,
)

__all__ = [
    "H5_NAME", "INPUT_SHAPE", "KERAS_NAME", "MODEL_NAMES", "NUM_CLASSES", "build_efficientnet_b0",
    "build_model", "build_reference", "build_resnet20", "build_seed", "h5_published",
    "h5_round_trips", "load_model", "model_flops", "model_option_defaults", "model_options",
    "newer_keras_needed", "save_model", "weights_digest",
]  # fmt: skip

_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "seed": build_seed,
    "reference": build_reference,
    "resnet20": build_resnet20,
    "efficientnet_b0": build_efficientnet_b0,
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
