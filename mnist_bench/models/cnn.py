"""The small CNNs: the seed notebook's model and the reference recipe's network.

Both are one `keras.Sequential` list that reads like the architecture (keras-io's
mnist_convnet style); `mnist_bench.models.build_model` is how the package builds them.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from ._shapes import INPUT_SHAPE, NUM_CLASSES


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
