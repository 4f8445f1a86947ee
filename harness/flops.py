"""Analytic FLOP counts, the same number for every framework.

Counted: 2 FLOPs per multiply-accumulate of the matrix products each layer declares
(``Layer.macs``: Dense, Conv2D, LSTM gates, attention scores and weighted sums, the tied output
projection). A training step is the forward pass, the weight gradients and the input gradients
of every layer after the first trainable one (before it the input is data: no framework
computes that gradient). Bias adds, activations, normalisation, pooling, the loss and the
optimiser update are not counted: they are O(parameters + activations), a few percent, and
counting them would pretend a precision the frameworks' own counters do not have either.
"""

from __future__ import annotations

from typing import Any

from harness.model import graph
from harness.model.layers import Shape


def layer_macs(model: Any, input_shape: Shape) -> list[int]:
    """Forward multiply-accumulates per example of each layer that has any, in order."""
    return [m for n in graph.nodes(model, input_shape) if (m := n.layer.macs(n.in_shape))]


def inference_flops(model: Any, input_shape: Shape, batch: int) -> int:
    return 2 * batch * sum(layer_macs(model, input_shape))


def train_step_flops(model: Any, input_shape: Shape, batch: int) -> int:
    total, trainable_before = 0, False
    for n in graph.nodes(model, input_shape):
        layer, s = n.layer, n.in_shape
        total += layer.macs(s) + layer.weight_grad_macs(s)
        if trainable_before:
            total += layer.input_grad_macs(s)
        trainable_before = trainable_before or bool(layer.params(s) or layer.tied())
    return 2 * batch * total


# Dense (no sparsity) datasheet peaks in FLOP/s, by GPU name fragment and precision. fp32 is
# plain FP32 (CUDA cores); tf32 and bf16 are tensor-core figures.
DATASHEET_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12},
    "H100": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12},   # SXM
    "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12},
}


def datasheet_peak(gpu_name: str | None, precision: str) -> float | None:
    """The datasheet peak of a known GPU at a precision, else None (CPUs have none we trust)."""
    for fragment, peaks in DATASHEET_PEAKS.items():
        if gpu_name and fragment in gpu_name:
            return peaks.get(precision)
    return None
