"""Benchmark cells and the names users choose from. Imports no framework.

The models and how they are trained live in ``harness.model`` (layers, composition, one module
per workload); this module names what one benchmark cell runs.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, fields

from harness.model.workload import Workload
from harness.model.workloads import WORKLOADS

__all__ = ["DEVICES", "INFER_PATHS", "INFER_TIERS", "PRECISIONS", "SCENARIOS", "WORKLOADS",
           "Cell", "Workload", "check_choice"]

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "tf32", "bf16")
SCENARIOS = {
    "train": "steady-state training throughput (benchmarks/test_train_step.py), and in each "
             "cell's first process the time to the workload's target over --seeds (the "
             "accuracy scenario: its own table and report section)",
    "infer": "deployment: latency per request at batch 1 and throughput at a large batch, "
             "eager, compiled and exported (benchmarks/test_infer.py)",
    "largest": "the largest batch that trains under the memory cap (CPU) or in device memory "
               "(GPU): growth steered by the tries' memory peaks, then bisection, one process "
               "per try "
               "(benchmarks/test_largest_batch.py)",
}
INFER_PATHS = ("eager", "compiled", "export")  # the infer scenario's modes
INFER_TIERS = ("identical", "idiomatic")  # the tuned tier's variants change the training step


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: scenario x framework x tier x workload x size x mode x device x batch
    size (and its budget). A cell runs in a fresh process of its own. New axes are new fields with
    defaults, so old results stay readable.

    A tuned cell names no mode until its search (``harness.tune``) has chosen a variant; its id
    leaves the mode out, so it names the measurement before and after."""

    framework: str
    workload: str
    mode: str
    device: str = "cpu"
    batch_size: int = 32
    dataset: str = ""       # "" = the workload's default
    data_dir: str | None = None
    epochs: float = 10     # the training budget; a fraction of an epoch is allowed
    steady_seconds: float = 1.0
    seed: int = 0
    seeds: int = 1          # training budgets run from seed, seed + 1, ... (time to target)
    precision: str = "fp32"
    threads: int = 0        # CPUs to pin the process to; 0 = its whole affinity mask
    repeat: int = 0         # which fresh process of this cell (0 runs with cold caches)
    train: bool = True      # run the training budget (accuracy, loss curve) before timing
    size: str = ""          # "" = the workload's default size
    tier: str = "identical"  # identical | idiomatic | tuned (harness.backends.TIERS)
    variant: str = ""       # tuned: the variant the search chose
    scenario: str = "train"  # SCENARIOS; infer: mode is one of INFER_PATHS
    memory_cap: int = 0     # bytes of host memory the kernel allows the process (0: no cap)
    # devices the cell trains on, data parallel (the backend's parallel.py): batch_size is per
    # replica, each step takes replicas x batch_size examples and averages the gradients
    replicas: int = 1

    @property
    def workload_spec(self) -> Workload:
        return WORKLOADS[self.workload]

    @property
    def size_name(self) -> str:
        return self.size or self.workload_spec.default_size

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.workload_spec.dataset

    @property
    def global_batch(self) -> int:
        """Examples per training step over all replicas."""
        return self.batch_size * self.replicas

    @property
    def processes(self) -> int:
        """Processes the cell runs: one per replica where the framework's data parallelism
        is (torch DDP), else one."""
        from harness.backends import BACKENDS  # imports no framework

        info = BACKENDS.get(self.framework)
        return self.replicas if info is not None and info.process_per_replica else 1

    @property
    def process_threads(self) -> int:
        """Threads each of the cell's processes runs (0: the whole affinity mask)."""
        return max(1, self.threads // self.processes) if self.threads else 0

    @property
    def devices_name(self) -> str:
        """The device kind, with the replica count where there are several (``cpux2``)."""
        return self.device if self.replicas == 1 else f"{self.device}x{self.replicas}"

    @property
    def id(self) -> str:
        """Names the measurement, not the process: repeats share it."""
        suffix = "" if self.precision == "fp32" else f"-{self.precision}"
        mode = "" if self.tier == "tuned" else f"-{self.mode}"
        scenario = "" if self.scenario == "train" else f"-{self.scenario}"
        return (f"{self.workload}-{self.size_name}-{self.framework}-{self.tier}{mode}"
                f"-{self.devices_name}-b{self.batch_size}{suffix}{scenario}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Cell:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def check_choice(kind: str, name: str, valid: tuple[str, ...] | list[str]) -> str:
    """Return name if valid, else raise ValueError naming the problem, the closest valid name
    (a misspelling) and the valid choices."""
    if name not in valid:
        close = difflib.get_close_matches(name.lower(), list(valid), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint}; valid {kind}s: {', '.join(valid)}")
    return name
