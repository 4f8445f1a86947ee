"""Analytic FLOP counts, the same number for every framework.

Counted: 2 FLOPs per multiply-accumulate of Dense and Conv2D layers. A training step is the
forward pass, the weight gradients (same cost as the forward, per layer), and the input
gradients of every layer but the first trainable one (its input is data: no framework computes
that gradient). Bias adds, activations, pooling, the loss and the optimiser update are not
counted: they are O(parameters + activations), a few percent here, and counting them would
pretend a precision the frameworks' own counters do not have either.
"""

from __future__ import annotations

from harness.spec import Conv2D, Dense, Shape, Workload, layer_shapes


def layer_macs(workload: Workload, input_shape: Shape) -> list[int]:
    """Multiply-accumulates per example of each Dense/Conv2D layer, in order."""
    macs = []
    for layer, (shape_in, shape_out) in zip(workload.layers,
                                            layer_shapes(workload.layers, input_shape)):
        if isinstance(layer, Dense):
            macs.append(shape_in[0] * layer.units)
        elif isinstance(layer, Conv2D):
            h, w, filters = shape_out
            macs.append(h * w * layer.kernel * layer.kernel * shape_in[2] * filters)
    return macs


def inference_flops(workload: Workload, input_shape: Shape, batch: int) -> int:
    return 2 * batch * sum(layer_macs(workload, input_shape))


def train_step_flops(workload: Workload, input_shape: Shape, batch: int) -> int:
    macs = layer_macs(workload, input_shape)
    forward = sum(macs)
    weight_grads = sum(macs)
    input_grads = sum(macs[1:])
    return 2 * batch * (forward + weight_grads + input_grads)


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
