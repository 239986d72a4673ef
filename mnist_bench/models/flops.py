"""FLOPs per image of a Keras model, counted from its convolutions and dense layers."""

from __future__ import annotations

import math
from collections.abc import Iterator

import keras
from keras import layers


def _layer_forward_flops(layer: keras.layers.Layer) -> int:
    """Forward FLOPs per image of one layer; a multiply-add counts as 2."""
    if isinstance(layer, layers.DepthwiseConv2D):
        # One kh x kw filter per input channel and multiplier: no sum over channels.
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        return 2 * h * w * c_out * kh * kw
    if isinstance(layer, layers.Conv2D):
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        c_in = layer.input.shape[-1] // layer.groups  # each filter sees its group's channels
        return 2 * h * w * c_out * kh * kw * c_in
    if isinstance(layer, layers.Dense):
        # Dense acts on the last axis, once per position of any axes before it.
        positions = math.prod(layer.input.shape[1:-1])
        return 2 * positions * layer.input.shape[-1] * layer.units
    return 0  # pooling, batch norm, activations, adds, multiplies: negligible in FLOPs


def _leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    # A model used as a layer of another (a nested Sequential or functional model) counts by
    # its own layers.
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def model_flops(model: keras.Model) -> dict[str, int]:
    """FLOPs per image of `model`, counted from its Conv2D, DepthwiseConv2D and Dense layers
    (a multiply-add counts as 2; each layer is counted once, as called once).

    Returns
    -------
    dict
        ``forward``: one inference pass; ``training``: forward plus backward, taken as
        3x forward (the backward pass computes gradients for both inputs and weights,
        each costing about one forward), the convention of the DAWNBench/MLPerf reports.
    """
    forward = sum(_layer_forward_flops(layer) for layer in _leaf_layers(model))
    return {"forward": int(forward), "training": int(3 * forward)}
