"""The numpy reference (the oracle) against hand computations of each layer's semantics."""

from __future__ import annotations

import math

import numpy as np

from harness import reference
from harness.model import graph
from harness.model.layers import (
    GELU,
    LSTM,
    BatchNorm,
    CausalSelfAttention,
    Conv2D,
    LayerNorm,
    MaxPool2D,
)


def test_conv_matches_a_direct_loop_with_stride_and_symmetric_padding() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5, 3))
    k = rng.normal(size=(3, 3, 3, 2))
    for stride in (1, 2):
        got, _ = Conv2D(2, 3, stride, bias=False).ref({"kernel": k}, {}, x, True)
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # one row and column on each side
        h, w = (6 + 2 - 3) // stride + 1, (5 + 2 - 3) // stride + 1
        want = np.zeros((2, h, w, 2))
        for n in range(2):
            for i in range(h):
                for j in range(w):
                    patch = xp[n, i * stride:i * stride + 3, j * stride:j * stride + 3, :]
                    want[n, i, j] = np.tensordot(patch, k, axes=3)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_maxpool_and_bias() -> None:
    model = graph.Sequential((Conv2D(1, 1), MaxPool2D(2)))
    x = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    out, _ = reference.forward(model, {"0.kernel": np.ones((1, 1, 1, 1)),
                                       "0.bias": np.array([0.5])}, {}, x)
    np.testing.assert_array_equal(out[0, :, :, 0], [[5.5, 7.5], [13.5, 15.5]])


def test_batchnorm_train_and_eval() -> None:
    """Batch statistics in training, torch's momentum convention with the unbiased variance
    for the running estimate; running statistics at evaluation."""
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(4, 2, 2, 3))
    bn = BatchNorm(momentum=0.1, eps=1e-5)
    p = {"scale": np.full(3, 2.0), "offset": np.full(3, 0.5)}
    st = {"mean": np.zeros(3), "var": np.ones(3)}
    y, new = bn.ref(p, st, x, train=True)
    flat = x.reshape(-1, 3)
    np.testing.assert_allclose(y.reshape(-1, 3).mean(0), 0.5, atol=1e-12)
    np.testing.assert_allclose(new["mean"], 0.1 * flat.mean(0))
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * flat.var(0, ddof=1))
    y_eval, same = bn.ref(p, new, x, train=False)
    assert same is new
    np.testing.assert_allclose(y_eval, (x - new["mean"]) / np.sqrt(new["var"] + 1e-5) * 2 + 0.5)


def test_layernorm_and_exact_gelu() -> None:
    x = np.array([[1.0, 2.0, 3.0, 6.0]])
    y, _ = LayerNorm().ref({"scale": np.ones(4), "offset": np.zeros(4)}, {}, x, True)
    np.testing.assert_allclose(y, (x - 3) / np.sqrt(3.5 + 1e-5))
    g, _ = GELU().ref({}, {}, np.array([1.0, -1.0]), True)
    np.testing.assert_allclose(g, [0.8413447460685429, -0.15865525393145707], rtol=1e-12)


def test_attention_is_causal_and_sums_values() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 5, 3 * 4))
    att = CausalSelfAttention(heads=2)
    y, _ = att.ref({}, {}, x, True)
    assert y.shape == (1, 5, 4)
    x2 = x.copy()
    x2[0, 3:] += 10.0  # the future changes ...
    y2, _ = att.ref({}, {}, x2, True)
    np.testing.assert_allclose(y2[0, :3], y[0, :3])  # ... and the past does not see it
    np.testing.assert_allclose(y[0, 0], x[0, 0, 8:])  # the first token attends to itself only


def test_lstm_one_step_by_hand() -> None:
    rng = np.random.default_rng(3)
    lstm = LSTM(hidden=2)
    p, _ = lstm.init((1, 3), rng)
    x = rng.normal(size=(1, 1, 3))
    y, _ = lstm.ref(p, {}, x, True)
    z = x[0, 0] @ p["kernel"] + p["bias"] + p["recurrent_bias"]  # h0 = c0 = 0
    i, f, g, o = np.split(z, 4)
    c = 1 / (1 + np.exp(-i)) * np.tanh(g)
    np.testing.assert_allclose(y[0, 0], 1 / (1 + np.exp(-o)) * np.tanh(c), rtol=1e-6)


def test_cross_entropy_from_logits_over_tokens() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    want = -(math.log(p0) + math.log(1 / 3)) / 2
    assert abs(reference.cross_entropy(logits, labels) - want) < 1e-12
    # (batch, time, vocab) logits average over every token
    assert abs(reference.cross_entropy(logits[None], labels[None]) - want) < 1e-12
    assert np.isfinite(reference.cross_entropy(logits * 1e4, labels))  # stable for huge logits
