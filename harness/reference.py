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
    logits = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])
    labels = np.asarray(labels).reshape(-1)
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())
