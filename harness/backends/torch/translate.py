"""Layer type -> PyTorch operations (torch.nn.functional), with the weight layout conversions.

Images run NCHW inside torch (the batch is permuted once when it is placed); features and
tokens keep their canonical layout. Each entry: forward(layer, params, state, x, train) ->
(y, state), and optionally the conversion of the layer's canonical arrays to torch's layout
and back. Batch norm updates its running statistics in place (F.batch_norm), as torch does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.model import layers as L

Arrays = dict[str, Any]


def _dense(layer: L.Dense, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.linear(x, p["kernel"], p.get("bias")), s


def _conv(layer: L.Conv2D, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.conv2d(x, p["kernel"], p.get("bias"), layer.stride, layer.padding), s


def _maxpool(layer: L.MaxPool2D, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.max_pool2d(x, layer.size), s


def _global_avg(layer: L.GlobalAvgPool, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return x.mean(dim=(2, 3)), s


def _relu(layer: L.ReLU, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.relu(x), s


def _gelu(layer: L.GELU, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.gelu(x, approximate="none"), s


def _flatten(layer: L.Flatten, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    if x.dim() == 4:  # NCHW -> the canonical H, W, C order before flattening
        x = x.permute(0, 2, 3, 1)
    return x.flatten(1), s


def _batchnorm(layer: L.BatchNorm, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    y = F.batch_norm(x, s["mean"], s["var"], p["scale"], p["offset"], training=train,
                     momentum=layer.momentum, eps=layer.eps)
    return y, s


def _layernorm(layer: L.LayerNorm, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.layer_norm(x, (x.shape[-1],), p["scale"], p["offset"], layer.eps), s


def _embedding(layer: L.Embedding, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.embedding(x, p["table"]), s


def _positions(layer: L.AddPositions, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return x + p["table"][: x.shape[1]], s


def _attention(layer: L.CausalSelfAttention, p: Arrays, s: Arrays, x: torch.Tensor,
               train: bool):
    n, t, d3 = x.shape
    d, h = d3 // 3, layer.heads
    q, k, v = (a.reshape(n, t, h, d // h).transpose(1, 2) for a in x.split(d, dim=-1))
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
    mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(n, t, d), s


def _tied(layer: L.TiedDense, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    return F.linear(x, p["table"]), s


def _lstm(layer: L.LSTM, p: Arrays, s: Arrays, x: torch.Tensor, train: bool):
    zeros = x.new_zeros(1, x.shape[0], layer.hidden)
    weights = [p["kernel"], p["recurrent"], p["bias"], p["recurrent_bias"]]
    out, _, _ = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, train, False, True)
    return out, s


def _t(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def _kernels_t(p: Arrays) -> Arrays:
    return {k: _t(v) if k in ("kernel", "recurrent") else v for k, v in p.items()}


def _oihw(p: Arrays) -> Arrays:
    return {**p, "kernel": np.ascontiguousarray(p["kernel"].transpose(3, 2, 0, 1))}


def _hwio(p: Arrays) -> Arrays:
    return {**p, "kernel": np.ascontiguousarray(p["kernel"].transpose(2, 3, 1, 0))}


def _same(p: Arrays) -> Arrays:
    return p


@dataclass(frozen=True)
class Translation:
    forward: Callable[..., tuple[Any, Arrays]]
    to_torch: Callable[[Arrays], Arrays] = _same      # canonical layout -> torch's
    from_torch: Callable[[Arrays], Arrays] = _same    # and back


TABLE: dict[type, Translation] = {
    L.Dense: Translation(_dense, _kernels_t, _kernels_t),      # Linear weight is (out, in)
    L.Conv2D: Translation(_conv, _oihw, _hwio),
    L.MaxPool2D: Translation(_maxpool),
    L.GlobalAvgPool: Translation(_global_avg),
    L.ReLU: Translation(_relu),
    L.GELU: Translation(_gelu),
    L.Flatten: Translation(_flatten),
    L.BatchNorm: Translation(_batchnorm),
    L.LayerNorm: Translation(_layernorm),
    L.Embedding: Translation(_embedding),
    L.AddPositions: Translation(_positions),
    L.CausalSelfAttention: Translation(_attention),
    L.TiedDense: Translation(_tied),
    L.LSTM: Translation(_lstm, _kernels_t, _kernels_t),        # (4H, in) and (4H, H)
}

IMPLEMENTATION = {L.LSTM: "torch.lstm: ATen's fused LSTM (cuDNN on GPU)",
                  L.CausalSelfAttention: "explicit matmul, mask, softmax, matmul"}


def leaf(layer: Any, p: Arrays, s: Arrays, x: Any, train: bool) -> tuple[Any, Arrays]:
    return TABLE[type(layer)].forward(layer, p, s, x, train)
