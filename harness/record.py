"""The files a run leaves behind, as dataclasses written and read here only: each cell process's
record (``cell.json``), the runner's verdict on it (``outcome.json``) and the run manifest
(``run.json``). Adding a field is one edit: a new attribute with a default. Files are written
to a temporary name and renamed, so a reader never sees half a file; unknown keys (from a newer
version) are ignored and missing ones take their defaults, so old runs stay readable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed over ``path`` once the writing
    succeeded: a reader never sees half a file, and a failed write (a full disk) leaves the
    previous file as it was. The name is this process's own, so two writers never mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    """Atomically write JSON (numpy scalars become Python numbers)."""
    text = json.dumps(value, indent=1, default=_jsonable)
    with atomic(path) as tmp:
        tmp.write_text(text)


SCHEMA_VERSION = 1  # of run.json, plan.json and the tables; a reader refuses a newer one


class UnreadableFile(ValueError):
    """A results file that exists but cannot be used: corrupt, truncated, not what it should
    be, or written by a newer framebench. The message names the file."""


class NewerFile(UnreadableFile):
    """A results file written by a newer framebench (its schema number is higher)."""


def newer(path: Path, version: object) -> NewerFile:
    return NewerFile(f"{path} was written by a newer framebench (schema {version}; this one "
                     f"reads up to {SCHEMA_VERSION}): upgrade framebench to read it")


def read_json(path: Path, strict: bool = False) -> dict[str, Any]:
    """The JSON object in path, or {} if it is missing. Unreadable (corrupt, truncated, not an
    object): {} as well, or with ``strict`` UnreadableFile; so is a newer ``schema``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        if strict:
            raise UnreadableFile(f"{path} cannot be read ({exc})") from None
        return {}
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
    except ValueError as exc:
        if strict:
            raise UnreadableFile(f"{path} is corrupt or truncated ({exc})") from None
        return {}
    schema = value.get("schema", 0)
    if strict and (not isinstance(schema, int) or schema > SCHEMA_VERSION):
        raise newer(path, schema)
    return value


def _from_dict(cls: type[T], raw: dict[str, Any]) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in raw.items() if k in known})


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


