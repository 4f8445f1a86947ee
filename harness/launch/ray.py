"""Runs a run's cells on a Ray cluster, with the contract of ``harness.runner.run_cells``.

Each *unit* of the local runner (a comparison group timed in turns, a cell timed alone, a
largest-batch search) becomes one Ray task. On its node the task runs the unit with the local
runner itself, so the cell processes, turns, timeouts, memory caps and records are exactly the
local ones, then sends the unit's cell folders back; the driver writes them into
``run_dir/cells`` as they come, each outcome naming its node. Units run at once on as many
nodes as have a free timing slot. The driver imports no framework.

Every node needs the checkout at the same path as the driver's, ray, and the framework
interpreters that ``pythons`` names (without one, a framework runs in the Ray worker's own
interpreter), and offers one timing slot, so that two units never time on one machine at
once::

    ray start --head --resources '{"framebench": 1}'                  # the first node
    ray start --address HEAD:6379 --resources '{"framebench": 1}'     # every other node

Without the slot anywhere, a unit asks for its cells' CPUs instead (a warning says so), and
units may then share a node. A CUDA unit asks for as many GPUs as its largest cell has
replicas, and Ray pins it to them (``CUDA_VISIBLE_DEVICES``). A crash, a timeout or a lost
worker is a result: a task is never retried. Later repeats of a unit run on the node of its
previous repeat, where its compile caches are (warm caches, as locally).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError, WorkerCrashedError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness import measure, runner
from harness.measure import clock
from harness.record import Outcome as OutcomeFile
from harness.spec import Cell

SLOT = "framebench"     # the custom resource of a node's timing slot: one per node
UNIT_MARGIN_S = 120.0   # a unit's wait beyond its cells' timeouts: Ray's start, packing, transfer
SEARCH_TRIES = 32       # tries a largest-batch search may take (harness.largest), for its wait
_SAFE_TAR = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colours of Ray's tracebacks
POLL_S = 1.0            # the driver looks at its deadlines at least this often
CANCEL_WAIT_S = 10.0    # how long the driver waits for cancelled tasks to end
# set by Ray in a worker for each task, where the node sets none: not for the cell processes
RAY_THREAD_VARS = ("OMP_NUM_THREADS",)


@dataclass
class NodeOutcome(runner.Outcome):
    """A cell's outcome from a Ray node: the local runner's, with where it ran."""

    node: str | None = None      # node_name() of the node that ran it
    devices: str | None = None   # the CUDA_VISIBLE_DEVICES Ray gave its task (None: unset)


def node_name(hostname: str, node_id: str) -> str:
    """How a run names a node (Outcome.node, RunManifest.nodes): host and Ray node id."""
    return f"{hostname}:{node_id[:8]}"


def connect(address: str | None = None) -> None:
    """Connect this process to Ray once: to the cluster at ``address``, or (None) a local
    cluster started here, with this machine's timing slot. An existing connection is kept."""
    if ray.is_initialized():
        return
    common = {"runtime_env": _runtime_env(), "log_to_driver": False,
              "logging_level": logging.WARNING}
    if address is None:
        ray.init(resources={SLOT: 1}, include_dashboard=False, **common)
    else:
        ray.init(address=address, **common)


def _runtime_env() -> dict[str, Any]:
    """What a task needs on its node: the checkout (at the driver's path) importable."""
    return {"env_vars": {"PYTHONPATH": str(runner.ROOT)}}


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


@dataclass(eq=False)
class _Unit:
    """What the local runner runs together, and its Ray task's state."""

    cells: list[Cell]
    search: bool                          # a largest-batch search (its tries are new cells)
    after: _Unit | None = None            # its previous repeat: run on that node, once done
    pin: str | None = None                # a node named by a resumed run's finished repeat
    gen: Any = None                       # the task's ObjectRefGenerator
    started: float | None = None
    deadline: float | None = None
    node: str | None = None
    node_id: str | None = None
    devices: str | None = None
    done: bool = False
    recorded: set[tuple[str, int]] = field(default_factory=set)

    @property
    def repeat(self) -> int:
        return self.cells[0].repeat

    @property
    def identity(self) -> tuple:
        """The same unit in every repeat."""
        return (self.search, tuple(sorted(c.id for c in self.cells)))


