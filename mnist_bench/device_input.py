"""Training batches gathered and augmented on the device, inside the compiled train step.

``TrainConfig(augment_on="device")``. The host path (`training.epoch_dataset`) builds each
batch in a tf.data pipeline: on a GPU machine the order, the augmentation and the batch's copy
to the GPU are CPU work every step. Here the training images and labels are uploaded once,
as variables on the default device (the GPU when there is one); each epoch uploads its seeded
order (N int64) and stream key; and each step receives only its step number, then gathers
its batch by index and augments it (`augment.augment_batch`, the host path's very function,
with the very same stateless seed (key, step)) in the same compiled function as the forward
and backward pass. No per-step host work is left but feeding that number.

On a CPU the two paths give bit-identical weights (tests/test_device_input.py): the same
images in the same order, the same random draws, the same kernels. On a GPU the augmentation
runs on the GPU's kernels, whose float results may differ in the last bits from the CPU's,
so a device-path run there is deterministic but not bitwise the host path's.

`DeviceTrainer` is a thin `keras.Model` around the compiled network: it owns no weights, and
shares the network's optimizer and metrics, so callbacks, checkpoints and the saved model
see the network exactly as after a host-path epoch.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .augment import _without_autotune, augment_batch, epoch_order
from .config import TrainConfig


class DeviceTrainer(keras.Model):
    """Fits `model` (compiled) on device-resident `x` (float32 (N, 28, 28, 1)) and `y`
    (float32 (N, 10)), one epoch per `fit(trainer.epoch_steps(epoch), ...)` call."""

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig):
        super().__init__(name="device_trainer")
        self.net = model
        self.train_config = config
        self.n = len(x)
        # tf.Variables, not Keras ones: never part of any model's weights or checkpoint.
        self._images = tf.Variable(x, trainable=False, name="train_images")
        self._labels = tf.Variable(y, trainable=False, name="train_labels")
        self._order = tf.Variable(np.zeros(self.n, np.int64), trainable=False, name="order")
        self._key = tf.Variable(np.int64(0), trainable=False, name="stream_key")
        # The network's optimizer (the same object); no loss of our own. Never XLA around the
        # augmentation: ImageProjectiveTransformV3 has no XLA kernel, and XLA's stateless
        # RNG draws other numbers than TensorFlow's kernels for the same seed. The network's
        # step alone compiles with XLA when the host path's would (Keras' "auto": a GPU and
        # op determinism off).
        self.compile(optimizer=model.optimizer, jit_compile=False)
        jit = model.jit_compile
        self._net_steps = tuple(
            tf.function(step, jit_compile=True, reduce_retracing=True) if jit else step
            for step in (model.train_step, model.test_step)
        )

    @property
    def metrics(self) -> list:
        # The network's loss tracker and accuracy: fit and evaluate reset and report them.
        return self.net.metrics

    def epoch_steps(self, epoch: int) -> tf.data.Dataset:
        """Set up `epoch` (its seeded order and stream key, as `training.epoch_dataset`
        draws them) and return what `fit` iterates: the step numbers 0, 1, ... (int64)."""
        key, order = epoch_order(self.train_config, epoch, self.n)
        self._order.assign(order.astype(np.int64))
        self._key.assign(np.int64(key))
        steps = -(-self.n // self.train_config.batch_size)
        return _without_autotune(tf.data.Dataset.range(steps))  # see augment._without_autotune

    def device_batch(self, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Batch `step` of the current epoch: gathered by index, augmented if asked."""
        start = step * self.train_config.batch_size
        index = self._order[start : start + self.train_config.batch_size]
        images, labels = tf.gather(self._images, index), tf.gather(self._labels, index)
        if self.train_config.augment:
            images = augment_batch(images, self._key.read_value(), step, self.train_config)
        return images, labels

    def train_step(self, step: tf.Tensor) -> dict:
        return self._net_steps[0](self.device_batch(step))

    def test_step(self, data: tuple) -> dict:  # validation, on the network, unchanged
        return self._net_steps[1](data)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.net(inputs, training=training)
