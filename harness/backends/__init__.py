"""Backend registry. Names are framework import names; modules are imported lazily.

Each backend module provides ``info() -> dict`` (versions), ``configure(device, precision,
threads) -> dict`` (applies thread and precision settings before anything runs and returns them
as read back) and ``build(workload, weights, mode, device, input_shape, precision) -> Trainer``
(see ``Trainer`` below).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class BackendInfo:
    module: str
    modes: tuple[str, ...]
    import_name: str
    install_hint: str


BACKENDS: dict[str, BackendInfo] = {
    "torch": BackendInfo(
        "harness.backends.torch_backend", ("eager", "compiled"), "torch",
        "pip install 'framebench[torch]' (or let `nox -s bench` make its venv)",
    ),
    "tensorflow": BackendInfo(
        "harness.backends.tensorflow_backend", ("eager", "graph", "compiled"), "tensorflow",
        "pip install 'framebench[tensorflow]' (or let `nox -s bench` make its venv)",
    ),
    "jax": BackendInfo(
        "harness.backends.jax_backend", ("eager", "compiled"), "jax",
        "pip install 'framebench[jax]' (or let `nox -s bench` make its venv)",
    ),
}
FRAMEWORKS = dict(BACKENDS)  # what users choose from; BACKENDS adds the self-check below
BACKENDS["noop"] = BackendInfo("harness.backends.noop_backend", ("eager",), "numpy", "")

MODE_DESCRIPTIONS = {
    ("torch", "eager"): "torch eager (nn.Sequential, torch.optim.Adam)",
    ("torch", "compiled"): "torch.compile of the whole step (forward, loss, backward, Adam)",
    ("tensorflow", "eager"): "TF eager (Keras layers, GradientTape)",
    ("tensorflow", "graph"): "tf.function of the whole step, no XLA",
    ("tensorflow", "compiled"): "tf.function(jit_compile=True): the whole step through XLA",
    ("jax", "eager"): "JAX op-by-op dispatch, no jit",
    ("jax", "compiled"): "jax.jit of the whole step, params and Adam state donated",
    ("noop", "eager"): "self-check: a step that does nothing (the harness's own cost)",
}

ALL_MODES = tuple(dict.fromkeys(m for b in FRAMEWORKS.values() for m in b.modes))


class Unavailable(RuntimeError):
    """The cell cannot run here (no such device, framework missing): recorded as skipped."""


class Trainer(Protocol):
    """What a backend builds for one cell. Work may be asynchronous until ``sync``."""

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        """Place a batch on the cell's device in the framework's own layout."""

    def step(self, batch: Any) -> Any:
        """One training step (forward, loss, backward, Adam update); returns the loss handle."""

    def predict(self, x: Any) -> Any:
        """Logits for a placed input."""

    def sync(self) -> None:
        """Block until every step issued so far has finished, parameter updates included."""

    def numpy(self, value: Any) -> np.ndarray:
        """Copy a framework value (loss, logits) to a numpy array."""

    def weights(self) -> list[np.ndarray]:
        """Current parameters in the canonical layout and order (see harness.spec)."""

    def reset_device_peak(self) -> None:
        """Start a new allocator peak on the GPU (no-op on CPU)."""

    def device_peak_bytes(self) -> int | None:
        """The framework allocator's peak on the GPU since the last reset; None on CPU."""


def load(framework: str) -> ModuleType:
    """Import a backend module (and with it its framework)."""
    return importlib.import_module(BACKENDS[framework].module)
