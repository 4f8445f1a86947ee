"""Runs each benchmark cell in a fresh Python process with a timeout.

A cell that raises, crashes or hangs is recorded as failed with the tail of its log and the run
goes on; a framework missing from the interpreter that would run it is recorded as skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends import BACKENDS
from harness.cell import CELL_ENV, OUT_ENV
from harness.measure import clock
from harness.record import CellRecord
from harness.record import Outcome as OutcomeFile
from harness.spec import Cell

ROOT = Path(__file__).resolve().parents[1]
BENCH_FILE = ROOT / "benchmarks" / "test_train_step.py"
LOG_TAIL_CHARS = 3000


@dataclass
class Outcome:
    cell: Cell
    status: str                      # ok | failed | skipped | interrupted
    reason: str | None = None
    wall_s: float = 0.0
    record: CellRecord = field(default_factory=CellRecord)


Command = Callable[[Cell, Path, str], list[str]]


def cell_command(cell: Cell, out_dir: Path, python: str) -> list[str]:
    """pytest on the steady-state benchmark, its pytest-benchmark JSON kept in the cell's folder."""
    if not BENCH_FILE.exists():
        raise FileNotFoundError(f"{BENCH_FILE} not found: run framebench from a source checkout "
                                "(pip install -e .)")
    return [python, "-m", "pytest", str(BENCH_FILE), "-q", "-s", "-p", "pytest_benchmark.plugin",
            "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(ROOT),
            f"--benchmark-json={out_dir / 'benchmark.json'}"]


def child_env() -> dict[str, str]:
    """Environment for any child that imports harness from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cell_env(cell: Cell, out_dir: Path, cache: Path) -> dict[str, str]:
    """The cell's environment. `cache` holds the persistent compile caches of this cell: empty
    for repeat 0 (cold compile), kept for later repeats (warm: what a second run sees)."""
    env = child_env()
    env.update({
        CELL_ENV: cell.to_json(), OUT_ENV: str(out_dir),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONUNBUFFERED": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "TRITON_CACHE_DIR": str(cache / "triton"),
        "JAX_COMPILATION_CACHE_DIR": str(cache / "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",  # NVML and the frameworks number GPUs alike
    })
    if cell.threads:  # OpenMP/MKL pools (torch's among them) sized like the affinity mask
        env.update(OMP_NUM_THREADS=str(cell.threads), MKL_NUM_THREADS=str(cell.threads))
    if cell.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    else:
        # Allocate on demand so memory figures mean something and frameworks can coexist.
        env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false", TF_FORCE_GPU_ALLOW_GROWTH="true")
    return env


def framework_available(python: str, framework: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({framework!r}) is None)"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=60)
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def framework_version(python: str, import_name: str) -> str | None:
    """The installed version of a framework in an interpreter, without importing it."""
    probe = ("import importlib.metadata as m; n = " + repr(import_name) + "; "
             "print(m.version(m.packages_distributions().get(n, [n])[0]))")
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_cells(cells: Sequence[Cell], run_dir: Path, pythons: dict[str, str] | None = None,
              timeout_s: float = 900.0, command: Command = cell_command,
              on_start: Callable[[Cell], None] | None = None,
              on_done: Callable[[Outcome], None] | None = None,
              refused: dict[str, str] | None = None) -> list[Outcome]:
    """Run cells one after another, each in a fresh process. On Ctrl-C the running cell is
    stopped and marked interrupted, and the outcomes so far are returned (the caller then writes
    what was measured). Compile caches live in run_dir/cache and are removed at the end.
    A cell in ``refused`` (cell id: reason, e.g. its tuning search failed) is recorded as
    failed with that reason without running."""
    pythons, refused = pythons or {}, refused or {}
    run_dir = run_dir.resolve()  # cell processes run from the checkout, not from here
    available: dict[str, bool] = {}
    outcomes: list[Outcome] = []
    for cell in cells:
        python = pythons.get(cell.framework, sys.executable)
        out_dir = run_dir / "cells" / cell.id / f"r{cell.repeat}"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "cell_spec.json").write_text(cell.to_json())
        if on_start:
            on_start(cell)
        key = f"{python}:{cell.framework}"
        try:
            if key not in available:
                available[key] = framework_available(python, BACKENDS[cell.framework].import_name)
            if not available[key]:
                outcome = Outcome(cell, "skipped", f"{cell.framework} is not installed for "
                                  f"{python}: {BACKENDS[cell.framework].install_hint}")
            elif cell.id in refused:
                outcome = Outcome(cell, "failed", refused[cell.id])
            else:
                cache = run_dir / "cache" / cell.id
                if cell.repeat == 0:
                    shutil.rmtree(cache, ignore_errors=True)
                outcome = _run_one(cell, out_dir, python, timeout_s, command, cache)
        except KeyboardInterrupt:
            outcome = Outcome(cell, "interrupted", "interrupted (Ctrl-C)")
        OutcomeFile(outcome.status, outcome.reason, outcome.wall_s).save(out_dir / "outcome.json")
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
        if outcome.status == "interrupted":
            break
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    return outcomes


def _run_one(cell: Cell, out_dir: Path, python: str, timeout_s: float,
             command: Command, cache: Path) -> Outcome:
    log_path = out_dir / "log.txt"
    t0 = clock()
    status = reason = None
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command(cell, out_dir, python), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=cell_env(cell, out_dir, cache), cwd=ROOT,
                                start_new_session=True)  # Ctrl-C reaches us, not the cell
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc, status, reason = None, "failed", f"timed out after {timeout_s:g} s"
        except KeyboardInterrupt:
            _kill(proc)
            rc, status, reason = None, "interrupted", "interrupted (Ctrl-C)"
    wall = clock() - t0
    record = CellRecord.read(out_dir / "cell.json")
    if status is None:
        status, reason = _judge(rc, record)
    if status == "failed":
        reason = f"{reason}\n--- log tail ---\n{_tail(log_path)}"
    return Outcome(cell, status, reason, wall, record)


def _judge(rc: int | None, record: CellRecord) -> tuple[str, str | None]:
    if record.status == "skipped":
        return "skipped", record.reason
    if rc == 0 and record.status == "ok":
        return "ok", None
    if record.status == "failed":
        return "failed", record.reason
    if rc is not None and rc < 0:
        return "failed", f"crashed: killed by {signal.Signals(-rc).name}"
    return "failed", f"exited with code {rc}"


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]
