"""Batch-norm recalibration: the statistics it sets, and the same bits as the plain method.

The plain method (`_one_layer_at_a_time`, what the package did before: a model from the
input to each layer, run over every image) is the oracle: the package's one-pass-per-layer
version must give the very same float32 statistics, whatever it keeps between passes. A
recorded run's digest depends on them, so this is what keeps published runs reproducible.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_bench import TrainConfig, build_model, preprocess_images, weights_digest
from mnist_bench.batch_norm import recalibrate_batch_norm

PUBLISHED_MODEL = Path(__file__).resolve().parents[1] / "results" / "model.keras"


def _one_layer_at_a_time(model: keras.Model, images: np.ndarray, batch_size: int) -> None:
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        features = keras.Model(model.inputs, layer.input)
        forward = tf.function(lambda x, f=features: f(x, training=False))
        total = total_sq = 0.0
        count = 0
        for start in range(0, len(images), batch_size):
            a = forward(images[start : start + batch_size]).numpy().astype(np.float64)
            a = a.reshape(-1, a.shape[-1])
            total, total_sq, count = total + a.sum(0), total_sq + (a * a).sum(0), count + len(a)
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign((total_sq / count - mean**2).astype(np.float32))


def _statistics(model: keras.Model) -> list[np.ndarray]:
    """Each batch-norm layer's mean and variance, in model order (two builds of one
    architecture name their layers apart)."""
    return [
        np.concatenate([layer.moving_mean.numpy(), layer.moving_variance.numpy()])
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _assert_same_bits(make_model, images: np.ndarray, cache_bytes: int, batch_size=128) -> None:
    plain, fast = make_model(), make_model()
    _one_layer_at_a_time(plain, images, batch_size)
    count = recalibrate_batch_norm(fast, images, batch_size, cache_bytes=cache_bytes)
    expected, got = _statistics(plain), _statistics(fast)
    assert count == len(expected) > 0
    pairs = enumerate(zip(expected, got, strict=True))
    differing = [i for i, (e, g) in pairs if not np.array_equal(e, g)]
    assert not differing, f"statistics differ from the plain method's in layers {differing}"
    assert weights_digest(fast) == weights_digest(plain)


def _fresh(recipe: str):
    config = TrainConfig.recipe(recipe)

    def make():
        keras.utils.set_random_seed(0)  # the same initial weights for both models
        return build_model(config.model, **config.model_options)

    return make


@pytest.fixture(scope="module")
def images(mnist) -> np.ndarray:
    return preprocess_images(mnist.x_train[:300])  # batches of 128: an uneven last one


# A budget that keeps some cuts, not others: the reference keeps its later, pooled cuts only,
# ResNet-20 its 7x7 ones and some 14x14 ones (300 images).
BETWEEN = 300 * 14 * 14 * 32 * 4


# Everything kept, and a budget that keeps some cuts (nothing kept: `_branchy`'s test).
@pytest.mark.parametrize("cache_bytes", [2**40, BETWEEN])
def test_the_reference_cnn_gets_the_plain_methods_bits(images, cache_bytes):
    _assert_same_bits(_fresh("reference"), images, cache_bytes)


@pytest.mark.parametrize("recipe", ["robust", "fast"])
def test_the_other_small_cnns_get_the_plain_methods_bits(images, recipe):
    _assert_same_bits(_fresh(recipe), images, BETWEEN)


def _branchy() -> keras.Model:
    """The graph shapes of ResNet-20 and EfficientNet-B0 where a cut could change the bits:
    two batch-norm outputs summed (ResNet's projected shortcut: TensorFlow's optimizer may
    sum their affine terms in another order when both are in one graph), a batch-norm output
    read twice (EfficientNet's block output, by the next block and its shortcut), and a batch
    norm right after another."""
    keras.utils.set_random_seed(0)
    conv, bn = keras.layers.Conv2D, keras.layers.BatchNormalization
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.ReLU()(bn()(conv(8, 3, strides=2)(inputs)))
    main = bn()(conv(8, 3, padding="same")(x))
    projected = bn()(conv(8, 1)(x))
    x = keras.layers.ReLU()(keras.layers.Add()([main, projected]))
    read_twice = bn()(bn()(conv(8, 1)(x)))
    x = keras.layers.Add()([bn()(conv(8, 3, padding="same")(read_twice)), read_twice])
    return keras.Model(inputs, bn()(conv(4, 3)(x)))


@pytest.mark.parametrize("cache_bytes", [2**40, 0])
def test_branching_graphs_get_the_plain_methods_bits(images, cache_bytes):
    _assert_same_bits(_branchy, images, cache_bytes)


@pytest.mark.slow  # ~40 s on a 2-core Zen 3 (`_branchy` has its graph shapes, in seconds)
def test_resnet20_gets_the_plain_methods_bits(images):
    _assert_same_bits(_fresh("resnet20"), images, BETWEEN)


@pytest.mark.slow  # minutes on a 2-core Zen 3: the plain method runs 49 prefixes
def test_efficientnet_b0_gets_the_plain_methods_bits(images):
    _assert_same_bits(_fresh("efficientnet_b0"), images, 2**40)


def test_a_loaded_model_gets_the_plain_methods_bits(images):
    # A loaded layer holds several calls (nodes); only the model's own graph counts.
    _assert_same_bits(lambda: keras.models.load_model(PUBLISHED_MODEL), images, 2**40)


def _model_with_batch_norm_after_dropout():
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, kernel_initializer="ones"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5, seed=1),
            keras.layers.Dense(2),
            keras.layers.BatchNormalization(),
        ]
    )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_recalibrated_statistics_are_those_of_the_inputs_in_inference_mode(seed):
    model = _model_with_batch_norm_after_dropout()
    x = np.random.default_rng(seed).normal(2.0, 3.0, (700, 4)).astype(np.float32)
    assert recalibrate_batch_norm(model, x, batch_size=128) == 2  # uneven last batch
    dense1, bn1, _, dense2, bn2 = model.layers
    # By hand, in float64: the first layer's inputs, then the second's with the first one
    # normalizing by its new statistics and dropout off (inference).
    h = x.astype(np.float64) @ dense1.kernel.numpy() + dense1.bias.numpy()
    np.testing.assert_allclose(bn1.moving_mean.numpy(), h.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), h.var(0), rtol=1e-4)
    normalized = (h - h.mean(0)) / np.sqrt(h.var(0) + bn1.epsilon)  # gamma 1, beta 0
    z = normalized @ dense2.kernel.numpy() + dense2.bias.numpy()
    np.testing.assert_allclose(bn2.moving_mean.numpy(), z.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn2.moving_variance.numpy(), z.var(0), rtol=1e-4)


def test_a_model_without_batch_norm_is_left_alone(images):
    model = build_model("seed")
    before = weights_digest(model)
    assert recalibrate_batch_norm(model, images) == 0
    assert weights_digest(model) == before


def test_channels_first_batch_norm_is_refused_by_name(images):
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.BatchNormalization(axis=1, name="bn_over_rows")(inputs)
    with pytest.raises(ValueError, match="bn_over_rows: only channels-last"):
        recalibrate_batch_norm(keras.Model(inputs, outputs), images)
