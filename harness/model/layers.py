"""The layer vocabulary: everything framework-neutral about each layer type, in one class each.

A layer knows its output shape, its trainable parameters and non-trainable state (shapes, and
canonical initial values drawn in numpy from one seeded generator), its forward
multiply-accumulates, which parameters take weight decay, and its numpy reference forward
(float64, train and eval behaviour). Backends translate layer types through one table each
(``harness/backends/<fw>/translate.py``); nothing else in the harness looks at layer types.

Canonical conventions every backend translates from: per-example shapes (no batch axis);
images are (H, W, C) (NHWC with the batch); token sequences are (T,) int32 and their features
(T, D); a Dense kernel is (in, out); a Conv2D kernel is HWIO; Flatten flattens in H, W, C order;
LSTM gates are ordered i, f, g, o with kernels (in, 4H) and (H, 4H) and two biases (as cuDNN and
torch keep them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

Shape = tuple[int, ...]
Arrays = dict[str, np.ndarray]


def _size(shape: Shape) -> int:
    return math.prod(shape)


class Layer:
    """Defaults for a layer without parameters that keeps the shape (activations)."""

    no_decay: ClassVar[frozenset[str]] = frozenset()  # parameters exempt from weight decay

    def out_shape(self, s: Shape) -> Shape:
        return s

    def tied(self) -> dict[str, str]:
        """Parameters borrowed from another layer (weight tying): {own name: parameter path}."""
        return {}

    def params(self, s: Shape) -> dict[str, Shape]:
        """Trainable arrays in canonical order."""
        return {}

    def state(self, s: Shape) -> dict[str, Shape]:
        """Non-trainable arrays that training updates (batch-norm statistics)."""
        return {}

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        """Canonical initial (params, state), float32, drawn from the shared generator."""
        return {}, {}

    def macs(self, s: Shape) -> int:
        """Forward multiply-accumulates per example (matrix products only; see flops.py)."""
        return 0

    def input_grad_macs(self, s: Shape) -> int:
        """Multiply-accumulates of the gradient with respect to the input."""
        return self.macs(s)

    def weight_grad_macs(self, s: Shape) -> int:
        """Multiply-accumulates of the gradients with respect to the parameters."""
        return self.macs(s) if self.params(s) or self.tied() else 0

    def saved_elems(self, s: Shape) -> int:
        """Activations per example this layer keeps for the backward pass (memory estimate)."""
        return _size(self.out_shape(s))

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        """The numpy reference forward of a batch: (output, updated state)."""
        raise NotImplementedError


def _glorot(rng: np.random.Generator, shape: Shape, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def _uniform_bias(rng: np.random.Generator, shape: Shape, fan_in: int) -> np.ndarray:
    """uniform(+-1/sqrt(fan_in)): non-zero, so a backend that loads biases wrongly fails tests."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def _normal(rng: np.random.Generator, shape: Shape, std: float) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


@dataclass(frozen=True)
class Dense(Layer):
    """y = x @ kernel + bias on the last axis of a flat (D,) or sequence (T, D) input.

    initializer: "glorot" (kernel Glorot-uniform, bias uniform +-1/sqrt(fan_in)) or "normal" (kernel
    N(0, std), bias zero: GPT-2's rule).
    """

    units: int
    bias: bool = True
    initializer: str = "glorot"
    std: float = 0.02
    no_decay: ClassVar[frozenset[str]] = frozenset({"bias"})

    def out_shape(self, s: Shape) -> Shape:
        if len(s) not in (1, 2):
            raise ValueError(f"Dense needs a flat or sequence input, got {s}; add Flatten first")
        return (*s[:-1], self.units)

    def params(self, s: Shape) -> dict[str, Shape]:
        self.out_shape(s)
        out = {"kernel": (s[-1], self.units)}
        return {**out, "bias": (self.units,)} if self.bias else out

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        fan_in = s[-1]
        if self.initializer == "normal":
            p = {"kernel": _normal(rng, (fan_in, self.units), self.std)}
            if self.bias:
                p["bias"] = np.zeros(self.units, np.float32)
            return p, {}
        p = {"kernel": _glorot(rng, (fan_in, self.units), fan_in, self.units)}
        if self.bias:
            p["bias"] = _uniform_bias(rng, (self.units,), fan_in)
        return p, {}

    def macs(self, s: Shape) -> int:
        return _size(s[:-1]) * s[-1] * self.units

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        y = x @ p["kernel"]
        return (y + p["bias"] if self.bias else y), st


