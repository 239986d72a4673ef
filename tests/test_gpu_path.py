"""The GPU path: mixed precision as a variant, and determinism on the device (``gpu``-marked
tests skip without a GPU; `mnist-bench bench --suite gpu` runs them on a GPU machine)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from mnist_bench import TrainConfig, train
from mnist_bench.bench import gpu

SMOKE = {"epochs": 1, "train_subset": 256}


@pytest.fixture(scope="module")
def gpu_device() -> str:
    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("no GPU visible to TensorFlow")
    return "/GPU:0"


def test_mixed_precision_computes_in_bf16_with_a_float32_softmax(mnist):
    small = dataclasses.replace(mnist, x_test=mnist.x_test[:1000], y_test=mnist.y_test[:1000])
    result = train(TrainConfig.recipe("seed", precision="mixed_bfloat16", **SMOKE), small)
    model = result.model
    conv = next(layer for layer in model.layers if "conv" in layer.name)
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"  # the softmax: never in bf16
    probabilities = model.predict(mnist.x_test[:8, ..., None] / 255.0, verbose=0)
    assert probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.isfinite(result.metrics["train_loss"])
    # the float32 recipe is untouched: a variant is its own config
    assert TrainConfig.recipe("seed").precision == "float32"


@pytest.mark.gpu
def test_same_seed_same_digest_twice_on_the_gpu(mnist, gpu_device):
    config = TrainConfig.recipe("reference", epochs=1, train_subset=4096)
    with tf.device(gpu_device):
        check = gpu.check_determinism(config, mnist)
    assert check["device"] != gpu.device_name("/CPU:0")  # it ran on the GPU
    assert check["same_digest"], check["digests"]


@pytest.mark.gpu
def test_device_input_path_is_deterministic_and_learns_on_the_gpu(mnist, gpu_device):
    config = TrainConfig.recipe("reference", epochs=1, augment_on="device")
    with tf.device(gpu_device):
        check = gpu.check_determinism(config, mnist)
        paths = gpu.compare_input_paths(config.replace(train_subset=4096), mnist)
    assert check["same_digest"], check["digests"]
    assert paths["speedup"] > 0 and set(paths["runs"]) == {"host", "device"}
    result = train(config, mnist)
    assert result.report.accuracy > 0.97  # as the host path's one epoch


@pytest.mark.gpu
def test_mixed_precision_trains_on_the_gpu(mnist, gpu_device):
    config = TrainConfig.recipe("reference", precision="mixed_bfloat16", epochs=1)
    result = train(config, mnist)
    assert result.report.accuracy > 0.97  # one epoch of the float32 recipe gives ~99%
