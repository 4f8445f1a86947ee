from __future__ import annotations

from harness.flops import datasheet_peak, inference_flops, layer_macs, train_step_flops
from harness.spec import WORKLOADS


def test_mlp_by_hand() -> None:
    mlp = WORKLOADS["mlp"].model("small", (8, 8, 1), 10)
    assert layer_macs(mlp, (8, 8, 1)) == [64 * 128, 128 * 64, 64 * 10]
    assert inference_flops(mlp, (8, 8, 1), 1) == 2 * 17024
    # forward + weight grads + input grads of layers 2 and 3 only (layer 1's input is data)
    assert train_step_flops(mlp, (8, 8, 1), 32) == 32 * 2 * (17024 + 17024 + 8192 + 640)


def test_cnn_by_hand() -> None:
    cnn = WORKLOADS["cnn"].model("small", (8, 8, 1), 10)
    conv1 = 8 * 8 * 3 * 3 * 1 * 6      # 'same' padding keeps 8x8
    conv2 = 4 * 4 * 3 * 3 * 6 * 16     # after 2x2 pooling
    dense = [2 * 2 * 16 * 120, 120 * 84, 84 * 10]
    assert layer_macs(cnn, (8, 8, 1)) == [conv1, conv2, *dense]
    total = conv1 + conv2 + sum(dense)
    assert train_step_flops(cnn, (8, 8, 1), 1) == 2 * (total + total + total - conv1)
    assert layer_macs(WORKLOADS["cnn"].model("small", (28, 28, 1), 10),
                      (28, 28, 1))[0] == 28 * 28 * 9 * 6


def test_transformer_by_hand() -> None:
    """Per token: 12 d^2 of projections per block, the tied output d x vocab; per sequence:
    2 T^2 d of attention per block. The embedding is a lookup (no products, and its input
    gradient is never needed); attention's input gradient costs twice its forward."""
    t, d, v = 16, 128, 256
    model = WORKLOADS["transformer"].model("small", (t,), v)
    dense = 2 * (12 * t * d * d) + t * d * v
    attention = 2 * (2 * t * t * d)
    assert sum(layer_macs(model, (t,))) == dense + attention
    assert train_step_flops(model, (t,), 1) == 2 * (3 * dense + 3 * attention)


def test_lstm_by_hand() -> None:
    """Per token and layer: (input + hidden) x 4 hidden gate products; then the output."""
    t, v = 16, 256
    model = WORKLOADS["lstm"].model("medium", (t,), v)  # 2 layers of 650, embedding 650
    gates = 2 * t * (650 + 650) * 4 * 650
    out = t * 650 * v
    assert layer_macs(model, (t,)) == [gates // 2, gates // 2, out]
    assert train_step_flops(model, (t,), 2) == 2 * 2 * 3 * (gates + out)


def test_datasheet_peaks() -> None:
    assert datasheet_peak("NVIDIA H200", "bf16") == 989.4e12
    assert datasheet_peak("NVIDIA A100-SXM4-80GB", "fp32") == 19.5e12
    assert datasheet_peak("AMD EPYC", "fp32") is None and datasheet_peak(None, "fp32") is None
