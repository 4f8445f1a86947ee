"""The tuned tier's search: every candidate (the identical step of each mode, then the
backend's named variants) is built from the same weights, checked against the identical tier's
loss trajectory, and timed in turns with the others in one process; the fastest correct one is
the framework's tuned configuration for that workload, size, device, batch and precision.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from harness import stats
from harness.backends import BACKENDS, FRAMEWORKS
from harness.measure import clock, cpu_model, gpu_info, now_iso, set_threads
from harness.record import read_json, write_json
from harness.spec import Cell

CHECK_STEPS = 10
# Loss agreement after CHECK_STEPS steps, per workload. mlp and cnn: float32 rounding;
# transformer and lstm: measured up to 1.2e-5. resnet is chaotic: Adam's first steps move
# every weight by about lr whatever the size of its gradient, so a weight whose gradient is at
# rounding level gets a step whose sign is rounding noise, and batch norm spreads it. torch's
# own eager and compiled modes differ by 1.5e-3 to 2.4e-3 after 10 steps (batch 8 and 32,
# measured); other frameworks by up to 6e-3. So resnet's 10-step losses are checked at 1e-2
# (0.4% of the loss), and every workload's first FIRST_STEPS losses at float32 rounding, which
# a wrong update (learning rate, epsilon, decay, batch-norm statistics) would break.
LOSS_ATOL = {"mlp": 2e-5, "cnn": 2e-5, "resnet": 1e-2, "transformer": 1e-4, "lstm": 1e-4}
FIRST_STEPS, FIRST_ATOL = 3, 5e-5
# At its default batch (32) resnet's chaos starts at the second step: XLA's convolutions
# against oneDNN's move the second loss by up to 9e-4 (TensorFlow, measured), the identical
# algorithm in both. There only the first loss, before any update, is held to rounding.
FIRST_STEPS_OF = {"resnet": 1}


# Where an idiom differs from the identical algorithm by design, stated in its manifest (Keras's
# Adam adds epsilon to the uncorrected sqrt(v); keras.layers.LSTM has one bias where the model
# has two, so Adam moves their sum once instead of each), its trajectory cannot agree to
# rounding. It must still start from the same loss (same weights, same forward), train, and
# stay within 5% of the identical trajectory over the checked steps (measured: Keras mlp 0.04%,
# resnet 0.2%, lstm 3.6%); a wrong learning rate or weight decay moves it further.
BY_DESIGN_RTOL = 0.05


def stated_differences(manifest: dict[str, Any]) -> list[str]:
    """The differences from the identical algorithm a trainer's manifest states, as a list."""
    found = manifest.get("differences") or []
    return [found] if isinstance(found, str) else list(found)


def trajectory_check(workload: str, losses: list[float] | np.ndarray,
                     reference: list[float] | np.ndarray,
                     by_design: bool = False) -> dict[str, float | bool]:
    """Do `losses` follow the reference trajectory (the identical tier's) to rounding? With
    ``by_design`` (the code states how its algorithm differs), to BY_DESIGN_RTOL instead."""
    got, want = np.asarray(losses, np.float64), np.asarray(reference, np.float64)
    n = min(len(got), len(want))
    diff = np.abs(got[:n] - want[:n])
    first = float(diff[:FIRST_STEPS_OF.get(workload, FIRST_STEPS)].max()) if n else float("inf")
    worst = float(diff.max()) if n else float("inf")
    ok = bool(n == len(want) and n > 1 and np.isfinite(got[:n]).all())
    if by_design:
        ok = ok and bool(diff[0] <= FIRST_ATOL and got[n - 1] < got[0]
                         and (diff <= BY_DESIGN_RTOL * np.abs(want[:n])).all())
    else:
        ok = ok and first <= FIRST_ATOL and worst <= LOSS_ATOL.get(workload, 1e-4)
    return {"ok": ok, "first_steps_max_diff": first, "max_diff": worst, "steps": n,
            "by_design": by_design}


