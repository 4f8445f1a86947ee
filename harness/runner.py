"""Runs each benchmark cell in a fresh Python process with a timeout.

Cells that will be compared (same tier, workload, size, device, batch and repeat, every
precision of the run: frameworks against each other, a reduced precision against fp32;
debugging modes and the self-check apart) are timed *in turns* (``harness.turns``): their
processes are prepared one after another, then take their timed samples in rotation. A cell
with nothing to pair with, or one the caller asks to time alone, runs start to end on its own.

A cell that raises, crashes or hangs is recorded as failed with the tail of its log and the run
goes on (its partners finish their turns without it); a framework missing from the interpreter
that would run it is recorded as skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import largest, turns
from harness.backends import BACKENDS, SELF_CHECK
from harness.cell import CELL_ENV, OUT_ENV
from harness.limits import MemoryCap
from harness.measure import clock
from harness.record import CellRecord
from harness.record import Outcome as OutcomeFile
from harness.spec import Cell

ROOT = Path(__file__).resolve().parents[1]
BENCH_FILES = {"train": ROOT / "benchmarks" / "test_train_step.py",
               "infer": ROOT / "benchmarks" / "test_infer.py",
               "largest": ROOT / "benchmarks" / "test_largest_batch.py"}  # one per scenario
LOG_TAIL_CHARS = 3000


@dataclass
class Outcome:
    cell: Cell
    status: str                      # ok | failed | skipped | interrupted
    reason: str | None = None
    wall_s: float = 0.0
    record: CellRecord = field(default_factory=CellRecord)
    timing: str = ""                 # turns | alone: <why>
    partners: list[str] = field(default_factory=list)  # the cells timed in the same rotations
    out_of_memory: bool = False      # stopped by the kernel at its --memory-cap
    memory_peak_bytes: int | None = None  # its memory cgroup's peak (with --memory-cap)


Command = Callable[[Cell, Path, str], list[str]]


def cell_command(cell: Cell, out_dir: Path, python: str) -> list[str]:
    """pytest on the cell's scenario's benchmark, its pytest-benchmark JSON kept in the cell's
    folder."""
    bench_file = BENCH_FILES[cell.scenario]
    if not bench_file.exists():
        raise FileNotFoundError(f"{bench_file} not found: run framebench from a source checkout "
                                "(pip install -e .)")
    # torch's data parallelism is one process per replica, started by torchrun (each rank runs
    # the same cell; rank 0 writes the record)
    launch = [python, "-m", "torch.distributed.run", "--standalone",
              f"--nproc-per-node={cell.replicas}", "-m"] if cell.processes > 1 \
        else [python, "-m"]
    return [*launch, "pytest", str(bench_file), "-q", "-s", "-p", "pytest_benchmark.plugin",
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
        threads = str(cell.process_threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if cell.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
        if cell.replicas > 1 and cell.framework == "jax":  # N host-platform devices
            env["XLA_FLAGS"] = " ".join(filter(None, [
                env.get("XLA_FLAGS"), f"--xla_force_host_platform_device_count={cell.replicas}"]))
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


def turn_key(cell: Cell) -> tuple | None:
    """Cells with the same key are compared, so they are timed in turns; None: timed alone."""
    info = BACKENDS.get(cell.framework)
    if cell.framework == SELF_CHECK or info is None or cell.mode in info.debug_modes \
            or cell.scenario != "train" or cell.replicas > 1:
        return None
    return (cell.repeat, cell.tier, cell.workload, cell.size_name, cell.device, cell.batch_size)


def _search_largest(cell: Cell, run_dir: Path, pythons: dict[str, str], timeout_s: float,
                    command: Command, on_start: Callable[[Cell], None] | None,
                    finish: Callable[[Outcome], None],
                    launchable: Callable[[Cell], bool],
                    finished: dict[tuple[str, int], OutcomeFile]) -> None:
    """The largest-batch search of one cell (harness.largest): each try a process of its own,
    at its batch size, timed alone; a try that finished before (a resumed run) is not run
    again (the search, being deterministic, asks for the same tries)."""
    def attempt(batch: int) -> tuple[str, int | None]:
        c = replace(cell, batch_size=batch)
        before = finished.get((c.id, c.repeat))
        if before is not None:
            return (largest.classify(before.status, before.reason, before.out_of_memory),
                    before.memory_peak_bytes)
        if not launchable(c):
            return "skipped", None
        if on_start:
            on_start(c)
        outcome = _Process(c, run_dir, pythons, command, turn=False).wait(timeout_s)
        finish(replace(outcome, timing=f"alone: {_alone_reason(c)}"))
        if outcome.status == "interrupted":
            return "interrupted", None
        return (largest.classify(outcome.status, outcome.reason, outcome.out_of_memory),
                outcome.memory_peak_bytes)

    largest.search(cell.batch_size, attempt,
                   cap=cell.memory_cap if cell.device == "cpu" and cell.memory_cap else None)


def _alone_reason(cell: Cell) -> str:
    if cell.scenario == "largest":
        return "a try of the largest-batch search: one process per batch size"
    if cell.scenario != "train":
        return (f"the {cell.scenario} scenario's cells run one after another (its two "
                "measurements, latency then throughput, are not timed in turns)")
    if cell.replicas > 1:
        return ("data parallel: its processes and threads take the machine's cores, so it "
                "runs alone (not in turns)")
    if turn_key(cell) is None:
        return "debugging mode or self-check: not compared"
    return "no other cell of its comparison group ran"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal reached the runner: its name is the argument."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While cells run, SIGINT (Ctrl-C), SIGTERM (``kill``, a scheduler) and SIGHUP (the
    terminal closed) stop the run the same way, whatever dispositions this process inherited
    (a shell starts background jobs with SIGINT ignored): the running cells' process groups are
    killed, and the finished cells kept. Outside the main thread, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        for s in STOP_SIGNALS:  # once: the cleanup that follows is not interrupted again
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupted_reason(exc: KeyboardInterrupt) -> str:
    return f"interrupted ({exc.args[0] if exc.args else 'SIGINT'})"


def run_cells(cells: Sequence[Cell], run_dir: Path, pythons: dict[str, str] | None = None,
              timeout_s: float = 900.0, command: Command = cell_command,
              on_start: Callable[[Cell], None] | None = None,
              on_done: Callable[[Outcome], None] | None = None,
              refused: dict[str, str] | None = None,
              alone: dict[str, str] | None = None,
              finished: dict[tuple[str, int], OutcomeFile] | None = None) -> list[Outcome]:
    """Run cells in their order, each in a fresh process; the cells of one comparison group
    (``turn_key``) are run together, in turns, when the first of them comes up. On Ctrl-C,
    SIGTERM or SIGHUP (``stop_on_signals``) the running cells are stopped and marked
    interrupted, and the outcomes so far are returned (the caller then writes what was
    measured). Compile caches live in run_dir/cache and are removed at the end (kept when the
    run was interrupted, for --resume). A cell in ``refused`` (cell id: reason, e.g. its
    tuning search failed) is recorded as failed with that reason without running; a cell in
    ``alone`` (cell id: why) is timed on its own, and the reason is recorded. ``finished``
    ((cell id, repeat): its outcome, when a run is resumed) are not run again: a comparison
    group runs again whole unless every member finished, and a largest-batch search takes its
    finished tries as they were."""
    pythons, refused, alone = pythons or {}, refused or {}, alone or {}
    finished = finished or {}
    run_dir = run_dir.resolve()  # cell processes run from the checkout, not from here
    available: dict[str, bool] = {}
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        key = turn_key(cell)
        if key is not None and cell.id not in alone:
            groups.setdefault(key, []).append(cell)
    outcomes: list[Outcome] = []
    started: set[tuple[str, int]] = set()

    def finish(outcome: Outcome) -> None:
        out_dir = run_dir / "cells" / outcome.cell.id / f"r{outcome.cell.repeat}"
        OutcomeFile(outcome.status, outcome.reason, outcome.wall_s, outcome.timing,
                    outcome.partners, outcome.out_of_memory,
                    outcome.memory_peak_bytes).save(out_dir / "outcome.json")
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)

    def launchable(cell: Cell) -> bool:
        """Prepare the cell's folder; record it at once if it cannot or must not run."""
        started.add((cell.id, cell.repeat))
        python = pythons.get(cell.framework, sys.executable)
        out_dir = run_dir / "cells" / cell.id / f"r{cell.repeat}"
        shutil.rmtree(out_dir, ignore_errors=True)  # an unfinished process's files, if resumed
        out_dir.mkdir(parents=True)
        (out_dir / "cell_spec.json").write_text(cell.to_json())
        key = f"{python}:{cell.framework}"
        if key not in available:
            available[key] = framework_available(python, BACKENDS[cell.framework].import_name)
        if not available[key]:
            if on_start:
                on_start(cell)
            finish(Outcome(cell, "skipped", f"{cell.framework} is not installed for {python}: "
                           f"{BACKENDS[cell.framework].install_hint}"))
            return False
        if cell.id in refused:
            if on_start:
                on_start(cell)
            finish(Outcome(cell, "failed", refused[cell.id]))
            return False
        if cell.repeat == 0:
            shutil.rmtree(run_dir / "cache" / cell.id, ignore_errors=True)
        return True

    with stop_on_signals(), _Process.stopped_on_interrupt(finish, timeout_s):
        for cell in cells:
            if (cell.id, cell.repeat) in started:
                continue
            if cell.scenario == "largest":
                _search_largest(cell, run_dir, pythons, timeout_s, command, on_start, finish,
                                launchable, finished)
                if any(o.status == "interrupted" for o in outcomes):
                    break
                continue
            members = (groups.get(turn_key(cell), []) if cell.id not in alone else []) or [cell]
            if all((c.id, c.repeat) in finished for c in members):
                started.update((c.id, c.repeat) for c in members)
                continue
            live = [c for c in members if launchable(c)]
            if len(live) > 1:
                _run_turns(live, run_dir, pythons, timeout_s, command, on_start, finish)
            elif live:
                why = alone.get(cell.id) or _alone_reason(cell)
                if on_start:
                    on_start(live[0])
                proc = _Process(live[0], run_dir, pythons, command, turn=False)
                finish(replace(proc.wait(timeout_s), timing=f"alone: {why}"))
            if any(o.status == "interrupted" for o in outcomes):
                break
    if not any(o.status == "interrupted" for o in outcomes):  # kept for --resume: a later
        shutil.rmtree(run_dir / "cache", ignore_errors=True)  # repeat's caches stay warm
    return outcomes


