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


# Dense (no sparsity) datasheet peaks in FLOP/s, keyed by the exact GPU name NVML and the CUDA
# runtime report (torch.cuda.get_device_name, JAX's device_kind), so that variants of one chip
# with different clocks and power (H100 SXM, PCIe, NVL) never share a figure. fp32 is plain
# FP32 (CUDA cores); tf32 and bf16 are tensor-core figures with float32 accumulation. NVIDIA
# prints tensor-core figures "with sparsity" (marked *): the dense figure is half of it.
# Sources:
# - H100 SXM, H100 NVL: NVIDIA H100 Tensor Core GPU datasheet (FP32 67 / 60, TF32 989* / 835*,
#   BF16 1,979* / 1,671* TFLOPS); the SXM5 dense figures 494.7 and 989.4 are the H100 whitepaper's
#   ("NVIDIA H100 Tensor Core GPU Architecture", table 3).
# - H100 PCIe: H100 datasheet, 2022 edition (FP32 51, TF32 756*, BF16 1,513* TFLOPS).
# - H200 SXM, H200 NVL: NVIDIA H200 datasheet (FP32 67 / 60, TF32 989* / 835*, BF16 1,979* /
#   1,671* TFLOPS): the H100's compute with more memory.
# - A100 (SXM4 and PCIe, 40 and 80 GB alike): NVIDIA A100 datasheet (FP32 19.5, TF32 156,
#   BF16 312 TFLOPS dense).
# - L4: NVIDIA L4 datasheet (FP32 30.3, TF32 120*, BF16 242* TFLOPS).
# - L40S: NVIDIA L40S datasheet (FP32 91.6, TF32 183 | 366*, BF16 362.05 | 733* TFLOPS).
# - A10: NVIDIA A10 datasheet (FP32 31.2, TF32 62.5, BF16 125 TFLOPS dense).
# - T4: NVIDIA T4 datasheet (FP32 8.1 TFLOPS; Turing has no TF32 or BF16 tensor cores).
# - GeForce RTX 4090: NVIDIA Ada Lovelace architecture whitepaper, appendix table (FP32 82.6;
#   TF32 tensor 82.6, BF16 tensor with FP32 accumulate 165.2 TFLOPS dense).
# A GPU not listed here (or a CPU) has no datasheet figure: its mfu_datasheet stays empty.
_H100_SXM = {"fp32": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12}
_H100_NVL = {"fp32": 60e12, "tf32": 417.5e12, "bf16": 835.5e12}
_A100 = {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12}
DATASHEET_PEAKS: dict[str, dict[str, float]] = {
    "NVIDIA H100 80GB HBM3": _H100_SXM,
    "NVIDIA H100 PCIe": {"fp32": 51e12, "tf32": 378e12, "bf16": 756.5e12},
    "NVIDIA H100 NVL": _H100_NVL,
    "NVIDIA H200": _H100_SXM,
    "NVIDIA H200 NVL": _H100_NVL,
    "NVIDIA A100-SXM4-40GB": _A100,
    "NVIDIA A100-SXM4-80GB": _A100,
    "NVIDIA A100-PCIE-40GB": _A100,
    "NVIDIA A100 80GB PCIe": _A100,
    "NVIDIA L4": {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12},
    "NVIDIA L40S": {"fp32": 91.6e12, "tf32": 183e12, "bf16": 362.05e12},
    "NVIDIA A10": {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12},
    "Tesla T4": {"fp32": 8.1e12},
    "NVIDIA GeForce RTX 4090": {"fp32": 82.6e12, "tf32": 82.6e12, "bf16": 165.2e12},
}


def datasheet_peak(gpu_name: str | None, precision: str) -> float | None:
    """The dense datasheet peak of a GPU at a precision, matched by its exact model name (an
    "NVIDIA H100 PCIe" is not an "NVIDIA H100 80GB HBM3"); None for an unknown model, a
    precision it lacks, or a CPU (none we trust)."""
    if not gpu_name:
        return None
    return DATASHEET_PEAKS.get(" ".join(gpu_name.split()), {}).get(precision)
