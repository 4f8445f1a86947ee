"""A framework that does nothing: running it through the whole cell pipeline measures the
harness's own cost per step and per sample (the self-check every run starts with)."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import __version__
from harness.spec import Shape, Workload


def info() -> dict[str, Any]:
    return {"framework_version": __version__, "model_api": "none: every step is a no-op"}


def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
    return {"precision": precision}


class NoopTrainer:
    def __init__(self, num_outputs: int) -> None:
        self.num_outputs = num_outputs

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        return x if y is None else (x, y)

    def step(self, batch: Any) -> float:
        return 0.0

    def predict(self, x: Any) -> np.ndarray:
        return np.zeros((len(x), self.num_outputs), dtype=np.float32)

    def sync(self) -> None:
        pass

    def numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def weights(self) -> list[np.ndarray]:
        return []

    def reset_device_peak(self) -> None:
        pass

    def device_peak_bytes(self) -> int | None:
        return None


def build(workload: Workload, weights: list[np.ndarray], mode: str, device: str,
          input_shape: Shape, precision: str = "fp32") -> NoopTrainer:
    return NoopTrainer(workload.num_outputs)
