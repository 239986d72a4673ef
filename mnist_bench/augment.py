"""The seeded augmentation and data order that both training input paths share: the host's
tf.data pipeline (`training.epoch_dataset`) and the device's train step (`device_input`).

Every draw is TensorFlow's stateless RNG on a seed derived from (config.seed, epoch, step),
so a batch's augmentation is a pure function of where it sits in the run: what makes a
resumed run identical to an uninterrupted one, and the two input paths bit-identical on a CPU.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from .config import TrainConfig


def _stream_key(seed: int, epoch: int) -> int:
    """A 63-bit key for the random stream of (seed, epoch), independent across epochs."""
    # Shift a Python int: numpy 1.x promotes uint64 >> int to float64, which cannot shift.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]) >> 1


def _affine_transforms(batch: tf.Tensor, seed: tf.Tensor, config: TrainConfig) -> tf.Tensor:
    """Per image, the random affine map (B, 8) in `ImageProjectiveTransformV3`'s layout."""
    u = tf.random.stateless_uniform((batch, 4), seed, minval=-1.0, maxval=1.0)
    theta = u[:, 0] * (config.rotation_deg * math.pi / 180.0)
    scale = 1.0 + u[:, 1] * config.zoom
    tx, ty = u[:, 2] * config.shift_px, u[:, 3] * config.shift_px
    # The transform maps each OUTPUT pixel p back to its INPUT location:
    # in = c + R(-theta) (p - c - t) / scale, with c the image centre.
    c = 13.5
    a0, a1 = tf.cos(theta) / scale, tf.sin(theta) / scale
    b0, b1 = -a1, a0
    a2 = c - a0 * (c + tx) - a1 * (c + ty)
    b2 = c - b0 * (c + tx) - b1 * (c + ty)
    zero = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)


