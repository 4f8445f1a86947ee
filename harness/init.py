"""Canonical initial weights, made once in numpy from a seed and loaded by every backend."""

from __future__ import annotations

import numpy as np

from harness.spec import Conv2D, Dense, Shape, Workload, layer_shapes


def init_weights(workload: Workload, input_shape: Shape, seed: int = 0) -> list[np.ndarray]:
    """Glorot-uniform kernels and uniform(+-1/sqrt(fan_in)) biases, float32, canonical layout.

    Biases are non-zero on purpose: a backend that loads them wrongly then fails the tests.
    """
    rng = np.random.default_rng(seed)
    weights: list[np.ndarray] = []
    for layer, (shape_in, _) in zip(workload.layers, layer_shapes(workload.layers, input_shape)):
        if isinstance(layer, Dense):
            fan_in, fan_out = shape_in[0], layer.units
            kernel_shape: Shape = (fan_in, fan_out)
            bias_shape: Shape = (layer.units,)
        elif isinstance(layer, Conv2D):
            k, c = layer.kernel, shape_in[2]
            fan_in, fan_out = k * k * c, k * k * layer.filters
            kernel_shape, bias_shape = (k, k, c, layer.filters), (layer.filters,)
        else:
            continue
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, kernel_shape).astype(np.float32))
        bound = 1.0 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, bias_shape).astype(np.float32))
    return weights
