"""Layer type -> TensorFlow operations (tf.nn, tf.linalg) on tf.Variables, no Keras.

The canonical layouts are TensorFlow's own (NHWC images, HWIO conv kernels, (in, out) dense
kernels), so there are no weight conversions. Each entry: forward(layer, params, state, x,
train) -> (y, state); batch norm returns its new statistics in training (the step assigns them
to the state variables). Normalisation statistics and the attention softmax are computed in
float32 whatever the compute dtype, and the state stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from harness.model import layers as L

Arrays = dict[str, Any]
Forward = Callable[[Any, Arrays, Arrays, tf.Tensor, bool], tuple[tf.Tensor, Arrays]]


def _matmul(x: tf.Tensor, w: Any, transpose: bool = False) -> tf.Tensor:
    """x @ w (or w.T) on the last axis of a flat (N, D) or sequence (N, T, D) input. A sequence
    is folded into one (N*T, D) product: tf.einsum's gradient over '...' was 100x slower."""
    if x.shape.rank == 2:
        return tf.matmul(x, w, transpose_b=transpose)
    out = w.shape[0] if transpose else w.shape[1]
    y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), w, transpose_b=transpose)
    return tf.reshape(y, [-1, *x.shape[1:-1], out])


def _dense(layer: L.Dense, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    y = _matmul(x, p["kernel"])
    return (y + p["bias"] if layer.bias else y), s


def _conv(layer: L.Conv2D, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    pad = layer.padding  # symmetric, written out: not 'SAME', which can pad on one side only
    y = tf.nn.conv2d(x, p["kernel"], strides=layer.stride,
                     padding=[[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return (y + p["bias"] if layer.bias else y), s


def _maxpool(layer: L.MaxPool2D, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    return tf.nn.max_pool2d(x, layer.size, layer.size, "VALID"), s


def _global_avg(layer: L.GlobalAvgPool, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    return tf.reduce_mean(x, axis=[1, 2]), s


def _relu(layer: L.ReLU, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    return tf.nn.relu(x), s


def _gelu(layer: L.GELU, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    return tf.nn.gelu(x, approximate=False), s


def _flatten(layer: L.Flatten, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    features = math.prod(x.shape[1:])  # NHWC is already the canonical H, W, C order
    return tf.reshape(x, [-1, features]), s


def _normalise(x32: tf.Tensor, mean: Any, var: Any, eps: float, p: Arrays,
               dtype: tf.DType) -> tf.Tensor:
    scale = tf.cast(p["scale"], tf.float32)
    offset = tf.cast(p["offset"], tf.float32)
    return tf.cast((x32 - mean) * tf.math.rsqrt(var + eps) * scale + offset, dtype)


def _batchnorm(layer: L.BatchNorm, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    x32 = tf.cast(x, tf.float32)
    if not train:
        return _normalise(x32, s["mean"], s["var"], layer.eps, p, x.dtype), s
    mean, var = tf.nn.moments(x32, axes=list(range(x.shape.rank - 1)))  # biased variance
    n = x.shape[:-1].num_elements() or tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    m = layer.momentum  # torch's convention: the weight of the batch, unbiased variance
    new = {"mean": (1 - m) * s["mean"] + m * mean,
           "var": (1 - m) * s["var"] + m * var * (n / (n - 1))}
    return _normalise(x32, mean, var, layer.eps, p, x.dtype), new


def _layernorm(layer: L.LayerNorm, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    x32 = tf.cast(x, tf.float32)
    mean, var = tf.nn.moments(x32, axes=[-1], keepdims=True)
    return _normalise(x32, mean, var, layer.eps, p, x.dtype), s


def _embedding(layer: L.Embedding, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    return tf.gather(p["table"], x), s


def _positions(layer: L.AddPositions, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    return x + p["table"][: x.shape[1]], s


def _attention(layer: L.CausalSelfAttention, p: Arrays, s: Arrays, x: tf.Tensor,
               train: bool):
    _, t, d3 = x.shape
    d, h = d3 // 3, layer.heads
    q, k, v = (tf.transpose(tf.reshape(a, [-1, t, h, d // h]), [0, 2, 1, 3])
               for a in tf.split(x, 3, axis=-1))
    scores = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) / math.sqrt(d // h)
    mask = tf.cast(tf.linalg.band_part(tf.ones([t, t]), -1, 0), tf.bool)
    scores = tf.where(mask, scores, tf.constant(-math.inf, tf.float32))
    weights = tf.cast(tf.nn.softmax(scores, axis=-1), x.dtype)
    return tf.reshape(tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3]), [-1, t, d]), s


def _tied(layer: L.TiedDense, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    return _matmul(x, p["table"], transpose=True), s


def _lstm(layer: L.LSTM, p: Arrays, s: Arrays, x: tf.Tensor, train: bool):
    xw = _matmul(x, p["kernel"]) + p["bias"] + p["recurrent_bias"]  # all steps in one product
    recurrent = tf.convert_to_tensor(p["recurrent"])

    def cell(carry: tuple[tf.Tensor, tf.Tensor], xw_t: tf.Tensor):
        h, c = carry
        i, f, g, o = tf.split(xw_t + tf.matmul(h, recurrent), 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    zeros = tf.zeros_like(xw[:, 0, : layer.hidden])
    out, _ = tf.scan(cell, tf.transpose(xw, [1, 0, 2]), initializer=(zeros, zeros))
    return tf.transpose(out, [1, 0, 2]), s


TABLE: dict[type, Forward] = {
    L.Dense: _dense,
    L.Conv2D: _conv,
    L.MaxPool2D: _maxpool,
    L.GlobalAvgPool: _global_avg,
    L.ReLU: _relu,
    L.GELU: _gelu,
    L.Flatten: _flatten,
    L.BatchNorm: _batchnorm,
    L.LayerNorm: _layernorm,
    L.Embedding: _embedding,
    L.AddPositions: _positions,
    L.CausalSelfAttention: _attention,
    L.TiedDense: _tied,
    L.LSTM: _lstm,
}

IMPLEMENTATION = {
    L.LSTM: "tf.scan over time steps (a Python loop in eager, a while_loop in graph and XLA "
            "modes)",
    L.CausalSelfAttention: "explicit matmul, mask, softmax (float32), matmul",
}


def leaf(layer: Any, p: Arrays, s: Arrays, x: Any, train: bool) -> tuple[Any, Arrays]:
    return TABLE[type(layer)](layer, p, s, x, train)
