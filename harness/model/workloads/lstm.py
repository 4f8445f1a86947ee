"""A recurrent language model: token embedding, stacked LSTM layers, a Dense output projection;
byte-level tokens on the same text as the Transformer. Each framework's LSTM path (fused kernel
or a scan) is recorded with the cell."""

from __future__ import annotations

from harness.model.graph import Sequential
from harness.model.layers import LSTM, Dense, Embedding, Shape
from harness.model.workload import Adam, Size, Target, Workload


def build(input_shape: Shape, classes: int, layers: int, embed: int, hidden: int,
          context: int) -> Sequential:
    return Sequential((Embedding(classes, embed), *(LSTM(hidden) for _ in range(layers)),
                       Dense(classes)))


WORKLOAD = Workload(
    name="lstm",
    description="LSTM language model: byte embedding, stacked LSTM layers, Dense output "
    "projection, Adam",
    input_kind="text", builder=build, dataset="pydoc",
    sizes={
        "small": Size({"layers": 2, "embed": 64, "hidden": 128, "context": 64},
                      "2 layers of 128 units, context 64 (0.25M parameters): for a 2-core CPU"),
        "medium": Size({"layers": 2, "embed": 650, "hidden": 650, "context": 35},
                       "Zaremba et al.'s medium PTB model: 2 x 650, 35 steps"),
        "large": Size({"layers": 2, "embed": 1500, "hidden": 1500, "context": 35},
                      "Zaremba et al.'s large PTB model: 2 x 1500, 35 steps"),
    },
    optimizer=Adam(lr=3e-3),
    batch_size=16, epochs=1, metrics=("accuracy", "perplexity"),
    target=Target("perplexity", 8.0),
)
