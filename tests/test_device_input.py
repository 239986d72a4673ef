"""The device input path (``TrainConfig.augment_on="device"``, `mnist_bench.device_input`):
batches gathered and augmented inside the train step give, on a CPU, the host path's very
bits (same order, same stateless draws per (seed, epoch, step), same kernels).

Runs are tiny (300 images, 2 epochs), as in test_training.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mnist_bench.training as training
from mnist_bench import TrainConfig, one_hot, preprocess_images, train
from mnist_bench.device_input import DeviceTrainer
from mnist_bench.models import build_model

# The robust recipe (affine, photometric and erasing augmentation), plus elastic distortion
# and weight averaging (a per-step callback): every augmentation and the trainer's callback
# wiring. 300 images in batches of 128 end with a partial batch of 44.
TINY = dict(epochs=2, train_subset=300, batch_size=128, validation="holdout", holdout_size=256)
EVERYTHING = dict(elastic_alpha=34.0, weight_averaging=0.9, **TINY)
ROW_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "last_val_loss", "lr")


def tiny_config(**changes) -> TrainConfig:
    return TrainConfig.recipe("robust", **{**EVERYTHING, **changes})


@pytest.fixture(scope="module")
def small(mnist):
    """MNIST with 1,000 test images: the final evaluation is not what is tested here."""
    return dataclasses.replace(mnist, x_test=mnist.x_test[:1000], y_test=mnist.y_test[:1000])


@pytest.fixture(scope="module")
def host_run(small):
    return train(tiny_config(), small)


def _no_host_pipeline(*args, **kwargs):
    raise AssertionError("the device path built the host path's tf.data pipeline")


def test_device_path_gives_the_host_paths_bits_on_a_cpu(host_run, small, monkeypatch):
    monkeypatch.setattr(training, "epoch_dataset", _no_host_pipeline)
    device = train(tiny_config(augment_on="device"), small)
    assert device.metrics["weights_digest"] == host_run.metrics["weights_digest"]
    for w_device, w_host in zip(device.model.weights, host_run.model.weights, strict=True):
        np.testing.assert_array_equal(w_device.numpy(), w_host.numpy())
    # the same trajectory: every epoch's training and validation scores, to the bit
    for row_device, row_host in zip(device.history, host_run.history, strict=True):
        assert {k: row_device[k] for k in ROW_KEYS} == {k: row_host[k] for k in ROW_KEYS}
    assert device.metrics["test_loss"] == host_run.metrics["test_loss"]
    assert device.metrics["config"]["augment_on"] == "device"


class _Interrupt(Exception):
    """Stands for a kill after the first epoch's checkpoint was written."""


def _stop_after_first_epoch(row: dict) -> None:
    if row["epoch"] == 1:
        raise _Interrupt


@pytest.mark.slow  # two more tiny trainings (~13 s on 2 loaded cores); resume itself is fast-tier
def test_interrupted_device_run_resumes_to_the_host_paths_bits(host_run, small, tmp_path):
    config = tiny_config(augment_on="device")
    with pytest.raises(_Interrupt):
        train(config, small, tmp_path, progress=_stop_after_first_epoch)
    epochs_run = []
    resumed = train(config, small, tmp_path, progress=lambda row: epochs_run.append(row["epoch"]))
    assert epochs_run == [2]
    assert resumed.metrics["weights_digest"] == host_run.metrics["weights_digest"]
    assert (tmp_path / "model.keras").exists()  # the network, not the trainer, is saved


@pytest.mark.parametrize("augment", [False, True])
def test_device_batches_are_the_host_batches(mnist, augment):
    config = TrainConfig.recipe("robust", augment=augment, elastic_alpha=34.0, batch_size=64)
    x, y = preprocess_images(mnist.x_train[:150]), one_hot(mnist.y_train[:150])
    model = build_model("seed")
    training.compile_model(model, config, steps_per_epoch=3)
    trainer = DeviceTrainer(model, x, y, config)
    for epoch in (0, 3):
        host = list(training.epoch_dataset(x, y, config, epoch).as_numpy_iterator())
        steps = list(trainer.epoch_steps(epoch).as_numpy_iterator())
        assert steps == [0, 1, 2] and [len(b[0]) for b in host] == [64, 64, 22]
        for step, (x_host, y_host) in zip(steps, host, strict=True):
            x_device, y_device = trainer.device_batch(np.int64(step))
            np.testing.assert_array_equal(x_device.numpy(), x_host)
            np.testing.assert_array_equal(y_device.numpy(), y_host)


def test_the_trainer_adds_no_weights_and_shares_the_optimizer(mnist):
    config = TrainConfig.recipe("seed", augment_on="device")
    model = build_model("seed")
    training.compile_model(model, config, steps_per_epoch=1)
    x, y = preprocess_images(mnist.x_train[:8]), one_hot(mnist.y_train[:8])
    trainer = DeviceTrainer(model, x, y, config)
    assert trainer.optimizer is model.optimizer
    assert [v.path for v in trainer.weights] == [v.path for v in model.weights]
    assert trainer.metrics == model.metrics
    assert trainer.jit_compile is False  # never XLA around the augmentation
