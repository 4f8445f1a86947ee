"""Framework-neutral workloads: a small layer vocabulary, the optimiser, and benchmark cells.

Canonical conventions every backend translates from: activations are NHWC, a Dense kernel is
(in, out), a Conv2D kernel is HWIO, Flatten flattens in H, W, C order. Imports no framework.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Dense:
    """Fully connected layer: y = x @ kernel + bias."""

    units: int


@dataclass(frozen=True)
class Conv2D:
    """2-D convolution, stride 1, 'same' zero padding (odd kernel, so padding is symmetric)."""

    filters: int
    kernel: int = 3


@dataclass(frozen=True)
class MaxPool2D:
    """Max pooling with window = stride = size, no padding (remainder rows are dropped)."""

    size: int = 2


@dataclass(frozen=True)
class ReLU:
    """max(x, 0)."""


@dataclass(frozen=True)
class Flatten:
    """(H, W, C) -> (H*W*C,), in H, W, C order."""


Layer = Dense | Conv2D | MaxPool2D | ReLU | Flatten


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba), epsilon added to sqrt of the bias-corrected second moment.

    That is torch.optim.Adam's and optax.adam's form; Keras puts epsilon elsewhere, so the
    TensorFlow backend writes the update out rather than using keras.optimizers.Adam.
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass(frozen=True)
class Workload:
    """A model, its loss (softmax cross-entropy from logits), optimiser and training budget."""

    name: str
    description: str
    layers: tuple[Layer, ...]
    optimizer: Adam = Adam()
    batch_size: int = 32
    epochs: int = 10

    @property
    def num_outputs(self) -> int:
        last = self.layers[-1]
        if not isinstance(last, Dense):
            raise ValueError(f"workload {self.name!r} must end in a Dense layer of logits")
        return last.units


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="mlp",
            description="the seed article's network: flatten, 128, ReLU, 64, ReLU, 10 logits",
            layers=(Flatten(), Dense(128), ReLU(), Dense(64), ReLU(), Dense(10)),
        ),
        Workload(
            name="cnn",
            description="LeNet-style: (conv 3x3, ReLU, max-pool 2) x 2 with 6 and 16 filters, "
            "then 120, 84, 10",
            layers=(
                Conv2D(6, 3), ReLU(), MaxPool2D(2),
                Conv2D(16, 3), ReLU(), MaxPool2D(2),
                Flatten(), Dense(120), ReLU(), Dense(84), ReLU(), Dense(10),
            ),
        ),
    )
}

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "bf16")


def layer_shapes(layers: tuple[Layer, ...], input_shape: Shape) -> list[tuple[Shape, Shape]]:
    """(input shape, output shape) of every layer, batch dimension excluded."""
    shapes = []
    shape = tuple(input_shape)
    for layer in layers:
        if isinstance(layer, Dense):
            if len(shape) != 1:
                raise ValueError(f"Dense needs a flat input, got {shape}; add Flatten first")
            out: Shape = (layer.units,)
        elif isinstance(layer, Conv2D):
            if len(shape) != 3 or layer.kernel % 2 == 0:
                raise ValueError(f"Conv2D needs (H, W, C) input and an odd kernel, got {shape}")
            out = (shape[0], shape[1], layer.filters)
        elif isinstance(layer, MaxPool2D):
            out = (shape[0] // layer.size, shape[1] // layer.size, shape[2])
        elif isinstance(layer, Flatten):
            n = 1
            for d in shape:
                n *= d
            out = (n,)
        else:
            out = shape
        shapes.append((shape, out))
        shape = out
    return shapes


def param_shapes(layers: tuple[Layer, ...], input_shape: Shape) -> list[Shape]:
    """Shapes of the trainable arrays in canonical order: kernel then bias, layer by layer."""
    result: list[Shape] = []
    for layer, (shape_in, _) in zip(layers, layer_shapes(layers, input_shape)):
        if isinstance(layer, Dense):
            result += [(shape_in[0], layer.units), (layer.units,)]
        elif isinstance(layer, Conv2D):
            result += [(layer.kernel, layer.kernel, shape_in[2], layer.filters), (layer.filters,)]
    return result


def param_count(layers: tuple[Layer, ...], input_shape: Shape) -> int:
    total = 0
    for shape in param_shapes(layers, input_shape):
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: framework x workload x mode x device x batch size (and its budget).

    A cell runs in a fresh process of its own. New axes (precision, tier, parallelism) are new
    fields with defaults, so old results stay readable.
    """

    framework: str
    workload: str
    mode: str
    device: str = "cpu"
    batch_size: int = 32
    dataset: str = "digits"
    data_dir: str | None = None
    epochs: int = 10
    steady_seconds: float = 2.0
    seed: int = 0
    precision: str = "fp32"
    threads: int = 0        # CPUs to pin the process to; 0 = its whole affinity mask
    repeat: int = 0         # which fresh process of this cell (0 runs with cold caches)
    train: bool = True      # run the training budget (accuracy, loss curve) before timing

    @property
    def id(self) -> str:
        """Names the measurement, not the process: repeats share it."""
        suffix = "" if self.precision == "fp32" else f"-{self.precision}"
        return (f"{self.workload}-{self.framework}-{self.mode}-{self.device}-b{self.batch_size}"
                + suffix)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Cell:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def check_choice(kind: str, name: str, valid: tuple[str, ...] | list[str]) -> str:
    """Return name if valid, else raise ValueError naming the problem and the valid choices."""
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")
    return name
