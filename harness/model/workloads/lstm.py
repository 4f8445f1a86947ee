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
    description="LSTM language model: byte embedding, LSTM layers (one at the default size, two "
    "in the larger ones), Dense output projection, Adam",
    input_kind="text", builder=build, dataset="pydoc",
    sizes={
        "small": Size({"layers": 1, "embed": 64, "hidden": 256, "context": 64},
                      "one layer of 256 units, context 64 (0.41M parameters): for a 2-core CPU"),
        "medium": Size({"layers": 2, "embed": 650, "hidden": 650, "context": 35},
                       "Zaremba et al.'s medium PTB model: 2 x 650, 35 steps"),
        "large": Size({"layers": 2, "embed": 1500, "hidden": 1500, "context": 35},
                      "Zaremba et al.'s large PTB model: 2 x 1500, 35 steps"),
    },
    optimizer=Adam(lr=1e-2),
    batch_size=32, infer_batch_size=64, epochs=0.5, metrics=("accuracy", "perplexity"),
    target=Target("perplexity", 9.0),
)
