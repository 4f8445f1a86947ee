"""What a workload declares, explicitly and the same for every framework: its input kind, its
model at each named size, its loss and metrics, its optimiser and learning-rate schedule, its
training budget, its default data and the target it should reach in that budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.model import graph
from harness.model.layers import Shape

BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba) with epsilon added to the square root of the bias-corrected second
    moment (torch's and optax's form; Keras puts it elsewhere, so the TensorFlow backend writes
    the update out). With weight_decay > 0 it is AdamW: decoupled decay,
    p -= lr_t * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p), for the parameters the model's
    decay mask selects (not biases or norms)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    @property
    def name(self) -> str:
        return "AdamW" if self.weight_decay else "Adam"


@dataclass(frozen=True)
class WarmupCosine:
    """Learning rate at step s = 1, 2, ... of a budget of `total` steps: linear warm-up to the
    peak over `warmup` steps, then cosine decay to `end_factor` x peak at the end of the budget,
    and that value afterwards (the steady-state timing runs past the budget)."""

    warmup: int = 100
    end_factor: float = 0.1

    def factor(self, step: Any, total: int, xp: Any = np) -> Any:
        """The multiplier of the peak rate, written once for every framework: ``xp`` is the
        array module that computes it (numpy on the host, ``tf`` or ``jax.numpy`` inside a
        compiled step, where ``step`` is a tensor)."""
        warmup = min(self.warmup, max(total - 1, 1))
        progress = xp.minimum(1.0, (step - warmup) / max(total - warmup, 1))
        cosine = self.end_factor + (1 - self.end_factor) * 0.5 * (1 + xp.cos(math.pi * progress))
        return xp.where(step <= warmup, step / warmup, cosine)


@dataclass(frozen=True)
class Target:
    """The quality a workload reaches at its default budget: metric, direction, value."""

    metric: str           # accuracy | perplexity
    value: float

    def met(self, achieved: float | None) -> bool | None:
        if achieved is None or not np.isfinite(achieved):
            return None if achieved is None else False
        return achieved >= self.value if self.metric == "accuracy" else achieved <= self.value

    def __str__(self) -> str:
        return f"{self.metric} {'≥' if self.metric == 'accuracy' else '≤'} {self.value:g}"


@dataclass(frozen=True)
class Size:
    """A named size: the hyperparameters the model builder takes, and who it is for."""

    hp: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Workload:
    """A model family and how it is trained. ``sizes`` is ordered: the first is the default,
    chosen for this project's 2-core CPU; the others are for a GPU user (``--size``)."""

    name: str
    description: str
    input_kind: str                          # image | text
    builder: Callable[..., graph.Sequential]  # builder(input_shape, classes, **hp)
    sizes: dict[str, Size]
    dataset: str                             # default data, offline
    target: Target
    optimizer: Adam = Adam()
    schedule: WarmupCosine | None = None
    batch_size: int = 32
    infer_batch_size: int = 256              # the infer scenario's throughput batch
    epochs: float = 10                       # training budget (fractions allowed)
    metrics: tuple[str, ...] = ("accuracy",)
    image_shape: Shape | None = None         # canonical image shape (synthetic data takes it)

    @property
    def default_size(self) -> str:
        return next(iter(self.sizes))

    @property
    def loss(self) -> str:
        """Softmax cross-entropy from logits, averaged over examples (images) or over every
        predicted token (text: next-token prediction)."""
        return "next-token cross-entropy" if self.input_kind == "text" else "cross-entropy"

    @property
    def training(self) -> str:
        """The loss, optimiser and schedule in one line (for the report)."""
        o = self.optimizer
        text = (f"{self.loss}; {o.name} lr {o.lr:g}, betas {o.beta1:g}/{o.beta2:g}, "
                f"eps {o.eps:g}")
        if o.weight_decay:
            text += f", decoupled weight decay {o.weight_decay:g} (not on biases or norms)"
        if self.schedule:
            text += (f"; {self.schedule.warmup} warm-up steps, then cosine decay to "
                     f"{self.schedule.end_factor:g}x")
        return text

    @property
    def unit(self) -> str:
        """What throughput counts: images, or tokens for a language model."""
        return "tokens" if self.input_kind == "text" else "images"

    def items_per_example(self, input_shape: Shape) -> int:
        return input_shape[0] if self.input_kind == "text" else 1

    def hp(self, size: str) -> dict[str, Any]:
        if size not in self.sizes:
            raise ValueError(f"unknown size {size!r} of workload {self.name!r}; valid sizes: "
                             f"{', '.join(self.sizes)}")
        return self.sizes[size].hp

    def seq_len(self, size: str) -> int | None:
        """Tokens per example for text workloads (the size's context), else None."""
        return self.hp(size)["context"] if self.input_kind == "text" else None

    def model(self, size: str, input_shape: Shape, classes: int) -> graph.Sequential:
        return self.builder(tuple(input_shape), classes, **self.hp(size))


def train_memory_bytes(model: Any, input_shape: Shape, batch: int) -> int:
    """A lower bound on the memory a float32 training step needs: parameters, gradients and
    Adam's two moments, plus every layer's output kept for the backward pass."""
    params = graph.param_count(model, input_shape)
    saved = sum(n.layer.saved_elems(n.in_shape) for n in graph.nodes(model, input_shape))
    return BYTES_PER_FLOAT * (4 * params + batch * saved)