class _Process:
    """One cell process: started at once, with a turn channel if it is timed in turns."""

    running: set[_Process] = set()  # started and not yet waited for

    @classmethod
    @contextlib.contextmanager
    def stopped_on_interrupt(cls, finish: Callable[[Outcome], None],
                             timeout_s: float) -> Iterator[None]:
        """An interrupt that arrives between the waits (while a cell is launched or its
        outcome written): every process still running is killed and recorded as interrupted,
        and the run ends as after any interrupt."""
        try:
            yield
        except KeyboardInterrupt as exc:
            for p in list(cls.running):
                finish(replace(p.wait(timeout_s, "interrupted", interrupted_reason(exc)),
                               timing="interrupted"))

    def __init__(self, cell: Cell, run_dir: Path, pythons: dict[str, str], command: Command,
                 turn: bool) -> None:
        self.cell = cell
        self.out_dir = run_dir / "cells" / cell.id / f"r{cell.repeat}"
        self.log_path = self.out_dir / "log.txt"
        python = pythons.get(cell.framework, sys.executable)
        env = cell_env(cell, self.out_dir, run_dir / "cache" / cell.id)
        self.channel: turns.Channel | None = None
        child_fds: tuple[int, ...] = ()
        if turn:
            to_cell, from_cell = os.pipe(), os.pipe()
            child_fds = (to_cell[0], from_cell[1])
            env[turns.TURNS_ENV] = f"{to_cell[0]},{from_cell[1]}"
            self.channel = turns.Channel(from_cell[0], to_cell[1])
        argv = command(cell, self.out_dir, python)
        # --memory-cap on a CPU cell: the process joins a memory cgroup of its own before it
        # runs anything, and the kernel holds it to the cap (harness.limits)
        self.cap = MemoryCap(cell.memory_cap) if cell.memory_cap and cell.device == "cpu" \
            else None
        if self.cap is not None:
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"',
                    str(self.cap.path / "cgroup.procs"), *argv]
        self.t0 = clock()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=ROOT, pass_fds=child_fds,
                                         start_new_session=True,  # Ctrl-C reaches us only
                                         preexec_fn=_die_with_parent(os.getpid()))
        _Process.running.add(self)
        for fd in child_fds:
            os.close(fd)
        self.rounds = 0

    def wait(self, timeout_s: float, status: str | None = None,
             reason: str | None = None) -> Outcome:
        """Wait for the process to exit (killing it on timeout or Ctrl-C) and judge it; a
        status given (e.g. failed: it hung in a turn) kills it at once."""
        rc = None
        if status is None:
            try:
                rc = self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                status, reason = "failed", f"timed out after {timeout_s:g} s"
            except KeyboardInterrupt as exc:
                status, reason = "interrupted", interrupted_reason(exc)
        if status is not None:
            self.kill()
        _Process.running.discard(self)
        if self.channel is not None:
            self.channel.close()
        wall = clock() - self.t0
        record = CellRecord.read(self.out_dir / "cell.json")
        if status is None:
            status, reason = _judge(rc, record)
        oom, peak = False, None
        if self.cap is not None:
            oom, peak = self.cap.oom_killed(), self.cap.peak_bytes()
            self.cap.close()
            if oom:
                status, reason = "failed", (
                    f"out of memory: the kernel stopped it at the --memory-cap of "
                    f"{self.cap.limit / 2**20:.0f} MiB (its peak: "
                    f"{(peak or 0) / 2**20:.0f} MiB; finished phases are kept)")
        if status == "failed":
            reason = f"{reason}\n--- log tail ---\n{_tail(self.log_path)}"
        return Outcome(self.cell, status, reason, wall, record, out_of_memory=oom,
                       memory_peak_bytes=peak)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def ask(self, words: tuple[object, ...], timeout_s: float) -> list[str] | None:
        """Send a message (if any) and wait for the reply; None if the process has gone."""
        try:
            if words:
                self.channel.send(*words)
            return self.channel.expect(timeout_s)
        except OSError:  # it closed its end: it exited
            return None


