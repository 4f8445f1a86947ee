"""A CIFAR-style residual network (He et al. 2016, section 4.2): a 3x3 stem, three stages of
basic blocks with 16, 32 and 64 channels (the first block of stages 2 and 3 halves the
resolution), global average pooling and one Dense layer; depth 6n + 2.

Basic block: conv 3x3, batch norm, ReLU, conv 3x3, batch norm, plus the shortcut, then ReLU.
One shortcut rule everywhere: the identity when the shape is kept, else a 1x1 convolution of the
block's stride followed by batch norm (torchvision's "option B"). Convolutions have no bias
(batch norm follows) and He-normal (fan-out) kernels.
"""

from __future__ import annotations

from harness.model.graph import Residual, Sequential
from harness.model.layers import BatchNorm, Conv2D, Dense, GlobalAvgPool, ReLU, Shape
from harness.model.workload import Adam, Size, Target, Workload


def conv(width: int, kernel: int = 3, stride: int = 1) -> Conv2D:
    return Conv2D(width, kernel, stride, bias=False, initializer="he")


def block(channels_in: int, width: int, stride: int) -> Sequential:
    body = Sequential((conv(width, 3, stride), BatchNorm(), ReLU(), conv(width), BatchNorm()))
    shortcut = None
    if stride != 1 or channels_in != width:
        shortcut = Sequential((conv(width, 1, stride), BatchNorm()))
    return Sequential((Residual(body, shortcut), ReLU()))


def build(input_shape: Shape, classes: int, blocks: int,
          widths: tuple[int, ...] = (16, 32, 64)) -> Sequential:
    layers: list = [conv(widths[0]), BatchNorm(), ReLU()]
    channels = widths[0]
    for stage, width in enumerate(widths):
        for b in range(blocks):
            layers.append(block(channels, width, 2 if stage > 0 and b == 0 else 1))
            channels = width
    layers += [GlobalAvgPool(), Dense(classes)]
    return Sequential(tuple(layers))


WORKLOAD = Workload(
    name="resnet",
    description="CIFAR-style ResNet: 3x3 stem, three stages of basic blocks (16/32/64 channels, "
    "batch norm, 1x1-conv shortcut when the shape changes), global average pool, 10 logits",
    input_kind="image", builder=build, dataset="digits32",
    sizes={
        "small": Size({"blocks": 1}, "ResNet-8 (one block per stage, 78k parameters): for a "
                      "2-core CPU"),
        "resnet20": Size({"blocks": 3}, "ResNet-20 (0.27M parameters), the paper's smallest"),
        "resnet56": Size({"blocks": 9}, "ResNet-56 (0.85M parameters)"),
    },
    optimizer=Adam(lr=2e-3),
    batch_size=32, infer_batch_size=128, epochs=3, image_shape=(32, 32, 3),
    target=Target("accuracy", 0.9),
)
