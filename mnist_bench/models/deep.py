"""The deeper networks of the original project's future work: ResNet-20 and EfficientNet-B0.

Both take the package's (N, 28, 28, 1) float32 images in [0, 1] and end, like the small
CNNs, in a float32 softmax ``Dense(10)`` (the layer `evaluation` divides by a temperature).
Only built-in Keras layers, so a saved model loads with plain `keras.models.load_model`.
"""

from __future__ import annotations

import keras
from keras import layers

from ._shapes import INPUT_SHAPE, NUM_CLASSES

# -- ResNet-20 ----------------------------------------------------------------------------

RESNET_WIDTHS = (16, 32, 64)  # filters of the three stages (He et al. 2016, section 4.2)
RESNET_BLOCKS = 3  # n: residual blocks per stage; 6n + 2 = 20 weighted layers


def _conv_bn(x: keras.KerasTensor, filters: int, *, strides: int = 1, kernel: int = 3):
    # He et al.: 3x3 "same" convolutions, batch norm right after each, no conv bias (BN's
    # shift replaces it); weights He-normal as in the paper (their reference [13]).
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal")(x)  # fmt: skip
    return layers.BatchNormalization()(x)


def _residual_block(x: keras.KerasTensor, filters: int, strides: int) -> keras.KerasTensor:
    """conv-BN-ReLU, conv-BN, plus the shortcut, then ReLU (the paper's Fig. 2)."""
    y = layers.ReLU()(_conv_bn(x, filters, strides=strides))
    y = _conv_bn(y, filters)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        # Option B (a 1x1 strided projection with BN) where the shape changes, identity
        # elsewhere. The paper's CIFAR net used option A (subsample + zero-pad the channels):
        # Keras has no built-in layer padding channels, so A needs a Lambda (a saved model
        # then loads only with safe_mode=False) or 5-D reshapes and pads (awkward for LiteRT).
        # B costs 2 of these projections: 2,560 weights (+1%), 0.4 MFLOP; the paper's
        # ImageNet table 3 finds B slightly ahead of A.
        shortcut = _conv_bn(x, filters, strides=strides, kernel=1)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def build_resnet20() -> keras.Model:
    """ResNet-20 of He et al. (2016, section 4.2), adapted to 28x28x1 MNIST.

    A 3x3 conv of 16 filters, then three stages of n = 3 residual blocks of two 3x3 convs
    each (16, 32, 64 filters; the first conv of stages 2 and 3 strides 2: feature maps
    28 -> 14 -> 7, as CIFAR's 32 -> 16 -> 8), global average pooling and a softmax
    Dense(10): 6n + 2 = 20 weighted layers. Batch norm after every conv, ReLU after every
    block; shortcuts identity, and a 1x1 projection where the shape changes (option B, see
    `_residual_block`).

    273,754 parameters; 62.0 MFLOP forward per image (multiply-adds counted as 2).
    """
    inputs = keras.Input(INPUT_SHAPE)
    x = layers.ReLU()(_conv_bn(inputs, RESNET_WIDTHS[0]))  # (28, 28, 16)
    for stage, filters in enumerate(RESNET_WIDTHS):  # (28, 28, 16) (14, 14, 32) (7, 7, 64)
        for block in range(RESNET_BLOCKS):
            x = _residual_block(x, filters, strides=2 if stage > 0 and block == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)  # (64,)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet20")


# -- EfficientNet-B0 ----------------------------------------------------------------------

EFFICIENTNET_SIDE = 32  # keras.applications' EfficientNet refuses inputs under 32x32
PAD = (EFFICIENTNET_SIDE - INPUT_SHAPE[0]) // 2  # 2 black pixels on each side


def build_efficientnet_b0() -> keras.Model:
    """EfficientNet-B0 (Tan and Le 2019) from `keras.applications`, untrained (weights=None:
    nothing is downloaded), for 28x28x1 MNIST.

    Every command feeds (N, 28, 28, 1) in [0, 1], so the adaptation is inside the model:
    - 28 -> 32 by zero padding (`ZeroPadding2D(2)`), not resizing: the smallest input
      keras.applications accepts is 32x32; MNIST's background is 0, so padding adds
      background and leaves every pixel as it was, where a resize would interpolate every
      stroke. Feature maps 32 -> 16 -> 8 -> 4 -> 2 -> 1.
    - one channel: the stem conv takes (32, 32, 1) directly; three copies of the grey image
      would only triple the stem's multiply-adds (no ImageNet weights to match).
    - x 255 first: the application's graph starts with Rescaling(1/255) for 0..255 images;
      fed [0, 1] images, its stem's outputs would be ~1e-4, far under batch norm's epsilon
      1e-3, and the stem BN would flatten them. Its Normalization layer is left unadapted
      (mean 0, variance 1: the identity).
    - its own head, as the application's top: global average pooling, dropout 0.2, a float32
      softmax Dense(10) (float32 also under a mixed precision policy).

    4,061,801 parameters; 16.7 MFLOP forward per image (multiply-adds counted as 2).
    """
    inputs = keras.Input(INPUT_SHAPE)
    x = layers.ZeroPadding2D(PAD)(inputs)  # (32, 32, 1)
    x = layers.Rescaling(255.0)(x)  # undone by the application's Rescaling(1 / 255)
    base = keras.applications.EfficientNetB0(
        include_top=False,
        weights=None,
        input_tensor=x,
        input_shape=(EFFICIENTNET_SIDE, EFFICIENTNET_SIDE, 1),
        pooling="avg",
    )  # (1280,)
    x = layers.Dropout(0.2, name="top_dropout")(base.output)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="efficientnet_b0")
