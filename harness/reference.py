"""Numpy reference forward pass and loss: the oracle every backend is tested against."""

from __future__ import annotations

import numpy as np

from harness.spec import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Workload


def forward(workload: Workload, weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits for x (N, H, W, C), computed in float64."""
    h = np.asarray(x, dtype=np.float64)
    params = iter(np.asarray(w, dtype=np.float64) for w in weights)
    for layer in workload.layers:
        if isinstance(layer, Dense):
            kernel, bias = next(params), next(params)
            h = h @ kernel + bias
        elif isinstance(layer, Conv2D):
            kernel, bias = next(params), next(params)
            h = _conv_same(h, kernel) + bias
        elif isinstance(layer, MaxPool2D):
            s = layer.size
            n, hh, ww, c = h.shape
            h = h[:, : hh - hh % s, : ww - ww % s, :]
            h = h.reshape(n, hh // s, s, ww // s, s, c).max(axis=(2, 4))
        elif isinstance(layer, ReLU):
            h = np.maximum(h, 0.0)
        elif isinstance(layer, Flatten):
            h = h.reshape(h.shape[0], -1)
    return h


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Stride-1 'same' cross-correlation, NHWC input and HWIO kernel (what every framework calls
    convolution)."""
    k = kernel.shape[0]
    p = k // 2
    n, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[3]))
    for i in range(k):
        for j in range(k):
            out += xp[:, i : i + h, j : j + w, :] @ kernel[i, j]
    return out


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy from logits (log-sum-exp stabilised)."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())