def _run_turns(cells: list[Cell], run_dir: Path, pythons: dict[str, str], timeout_s: float,
               command: Command, on_start: Callable[[Cell], None] | None,
               finish: Callable[[Outcome], None]) -> list[Outcome]:
    """Prepare each cell's process alone, then give them their timed samples in rotation, then
    let each run its checks and exit alone. A process that fails drops out; the rest go on."""
    done: list[Outcome] = []
    ready: list[_Process] = []

    def drop(p: _Process, outcome: Outcome, partners: list[str] | None = None) -> None:
        if p in ready:
            ready.remove(p)
        outcome = replace(outcome, timing="turns", partners=partners or [])
        done.append(outcome)
        finish(outcome)

    current: _Process | None = None
    try:
        for cell in cells:
            if on_start:
                on_start(cell)
            current = p = _Process(cell, run_dir, pythons, command, turn=True)
            try:
                message = p.ask((), timeout_s)
            except TimeoutError:
                drop(p, p.wait(timeout_s, "failed", f"timed out after {timeout_s:g} s"))
                continue
            if message is None or message[0] != "ready":
                drop(p, p.wait(timeout_s))
                continue
            p.rounds = int(message[1])
            ready.append(p)
        rounds = max((p.rounds for p in ready), default=0)
        partners = [p.cell.id for p in ready]
        for p in list(ready):
            with contextlib.suppress(OSError):  # gone already: its first turn finds out
                p.channel.send("rounds", rounds)
        for i in range(turns.WARMUP_ROTATIONS + rounds):
            for p in list(ready if i % 2 == 0 else reversed(ready)):
                time.sleep(turns.SETTLE_S)
                current = p
                try:
                    message = p.ask(("go",), timeout_s)
                except TimeoutError:
                    drop(p, p.wait(timeout_s, "failed", f"a timed sample took more than "
                                   f"{timeout_s:g} s (timed in turns)"))
                    continue
                if message is None:
                    drop(p, p.wait(timeout_s))
        for p in list(ready):
            current = p
            with contextlib.suppress(OSError):  # gone already: wait() judges it
                p.channel.send("finish")
            drop(p, p.wait(timeout_s), partners)
    except KeyboardInterrupt as exc:
        for p in [*ready, *([current] if current and current not in ready else [])]:
            if not any(o.cell == p.cell for o in done):
                drop(p, p.wait(timeout_s, "interrupted", interrupted_reason(exc)))
    return done


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """For Popen's preexec_fn on Linux: the kernel kills the cell process when the runner dies,
    even by SIGKILL (PR_SET_PDEATHSIG), so a killed run leaves no cell running on its own."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the runner died before it was armed
            os._exit(1)
    return arm


def _judge(rc: int | None, record: CellRecord) -> tuple[str, str | None]:
    if record.status == "skipped":
        return "skipped", record.reason
    if rc == 0 and record.status == "ok":
        return "ok", None
    if record.status == "failed":
        return "failed", record.reason
    if rc is not None and rc < 0:
        return "failed", f"crashed: killed by {signal.Signals(-rc).name}"
    if not record.cell_id:
        return "failed", f"exited with code {rc} without writing its record (cell.json)"
    return "failed", f"exited with code {rc} with its record unfinished (status {record.status})"


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]
