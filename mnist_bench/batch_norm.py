"""Batch-norm recalibration: a trained model's batch-norm statistics recomputed on clean images.

    from mnist_bench.batch_norm import recalibrate_batch_norm
    recalibrate_batch_norm(model, x_train)  # x_train: float32 (N, 28, 28, 1) in [0, 1]

Each batch-norm layer's moving mean and variance become the exact mean and (biased) variance
of its inputs over the images, in inference mode, layer by layer in the model's order: each
layer sees the statistics already set before it.

Why: the moving averages are gathered during training, on augmented images and with dropout
on, neither of which is there at inference; dropout before a batch-norm layer even shifts its
input's variance (Li et al. 2019, "Understanding the disharmony between dropout and batch
normalization").

How, in one pass over the images per layer (not one pass through the whole prefix of the
network per layer, which is quadratic in depth: 49 layers of EfficientNet-B0 took ~30 minutes
on a 2-core Zen 3): the activations that cross the cut just before each layer (its input, and
any shortcut still to be added) are kept for every image, within `cache_bytes`, and the next
layer's pass starts from them. A cut too large to keep (early, wide feature maps) is skipped:
that pass starts from the last cut kept, or the images.

Same bits as the plain prefix-per-layer computation (tests/test_batch_norm.py compares them):
TensorFlow's graph optimizer may fold a batch norm's affine ops into the add that consumes
them, so a cut never holds a batch-norm output that has a single consumer: its input is kept
instead and the layer recomputed, exactly as in the prefix graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

# The largest cut of activations kept between passes: 1 GiB (two cuts, the last and the
# next, are in memory at once).
CACHE_BYTES = 2**30


def recalibrate_batch_norm(
    model: keras.Model, images: np.ndarray, batch_size: int = 1024, cache_bytes: int = CACHE_BYTES
) -> int:
    """Set every batch-norm layer's statistics to those of its inputs over `images`.

    images: (N, ...) the model's input, e.g. float32 (N, 28, 28, 1), the clean training
    images. Only the model's own (top-level) graph is visited; a nested model counts as one
    layer. cache_bytes bounds the activations kept between passes (speed only: the result is
    the same). Returns how many layers were recalibrated (0 for a model without batch norm,
    which is left unchanged).
    """
    nodes = _graph_nodes(model)
    positions = [i for i, node in enumerate(nodes) if _is_batch_norm(node)]
    for position in positions:
        layer, (layer_input,) = nodes[position].operation, nodes[position].input_tensors
        if layer.axis not in (-1, len(layer_input.shape) - 1):
            raise ValueError(f"{layer.name}: only channels-last batch norm can be recalibrated")
    consumers = _consumer_counts(nodes)
    producers = {id(t): node for node in nodes for t in keras.tree.flatten(node.output_tensors)}
    inputs = keras.tree.flatten(model.inputs)
    kept = {id(t): (t, images) for t in inputs}
    logger, level = tf.get_logger(), tf.get_logger().level
    # One traced function per segment is intended: TensorFlow would warn about "retracing"
    # from the fifth on, in every training run's output.
    logger.setLevel("ERROR")
    try:
        for position in positions:
            cut = _cut(nodes, inputs, position, positions[-1], consumers)
            keep = _nbytes(cut, len(images)) <= cache_bytes
            layer, (layer_input,) = nodes[position].operation, nodes[position].input_tensors
            mean, variance, values = _pass(
                kept, cut if keep else [], layer_input, images, batch_size, producers
            )
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(variance.astype(np.float32))
            if keep:
                kept = values
    finally:
        logger.setLevel(level)
    return len(positions)


def _graph_nodes(model: keras.Model) -> list:
    """The calls of the model's graph in the order the model runs them (input nodes left out).

    A loaded layer may hold calls from other graphs too (`layer.input` is its first one), so
    the model's own nodes are read from a functional view of it (a Sequential model too).
    """
    by_depth = keras.Model(model.inputs, model.outputs)._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
            if not node.is_input]  # fmt: skip


def _is_batch_norm(node) -> bool:
    return isinstance(node.operation, keras.layers.BatchNormalization)


def _consumer_counts(nodes: Sequence) -> dict[int, int]:
    counts: dict[int, int] = {}
    for node in nodes:
        for tensor in keras.tree.flatten(node.input_tensors):
            counts[id(tensor)] = counts.get(id(tensor), 0) + 1
    return counts


def _cut(nodes: Sequence, inputs: Sequence, position: int, last: int, consumers: dict) -> list:
    """The tensors made before nodes[position] (or model inputs) and read by it or by a later
    node up to `last` (the last batch-norm layer), a single-consumer batch-norm output replaced
    by its input (a read-twice one stays: the module docstring says why)."""
    made = {id(t): t for t in inputs}
    replaced = {}  # a single-consumer batch-norm output -> that layer's input
    for node in nodes[:position]:
        for tensor in keras.tree.flatten(node.output_tensors):
            made[id(tensor)] = tensor
            if _is_batch_norm(node) and consumers.get(id(tensor)) == 1:
                (replaced[id(tensor)],) = keras.tree.flatten(node.input_tensors)
    cut = {}
    for node in nodes[position : last + 1]:
        for tensor in keras.tree.flatten(node.input_tensors):
            while id(tensor) in replaced:
                tensor = replaced[id(tensor)]
            if id(tensor) in made:
                cut[id(tensor)] = tensor
    return list(cut.values())


def _sources(wanted: Sequence, kept: dict, producers: dict) -> dict:
    """The `kept` activations that the `wanted` tensors are computed from."""
    needed, stack, seen = {}, list(wanted), set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if id(tensor) in kept:
            needed[id(tensor)] = kept[id(tensor)]
        else:
            stack.extend(keras.tree.flatten(producers[id(tensor)].input_tensors))
    return needed


def _nbytes(tensors: Sequence, n: int) -> int:
    return n * sum(math.prod(t.shape[1:]) * tf.as_dtype(t.dtype).size for t in tensors)


def _pass(
    kept: dict, cut: Sequence, layer_input, images: np.ndarray, batch_size: int, producers: dict
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One pass over the images from the `kept` activations (id -> (tensor, array)): the
    float64 mean and variance of `layer_input` over every image, and the `cut` tensors' values
    as a new `kept`."""
    new = [t for t in {id(t): t for t in [layer_input, *cut]}.values() if id(t) not in kept]
    sources = _sources(new, kept, producers)
    if new:
        segment = keras.Model([t for t, _ in sources.values()], new)
        forward = tf.function(lambda *x: segment(list(x), training=False))
    arrays = {id(t): kept[id(t)][1] for t in cut if id(t) in kept}  # passed through as they are
    total = total_sq = 0.0
    count = 0
    for start in range(0, len(images), batch_size):
        stop = start + batch_size
        batch = {}
        if new:
            outputs = forward(*(array[start:stop] for _, array in sources.values()))
            outputs = keras.tree.flatten(outputs)
            batch = {id(t): o.numpy() for t, o in zip(new, outputs, strict=True)}
        if id(layer_input) not in batch:  # an activation kept from the last cut
            batch[id(layer_input)] = kept[id(layer_input)][1][start:stop]
        a = batch[id(layer_input)].astype(np.float64)
        a = a.reshape(-1, a.shape[-1])
        total, total_sq, count = total + a.sum(0), total_sq + (a * a).sum(0), count + len(a)
        for tensor in cut:
            if id(tensor) not in kept:
                value = batch[id(tensor)]
                if id(tensor) not in arrays:
                    arrays[id(tensor)] = np.empty((len(images), *value.shape[1:]), value.dtype)
                arrays[id(tensor)][start:stop] = value
    mean = total / count
    return mean, total_sq / count - mean**2, {id(t): (t, arrays[id(t)]) for t in cut}
