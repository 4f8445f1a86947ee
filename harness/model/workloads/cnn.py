"""LeNet-style: (conv 3x3 'same', ReLU, max-pool 2) x 2 with 6 and 16 filters, 120, 84, logits."""

from __future__ import annotations

from harness.model.graph import Sequential
from harness.model.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Shape
from harness.model.workload import Size, Target, Workload


def build(input_shape: Shape, classes: int) -> Sequential:
    return Sequential((
        Conv2D(6, 3), ReLU(), MaxPool2D(2),
        Conv2D(16, 3), ReLU(), MaxPool2D(2),
        Flatten(), Dense(120), ReLU(), Dense(84), ReLU(), Dense(classes),
    ))


WORKLOAD = Workload(
    name="cnn",
    description="LeNet-style: (conv 3x3, ReLU, max-pool 2) x 2 with 6 and 16 filters, "
    "then 120, 84, 10",
    input_kind="image", builder=build, dataset="digits",
    sizes={"small": Size({}, "LeNet-style CNN (about 20k parameters on 8x8 digits)")},
    target=Target("accuracy", 0.93),
)
