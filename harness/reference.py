"""Numpy reference forward pass and loss: the oracle every backend is tested against."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.model import graph
from harness.model.layers import Arrays


def forward(model: Any, params: Arrays, state: Arrays, x: np.ndarray,
            train: bool = False) -> tuple[np.ndarray, Arrays]:
    """Logits for a batch, computed in float64 (eval behaviour unless train), and the state
    after it (batch-norm statistics move in training only)."""
    as64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    st64 = {k: np.asarray(v, np.float64) for k, v in state.items()}
    x = np.asarray(x) if np.issubdtype(np.asarray(x).dtype, np.integer) \
        else np.asarray(x, np.float64)
    y, st = graph.apply(model, graph.group(as64), graph.group(st64), x, train,
                        lambda layer, p, s, h, t: layer.ref(p, s, h, t))
    return y, graph.ungroup(st)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy from logits over every leading position (examples, or
    tokens of every sequence), log-sum-exp stabilised."""
    x = np.asarray(logits)
    x = x.reshape(-1, x.shape[-1]) if np.issubdtype(x.dtype, np.floating) \
        else x.reshape(-1, x.shape[-1]).astype(np.float64)
    labels = np.asarray(labels).reshape(-1)
    top = x.max(axis=1, keepdims=True)
    # exp in the logits' own precision (its arguments are <= 0), sums and logs in float64:
    # one pass over the logits, no log-probability matrix (evaluation calls this on ~10^7)
    log_sum = np.log(np.exp(x - top).sum(axis=1, dtype=np.float64)) + top[:, 0]
    return float(np.mean(log_sum - x[np.arange(len(labels)), labels]))
