"""Layer type -> pure jax.numpy / jax.lax functions.

The canonical layouts are JAX's own (NHWC images, HWIO conv kernels, (in, out) dense kernels),
so there are no weight conversions. Each entry: forward(layer, params, state, x, train) ->
(y, state); batch norm returns new statistics in training instead of updating them in place.
Normalisation statistics are taken in float32 whatever the compute dtype (as Flax does), and
the state stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from harness.model import layers as L

Arrays = dict[str, Any]
Forward = Callable[[Any, Arrays, Arrays, jax.Array, bool], tuple[jax.Array, Arrays]]


def _dense(layer: L.Dense, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    y = x @ p["kernel"]  # flat (N, D) or sequence (N, T, D) input alike
    return (y + p["bias"] if layer.bias else y), s


def _conv(layer: L.Conv2D, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    pad = layer.padding  # symmetric, written out: not 'SAME', which can pad on one side only
    y = lax.conv_general_dilated(x, p["kernel"], window_strides=(layer.stride, layer.stride),
                                 padding=((pad, pad), (pad, pad)),
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return (y + p["bias"] if layer.bias else y), s


def _maxpool(layer: L.MaxPool2D, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    window = (1, layer.size, layer.size, 1)
    return lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID"), s


def _global_avg(layer: L.GlobalAvgPool, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    return x.mean(axis=(1, 2)), s


def _relu(layer: L.ReLU, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    return jax.nn.relu(x), s


def _gelu(layer: L.GELU, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    return jax.nn.gelu(x, approximate=False), s


def _flatten(layer: L.Flatten, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    return x.reshape(x.shape[0], -1), s  # NHWC is already the canonical H, W, C order


def _normalise(x: jax.Array, mean: jax.Array, var: jax.Array, eps: float, p: Arrays,
               dtype: Any) -> jax.Array:
    y = (x - mean) * lax.rsqrt(var + eps) * p["scale"] + p["offset"]
    return y.astype(dtype)


def _batchnorm(layer: L.BatchNorm, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    x32 = x.astype(jnp.float32)
    if not train:
        return _normalise(x32, s["mean"], s["var"], layer.eps, p, x.dtype), s
    axes = tuple(range(x.ndim - 1))
    mean = x32.mean(axis=axes)
    var = jnp.square(x32 - mean).mean(axis=axes)  # biased, to normalise with
    n = x.size // x.shape[-1]
    m = layer.momentum  # torch's convention: the weight of the batch, unbiased variance
    new = {"mean": (1 - m) * s["mean"] + m * mean,
           "var": (1 - m) * s["var"] + m * var * (n / (n - 1))}
    return _normalise(x32, mean, var, layer.eps, p, x.dtype), new


def _layernorm(layer: L.LayerNorm, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(axis=-1, keepdims=True)
    return _normalise(x32, mean, var, layer.eps, p, x.dtype), s


def _embedding(layer: L.Embedding, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    return jnp.take(p["table"], x, axis=0), s


def _positions(layer: L.AddPositions, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    return x + p["table"][: x.shape[1]], s


def _attention(layer: L.CausalSelfAttention, p: Arrays, s: Arrays, x: jax.Array,
               train: bool):
    n, t, d3 = x.shape
    d, h = d3 // 3, layer.heads
    q, k, v = (a.reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
               for a in jnp.split(x, 3, axis=-1))
    scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(d // h)
    mask = jnp.tril(jnp.ones((t, t), dtype=bool))
    weights = jax.nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)
    return (weights @ v).transpose(0, 2, 1, 3).reshape(n, t, d), s


def _tied(layer: L.TiedDense, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    return x @ p["table"].T, s


def _lstm(layer: L.LSTM, p: Arrays, s: Arrays, x: jax.Array, train: bool):
    hdim = layer.hidden
    xw = x @ p["kernel"] + p["bias"] + p["recurrent_bias"]  # every time step in one product

    def cell(carry: tuple[jax.Array, jax.Array], xw_t: jax.Array):
        h, c = carry
        z = xw_t + h @ p["recurrent"]
        i, f, g, o = (z[:, k * hdim : (k + 1) * hdim] for k in range(4))
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((x.shape[0], hdim), xw.dtype)
    _, out = lax.scan(cell, (zeros, zeros), xw.transpose(1, 0, 2))  # scan over time
    return out.transpose(1, 0, 2), s


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

IMPLEMENTATION = {L.LSTM: "jax.lax.scan over time steps",
                  L.CausalSelfAttention: "explicit matmul, mask, softmax, matmul"}


def leaf(layer: Any, p: Arrays, s: Arrays, x: Any, train: bool) -> tuple[Any, Arrays]:
    return TABLE[type(layer)](layer, p, s, x, train)