@dataclass(frozen=True)
class Conv2D(Layer):
    """2-D cross-correlation, symmetric zero padding kernel // 2 on each side (odd kernel), any
    stride. Not TF/JAX 'SAME', which pads a strided convolution of an even input on one side
    only: the padding is written out in every backend.

    initializer: "glorot" (Glorot-uniform kernel, uniform bias) or "he" (He-normal by fan-out,
    torchvision's ResNet rule).
    """

    filters: int
    kernel: int = 3
    stride: int = 1
    bias: bool = True
    initializer: str = "glorot"
    no_decay: ClassVar[frozenset[str]] = frozenset({"bias"})

    @property
    def padding(self) -> int:
        return self.kernel // 2

    def out_shape(self, s: Shape) -> Shape:
        if len(s) != 3 or self.kernel % 2 == 0:
            raise ValueError(f"Conv2D needs (H, W, C) input and an odd kernel, got {s}")
        h, w = ((d + 2 * self.padding - self.kernel) // self.stride + 1 for d in s[:2])
        return (h, w, self.filters)

    def params(self, s: Shape) -> dict[str, Shape]:
        self.out_shape(s)
        out = {"kernel": (self.kernel, self.kernel, s[2], self.filters)}
        return {**out, "bias": (self.filters,)} if self.bias else out

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        k, c = self.kernel, s[2]
        shape = (k, k, c, self.filters)
        if self.initializer == "he":
            p = {"kernel": _normal(rng, shape, np.sqrt(2.0 / (k * k * self.filters)))}
        else:
            p = {"kernel": _glorot(rng, shape, k * k * c, k * k * self.filters)}
        if self.bias:
            p["bias"] = _uniform_bias(rng, (self.filters,), k * k * c)
        return p, {}

    def macs(self, s: Shape) -> int:
        h, w, f = self.out_shape(s)
        return h * w * self.kernel * self.kernel * s[2] * f

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        k, pad, stride = self.kernel, self.padding, self.stride
        n, _, _, _ = x.shape
        h, w, f = self.out_shape(x.shape[1:])
        xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        y = np.zeros((n, h, w, f))
        for i in range(k):
            for j in range(k):
                window = xp[:, i : i + stride * (h - 1) + 1 : stride,
                            j : j + stride * (w - 1) + 1 : stride, :]
                y += window @ p["kernel"][i, j]
        return (y + p["bias"] if self.bias else y), st


@dataclass(frozen=True)
class MaxPool2D(Layer):
    """Max pooling with window = stride = size, no padding (remainder rows are dropped)."""

    size: int = 2

    def out_shape(self, s: Shape) -> Shape:
        return (s[0] // self.size, s[1] // self.size, s[2])

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        s = self.size
        n, hh, ww, c = x.shape
        x = x[:, : hh - hh % s, : ww - ww % s, :]
        return x.reshape(n, hh // s, s, ww // s, s, c).max(axis=(2, 4)), st


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    """(H, W, C) -> (C,): the mean over the spatial axes."""

    def out_shape(self, s: Shape) -> Shape:
        return (s[2],)

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        return x.mean(axis=(1, 2)), st


@dataclass(frozen=True)
class ReLU(Layer):
    """max(x, 0)."""

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        return np.maximum(x, 0.0), st


@dataclass(frozen=True)
class GELU(Layer):
    """The exact GELU, x * Phi(x) with the error function (torch's default; Flax's default is
    the tanh approximation, so every backend asks for the exact form)."""

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        from math import erf

        return x * 0.5 * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0))), st