def plan_units(cells: Sequence[Cell], alone: dict[str, str],
               finished: dict[tuple[str, int], OutcomeFile]) -> list[_Unit]:
    """The units of a run in the local runner's order (``harness.runner.run_cells``): a
    comparison group when its first cell comes up, a cell alone, a search; a unit whose every
    cell finished before (a resumed run) is left out. Each later repeat of a unit follows its
    previous repeat; one whose previous repeat finished in the resumed run is pinned to that
    repeat's node."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        key = runner.turn_key(cell)
        if key is not None and cell.id not in alone:
            groups.setdefault(key, []).append(cell)
    seen: set[tuple[str, int]] = set()
    units: list[_Unit] = []
    for cell in cells:
        if (cell.id, cell.repeat) in seen:
            continue
        if cell.scenario == "largest":
            seen.add((cell.id, cell.repeat))
            units.append(_Unit([cell], search=True))
            continue
        members = (groups.get(runner.turn_key(cell), []) if cell.id not in alone else []) \
            or [cell]
        seen.update((c.id, c.repeat) for c in members)
        if not all((c.id, c.repeat) in finished for c in members):
            units.append(_Unit(members, search=False))
    last: dict[tuple, _Unit] = {}
    for unit in units:
        previous = last.get(unit.identity)
        if previous is not None and previous.repeat < unit.repeat:
            unit.after = previous
        elif unit.repeat > 0:
            unit.pin = next((f.node for c in unit.cells for r in range(c.repeat - 1, -1, -1)
                             if (f := finished.get((c.id, r))) is not None and f.node), None)
        last[unit.identity] = unit
    return units


def unit_options(cells: Sequence[Cell], slot: bool, node_cpus: int = 1,
                 accelerator_type: str | None = None) -> dict[str, Any]:
    """The Ray options of a unit's task: never retried; a node's timing slot (``slot``) or
    else its cells' threads in CPUs (all of them: ``node_cpus``, the smallest node's); as many
    GPUs as its largest CUDA cell has replicas, of ``accelerator_type`` if given."""
    gpus = max((c.replicas for c in cells if c.device == "cuda"), default=0)
    options: dict[str, Any] = {"max_retries": 0, "retry_exceptions": False, "num_gpus": gpus}
    if slot:
        options.update(num_cpus=0, resources={SLOT: 1})
    else:
        options["num_cpus"] = max((c.threads for c in cells), default=0) or node_cpus
    if gpus and accelerator_type:
        options["accelerator_type"] = accelerator_type
    return options


def _needs(options: dict[str, Any]) -> dict[str, float]:
    needs = {"CPU": options.get("num_cpus", 0), "GPU": options.get("num_gpus", 0),
             **options.get("resources", {})}
    if options.get("accelerator_type"):
        needs[f"accelerator_type:{options['accelerator_type']}"] = 0.001
    return {k: v for k, v in needs.items() if v}


def _fits(needs: dict[str, float], node: dict[str, Any]) -> bool:
    have = node.get("Resources", {})
    return all(have.get(k, 0) >= v for k, v in needs.items())


def run_cells(cells: Sequence[Cell], run_dir: Path, pythons: dict[str, str] | None = None,
              timeout_s: float = 900.0, on_start: Callable[[Cell], None] | None = None,
              on_done: Callable[[runner.Outcome], None] | None = None,
              refused: dict[str, str] | None = None, alone: dict[str, str] | None = None,
              finished: dict[tuple[str, int], OutcomeFile] | None = None, *,
              address: str | None = None, command: runner.Command = runner.cell_command,
              accelerator_type: str | None = None,
              unit_timeout_s: float | None = None) -> list[runner.Outcome]:
    """``harness.runner.run_cells`` on the Ray cluster at ``address`` (None: a local one),
    each unit a task on some node (see the module's docstring); the outcomes are
    ``NodeOutcome``, and each outcome.json names its node. A unit that runs past
    ``unit_timeout_s`` (default: its cells' timeouts, a search's tries', + UNIT_MARGIN_S) is
    cancelled, its cells failed; a task that fails fails its cells with the reason, and the
    run goes on. On Ctrl-C, SIGTERM or SIGHUP every task is cancelled, the units that had
    started are recorded as interrupted, and the outcomes so far are returned. A CUDA unit
    asks for GPUs of ``accelerator_type`` (Ray's names, e.g. "A100") if given. ``command``
    (the local runner's) must be picklable: a module-level function."""
    connect(address)
    run_dir = run_dir.resolve()
    driver = _Driver(run_dir, absolute(pythons or {}), timeout_s, command, on_start, on_done,
                     refused or {}, alone or {}, finished or {}, accelerator_type,
                     unit_timeout_s)
    with runner.stop_on_signals():
        try:
            driver.run(plan_units(cells, driver.alone, driver.finished))
        except KeyboardInterrupt as exc:
            driver.interrupt(exc)
    if not any(o.status == "interrupted" for o in driver.outcomes):
        _remove_caches(driver.key)  # kept after an interrupt, as locally
    return driver.outcomes


def absolute(pythons: dict[str, str]) -> dict[str, str]:
    """Interpreter paths relative to here (``nox -s bench``'s ``.nox/bench-<fw>``) made
    absolute: a Ray worker runs in another folder; a bare name (python3) is left to PATH."""
    return {fw: os.path.abspath(p) if os.sep in p else p for fw, p in pythons.items()}


class _Driver:
    """Submits the units, follows their tasks and records what they send back."""

    def __init__(self, run_dir: Path, pythons: dict[str, str], timeout_s: float,
                 command: runner.Command, on_start: Callable[[Cell], None] | None,
                 on_done: Callable[[runner.Outcome], None] | None, refused: dict[str, str],
                 alone: dict[str, str], finished: dict[tuple[str, int], OutcomeFile],
                 accelerator_type: str | None, unit_timeout_s: float | None) -> None:
        self.run_dir, self.pythons, self.timeout_s = run_dir, pythons, timeout_s
        self.command, self.on_start, self.on_done = command, on_start, on_done
        self.refused, self.alone, self.finished = refused, alone, finished
        self.accelerator_type, self.unit_timeout_s = accelerator_type, unit_timeout_s
        self.key = run_key(run_dir)  # its folder on the nodes
        self.outcomes: list[runner.Outcome] = []
        self.announced: set[tuple[str, int]] = set()
        self.running: dict[int, _Unit] = {}  # id(generator): its unit
        self.cancelled: list[Any] = []
        self.nodes = _alive_nodes()
        self.slot = any(n.get("Resources", {}).get(SLOT) for n in self.nodes)
        self.node_cpus = int(min((n.get("Resources", {}).get("CPU", 1) for n in self.nodes),
                                 default=1)) or 1
        if not self.slot:
            warnings.warn(f"no node of the Ray cluster offers a timing slot (ray start "
                          f"--resources '{{\"{SLOT}\": 1}}'): each unit asks for its cells' "
                          "CPUs instead, so units may share a node while they time",
                          stacklevel=3)

    def run(self, units: list[_Unit]) -> None:
        waiting = list(units)
        while waiting or self.running:
            ready_units = [u for u in waiting if u.after is None or u.after.done]
            for unit in ready_units:
                waiting.remove(unit)
                self._submit(unit)
            if not self.running:
                if ready_units:
                    continue
                break  # cannot happen: a unit's previous repeat is submitted before it
            now = clock()
            deadlines = [u.deadline - now for u in self.running.values() if u.deadline]
            ready, _ = ray.wait([u.gen for u in self.running.values()], num_returns=1,
                                timeout=max(0.0, min([POLL_S, *deadlines])))
            for gen in ready:
                self._advance(self.running[id(gen)])
            self._expire()
        self._wait_cancelled()

    def _submit(self, unit: _Unit) -> None:
        options = unit_options(unit.cells, self.slot, self.node_cpus, self.accelerator_type)
        needs = _needs(options)
        pin = self._pin(unit)
        if pin is not None and any(n["NodeID"] == pin and _fits(needs, n)
                                   for n in _alive_nodes()):
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(pin, soft=False)
        elif not any(_fits(needs, n) for n in self.nodes):
            self._fail(unit, "failed", f"no node of the Ray cluster has what this unit asks "
                       f"for: {needs}")
            return
        finished = _tries(unit.cells[0], self.finished) if unit.search else {}
        unit.gen = _unit_task.options(runtime_env=_runtime_env(), **options).remote(
            unit.cells, self.pythons, self.timeout_s, self.command,
            {c.id: r for c in unit.cells if (r := self.refused.get(c.id)) is not None},
            {c.id: r for c in unit.cells if (r := self.alone.get(c.id)) is not None},
            finished, self.key)
        self.running[id(unit.gen)] = unit

    def _pin(self, unit: _Unit) -> str | None:
        """The node of the unit's previous repeat, where its caches are (None: anywhere; a
        node gone, or one that lacks what the unit asks for: anywhere, with cold caches)."""
        if unit.after is not None:
            return unit.after.node_id
        if unit.pin is None:
            return None
        return next((n["NodeID"] for n in _alive_nodes()
                     if node_name(n.get("NodeManagerHostname", ""), n["NodeID"]) == unit.pin),
                    None)

    def _budget(self, unit: _Unit) -> float:
        """How long a started unit may run: the local runner's timeout bounds each wait of a
        cell, not its whole life, hence the margin."""
        if self.unit_timeout_s is not None:
            return self.unit_timeout_s
        return self.timeout_s * (SEARCH_TRIES if unit.search else len(unit.cells)) \
            + UNIT_MARGIN_S

    def _advance(self, unit: _Unit) -> None:
        """The next thing the unit's task sent: that it started, then its results (or an
        error, at any point)."""
        try:
            value = ray.get(next(unit.gen))
        except StopIteration:
            value = RuntimeError("the Ray task ended without sending its results")
        except RayError as exc:
            value = exc
        if isinstance(value, Exception):
            self._close(unit)
            self._fail(unit, "failed", _failure_reason(value, unit.node))
        elif unit.started is None:
            unit.started = clock()
            unit.deadline = unit.started + self._budget(unit)
            unit.node, unit.node_id, unit.devices = value["node"], value["node_id"], \
                value["devices"]
            for cell in unit.cells:
                self._announce(cell)
        else:  # closed once recorded: an interrupt while it is recorded marks the rest
            self._collect(unit, value["outcomes"], value["cells"])
            self._close(unit)

    def _expire(self) -> None:
        now = clock()
        for unit in [u for u in self.running.values() if u.deadline and now > u.deadline]:
            self._cancel(unit)
            self._fail(unit, "failed", f"timed out after {self._budget(unit):g} s: the unit's "
                       f"Ray task on {unit.node} was cancelled (its processes killed)")

    def interrupt(self, exc: KeyboardInterrupt) -> None:
        """Cancel every task; the units that had started are interrupted."""
        for unit in list(self.running.values()):
            self._cancel(unit)
            if unit.started is not None:
                self._fail(unit, "interrupted", runner.interrupted_reason(exc))
        self._wait_cancelled()

    def _close(self, unit: _Unit) -> None:
        self.running.pop(id(unit.gen), None)
        unit.done = True

    def _cancel(self, unit: _Unit) -> None:
        """Force: the worker is killed, and the cell processes with it (their parent-death
        signal, ``harness.runner._die_with_parent``)."""
        ray.cancel(unit.gen, force=True)
        self.cancelled.append(unit.gen)
        self._close(unit)

    def _wait_cancelled(self) -> None:
        if self.cancelled:
            done = [g.completed() for g in self.cancelled]
            ray.wait(done, num_returns=len(done), timeout=CANCEL_WAIT_S)
            self.cancelled = []

    def _announce(self, cell: Cell) -> None:
        if (cell.id, cell.repeat) not in self.announced:
            self.announced.add((cell.id, cell.repeat))
            if self.on_start:
                self.on_start(cell)

    def _finish(self, unit: _Unit, outcome: NodeOutcome) -> None:
        self._announce(outcome.cell)
        unit.recorded.add((outcome.cell.id, outcome.cell.repeat))
        self.outcomes.append(outcome)
        if self.on_done:
            self.on_done(outcome)

    def _collect(self, unit: _Unit, outcomes: list[runner.Outcome], packed: bytes) -> None:
        """The unit's cell folders into the run folder, each outcome with its node."""
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            folders = {Path(*Path(m.name).parts[:3]) for m in tar.getmembers()
                       if len(Path(m.name).parts) >= 3}
            for folder in folders:
                shutil.rmtree(self.run_dir / folder, ignore_errors=True)
            tar.extractall(self.run_dir, **_SAFE_TAR)
        for o in outcomes:
            path = self._folder(o.cell) / "outcome.json"
            saved = OutcomeFile.read(path)
            if saved is not None:
                replace(saved, node=unit.node).save(path)
            self._finish(unit, NodeOutcome(**{f.name: getattr(o, f.name) for f in fields(o)},
                                           node=unit.node, devices=unit.devices))

    def _fail(self, unit: _Unit, status: str, reason: str) -> None:
        """Record the unit's cells that have no outcome yet (a search: its cell, if no try
        came back) as failed or interrupted, as the local runner writes them."""
        unit.done = True
        if unit.search and unit.recorded:
            return
        wall = clock() - unit.started if unit.started is not None else 0.0
        for cell in unit.cells:
            if (cell.id, cell.repeat) in unit.recorded:
                continue
            if status == "interrupted":
                timing = "interrupted"
            elif len(unit.cells) > 1:
                timing = "turns"
            else:
                timing = f"alone: {self.alone.get(cell.id) or runner._alone_reason(cell)}"
            out_dir = self._folder(cell)
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir(parents=True)
            (out_dir / "cell_spec.json").write_text(cell.to_json())
            OutcomeFile(status, reason, wall, timing, node=unit.node).save(
                out_dir / "outcome.json")
            self._finish(unit, NodeOutcome(cell, status, reason, wall, timing=timing,
                                           node=unit.node, devices=unit.devices))

    def _folder(self, cell: Cell) -> Path:
        return self.run_dir / "cells" / cell.id / f"r{cell.repeat}"


def _tries(cell: Cell, finished: dict[tuple[str, int], OutcomeFile]
           ) -> dict[tuple[str, int], OutcomeFile]:
    """The finished tries of a cell's largest-batch search (its cell at other batch sizes)."""
    head, tail = replace(cell, batch_size=987654321).id.split("987654321")
    return {(cid, r): o for (cid, r), o in finished.items()
            if r == cell.repeat and cid.startswith(head) and cid.endswith(tail)
            and cid[len(head):len(cid) - len(tail)].isdigit()}


def _failure_reason(exc: Exception, node: str | None) -> str:
    where = f" on {node}" if node else ""
    text = _ANSI.sub("", str(exc))[-runner.LOG_TAIL_CHARS:]
    if isinstance(exc, WorkerCrashedError):
        return f"its Ray worker{where} died (killed, or out of memory): {text}"
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        return (f"its Ray task{where} raised {type(cause).__name__}: {cause}\n"
                f"--- traceback ---\n{text}")
    return f"its Ray task{where} failed ({type(exc).__name__}): {text}"


@contextlib.contextmanager
def _node_environment() -> Iterator[None]:
    """The node's own environment for the cell processes: what Ray set in this worker for the
    task (``RAY_THREAD_VARS``: OMP_NUM_THREADS sized to the task's CPUs, when the node set
    none) is taken out while the unit runs, then put back."""
    launched = _launch_environment()
    saved = {k: os.environ.pop(k) for k in RAY_THREAD_VARS
             if k in os.environ and launched is not None and k not in launched}
    try:
        yield
    finally:
        os.environ.update(saved)


def _launch_environment() -> set[str] | None:
    """The variables this process was started with (Linux: a variable set since is not in
    /proc/self/environ); None where that cannot be read."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return None
    return {item.split(b"=", 1)[0].decode(errors="replace") for item in raw.split(b"\0")
            if b"=" in item}


def _run_unit(cells: list[Cell], pythons: dict[str, str], timeout_s: float,
              command: runner.Command, refused: dict[str, str], alone: dict[str, str],
              finished: dict[tuple[str, int], OutcomeFile],
              key: str) -> Iterator[dict[str, Any]]:
    """On the node (a Ray generator task): say where it runs, run the unit with the local
    runner in a folder of its own, send back its outcomes and cell folders (tar.gz). The
    compile caches live in a folder of the run's on the node (the unit's ``cache`` links
    there), kept between units, so a later repeat finds them warm."""
    node_id = ray.get_runtime_context().get_node_id()
    yield {"node": node_name(socket.gethostname(), node_id), "node_id": node_id,
           "devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    base = node_folder(key)
    (base / "cache").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="unit-", dir=base))
    try:
        # the local runner removes run_dir/cache at its end: through a link, it cannot
        (work / "cache").symlink_to(base / "cache", target_is_directory=True)
        with _node_environment():
            outcomes = runner.run_cells(cells, work, pythons, timeout_s, command=command,
                                        refused=refused, alone=alone, finished=finished)
        packed = io.BytesIO()
        with tarfile.open(fileobj=packed, mode="w:gz") as tar:
            if (work / "cells").exists():
                tar.add(work / "cells", arcname="cells")
        yield {"outcomes": outcomes, "cells": packed.getvalue()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_key(run_dir: Path) -> str:
    """Names a run's folder on the nodes (one per run folder)."""
    return f"{run_dir.name}-{hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:10]}"


def node_folder(key: str) -> Path:
    """A run's folder on a node: its compile caches, and a folder per running unit."""
    return Path(tempfile.gettempdir()) / "framebench-ray" / key


def _remove_node_folder(key: str) -> None:
    shutil.rmtree(node_folder(key), ignore_errors=True)


def _facts(cells: list[Cell], pythons: dict[str, str]) -> tuple[str, dict[str, Any]]:
    from harness.backends import peak

    node_id = ray.get_runtime_context().get_node_id()
    return node_name(socket.gethostname(), node_id), {
        "node_id": node_id, "host": measure.host_info(),
        "machine_probe_s": {str(cpu): t for cpu, t in measure.machine_probe().items()},
        "device_peaks": peak.measure_device_peaks(cells, pythons, say=print) if cells else {}}


_unit_task = ray.remote(_run_unit)
_facts_task = ray.remote(_facts)
_remove_task = ray.remote(_remove_node_folder)


def _on_each_node(task: Any, *args: Any) -> list[Any]:
    """One small task pinned to each alive node (no CPU asked: it runs beside a unit)."""
    return [task.options(num_cpus=0, max_retries=0, runtime_env=_runtime_env(),
                         scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"],
                                                                            soft=False))
            .remote(*args) for n in _alive_nodes()]


def node_facts(address: str | None = None, cells: Sequence[Cell] = (),
               pythons: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Each alive node's host facts (``harness.measure.host_info``), its machine probe, its
    Ray resources and the GEMM peaks of the devices and precisions ``cells`` use, measured
    there (``harness.backends.peak``: each cell's MFU divides by its node's), keyed by node
    name (``RunManifest.nodes``)."""
    connect(address)
    resources = {n["NodeID"]: {k: v for k, v in n.get("Resources", {}).items()
                               if not k.startswith("node:")} for n in _alive_nodes()}
    facts = dict(ray.get(_on_each_node(_facts_task, list(cells), pythons or {})))
    for value in facts.values():
        value["ray_resources"] = resources.get(value["node_id"], {})
    return facts


def _remove_caches(key: str) -> None:
    """The run's compile caches on every node, as the local runner removes its own."""
    with contextlib.suppress(RayError):
        ray.get(_on_each_node(_remove_task, key), timeout=60)