@dataclass
class CellRecord:
    """What one cell process measured, phase by phase (saved after every phase, so a crash keeps
    what came before it)."""

    cell_id: str = ""
    repeat: int = 0
    status: str = "running"            # running | ok | failed | skipped
    reason: str | None = None
    started: str | None = None
    ended: str | None = None
    threads: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    framework_info: dict[str, Any] = field(default_factory=dict)
    implementation: dict[str, str] = field(default_factory=dict)
    # the exact configuration: tier, mode, variant, the trainer's own manifest (api, optimizer,
    # compile options, flags, stated differences), settings read back, versions
    manifest: dict[str, Any] = field(default_factory=dict)
    compile_stats: dict[str, int] = field(default_factory=dict)  # graph breaks, recompiles, ...
    # the data and the model
    dataset: str | None = None
    data_source: str | None = None
    data_sha256: str | None = None
    dataset_train_size: int | None = None
    dataset_test_size: int | None = None
    input_shape: list[int] = field(default_factory=list)
    unit: str = "images"               # what throughput counts: images | tokens
    items_per_step: int | None = None  # images, or tokens, per training step
    param_count: int | None = None
    train_step_flops: int | None = None
    inference_flops: int | None = None
    # phases
    import_s: float | None = None
    build_s: float | None = None
    first_step_s: float | None = None
    compile_cache: str | None = None
    train_s: float | None = None
    train_steps: int | None = None
    final_loss: float | None = None
    test_accuracy: float | None = None
    test_perplexity: float | None = None
    target_met: bool | None = None
    losses: list[float] = field(default_factory=list)
    # the time to the target, one entry per seed (harness.cell.seed_run): seed, build_s,
    # first_step_s, compile_cache, evals [[step, training s, metric]], final, steps_to_target,
    # time_to_target_s (None: missed); or {seed, error}
    seeds: list[dict[str, Any]] = field(default_factory=list)
    # steady state
    steps_per_sample: int | None = None
    rounds: int | None = None
    sync_overhead_s: float | None = None
    calibration_step_s: float | None = None
    warmup_samples: int | None = None
    warmup_steps: int | None = None
    warmup_s: float | None = None
    warmup_stable: bool | None = None
    step_samples_s: list[float] = field(default_factory=list)
    sync_check: dict[str, Any] = field(default_factory=dict)
    machine_probe_s: dict[str, dict[str, float]] = field(default_factory=dict)
    # memory
    phase_peak_rss_bytes: dict[str, int | None] = field(default_factory=dict)
    phase_device_peak_bytes: dict[str, int | None] = field(default_factory=dict)
    # wall seconds per phase (import, build, first_step, train, evaluate: every held-out
    # evaluation, warmup, timed: the samples with the waits for the others' turns, seeds)
    phase_s: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int | None = None
    nvml_process_bytes: int | None = None
    # the infer scenario (harness.infer): step_samples_s then holds the request times at the
    # cell's batch size (throughput), first_step_s that batch's first request
    latency_batch: int | None = None
    latency_samples_s: list[float] = field(default_factory=list)  # one per request
    first_request_s: dict[str, float] = field(default_factory=dict)   # batch size: seconds
    # batch size: {"max_error", "tolerance", "rows"}: logits against the numpy reference
    reference_check: dict[str, dict[str, float]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def read(cls, path: Path, strict: bool = False) -> CellRecord:
        return _from_dict(cls, read_json(path, strict))

    @property
    def slowest_probe_s(self) -> float | None:
        """The slowest CPU's machine-probe time, before or after the samples."""
        return max((t for when in self.machine_probe_s.values() for t in when.values()),
                   default=None)


@dataclass
class Outcome:
    """The runner's verdict on one cell process (``outcome.json``)."""

    status: str                        # ok | failed | skipped | interrupted
    reason: str | None = None
    wall_s: float = 0.0
    timing: str = ""                   # turns | alone: <why> (harness.turns)
    partners: list[str] = field(default_factory=list)  # cells timed in the same rotations
    # --memory-cap (harness.limits): the kernel's OOM killer stopped it, and its cgroup's peak
    out_of_memory: bool = False
    memory_peak_bytes: int | None = None
    node: str | None = None            # the Ray node that ran it (harness.launch.ray); None: here

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def read(cls, path: Path, strict: bool = False) -> Outcome | None:
        raw = read_json(path, strict)
        if strict and path.exists() and not isinstance(raw.get("status"), str):
            raise UnreadableFile(f"{path} holds no outcome (no status)")
        return _from_dict(cls, raw) if raw else None


FINAL = ("ok", "failed", "skipped")  # an outcome that --resume keeps (not "interrupted")


@dataclass
class RunManifest:
    """Run-wide facts (``run.json``): identity, command, host, the cells, GEMM peaks per device and
    precision, versions."""

    run_id: str = ""
    started: str | None = None
    ended: str | None = None
    argv: list[str] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)
    cells: list[str] = field(default_factory=list)
    repeats: int = 1
    threads: int | None = None
    precision: str = "fp32"
    tiers: list[str] = field(default_factory=list)
    workloads: dict[str, str] = field(default_factory=dict)      # name: description
    # GEMM peaks for MFU, one per device and precision the cells use, measured pinned and
    # configured like the cells (harness.backends.peak): "<device>-<precision>" (e.g.
    # "cpu-fp32") -> {"flops_per_s": the best framework's, "by_framework": {fw: FLOP/s},
    # "threads", "device_name" (CPU model or GPU name), "datasheet_flops_per_s" (or None), and
    # the settings each framework read back}.
    device_peaks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Before device_peaks (old runs): one float32 peak per framework, each on its default
    # device, unpinned, and their maximum. New runs fill them with the "cpu-fp32" entry.
    gemm_peak_flops_per_s: dict[str, float] = field(default_factory=dict)
    peak_flops_per_s: float | None = None
    framework_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    interrupted: bool = False
    resumed: list[str] = field(default_factory=list)  # when --resume took it up again
    # a Ray run (harness.launch.ray.node_facts): node name -> its host facts, machine probe
    # and Ray resources
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    FILE = "run.json"

    def save(self, run_dir: Path) -> None:
        write_json(run_dir / self.FILE, asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunManifest:
        manifest = _from_dict(cls, read_json(run_dir / cls.FILE, strict=True))
        manifest.run_id = manifest.run_id or run_dir.name
        return manifest

    @classmethod
    def exists(cls, run_dir: Path) -> bool:
        return (run_dir / cls.FILE).exists()


@dataclass
class RunPlan:
    """What a run is to do (``plan.json``), written before its first cell: every cell process in
    order (tuned cells with their variants), the cells refused before running (cell id: why)
    and those timed alone (cell id: why). ``--resume`` runs the unfinished part of it."""

    cells: list[dict[str, Any]] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    alone: dict[str, str] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    FILE = "plan.json"

    def save(self, run_dir: Path) -> None:
        write_json(run_dir / self.FILE, asdict(self))

    @classmethod
    def read(cls, run_dir: Path) -> RunPlan | None:
        raw = read_json(run_dir / cls.FILE, strict=True)
        return _from_dict(cls, raw) if raw else None


class RunLock:
    """The run folder held by one framebench process at a time (an advisory lock on
    ``run.lock``, released by the kernel when the holder exits, however it exits)."""

    FILE = "run.lock"

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / self.FILE
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SystemExit(f"framebench: {self.path.parent} is in use by another framebench "
                             f"process (pid {holder}); wait for it, or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *_: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None