@dataclass(frozen=True)
class Flatten(Layer):
    """(H, W, C) -> (H*W*C,), in H, W, C order."""

    def out_shape(self, s: Shape) -> Shape:
        return (_size(s),)

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        return x.reshape(x.shape[0], -1), st


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (channels).

    Training normalises with the batch mean and biased variance and updates the running
    statistics as running = (1 - momentum) * running + momentum * batch, the running variance
    from the *unbiased* batch variance: torch's convention (momentum 0.1 here is Keras's and
    Flax's 0.9, which weight the old value; both also use the biased variance there, so the
    TensorFlow and JAX backends write this update out). Evaluation uses the running statistics.
    """

    momentum: float = 0.1
    eps: float = 1e-5
    no_decay: ClassVar[frozenset[str]] = frozenset({"scale", "offset"})

    def params(self, s: Shape) -> dict[str, Shape]:
        return {"scale": (s[-1],), "offset": (s[-1],)}

    def state(self, s: Shape) -> dict[str, Shape]:
        return {"mean": (s[-1],), "var": (s[-1],)}

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        c = s[-1]
        return ({"scale": np.ones(c, np.float32), "offset": np.zeros(c, np.float32)},
                {"mean": np.zeros(c, np.float32), "var": np.ones(c, np.float32)})

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        axes = tuple(range(x.ndim - 1))
        if train:
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            n = x.size // x.shape[-1]
            m = self.momentum
            st = {"mean": (1 - m) * st["mean"] + m * mean,
                  "var": (1 - m) * st["var"] + m * var * n / (n - 1)}
        else:
            mean, var = st["mean"], st["var"]
        return (x - mean) / np.sqrt(var + self.eps) * p["scale"] + p["offset"], st


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalise the last axis (biased variance, eps inside the square root), then scale and
    offset. Epsilon 1e-5 everywhere (torch's default; Keras's is 1e-3, Flax's 1e-6)."""

    eps: float = 1e-5
    no_decay: ClassVar[frozenset[str]] = frozenset({"scale", "offset"})

    def params(self, s: Shape) -> dict[str, Shape]:
        return {"scale": (s[-1],), "offset": (s[-1],)}

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        return {"scale": np.ones(s[-1], np.float32), "offset": np.zeros(s[-1], np.float32)}, {}

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * p["scale"] + p["offset"], st


@dataclass(frozen=True)
class Embedding(Layer):
    """Token ids (T,) -> vectors (T, dim): a row lookup in a (vocab, dim) table, N(0, 0.02)."""

    vocab: int
    dim: int

    def out_shape(self, s: Shape) -> Shape:
        if len(s) != 1:
            raise ValueError(f"Embedding needs a token sequence (T,), got {s}")
        return (s[0], self.dim)

    def params(self, s: Shape) -> dict[str, Shape]:
        return {"table": (self.vocab, self.dim)}

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        return {"table": _normal(rng, (self.vocab, self.dim), 0.02)}, {}

    def weight_grad_macs(self, s: Shape) -> int:
        return 0  # a scatter-add of the output gradient, no products

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        return p["table"][x.astype(np.int64)], st


@dataclass(frozen=True)
class AddPositions(Layer):
    """Learned absolute position embeddings: (T, D) + table[:T], table (context, D)."""

    context: int

    def out_shape(self, s: Shape) -> Shape:
        if s[0] > self.context:
            raise ValueError(f"sequence of {s[0]} tokens is longer than the context "
                             f"{self.context}")
        return s

    def params(self, s: Shape) -> dict[str, Shape]:
        return {"table": (self.context, s[-1])}

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        return {"table": _normal(rng, (self.context, s[-1]), 0.02)}, {}

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        return x + p["table"][: x.shape[1]], st


