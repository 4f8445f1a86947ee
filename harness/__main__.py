"""Command line: ``framebench [run options]`` runs a benchmark; ``framebench tune [run
options]`` searches the tuned tier's variants now; ``framebench report RUN`` renders.

Names are checked before anything runs; an unknown one stops with the list of valid names.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from types import ModuleType

from harness import results, runner, tune
from harness.backends import ALL_MODES, BACKENDS, FRAMEWORKS, SELF_CHECK, TIERS
from harness.data import DATASETS, DOWNLOADED, data_shape
from harness.largest import DEFAULT_CPU_CAP
from harness.limits import MemoryCap, parse_bytes
from harness.measure import default_threads, device_memory_bytes, host_info, now_iso
from harness.model.workload import train_memory_bytes
from harness.record import (
    FINAL,
    Outcome,
    RunLock,
    RunManifest,
    RunPlan,
    UnreadableFile,
    read_json,
)
from harness.spec import (
    DEVICES,
    INFER_PATHS,
    INFER_TIERS,
    PRECISIONS,
    SCENARIOS,
    WORKLOADS,
    Cell,
    check_choice,
)

QUICK_FRACTION = 0.2        # a smoke run trains a fifth of each workload's budget
QUICK_STEADY_S = 0.5
# A smoke run takes each framework's quickest mode to run: torch eager (torch.compile needs a
# minute or more on a CPU), JAX and TensorFlow compiled (seconds to compile, many times faster
# per step than their eager modes).
QUICK_MODES = {"torch": "eager", "tensorflow": "compiled", "jax": "compiled"}
# The default suite (20 minutes on 2 CPU cores) runs one process per cell; --full two, the
# first with cold compile caches, the second warm, which adds the variation between processes
# to every CI.
FULL_REPEATS = 2
DEFAULT_TIERS = ("idiomatic", "tuned")  # --full adds the identical tier (every mode)
# The default suite's extra seeds go to the tuned tier, the one the decision compares; --seeds
# or --full give every tier the same.
DECISION_TIER = "tuned"
# Tiers whose training cells the default suite times without a training budget (no time to
# target, no end-of-budget metric): the idiomatic figures it needs are the step time and the
# tuned/idiomatic speed-up. Tiers named with --tiers, --seeds, --quick and --full train every
# tier's budget.
TIMED_ONLY_TIERS = ("idiomatic",)
DEFAULT_SEEDS = 3           # the tuned tier's seeds (time to target); 1 with --quick
DEFAULT_INFER_PATHS = ("export",)   # each framework's deployable artifact; --full: every path
QUICK_INFER_PATHS = ("compiled",)
DEFAULT_SCENARIOS = ("train", "infer", "largest")
DEFAULT_LARGEST_WORKLOADS = ("mlp", "cnn")  # the default suite's searches; --full: every one


def _names(kind: str, valid: tuple[str, ...]):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"no {kind} given; valid {kind}s: {', '.join(valid)}")
        for n in names:
            try:
                check_choice(kind, n, valid)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise argparse.ArgumentTypeError(f"{kind} {', '.join(twice)} given twice in "
                                             f"{text!r}; give each once")
        return names
    return parse


def _choice(kind: str, valid: tuple[str, ...]):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> str:
        try:
            return check_choice(kind, text, valid)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


MAX_BATCH = 2**24  # a batch size beyond this is a typo, not a benchmark
MAX_REPLICAS = 1024  # devices per data-parallel cell


def _number(kind: str, convert: type, low: float, high: float,
            above: bool = False):  # noqa: ANN202 - argparse type factory
    """A number from ``low`` (exclusive if ``above``) to ``high``, with one clear message for
    anything else: not a number, not whole, out of range, nan or infinite."""
    span = f"{'above' if above else 'from'} {low:n} {'and at most' if above else 'to'} {high:n}"
    what = "a whole number" if convert is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{kind} must be {what} {span}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"{kind} must be {what} {span}, got {text!r}")
        return value
    return parse


def _ints(text: str, what: str = "batch size", most: int = MAX_BATCH) -> list[int]:
    one = _number(f"a {what}", int, 1, most)
    values = [one(v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"no {what} given, got {text!r}")
    if len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"{what}s must differ, got {text!r}")
    return values


def _replicas(text: str) -> list[int]:
    return _ints(text, "replica count", MAX_REPLICAS)


def _memory(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _python(text: str) -> tuple[str, str]:
    fw, sep, path = text.partition("=")
    if not sep or fw not in FRAMEWORKS:
        raise argparse.ArgumentTypeError(
            f"expected FRAMEWORK=PATH with FRAMEWORK one of {', '.join(FRAMEWORKS)}, "
            f"got {text!r}")
    return fw, path


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="framebench",
        description="Benchmark identical models and training loops on PyTorch, TensorFlow and "
                    "JAX; write results/<run-id>/ and reports/<run-id>/index.html. "
                    "`framebench report RUN` re-renders a report; `framebench tune [options]` "
                    "runs the tuned tier's search now.")
    p.add_argument("--workloads", type=_names("workload", tuple(WORKLOADS)),
                   default=list(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)} "
                   "(default: all)")
    p.add_argument("--frameworks", type=_names("framework", tuple(FRAMEWORKS)),
                   default=list(FRAMEWORKS), help=f"comma list of {', '.join(FRAMEWORKS)} "
                   "(default: all)")
    p.add_argument("--tiers", type=_names("tier", TIERS), default=None,
                   help="comma list of identical (the same step op for op: the equivalence "
                   "certificate), idiomatic (as each framework's tutorials write it), tuned "
                   "(the fastest correct variant, from a paired search kept in "
                   "RESULTS_DIR/tuning) (default: idiomatic,tuned; --full: all three)")
    p.add_argument("--modes", type=_names("mode", ALL_MODES), default=None,
                   help="comma list; identical tier: " + "; ".join(
                       f"{fw}: {', '.join(b.modes)}" for fw, b in FRAMEWORKS.items())
                   + "; idiomatic tier: " + "; ".join(
                       f"{fw}: {', '.join(b.idiomatic)}" for fw, b in FRAMEWORKS.items())
                   + "; the tuned tier searches the variants of these modes (default: every "
                   "mode people train with; the idiomatic tier: the mode its tutorials use on "
                   "the device; debugging modes (JAX eager) only when named or with --full)")
    p.add_argument("--scenarios", type=_names("scenario", tuple(SCENARIOS)), default=None,
                   help="comma list of " + "; ".join(f"{n}: {d}" for n, d in SCENARIOS.items())
                   + " (default: all three, largest for the workloads "
                   f"{', '.join(DEFAULT_LARGEST_WORKLOADS)} among those selected unless named "
                   "or --full; --quick: train,infer. infer runs in the first process only "
                   f"unless --repeats is given, the tiers {', '.join(INFER_TIERS)} of those "
                   "selected, through --infer-paths; the search runs the same tiers, each in its "
                   f"tutorials' mode, on a CPU under --memory-cap or "
                   f"{DEFAULT_CPU_CAP / 2**30:g} GiB)")
    p.add_argument("--infer-paths", type=_names("inference path", INFER_PATHS), default=None,
                   help=f"comma list of {', '.join(INFER_PATHS)}: the infer scenario's ways "
                   f"to serve (default: {', '.join(DEFAULT_INFER_PATHS)}; --full: all; "
                   f"--quick: {', '.join(QUICK_INFER_PATHS)})")
    p.add_argument("--size", default=None, metavar="SIZE|WORKLOAD=SIZE,...",
                   help="model size: one name for every workload that has it, or WORKLOAD=SIZE "
                   "pairs; sizes: " + "; ".join(f"{n}: {', '.join(w.sizes)}"
                                                for n, w in WORKLOADS.items())
                   + " (default: each workload's first, sized for a 2-core CPU)")
    p.add_argument("--devices", type=_names("device", DEVICES), default=["cpu"],
                   help=f"comma list of {', '.join(DEVICES)} (default: cpu)")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="comma list of batch sizes, for training and for inference throughput "
                   "(default: each workload's own: training 32, inference "
                   f"{max(w.infer_batch_size for w in WORKLOADS.values())} or less)")
    p.add_argument("--replicas", type=_replicas, default=[1],
                   help="comma list of device counts for data-parallel training cells "
                   "(identical tier, train scenario; batch sizes are per replica): "
                   + "; ".join(f"{fw}: {b.parallel}, modes {', '.join(b.parallel_modes)}"
                               for fw, b in FRAMEWORKS.items())
                   + ". A CPU's replicas share its cores (default: 1)")
    p.add_argument("--dataset", type=_names("dataset", tuple(DATASETS)), default=[],
                   help="comma list, at most one image and one text dataset, each used by the "
                   "workloads of its kind: " + ", ".join(f"{n} ({k})" for n, k in DATASETS.items())
                   + " (default: each workload's own, offline: digits, digits32 or pydoc)")
    p.add_argument("--data-dir", default=None,
                   help="directory holding the files of a downloadable dataset (mnist, "
                   "fashion-mnist, cifar10, tinyshakespeare; default: "
                   "~/.cache/framebench/<dataset>, downloaded there when missing)")
    p.add_argument("--epochs", type=_number("--epochs", float, 0, 1000, above=True),
                   default=None,
                   help="training budget in epochs, fractions allowed (default: each "
                   "workload's)")
    p.add_argument("--steady-seconds", type=_number("--steady-seconds", float, 0, 3600,
                                                    above=True), default=None,
                   help="time budget of the steady-state timing per cell (default: 1)")
    p.add_argument("--precision", type=_names("precision", PRECISIONS), default=["fp32"],
                   help="comma list of fp32 (TF32 off everywhere), tf32 (on everywhere), bf16 "
                   "(autocast / Keras mixed_bfloat16 / bfloat16 compute in JAX): every cell at "
                   "each, the precisions of one comparison timed in the same turns, and the "
                   "report sets each reduced precision's speed beside its accuracy against fp32 "
                   "(default: fp32)")
    p.add_argument("--repeats", type=_number("--repeats", int, 1, 100), default=None,
                   help="fresh processes per cell, frameworks interleaved (default 1; --full: "
                   f"{FULL_REPEATS}, cold then warm compile caches: the CIs then hold the "
                   "variation between processes too); the training budget runs in the first "
                   "only; infer cells run once unless given")
    p.add_argument("--seeds", type=_number("--seeds", int, 1, 100), default=None,
                   help="training budgets per cell, from --seed, --seed + 1, ..., each timed to "
                   "the workload's target on held-out data (the accuracy scenario), in the "
                   f"cell's first process (default: {DEFAULT_SEEDS} for the {DECISION_TIER} "
                   f"tier, none for the {', '.join(TIMED_ONLY_TIERS)} tier (timed only) unless "
                   "--tiers names it, and 1 for the others unless --full; 1 with --quick)")
    p.add_argument("--threads", type=_number("--threads", int, 0, default_threads()), default=0,
                   help="CPUs each cell may use, the same for every framework (default: all "
                   f"{default_threads()} of this process's affinity mask)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_FRACTION:g} of each training budget, "
                   f"{QUICK_STEADY_S} s of timing, "
                   "1 repeat, each framework's quickest mode ("
                   + ", ".join(f"{fw} {m}" for fw, m in QUICK_MODES.items())
                   + ") unless --modes is given, a short tuning search over that mode")
    p.add_argument("--full", action="store_true",
                   help="every tier and every mode (debugging modes included), and a fresh "
                   "tuning search instead of the kept one")
    p.add_argument("--seed", type=_number("--seed", int, 0, 2**32 - 1), default=0,
                   help="seed of weights and batch order")
    p.add_argument("--timing", choices=("turns", "alone"), default="turns",
                   help="turns (default): the cells that are compared (same tier, workload, size, "
                   "device, batch, precision) are prepared one by one, then take their timed "
                   "samples in rotation, so the machine's slow moments hit every framework "
                   "alike and ratios come from paired samples; alone: each cell runs start to "
                   "end on its own (the protocol before turns)")
    p.add_argument("--memory-cap", type=_memory, default=0, metavar="SIZE",
                   help="host memory each CPU cell process may use (e.g. 4G, 512M), enforced "
                   "by the kernel (a memory cgroup per process: needs root or a delegated "
                   "cgroup); a cell that exceeds it is recorded as out of memory with the peak "
                   "it reached, and the run goes on (default: no cap)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local (default): the cells one after another on this machine; ray: "
                   "each comparison group, cell or largest-batch search as a Ray task on a "
                   "node of a cluster (pip install 'framebench[ray]'; every node with this "
                   "checkout at the same path and the --python interpreters; see README, "
                   "Several machines)")
    p.add_argument("--address", default=None,
                   help="--executor ray: the cluster's address (ray://HOST:10001 or HOST:6379; "
                   "default: a local cluster)")
    p.add_argument("--timeout", type=_number("--timeout", float, 0, 7 * 86400, above=True),
                   default=900.0, help="seconds before a cell is "
                   "killed and recorded as failed (default: 900)")
    p.add_argument("--run-id", default=None, help="name of the run (default: a timestamp)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="finish a run that was interrupted or killed (a run id under "
                   "--results-dir, or its folder): its unfinished cells run with its own "
                   "options (a comparison group again whole), finished ones are kept")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--reports-dir", type=Path, default=Path("reports"))
    p.add_argument("--python", type=_python, action="append", default=[], metavar="FW=PATH",
                   help="interpreter that runs FW's cells (one virtualenv per framework); "
                   "default: this interpreter")
    return p


def _sizes(text: str | None, workloads: list[str]) -> dict[str, str]:
    """{workload: size} from --size (one name for all, or WORKLOAD=SIZE pairs)."""
    chosen = {w: WORKLOADS[w].default_size for w in workloads}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        workload, sep, size = part.rpartition("=")
        if sep and workload not in workloads:
            raise SystemExit(f"framebench: --size {part}: workload {workload!r} is not among "
                             f"the selected workloads ({', '.join(workloads)})")
        for w in [workload] if sep else workloads:
            if size not in WORKLOADS[w].sizes:
                owners = [n for n, spec in WORKLOADS.items() if size in spec.sizes]
                hint = "" if sep or not owners else \
                    f" (to size one workload only, write {owners[0]}={size})"
                raise SystemExit(f"framebench: unknown size {size!r} of workload {w!r}; valid "
                                 f"sizes: {', '.join(WORKLOADS[w].sizes)}{hint}")
            chosen[w] = size
    return chosen


def _datasets(names: list[str], workloads: list[str]) -> dict[str, str]:
    """{workload: dataset}: each given dataset serves the workloads of its kind."""
    by_kind: dict[str, str] = {}
    for name in names:
        kind = DATASETS[name]
        if kind in by_kind:
            raise SystemExit(f"framebench: --dataset takes one {kind} dataset, got "
                             f"{by_kind[kind]} and {name}")
        by_kind[kind] = name
    chosen = {w: by_kind.get(WORKLOADS[w].input_kind, WORKLOADS[w].dataset) for w in workloads}
    for name in names:
        if name not in chosen.values():
            raise SystemExit(f"framebench: dataset {name!r} holds {DATASETS[name]} data, which "
                             f"none of the workloads {', '.join(workloads)} takes")
    return chosen


def _train_bytes(cell: Cell, size: str) -> int:
    w = cell.workload_spec
    shape = data_shape(cell.dataset_name, w.seq_len(size), w.image_shape)
    classes = 256 if w.input_kind == "text" else 10
    return train_memory_bytes(w.model(size, shape, classes), shape, cell.batch_size)


def _check_fits(cells: list[Cell]) -> None:
    """Refuse a size too large for its device before anything runs (a lower bound on the
    training memory against the memory the device has free)."""
    for cell in {replace(c, framework="", mode=""): c for c in cells}.values():
        available = device_memory_bytes(cell.device)
        # on a CPU the replicas of a data-parallel cell share the host's memory
        share = cell.replicas if cell.device == "cpu" else 1
        need = _train_bytes(cell, cell.size_name) * share
        if available is not None and need > available:
            fits = [s for s in cell.workload_spec.sizes
                    if _train_bytes(cell, s) * share <= available]
            raise SystemExit(
                f"framebench: size {cell.size_name!r} of {cell.workload} needs at least "
                f"{need / 2**30:.1f} GiB to train at batch {cell.batch_size}, more than the "
                f"{available / 2**30:.1f} GiB free on {cell.device}; sizes that fit: "
                f"{', '.join(fits) or 'none at this batch size'}")


def timed_alone(cells: list[Cell], timing: str) -> dict[str, str]:
    """{cell id: why} for the cells timed on their own instead of in turns: all of them with
    --timing alone; on a GPU, the groups whose models do not fit in its memory at once."""
    if timing == "alone":
        return {c.id: "--timing alone" for c in cells}
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        key = runner.turn_key(cell)
        if key is not None and cell.device != "cpu":
            groups.setdefault(key, []).append(cell)
    alone = {}
    for group in groups.values():
        free = device_memory_bytes(group[0].device)
        need = sum(_train_bytes(c, c.size_name) for c in group)
        if len(group) > 1 and free is not None and need > free:
            alone.update({c.id: f"{group[0].device} memory cannot hold the {len(group)} models "
                          f"of its comparison group at once (at least {need / 2**30:.1f} GiB, "
                          f"{free / 2**30:.1f} GiB free): timed one after another" for c in group})
    return alone


def tier_modes(args: argparse.Namespace, fw: str, tier: str, device: str) -> tuple[str, ...]:
    """The modes a framework runs in the identical or idiomatic tier: those named with
    --modes; else with --full all of them; else --quick's quickest (identical) or the mode its
    tutorials use on the device (idiomatic); else every mode people train with."""
    b = BACKENDS[fw]
    have = b.tier_modes(tier)
    if args.modes:
        return tuple(m for m in have if m in args.modes)
    if args.full:
        return have
    if tier == "idiomatic":
        return (b.default_idiomatic(device),)
    if args.quick:
        return (QUICK_MODES[fw],)
    return tuple(m for m in have if m not in b.debug_modes)


def search_modes(args: argparse.Namespace, fw: str) -> tuple[str, ...] | None:
    """The modes whose variants the tuned search tries (None: all of them)."""
    have = BACKENDS[fw].tier_modes("tuned")
    if args.modes:
        return tuple(m for m in have if m in args.modes)
    if args.quick:
        return (QUICK_MODES[fw],)
    return None


def make_cells(args: argparse.Namespace) -> list[Cell]:
    """The cross product, each framework with the tiers and modes it has (a tuned cell's mode
    is left to its search); an empty product is an error.

    Ordered so that neighbours are different frameworks (mode by mode), then repeated: every
    odd repeat runs in reverse order, so slow drifts of the machine hit all frameworks alike.
    The self-check no-op cell runs first.
    """
    repeats = args.repeats or (FULL_REPEATS if args.full else 1)
    seeds = args.seeds or (1 if args.quick else DEFAULT_SEEDS)
    tiers = args.tiers or (list(TIERS) if args.full else list(DEFAULT_TIERS))

    sizes = _sizes(args.size, args.workloads)
    datasets = _datasets(args.dataset, args.workloads)
    if args.memory_cap:
        try:
            MemoryCap.check(args.memory_cap)
        except PermissionError as exc:
            raise SystemExit(f"framebench: {exc}") from None
    common = dict(data_dir=args.data_dir, seed=args.seed, memory_cap=args.memory_cap,
                  threads=args.threads or default_threads(),
                  steady_seconds=args.steady_seconds
                  or (QUICK_STEADY_S if args.quick else Cell.steady_seconds))
    base = []
    for workload in args.workloads:
        w = WORKLOADS[workload]
        for device in args.devices:
            for batch in args.batch_sizes or [w.batch_size]:
                for tier in tiers:
                    for mode in [""] if tier == "tuned" else ALL_MODES:
                        for fw in args.frameworks:
                            if tier != "tuned" and mode not in tier_modes(args, fw, tier,
                                                                          device):
                                continue
                            if tier == "tuned" and search_modes(args, fw) == ():
                                continue
                            base.append(Cell(
                                framework=fw, workload=workload, mode=mode, device=device,
                                batch_size=batch, size=sizes[workload],
                                dataset=datasets[workload], tier=tier,
                                epochs=args.epochs
                                or w.epochs * (QUICK_FRACTION if args.quick else 1),
                                **common))
    if not base:
        raise SystemExit(
            f"framebench: no cell to run: none of the frameworks {', '.join(args.frameworks)} "
            f"has the modes {', '.join(args.modes or [])} in the tiers {', '.join(tiers)}. "
            "Modes by framework (identical tier): "
            + "; ".join(f"{fw}: {', '.join(b.modes)}" for fw, b in FRAMEWORKS.items())
            + "; (idiomatic tier): "
            + "; ".join(f"{fw}: {', '.join(b.idiomatic)}" for fw, b in FRAMEWORKS.items()))
    base = with_replicas(base, args.replicas)
    _check_fits(base)
    scenarios = args.scenarios or (["train", "infer"] if args.quick else list(SCENARIOS))
    base += infer_cells(args, tiers, sizes, datasets, common) if "infer" in scenarios else []
    base += largest_cells(args, tiers, sizes, datasets, common) \
        if "largest" in scenarios else []
    base = [c for c in base if c.scenario in scenarios]
    if not base:
        raise SystemExit("framebench: no cell to run: the infer and largest scenarios run "
                         f"the tiers {', '.join(INFER_TIERS)}, and none of them is selected ("
                         f"{', '.join(tiers)})")
    base = [replace(c, precision=p) for c in base for p in args.precision]
    first = base[0]
    noop = replace(first, framework=SELF_CHECK, mode="eager", tier="identical", epochs=1,
                   steady_seconds=1.0, scenario="train", replicas=1)
    every_tier = args.full or args.quick
    cells = [noop]
    for r in range(repeats):
        for cell in base if r % 2 == 0 else reversed(base):
            if cell.scenario == "largest" and r > 0:
                continue  # one search: its tries are fresh processes already
            if cell.scenario == "infer" and r >= (args.repeats or 1):
                continue  # by default one process per infer cell (cold caches)
            train = r == 0 and cell.scenario == "train" and (
                cell.tier not in TIMED_ONLY_TIERS or args.tiers or args.seeds or every_tier)
            cells.append(replace(cell, repeat=r, train=train, seeds=seeds if train and (
                cell.tier == DECISION_TIER or args.seeds or every_tier) else 1))
    return cells


def with_replicas(cells: list[Cell], replicas: list[int]) -> list[Cell]:
    """Each identical-tier training cell once per replica count (in a mode the framework's
    data-parallel trainer has, for counts above 1); the other tiers' cells on one device."""
    out = []
    for cell in cells:
        if cell.tier != "identical":
            out.append(cell)
            continue
        out += [replace(cell, replicas=n) for n in replicas
                if n == 1 or cell.mode in BACKENDS[cell.framework].parallel_modes]
    if any(n > 1 for n in replicas) and not any(c.replicas > 1 for c in out):
        raise SystemExit(
            "framebench: no data-parallel cell to run: --replicas runs the identical tier "
            "(add --tiers identical) in the modes "
            + "; ".join(f"{fw}: {', '.join(b.parallel_modes)}" for fw, b in FRAMEWORKS.items()))
    return out


