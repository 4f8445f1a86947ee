"""The seed article's network, done right: flatten, 128, ReLU, 64, ReLU, one logit per class."""

from __future__ import annotations

from harness.model.graph import Sequential
from harness.model.layers import Dense, Flatten, ReLU, Shape
from harness.model.workload import Size, Target, Workload


def build(input_shape: Shape, classes: int) -> Sequential:
    return Sequential((Flatten(), Dense(128), ReLU(), Dense(64), ReLU(), Dense(classes)))


WORKLOAD = Workload(
    name="mlp",
    description="the seed article's network: flatten, 128, ReLU, 64, ReLU, 10 logits",
    input_kind="image", builder=build, dataset="digits",
    sizes={"small": Size({}, "the seed's MLP (17k parameters on 8x8 digits)")},
    target=Target("accuracy", 0.95),
)
