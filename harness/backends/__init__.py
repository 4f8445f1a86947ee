"""Backend registry. Names are framework import names; modules are imported lazily.

Each backend package (``harness/backends/<fw>/``) provides ``info() -> dict`` (versions),
``configure(device, precision, threads) -> dict`` (applies thread and precision settings before
anything runs and returns them as read back) and ``build(spec, mode, device, precision) ->
Trainer`` (see ``Spec`` and ``Trainer`` below). Its ``translate.py`` holds the one table from
layer type to that framework's operations; the tree walk is ``harness.model.graph.apply``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from harness.model import graph
from harness.model.layers import Arrays, Shape
from harness.model.workload import Adam, WarmupCosine


@dataclass(frozen=True)
class BackendInfo:
    module: str
    modes: tuple[str, ...]
    import_name: str
    install_hint: str


BACKENDS: dict[str, BackendInfo] = {
    "torch": BackendInfo(
        "harness.backends.torch", ("eager", "compiled"), "torch",
        "pip install 'framebench[torch]' (or let `nox -s bench` make its venv)",
    ),
    "tensorflow": BackendInfo(
        "harness.backends.tensorflow", ("eager", "graph", "compiled"), "tensorflow",
        "pip install 'framebench[tensorflow]' (or let `nox -s bench` make its venv)",
    ),
    "jax": BackendInfo(
        "harness.backends.jax", ("eager", "compiled"), "jax",
        "pip install 'framebench[jax]' (or let `nox -s bench` make its venv)",
    ),
}
FRAMEWORKS = dict(BACKENDS)  # what users choose from; BACKENDS adds the self-check below
SELF_CHECK = "noop"          # a framework that does nothing: the harness's own cost
BACKENDS[SELF_CHECK] = BackendInfo("harness.backends.noop", ("eager",), "numpy", "")

MODE_DESCRIPTIONS = {
    ("torch", "eager"): "torch eager (torch.nn.functional ops, torch.optim.AdamW)",
    ("torch", "compiled"): "torch.compile of the whole step (forward, loss, backward, Adam)",
    ("tensorflow", "eager"): "TF eager (tf ops on tf.Variables, GradientTape)",
    ("tensorflow", "graph"): "tf.function of the whole step, no XLA",
    ("tensorflow", "compiled"): "tf.function(jit_compile=True): the whole step through XLA",
    ("jax", "eager"): "JAX op-by-op dispatch, no jit",
    ("jax", "compiled"): "jax.jit of the whole step, params and Adam state donated",
    (SELF_CHECK, "eager"): "self-check: a step that does nothing (the harness's own cost)",
}

ALL_MODES = tuple(dict.fromkeys(m for b in FRAMEWORKS.values() for m in b.modes))


@dataclass(frozen=True)
class Spec:
    """Everything a backend needs to build one trainer, framework-neutral: the model tree, the
    per-example input shape, the canonical initial arrays, and the optimiser with its schedule
    over a budget of ``total_steps``."""

    model: graph.Sequential
    input_shape: Shape
    params: Arrays
    state: Arrays
    optimizer: Adam
    schedule: WarmupCosine | None = None
    total_steps: int = 1

    @property
    def decay(self) -> dict[str, bool]:
        """Weight-decay mask over the parameters (all False without weight decay)."""
        mask = graph.decay_mask(self.model, self.input_shape)
        return {k: v and self.optimizer.weight_decay > 0 for k, v in mask.items()}

    @property
    def tokens(self) -> bool:
        return len(self.input_shape) == 1

    def lr(self, step: int) -> float:
        """Learning rate of training step ``step`` (1-based)."""
        factor = 1.0 if self.schedule is None else self.schedule.factor(step, self.total_steps)
        return float(self.optimizer.lr * factor)


class Unavailable(RuntimeError):
    """The cell cannot run here (no such device, framework missing): recorded as skipped."""


class Trainer(Protocol):
    """What a backend builds for one cell. Work may be asynchronous until ``sync``."""

    implementation: dict[str, str]  # which path the framework took where it has several

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        """Place a batch on the cell's device in the framework's own layout."""

    def step(self, batch: Any) -> Any:
        """One training step (forward, loss, backward, optimiser update, learning rate of the
        step's place in the schedule); returns the loss handle."""

    def predict(self, x: Any) -> Any:
        """Logits for a placed input, in evaluation behaviour (batch norm on running
        statistics, no gradient)."""

    def sync(self) -> None:
        """Block until every step issued so far has finished, parameter updates included."""

    def numpy(self, value: Any) -> np.ndarray:
        """Copy a framework value (loss, logits) to a numpy array."""

    def weights(self) -> Arrays:
        """Current parameters by path, in the canonical layout and order (harness.model)."""

    def state(self) -> Arrays:
        """Current non-trainable state (batch-norm statistics) by path, canonical layout."""

    def reset_device_peak(self) -> None:
        """Start a new allocator peak on the GPU (no-op on CPU)."""

    def device_peak_bytes(self) -> int | None:
        """The framework allocator's peak on the GPU since the last reset; None on CPU."""


def load(framework: str) -> ModuleType:
    """Import a backend module (and with it its framework)."""
    return importlib.import_module(BACKENDS[framework].module)