# --- the search, inside one process of the framework's interpreter -------------------------

ROUNDS = 20          # paired rounds: each candidate takes one timing sample per round, in turn
QUICK_ROUNDS = 6     # --quick: enough to pick, not to quote
DISCARD_ROUNDS = 2   # the first rounds settle caches and thread pools
WARM_S = 1.0         # each candidate runs this long before the rounds start


def search(cell: Cell, modes: tuple[str, ...] | None = None,
           rounds: int = ROUNDS) -> dict[str, Any]:
    """Build, check and time every candidate of the cell's tuned search; returns the record
    (``chosen`` is the fastest correct candidate). Runs in the cell's own environment."""
    from harness import backends, data
    from harness.cell import (
        MIN_SAMPLE_S,
        STEADY_BATCHES,
        build,
        compile_stats,
        load_dataset,
        make_spec,
        run_steps,
    )

    threads = set_threads(cell.threads)
    backend = backends.load(cell.framework)
    settings = backend.configure(cell.device, cell.precision, cell.threads)
    dataset = load_dataset(cell)
    spec = make_spec(cell, dataset)
    check = list(islice(data.batches(dataset.x_train, dataset.y_train, cell.batch_size, 0,
                                     cell.seed), CHECK_STEPS))
    steady = list(islice(data.batches(dataset.x_train, dataset.y_train, cell.batch_size,
                                      math.ceil(cell.epochs), cell.seed), STEADY_BATCHES))
    candidates: list[dict[str, Any]] = []
    live: list[tuple[dict[str, Any], Any, list[Any], int]] = []
    reference: list[float] | None = None
    for v in FRAMEWORKS[cell.framework].search_space(cell.device, modes):
        entry: dict[str, Any] = {"variant": v.name, "mode": v.mode, "description": v.description}
        candidates.append(entry)
        try:
            t0 = clock()
            trainer = build(backend, spec, replace(cell, tier="tuned", mode=v.mode,
                                                   variant=v.name))
            entry["build_s"] = clock() - t0
            losses = []
            for i, (x, y) in enumerate(check):
                t0 = clock()
                losses.append(float(trainer.numpy(trainer.step(trainer.put(x, y)))))
                if i == 0:
                    entry["first_step_s"] = clock() - t0
            trainer.sync()
            reference = reference or losses  # the first candidate is an identical step
            # The tuned tier is the identical algorithm, made fast: an idiom that differs by
            # design is timed and shown, but only a candidate that agrees to rounding is chosen.
            entry.update(losses=losses, check=trajectory_check(cell.workload, losses, reference),
                         differences=stated_differences(trainer.manifest),
                         compile_stats=compile_stats(trainer), manifest=trainer.manifest)
            placed = [trainer.put(x, y) for x, y in steady]
            single = []  # warm-up; the median step is robust to the machine's slow moments
            t0 = clock()
            while clock() - t0 < WARM_S or len(single) < 3:
                t1 = clock()
                run_steps(trainer, placed, 1)
                trainer.sync()
                single.append(clock() - t1)
            live.append((entry, trainer, placed, float(np.median(single))))
        except Exception as exc:  # a variant that fails is a result, not the end of the search
            entry["error"] = "".join(traceback.format_exception_only(exc)).strip()[-2000:]
            entry["check"] = {"ok": False}
    # Samples of one length for every candidate, so that a slow moment of the machine is as
    # likely to fall into any candidate's sample.
    length = max([MIN_SAMPLE_S] + [max(step_s, getattr(t, "min_sample_s", 0.0))
                                   for _, t, _, step_s in live])
    live = [(e, t, placed, max(1, round(length / step_s))) for e, t, placed, step_s in live]
    for e, _, _, k in live:
        e["steps_per_sample"] = k
    samples: dict[int, list[float]] = {id(e): [] for e, *_ in live}
    for r in range(rounds + DISCARD_ROUNDS):
        for entry, trainer, placed, k in live[r % len(live):] + live[:r % len(live)]:
            t0 = clock()
            run_steps(trainer, placed, k)
            trainer.sync()
            if r >= DISCARD_ROUNDS:
                samples[id(entry)].append((clock() - t0) / k)
    _summarize(candidates, {id(e): np.array(samples[id(e)]) for e, *_ in live})
    correct = [c for c in candidates if c["check"]["ok"] and "median_s" in c]
    chosen = min(correct, key=lambda c: c["median_s"]) if correct else None
    return {
        "framework": cell.framework, "workload": cell.workload, "size": cell.size_name,
        "device": cell.device, "batch_size": cell.batch_size, "precision": cell.precision,
        "threads": threads.get("threads"), "modes": list(modes or ()),
        "framework_version": backend.info().get("framework_version"),
        "host": _host(), "source": source_digest(cell.framework), "created": now_iso(),
        "rounds": rounds, "settings": settings,
        "reference_losses": reference, "candidates": candidates,
        "chosen": {"variant": chosen["variant"], "mode": chosen["mode"]} if chosen else None,
    }