def random_affine(images: tf.Tensor, seed: tf.Tensor, config: TrainConfig) -> tf.Tensor:
    """Distort each image by its own random rotation, zoom and shift, in ONE resampling.

    images: float32 (B, 28, 28, 1); seed: int64 (2,) for TensorFlow's stateless RNG, so the
    draw depends on (seed, epoch, step) only. Bilinear, zero (black) fill outside the image.
    """
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=_affine_transforms(tf.shape(images)[0], seed, config),
        output_shape=tf.constant([28, 28]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _gaussian_kernel(sigma: float) -> tf.Tensor:
    """A normalized 1-D Gaussian, float32 (2r + 1,), r = ceil(3 sigma) capped at 27 pixels."""
    radius = min(math.ceil(3.0 * sigma), 27)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    return tf.constant(kernel / kernel.sum(), tf.float32)


def elastic_displacement(
    batch: int, seed: tf.Tensor, alpha: float, sigma: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Simard et al.'s (2003) elastic displacement fields (dx, dy), each float32 (B, 28, 28).

    Uniform(-1, 1) noise per pixel, smoothed by a Gaussian of `sigma` pixels (separable,
    zero padding) and scaled by `alpha`; seed: int64 (2,), stateless like `random_affine`.
    """
    noise = tf.random.stateless_uniform((batch, 28, 28, 2), seed, minval=-1.0, maxval=1.0)
    kernel = _gaussian_kernel(sigma)
    along_y = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, 2, 1))  # (K, 1, 2, 1)
    along_x = tf.tile(tf.reshape(kernel, (1, -1, 1, 1)), (1, 1, 2, 1))  # (1, K, 2, 1)
    smooth = tf.nn.depthwise_conv2d(noise, along_y, (1, 1, 1, 1), "SAME")
    smooth = tf.nn.depthwise_conv2d(smooth, along_x, (1, 1, 1, 1), "SAME") * alpha
    return smooth[..., 0], smooth[..., 1]


def bilinear_sample(images: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Read `images` (B, 28, 28, 1) float32 at pixel coordinates x (column), y (row), each
    float32 (B, 28, 28): bilinear, each neighbour outside the image reading 0. Integer
    coordinates are pixel centres, as in `tf.raw_ops.ImageProjectiveTransformV3`."""
    b = tf.shape(images)[0]
    flat = tf.reshape(images, (-1,))
    offset = tf.reshape(tf.range(b) * 28 * 28, (-1, 1, 1))
    x0, y0 = tf.floor(x), tf.floor(y)
    out = tf.zeros_like(x)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        weight = (1.0 - tf.abs(x - xi)) * (1.0 - tf.abs(y - yi))
        inside = (xi >= 0) & (xi <= 27) & (yi >= 0) & (yi <= 27)
        index = offset + tf.cast(
            tf.clip_by_value(yi, 0, 27) * 28 + tf.clip_by_value(xi, 0, 27), tf.int32
        )
        out += tf.where(inside, weight * tf.gather(flat, index), 0.0)
    return out[..., tf.newaxis]


def random_distortion(images: tf.Tensor, seed: tf.Tensor, config: TrainConfig) -> tf.Tensor:
    """`random_affine`, plus Simard's elastic displacement when `config.elastic_alpha` > 0,
    in ONE bilinear resampling (the affine draw is the same as without elastic)."""
    if config.elastic_alpha == 0:
        return random_affine(images, seed, config)
    transforms = _affine_transforms(tf.shape(images)[0], seed, config)
    rows, cols = tf.meshgrid(tf.range(28.0), tf.range(28.0), indexing="ij")  # output pixels
    # (B, 1, 1) each, to broadcast over the output pixels
    a0, a1, a2, b0, b1, b2 = tf.unstack(tf.reshape(transforms[:, :6], (-1, 6, 1, 1)), axis=1)
    dx, dy = elastic_displacement(
        tf.shape(images)[0],
        tf.random.experimental.stateless_fold_in(seed, 1),  # a stream apart from the affine one
        config.elastic_alpha,
        config.elastic_sigma,
    )
    x = a0 * cols + a1 * rows + a2 + dx
    y = b0 * cols + b1 * rows + b2 + dy
    return bilinear_sample(images, x, y)


def random_photometric(images: tf.Tensor, seed: tf.Tensor, config: TrainConfig) -> tf.Tensor:
    """Per image: contrast scaled, brightness offset, Gaussian noise (`TrainConfig` says how
    much), clipped to [0, 1]. images: float32 (B, 28, 28, 1); seed: int64 (2,), stateless.

    Why: a model that only ever saw black backgrounds and clean strokes reads a grey
    background or a noisy scan as noise (the corruption benchmark, `mnist_bench.robustness`).
    """
    batch = tf.shape(images)[0]
    u = tf.random.stateless_uniform((batch, 1, 1, 3), seed, minval=0.0, maxval=1.0)
    factor = 1.0 - u[..., 0:1] * config.contrast
    offset = u[..., 1:2] * config.brightness
    sigma = u[..., 2:3] * config.noise_std
    noise = tf.random.stateless_normal(
        tf.shape(images), tf.random.experimental.stateless_fold_in(seed, 1)
    )
    return tf.clip_by_value(images * factor + offset + sigma * noise, 0.0, 1.0)


def random_erasing(images: tf.Tensor, seed: tf.Tensor, config: TrainConfig) -> tf.Tensor:
    """With probability `config.erasing` per image, fill one random rectangle (2-40% of the
    area, aspect ratio 0.3-3.3, log-uniform) with one random grey level in [0, 1].

    images: float32 (B, 28, 28, 1); seed: int64 (2,), stateless. Why: occlusions and bands
    (a ruler, a fold, a shadow) should not decide the digit.
    """
    u = tf.random.stateless_uniform((tf.shape(images)[0], 6), seed)
    area = (0.02 + 0.38 * u[:, 0]) * 784.0
    ratio = tf.exp(math.log(0.3) + u[:, 1] * (math.log(3.3) - math.log(0.3)))
    h, w = tf.minimum(tf.sqrt(area * ratio), 28.0), tf.minimum(tf.sqrt(area / ratio), 28.0)
    top, left = u[:, 2] * (28.0 - h), u[:, 3] * (28.0 - w)
    box = [v[:, None, None] for v in (top, top + h, left, left + w)]  # each (B, 1, 1)
    centres = tf.range(28.0) + 0.5
    rows, cols = centres[None, :, None], centres[None, None, :]
    inside = (rows >= box[0]) & (rows < box[1]) & (cols >= box[2]) & (cols < box[3])
    inside &= (u[:, 5] < config.erasing)[:, None, None]
    return tf.where(inside[..., None], u[:, 4, None, None, None], images)


def _photometric(config: TrainConfig) -> bool:
    return config.contrast > 0 or config.brightness > 0 or config.noise_std > 0


def epoch_order(config: TrainConfig, epoch: int, n: int) -> tuple[int, np.ndarray]:
    """The stream key of (config.seed, epoch) and the epoch's order of the `n` images."""
    key = _stream_key(config.seed, epoch)
    return key, np.random.default_rng(key).permutation(n)


def augment_batch(
    images: tf.Tensor, key: tf.Tensor, step: tf.Tensor, config: TrainConfig
) -> tf.Tensor:
    """The seeded augmentation of batch `step` (int64) of the epoch whose stream `key` (int64)
    is; images: float32 (B, 28, 28, 1). Both input paths (`epoch_dataset` on the host,
    `device_input` in the train step) call it, so they draw the very same numbers."""
    seed = tf.stack([key, step])
    images = random_distortion(images, seed, config)
    if _photometric(config):  # a stream apart from the geometric ones
        images = random_photometric(
            images, tf.random.experimental.stateless_fold_in(seed, 2), config
        )
    if config.erasing > 0:
        images = random_erasing(images, tf.random.experimental.stateless_fold_in(seed, 3), config)
    return images


# tf.data without its autotuning model thread: see training._CPUS for why.
def _without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)
