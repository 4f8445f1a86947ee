"""Inference paths of a torch model in evaluation behaviour (running batch-norm statistics, no
gradient): eager, ``torch.compile`` of the eval module, and ``torch.export`` saved to bytes and
loaded back (the deployment artefact). The identical tier's functional forward is wrapped in a
module whose parameters are buffers, so every path sees one ``nn.Module``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.backends import INFER_DESCRIPTIONS
from harness.backends.torch.identical import dynamo_counts
from harness.backends.torch.translate import leaf
from harness.model import graph


class Functional(nn.Module):
    """The identical tier's forward (``harness.model.graph.apply`` over translate.py) with its
    parameters and statistics registered as buffers."""

    def __init__(self, trainer: Any) -> None:
        super().__init__()
        self.model = trainer.spec.model  # the framework-neutral tree (harness.model.graph)
        self._names: dict[tuple[str, str, str], str] = {}
        for kind, tree in (("params", trainer.params), ("buffers", trainer.buffers)):
            for path, arrays in tree.items():
                for k, v in arrays.items():
                    name = f"{kind}_{path}_{k}".replace(".", "_")
                    self.register_buffer(name, v.detach().clone())
                    self._names[kind, path, k] = name

    def _tree(self, kind: str) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {}
        for (k_kind, path, k), name in self._names.items():
            if k_kind == kind:
                out.setdefault(path, {})[k] = getattr(self, name)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, _ = graph.apply(self.model, self._tree("params"), self._tree("buffers"), x,
                                False, leaf)
        return logits


class Eval(nn.Module):
    """A model in evaluation behaviour, in the cell's precision (bf16: autocast), float32
    logits out."""

    def __init__(self, inner: nn.Module, device_type: str, bf16: bool) -> None:
        super().__init__()
        self.inner = inner.eval()
        self.device_type, self.bf16 = device_type, bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.inner(x).float()


class Predictor:
    """``for_batch(x)`` prepares the path for one input shape (exporting it, for export) and
    returns the request function: logits of a placed input, on the device."""

    def __init__(self, trainer: Any, tier: str, path: str) -> None:
        inner = trainer.module if tier == "idiomatic" else Functional(trainer)
        self.module = Eval(inner, trainer.device.type, trainer.bf16).eval()
        self.path = path
        self.compiled = torch.compile(self.module) if path == "compiled" else None
        self.manifest = {"path": path, "api": INFER_DESCRIPTIONS["torch", path],
                         "model": type(inner).__name__ if tier == "idiomatic"
                         else "functional forward as an nn.Module (parameters as buffers)"}

    def for_batch(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.path == "eager":
            fn = self.module
        elif self.path == "compiled":
            fn = self.compiled
        else:
            with torch.no_grad():
                program = torch.export.export(self.module, (x,))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
            buffer.seek(0)
            fn = torch.export.load(buffer).module()

        def request(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return fn(x)
        return request

    def compile_stats(self) -> dict[str, int]:
        return dynamo_counts() if self.path == "compiled" else {}


def predictor(trainer: Any, tier: str, path: str) -> Predictor:
    return Predictor(trainer, tier, path)