def _summarize(candidates: list[dict[str, Any]], times: dict[int, np.ndarray]) -> None:
    """Median step time of every candidate, and its ratio to the identical step of its mode
    from the per-round pairs (a slow moment of the machine hits both sides of a pair)."""
    by_mode = {c["mode"]: c for c in candidates if c["variant"] == "identical"}
    for c in candidates:
        t = times.get(id(c))
        if t is None or not len(t):
            continue
        q1, med, q3 = np.percentile(t, [25, 50, 75])
        c.update(median_s=float(med), q1_s=float(q1), q3_s=float(q3), samples=len(t))
        base = by_mode.get(c["mode"])
        if base is not None and id(base) in times:
            ratio, lo, hi = stats.median_ci([t / times[id(base)]])
            c.update(vs_identical=ratio, vs_identical_ci=[lo, hi])


NOT_SEARCHED = ("infer.py", "parallel.py")


def source_digest(framework: str) -> str:
    """SHA-256 of the code a search measured and judged: the framework's backend package (its
    inference and data-parallel paths apart: not the one-device step searched), the model core
    and this module. Editing a variant, a tier, a layer or the check makes the kept searches
    stale."""
    root = Path(__file__).parent
    files = sorted(p for p in (root / "backends" / framework).glob("*.py")
                   if p.name not in NOT_SEARCHED) + sorted(
        (root / "model").rglob("*.py")) + [Path(__file__)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _host() -> dict[str, Any]:
    """What a search's result depends on besides the software: the CPU and the GPUs."""
    return {"cpu_model": cpu_model(), "gpus": [g.get("name") for g in gpu_info()]}


# --- the parent's side: the cache, and the search as a child process ------------------------

def group_key(cell: Cell, modes: tuple[str, ...] | None) -> str:
    """One search per framework x workload x size x device x batch x precision x modes."""
    tag = "+".join(modes) if modes else "all"
    return (f"{cell.framework}-{cell.workload}-{cell.size_name}-{cell.device}"
            f"-b{cell.batch_size}-{cell.precision}-t{cell.threads}-{tag}")


def usable(record: dict[str, Any], cell: Cell, modes: tuple[str, ...] | None,
           version: str | None) -> bool:
    """A kept search stands while the machine, the framework's version, the code and the
    search space are the ones it measured."""
    names = [(v.name, v.mode) for v in FRAMEWORKS[cell.framework].search_space(cell.device,
                                                                               modes)]
    return (bool(record.get("chosen")) and record.get("host") == _host()
            and record.get("framework_version") == version
            and record.get("source") == source_digest(cell.framework)
            and [(c["variant"], c["mode"]) for c in record.get("candidates", [])] == names)


def resolve(cells: list[Cell], run_dir: Path, cache_dir: Path, pythons: dict[str, str],
            modes: dict[str, tuple[str, ...] | None], retune: bool = False,
            timeout_s: float = 1800.0, say: Callable[[str], None] = print,
            rounds: int = ROUNDS) -> tuple[list[Cell], dict[str, str]]:
    """Give every tuned cell the variant its search chose: kept in ``cache_dir`` (reused while
    ``usable``) or searched now in a child process. Each search used is copied to
    ``run_dir/tuning``. Returns the cells and, for cells whose search failed, the reason."""
    from harness import runner

    chosen: dict[str, dict[str, str] | None] = {}
    failures: dict[str, str] = {}
    cache_dir = cache_dir.resolve()  # the search process runs from the checkout, not from here
    (run_dir / "tuning").mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for cell in dict.fromkeys(replace(c, repeat=0, train=True) for c in cells
                              if c.tier == "tuned" and not c.variant):
        fw_modes = modes.get(cell.framework)
        key = group_key(cell, fw_modes)
        if key in chosen:
            continue
        path = cache_dir / f"{key}.json"
        python = pythons.get(cell.framework, sys.executable)
        version = runner.framework_version(python, BACKENDS[cell.framework].import_name)
        record = read_json(path)
        if retune or not usable(record, cell, fw_modes, version):
            n = len(FRAMEWORKS[cell.framework].search_space(cell.device, fw_modes))
            say(f"tuning {key}: searching {n} candidates")
            t0 = clock()
            error = _search_child(cell, fw_modes, path, python, timeout_s, rounds)
            record = read_json(path) if error is None else {}
            if error:
                failures[key] = error
            say(f"tuning {key}: {_said(record) if record else 'failed'} ({clock() - t0:.0f} s)")
        else:
            say(f"tuning {key}: kept from {record.get('created')}: {_said(record)}")
        if record:
            write_json(run_dir / "tuning" / f"{key}.json", record)
        chosen[key] = record.get("chosen")
        if record and not record.get("chosen"):
            failures[key] = "no candidate passed the correctness check"
    out, reasons = [], {}
    for c in cells:
        if c.tier == "tuned" and not c.variant:
            key = group_key(c, modes.get(c.framework))
            pick = chosen.get(key)
            if pick:
                c = replace(c, mode=pick["mode"], variant=pick["variant"])
            else:
                reasons[c.id] = f"tuning failed: {failures.get(key, 'no result')}"
        out.append(c)
    return out, reasons


def _said(record: dict[str, Any]) -> str:
    pick = record.get("chosen") or {}
    return f"{pick.get('variant')} ({pick.get('mode')})" if pick else "no correct candidate"


def _search_child(cell: Cell, modes: tuple[str, ...] | None, out: Path, python: str,
                  timeout_s: float, rounds: int) -> str | None:
    """Run the search in a fresh process of the framework's interpreter, in the cell's own
    environment (threads, visible devices) with compile caches of its own; None or the error."""
    from harness import runner

    with tempfile.TemporaryDirectory() as tmp:
        env = runner.cell_env(cell, Path(tmp), Path(tmp) / "cache")
        cmd = [python, "-m", "harness.tune", "--cell", cell.to_json(), "--out", str(out),
               "--rounds", str(rounds)]
        if modes:
            cmd += ["--modes", ",".join(modes)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  env=env, cwd=runner.ROOT, start_new_session=True)
        except subprocess.TimeoutExpired:
            return f"the search timed out after {timeout_s:g} s"
    if done.returncode != 0:
        return f"the search exited with code {done.returncode}: {done.stderr[-1500:]}"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One tuned-tier search (run by framebench).")
    p.add_argument("--cell", required=True, help="the tuned cell, as JSON")
    p.add_argument("--modes", default="", help="comma list of modes to search (default: all)")
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m) or None
    write_json(args.out, search(Cell.from_json(args.cell), modes, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