def infer_cells(args: argparse.Namespace, tiers: list[str], sizes: dict[str, str],
                datasets: dict[str, str], common: dict) -> list[Cell]:
    """The infer scenario's cells: every path of every framework, in the selected tiers that
    have an inference model (the tuned tier's variants change the training step only), at
    each --batch-sizes or the workload's inference batch; frameworks neighbours."""
    paths = args.infer_paths or (QUICK_INFER_PATHS if args.quick else INFER_PATHS if args.full
                                 else DEFAULT_INFER_PATHS)
    tiers = [t for t in tiers if t in INFER_TIERS]
    if args.quick and "idiomatic" in tiers:
        tiers = ["idiomatic"]  # a smoke run: the model as people deploy it
    return [Cell(framework=fw, workload=workload, mode=path, device=device, batch_size=batch,
                 size=sizes[workload], dataset=datasets[workload], tier=tier, train=False,
                 scenario="infer", **common)
            for workload in args.workloads for device in args.devices
            for batch in args.batch_sizes or [WORKLOADS[workload].infer_batch_size]
            for tier in tiers for path in paths for fw in args.frameworks]


def largest_cells(args: argparse.Namespace, tiers: list[str], sizes: dict[str, str],
                  datasets: dict[str, str], common: dict) -> list[Cell]:
    """The largest-batch searches (harness.largest): one per framework, tier (identical or
    idiomatic, in its tutorials' mode) and workload, from the workload's batch (or the first
    --batch-sizes), on a CPU under --memory-cap or DEFAULT_CPU_CAP."""
    out = []
    named = args.full or (args.scenarios and "largest" in args.scenarios)
    for workload in [w for w in args.workloads if named or w in DEFAULT_LARGEST_WORKLOADS]:
        for device in args.devices:
            cap = (args.memory_cap or DEFAULT_CPU_CAP) if device == "cpu" else 0
            for tier in [t for t in tiers if t in INFER_TIERS]:
                for fw in args.frameworks:
                    b = BACKENDS[fw]
                    mode = b.default_idiomatic(device) if tier == "idiomatic" else next(
                        m for m in b.modes if m not in b.debug_modes)
                    out.append(Cell(
                        framework=fw, workload=workload, mode=mode, device=device,
                        batch_size=(args.batch_sizes or [WORKLOADS[workload].batch_size])[0],
                        size=sizes[workload], dataset=datasets[workload], tier=tier,
                        train=False, scenario="largest", **{**common, "memory_cap": cap}))
    return out


