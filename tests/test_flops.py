from __future__ import annotations

from harness.flops import inference_flops, layer_macs, train_step_flops
from harness.spec import WORKLOADS


def test_mlp_by_hand() -> None:
    mlp = WORKLOADS["mlp"]
    assert layer_macs(mlp, (8, 8, 1)) == [64 * 128, 128 * 64, 64 * 10]
    assert inference_flops(mlp, (8, 8, 1), 1) == 2 * 17024
    # forward + weight grads + input grads of layers 2 and 3 only (layer 1's input is data)
    assert train_step_flops(mlp, (8, 8, 1), 32) == 32 * 2 * (17024 + 17024 + 8192 + 640)


def test_cnn_by_hand() -> None:
    cnn = WORKLOADS["cnn"]
    conv1 = 8 * 8 * 3 * 3 * 1 * 6      # 'same' padding keeps 8x8
    conv2 = 4 * 4 * 3 * 3 * 6 * 16     # after 2x2 pooling
    dense = [2 * 2 * 16 * 120, 120 * 84, 84 * 10]
    assert layer_macs(cnn, (8, 8, 1)) == [conv1, conv2, *dense]
    total = conv1 + conv2 + sum(dense)
    assert train_step_flops(cnn, (8, 8, 1), 1) == 2 * (total + total + total - conv1)
    # 28x28 MNIST: the same formula, bigger maps
    assert layer_macs(cnn, (28, 28, 1))[0] == 28 * 28 * 9 * 6


def test_datasheet_peaks() -> None:
    from harness.flops import datasheet_peak

    assert datasheet_peak("NVIDIA H200", "bf16") == 989.4e12
    assert datasheet_peak("NVIDIA A100-SXM4-80GB", "fp32") == 19.5e12
    assert datasheet_peak("AMD EPYC", "fp32") is None and datasheet_peak(None, "fp32") is None
