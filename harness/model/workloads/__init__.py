"""The workloads, one module each; adding one is a new module and a line here."""

from __future__ import annotations

from harness.model.workload import Workload
from harness.model.workloads import cnn, lstm, mlp, resnet, transformer

WORKLOADS: dict[str, Workload] = {
    m.WORKLOAD.name: m.WORKLOAD for m in (mlp, cnn, resnet, transformer, lstm)
}