def run(argv: list[str]) -> int:
    """A new run, or with --resume the unfinished part of one (its own settings and plan)."""
    from harness import ui

    args = run_parser().parse_args(argv)
    if args.address and args.executor != "ray":
        raise SystemExit("framebench: --address names a Ray cluster: give it with "
                         "--executor ray")
    if args.resume:
        run_dir, args = _resumed(args, argv)
        with RunLock(run_dir):
            meta = RunManifest.read(run_dir)
            meta.resumed.append(now_iso())
            plan = RunPlan.read(run_dir) or _plan(args, make_cells(args), run_dir, meta)
            cells = plan_cells(plan)
            finished = {(c.id, c.repeat): o for c in cells if (o := Outcome.read(
                run_dir / "cells" / c.id / f"r{c.repeat}" / "outcome.json"))
                and o.status in FINAL}
            ui.console.print(f"resuming {run_dir}: {len(finished)} of {len(cells)} cell "
                             "processes finished before")
            return _execute(args, run_dir, meta, cells, plan, finished)
    cells = make_cells(args)
    check_pythons(dict(args.python), args.frameworks)
    check_data(cells)
    run_id = args.run_id or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = args.results_dir / run_id
    if args.results_dir.exists() and not args.results_dir.is_dir():
        raise SystemExit(f"framebench: --results-dir {args.results_dir} is a file, not a folder")
    if RunManifest.exists(run_dir):
        raise SystemExit(f"framebench: {run_dir} exists already; choose another --run-id (or "
                         f"--resume {run_id} to finish it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        if RunManifest.exists(run_dir):  # another process made it meanwhile
            raise SystemExit(f"framebench: {run_dir} exists already; choose another --run-id")
        meta = RunManifest(
            run_id=run_id, started=now_iso(), argv=["framebench", *argv], host=host_info(),
            cells=list(dict.fromkeys(c.id for c in cells)),
            repeats=max(c.repeat for c in cells) + 1, threads=cells[0].threads,
            precision=",".join(args.precision),
            tiers=list(dict.fromkeys(c.tier for c in cells[1:])),
            workloads={w: WORKLOADS[w].description for w in args.workloads})
        meta.save(run_dir)
        plan = _plan(args, cells, run_dir, meta)
        return _execute(args, run_dir, meta, plan_cells(plan), plan, {})


def _plan(args: argparse.Namespace, cells: list[Cell], run_dir: Path,
          meta: RunManifest) -> RunPlan:
    """Before the first cell: the GEMM peaks (unless measured), the tuned tier's variants, and
    the plan (``plan.json``) that --resume follows."""
    from harness import ui

    pythons = dict(args.python)
    if args.executor == "ray" and not meta.nodes:
        meta.nodes = _ray().node_facts(args.address, cells, _ray().absolute(pythons))
        meta.save(run_dir)
    if not meta.device_peaks:
        meta.device_peaks = ui.measure_peaks(cells, pythons)
        cpu = meta.device_peaks.get("cpu-fp32", {})  # the old single-peak fields, for old readers
        meta.gemm_peak_flops_per_s = cpu.get("by_framework", {})
        meta.peak_flops_per_s = cpu.get("flops_per_s")
        meta.save(run_dir)
    cells, refused = _tune(args, cells, run_dir, pythons, retune=args.full)
    plan = RunPlan([json.loads(c.to_json()) for c in cells], refused,
                   timed_alone(cells, args.timing))
    plan.save(run_dir)
    return plan


def plan_cells(plan: RunPlan) -> list[Cell]:
    return [Cell.from_json(json.dumps(c)) for c in plan.cells]


def _execute(args: argparse.Namespace, run_dir: Path, meta: RunManifest, cells: list[Cell],
             plan: RunPlan, finished: dict) -> int:
    """Run the plan's cells (those not ``finished``), then write the tables and the report of
    everything the run folder holds."""
    from harness import ui

    executor = partial(_ray().run_cells, address=args.address) \
        if args.executor == "ray" else None
    outcomes = ui.run_with_progress(cells, run_dir, dict(args.python), args.timeout,
                                    plan.refused, plan.alone, finished, executor)
    meta.ended = now_iso()
    stopped = next((o for o in outcomes if o.status == "interrupted"), None)
    meta.interrupted = stopped is not None
    meta.framework_info = {**meta.framework_info,
                           **{o.cell.framework: o.record.framework_info for o in outcomes
                              if o.record.framework_info}}
    meta.save(run_dir)
    tables = results.write(run_dir)
    path = render_report(run_dir, args.reports_dir)
    ui.print_summary(tables["summary"], run_dir, path, tables["accuracy"])
    if stopped is not None:
        ui.console.print(f"{stopped.reason}: finish it with `framebench --resume "
                         f"{run_dir.name} --results-dir {run_dir.parent}`")
        name = (stopped.reason or "").removeprefix("interrupted (").rstrip(")")
        return 128 + getattr(signal.Signals, name, signal.SIGINT).value
    return 0


def _ray() -> ModuleType:
    """harness.launch.ray, or a clear error where Ray is not installed."""
    try:
        from harness.launch import ray
    except ImportError as exc:
        raise SystemExit(f"framebench: --executor ray needs Ray ({exc}); pip install "
                         "'framebench[ray]'") from None
    return ray


def render_report(run_dir: Path, reports_dir: Path) -> Path | str:
    """The run's HTML report; where its packages are missing (a GPU machine's own Python,
    ``harness.gpucheck``), why it was not rendered: the tables are written regardless."""
    try:
        from harness import report
    except ImportError as exc:
        return (f"not rendered: {exc.name} is not installed (the tables are in {run_dir}; "
                f"`framebench report {run_dir.name}` renders it where it is)")
    return report.render(run_dir, reports_dir)


RESUME_OPTIONS = ("--resume", "--results-dir", "--reports-dir", "--python")


def _resumed(args: argparse.Namespace, argv: list[str]) -> tuple[Path, argparse.Namespace]:
    """The run folder --resume names and the run's own options (its manifest's command line),
    with --reports-dir and --python taken from this command if given."""
    extra = [a.split("=")[0] for a in argv if a.startswith("--")
             and a.split("=")[0] not in RESUME_OPTIONS]
    if extra:
        raise SystemExit(f"framebench: --resume runs with the run's own options; "
                         f"{', '.join(extra)} cannot change them (only "
                         f"{', '.join(RESUME_OPTIONS[1:])} may be given)")
    run_dir = Path(args.resume) if Path(args.resume).is_dir() \
        else args.results_dir / args.resume
    if not RunManifest.exists(run_dir):
        runs = sorted(d.name for d in args.results_dir.glob("*/") if RunManifest.exists(d)) \
            if args.results_dir.is_dir() else []
        raise SystemExit(f"framebench: --resume {args.resume}: no run there ({run_dir} has no "
                         f"run.json); runs in {args.results_dir}: {', '.join(runs) or 'none'}")
    original = run_parser().parse_args(RunManifest.read(run_dir).argv[1:])
    original.results_dir = run_dir.parent
    if "--reports-dir" in [a.split("=")[0] for a in argv]:
        original.reports_dir = args.reports_dir
    original.python = [*original.python, *args.python]  # later entries win in dict()
    original.resume = None
    return run_dir, original


def check_pythons(pythons: dict[str, str], frameworks: list[str]) -> None:
    """Each --python of a selected framework is an interpreter that has the framework, checked
    before anything runs (without importing the framework)."""
    for fw in frameworks:
        if fw not in pythons:
            continue
        path, b = pythons[fw], BACKENDS[fw]
        where = f"--python {fw}={path}"
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise SystemExit(f"framebench: {where}: no executable file there (give the python "
                             f"of a virtualenv with {fw}, e.g. .nox/bench-{fw}/bin/python)")
        probe = ("import importlib.util, sys; "
                 "print('has', importlib.util.find_spec(sys.argv[1]) is not None)")
        try:
            done = subprocess.run([path, "-c", probe, b.import_name], capture_output=True,
                                  text=True, timeout=60)
            answer = done.stdout.split()
        except (OSError, subprocess.SubprocessError, UnicodeDecodeError) as exc:
            answer, done = [], exc
        if answer[:1] != ["has"]:
            why = done if isinstance(done, Exception) else f"exit status {done.returncode}"
            raise SystemExit(f"framebench: {where}: not a Python interpreter ({why})")
        if answer[1:] != ["True"]:
            raise SystemExit(f"framebench: {where}: {fw} is not installed for that "
                             f"interpreter; {b.install_hint}")


def check_data(cells: list[Cell]) -> None:
    """A dataset that is downloaded (not bundled) is fetched, verified and read once here,
    before anything runs: a missing, unreachable, corrupt or wrongly-checksummed one stops the
    run with its reason instead of failing in every cell."""
    from harness.cell import load_dataset

    seen = set()
    for cell in cells:
        key = (cell.dataset_name, cell.data_dir)
        if cell.dataset_name not in DOWNLOADED or key in seen:
            continue
        seen.add(key)
        try:
            load_dataset(cell)
        except (OSError, ValueError, RuntimeError) as exc:
            raise SystemExit(f"framebench: dataset {cell.dataset_name} (--data-dir "
                             f"{cell.data_dir or 'default'}): {exc}") from None


def _tune(args: argparse.Namespace, cells: list[Cell], run_dir: Path, pythons: dict[str, str],
          retune: bool) -> tuple[list[Cell], dict[str, str]]:
    """Give the tuned cells their variants (kept searches, or searched now)."""
    from harness import ui

    modes = {fw: search_modes(args, fw) for fw in args.frameworks}
    return tune.resolve(cells, run_dir, args.results_dir / "tuning", pythons, modes,
                        retune=retune, timeout_s=2 * args.timeout, say=ui.console.print,
                        rounds=tune.QUICK_ROUNDS if args.quick else tune.ROUNDS)


def tune_main(argv: list[str]) -> int:
    """`framebench tune [run options]`: search the tuned tier of the selection now (the kept
    searches are replaced) and print each search."""
    from harness import ui

    args = run_parser().parse_args(argv)
    args.tiers = ["tuned"]
    cells = [c for c in make_cells(args) if c.tier == "tuned" and c.repeat == 0]
    with tempfile.TemporaryDirectory() as tmp:
        cells, refused = _tune(args, cells, Path(tmp), dict(args.python), retune=True)
        for path in sorted((Path(tmp) / "tuning").glob("*.json")):
            ui.print_search(read_json(path))
    return 1 if refused else 0


def report_main(argv: list[str]) -> int:
    from harness import report

    p = argparse.ArgumentParser(prog="framebench report",
                                description="Re-collect a run's tables and render its report.")
    p.add_argument("run", nargs="?", default=None,
                   help="run directory or run id under --results-dir (default: the newest)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--reports-dir", type=Path, default=Path("reports"))
    args = p.parse_args(argv)
    if args.run is None:
        runs = sorted(d for d in args.results_dir.glob("*/") if RunManifest.exists(d))
        if not runs:
            raise SystemExit(f"framebench report: no runs in {args.results_dir}")
        run_dir = runs[-1]
    else:
        run_dir = Path(args.run) if Path(args.run).is_dir() else args.results_dir / args.run
    if not RunManifest.exists(run_dir):
        raise SystemExit(f"framebench report: {run_dir} is not a run directory (no run.json)")
    results.write(run_dir)
    print(report.render(run_dir, args.reports_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except UnreadableFile as exc:
        raise SystemExit(f"framebench: {exc}") from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) and "No space left" not in str(exc):
            raise
        raise SystemExit(f"framebench: no space left on the device while writing "
                         f"{exc.filename or 'the results'}; every file written before is "
                         "intact (each is written to a temporary name, then renamed). Free "
                         "some space, then `framebench --resume RUN` finishes an interrupted "
                         "run and `framebench report RUN` writes its tables and report") from None


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "report":
        return report_main(argv[1:])
    if argv and argv[0] == "compare":
        from harness import compare

        return compare.main(argv[1:])
    if argv and argv[0] == "tune":
        return tune_main(argv[1:])
    if argv and argv[0] == "run":
        argv = argv[1:]
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