@dataclass(frozen=True)
class CausalSelfAttention(Layer):
    """Multi-head causal self-attention core on a fused projection: (T, 3D) -> (T, D).

    The input holds [q | k | v] along the last axis, each split into `heads` contiguous slices;
    scores q.k / sqrt(D / heads), future positions masked, softmax over keys, weighted sum of
    values, heads concatenated. The projections around it are Dense layers, so their FLOPs and
    weights are counted and loaded like any other.
    """

    heads: int

    def out_shape(self, s: Shape) -> Shape:
        if len(s) != 2 or s[1] % (3 * self.heads):
            raise ValueError(f"attention needs (T, 3D) with D divisible by {self.heads} heads, "
                             f"got {s}")
        return (s[0], s[1] // 3)

    def macs(self, s: Shape) -> int:
        t, d = s[0], s[1] // 3
        return 2 * t * t * d  # q.k scores and the weighted sum of values, full T x T computed

    def input_grad_macs(self, s: Shape) -> int:
        return 2 * self.macs(s)  # both operands of both products need a gradient

    def saved_elems(self, s: Shape) -> int:
        return 2 * self.heads * s[0] * s[0] + s[0] * s[1] // 3  # scores, weights, output

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        n, t, d3 = x.shape
        d, h = d3 // 3, self.heads
        q, k, v = (a.reshape(n, t, h, d // h).transpose(0, 2, 1, 3)
                   for a in np.split(x, 3, axis=-1))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // h)
        scores = np.where(np.tril(np.ones((t, t), bool)), scores, -np.inf)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights /= weights.sum(axis=-1, keepdims=True)
        return (weights @ v).transpose(0, 2, 1, 3).reshape(n, t, d), st


@dataclass(frozen=True)
class TiedDense(Layer):
    """Output projection that reuses another layer's (vocab, D) embedding table: (T, D) ->
    (T, vocab) = x @ table.T, no bias (weight tying, as GPT-2). `source` is the table's
    parameter path (see graph.py); the gradient of both uses is summed into it."""

    source: str
    vocab: int

    def tied(self) -> dict[str, str]:
        return {"table": self.source}

    def out_shape(self, s: Shape) -> Shape:
        return (*s[:-1], self.vocab)

    def macs(self, s: Shape) -> int:
        return _size(s[:-1]) * s[-1] * self.vocab

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        return x @ p["table"].T, st


@dataclass(frozen=True)
class LSTM(Layer):
    """One LSTM layer over a sequence (T, in) -> (T, hidden), zero initial state per batch.

    Gates i, f, g, o: [i f g o] = x W + h U + b + b_h; c' = f c + i g; h' = o tanh(c') with
    sigmoid i, f, o and tanh g. Kernels (in, 4H) and (H, 4H), two biases; every array
    uniform(+-1/sqrt(H)) (torch's rule).
    """

    hidden: int
    no_decay: ClassVar[frozenset[str]] = frozenset({"bias", "recurrent_bias"})

    def out_shape(self, s: Shape) -> Shape:
        if len(s) != 2:
            raise ValueError(f"LSTM needs a sequence (T, features), got {s}")
        return (s[0], self.hidden)

    def params(self, s: Shape) -> dict[str, Shape]:
        h4 = 4 * self.hidden
        return {"kernel": (s[1], h4), "recurrent": (self.hidden, h4), "bias": (h4,),
                "recurrent_bias": (h4,)}

    def init(self, s: Shape, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        bound = 1.0 / np.sqrt(self.hidden)
        return {k: rng.uniform(-bound, bound, shape).astype(np.float32)
                for k, shape in self.params(s).items()}, {}

    def macs(self, s: Shape) -> int:
        return s[0] * (s[1] + self.hidden) * 4 * self.hidden

    def ref(self, p: Arrays, st: Arrays, x: np.ndarray, train: bool) -> tuple[np.ndarray, Arrays]:
        n, t, _ = x.shape
        hdim = self.hidden
        h, c = np.zeros((n, hdim)), np.zeros((n, hdim))
        xw = x @ p["kernel"] + p["bias"] + p["recurrent_bias"]
        out = []
        for step in range(t):
            z = xw[:, step] + h @ p["recurrent"]
            i, f, g, o = (z[:, k * hdim : (k + 1) * hdim] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            out.append(h)
        return np.stack(out, axis=1), st


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
