"""A framework that does nothing: running it through the whole cell pipeline measures the
harness's own cost per step and per sample (the self-check every run starts with)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import __version__
from harness.backends import Spec
from harness.model import graph


def info() -> dict[str, Any]:
    return {"framework_version": __version__, "model_api": "none: every step is a no-op"}


def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
    return {"precision": precision}


class NoopTrainer:
    implementation: dict[str, str] = {}
    manifest: dict[str, Any] = {"api": "none", "optimizer": "none", "compile": None,
                                "flags": {}, "differences": ""}

    def __init__(self, output_shape: tuple[int, ...]) -> None:
        self.output_shape = output_shape

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        return x if y is None else (x, y)

    def step(self, batch: Any) -> float:
        return 0.0

    def predict(self, x: Any) -> np.ndarray:
        return np.zeros((len(x), *self.output_shape), dtype=np.float32)

    def sync(self) -> None:
        pass

    def numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def weights(self) -> dict[str, np.ndarray]:
        return {}

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def reset_device_peak(self) -> None:
        pass

    def device_peak_bytes(self) -> int | None:
        return None

    def compile_stats(self) -> dict[str, int]:
        return {}


def build(spec: Spec, mode: str, device: str, precision: str = "fp32", tier: str = "identical",
          variant: str = "") -> NoopTrainer:
    return NoopTrainer(graph.output_shape(spec.model, spec.input_shape))
