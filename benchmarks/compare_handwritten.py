"""The harness's tuned `mlp` cell against the fastest hand-written loop of each framework.

benchmarks/handwritten.py holds the loops an expert would write going for speed (two or three
per framework, none importing the harness). For each framework, one child process, started with
the framework's interpreter (--python FW=PATH) and the environment of a harness cell
(``harness.runner.cell_env``), holds the tuned cell and every loop of that framework:

* the cell is prepared and calibrated exactly as in a benchmark run (``CellRun.prepare``,
  ``calibrate``), which fixes K, the steps per timing sample;
* each loop compiles and warms up for 1 s with samples of K steps;
* then --paired-samples rounds, each taking one sample of K steps + sync from the harness
  (``CellRun.time_sample``) and from every loop, the order rotating from round to round.

A slow moment of the machine hits every sample of a round alike, so the per-round ratio
loop time / harness time is the harness's speed relative to the loop (1.00 = as fast;
the target is >= 0.97 against the fastest loop). Reported: the median of the per-round ratios
with its 95% bootstrap CI, and each side's median ms/step.

The tuned cell's variant is the one a benchmark run would use (``harness.tune.resolve``: a kept
search from --tuning-dir, or a new one, minutes for torch), or --variant FW=NAME:MODE.

    python benchmarks/compare_handwritten.py [--frameworks torch,tensorflow,jax]
        [--paired-samples 100] [--variant jax=jit-flat-adam:compiled] [--json out.json]
        [--python torch=.nox/bench-torch/bin/python ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

from harness import runner, stats, tune  # noqa: E402
from harness.measure import clock, default_threads  # noqa: E402
from harness.record import read_json  # noqa: E402
from harness.spec import Cell  # noqa: E402

TARGET = 0.97        # the harness at >= 97% of the fastest loop's speed
LOOP_WARMUP_S = 1.0  # per loop, after its first (compiling) sample
DISCARD_ROUNDS = 2   # the first rounds settle caches and thread pools


def paired(n_rounds: int) -> dict[str, Any]:
    """Inside the cell's process: the harness's tuned cell and the framework's hand-written
    loops, sampled in turns."""
    import handwritten

    from harness.cell import CellRun

    run = CellRun.from_env()
    run.prepare()
    k, _ = run.calibrate()
    fw = run.cell.framework

    def loop_sample(step: Any, sync: Any) -> float:
        t0 = clock()
        for i in range(k):
            step(i)
        sync()
        return clock() - t0

    samplers = {"harness": lambda: run.time_sample(k)}
    docs = {}
    for name, make in handwritten.LOOPS[fw].items():
        step, sync = make(*handwritten.batches())
        loop_sample(step, sync)  # compiles
        t0 = clock()
        while clock() - t0 < LOOP_WARMUP_S:
            loop_sample(step, sync)
        samplers[name] = lambda step=step, sync=sync: loop_sample(step, sync)
        docs[name] = " ".join(make.__doc__.split())

    order = list(samplers)
    times: dict[str, list[float]] = {name: [] for name in order}
    for r in range(DISCARD_ROUNDS + n_rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            t = samplers[name]() / k
            if r >= DISCARD_ROUNDS:
                times[name].append(t)

    harness_s = np.array(times.pop("harness"))
    loops = {}
    for name, t in times.items():
        ratio, lo, hi = stats.median_ci([np.array(t) / harness_s])
        loops[name] = {"doc": docs[name], "step_s": float(np.median(t)), "ratio": ratio,
                       "ci": [lo, hi], "step_samples_s": t}
    fastest = min(loops, key=lambda name: loops[name]["ratio"])
    return {"framework": fw, "cell": asdict(run.cell), "manifest": run.record.manifest,
            "k": k, "rounds": n_rounds, "harness_step_s": float(np.median(harness_s)),
            "harness_step_samples_s": harness_s.tolist(), "loops": loops, "fastest": fastest,
            "ratio": loops[fastest]["ratio"], "ci": loops[fastest]["ci"],
            "meets_target": loops[fastest]["ratio"] >= TARGET}


def tuned_cell(fw: str, variant: str | None, threads: int, pythons: dict[str, str],
               tuning_dir: Path, retune: bool) -> tuple[Cell, dict[str, Any] | None]:
    """The tuned mlp cell with the variant a benchmark run would give it, and the search that
    chose it (None for --variant)."""
    cell = Cell(fw, "mlp", "", tier="tuned", threads=threads)
    if variant:
        name, _, mode = variant.partition(":")
        return replace(cell, variant=name, mode=mode), None
    with tempfile.TemporaryDirectory() as tmp:
        [tuned], failed = tune.resolve([cell], Path(tmp), tuning_dir, pythons, {fw: None},
                                       retune=retune)
        if failed:
            raise SystemExit(f"{fw}: {failed[tuned.id]}")
        search = read_json(Path(tmp) / "tuning" / f"{tune.group_key(cell, None)}.json")
    return tuned, search


def compare(cell: Cell, python: str, n_rounds: int) -> dict[str, Any]:
    """One child process of the framework's interpreter, in the cell's environment."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "paired.json"
        env = runner.cell_env(cell, Path(tmp) / "cell", Path(tmp) / "cache")
        done = subprocess.run([python, __file__, "--child", str(out), "--paired-samples",
                               str(n_rounds)], capture_output=True, text=True, env=env,
                              cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"{cell.framework} comparison failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def print_table(results: list[dict[str, Any]]) -> None:
    print("\nratio = loop time / harness time over paired samples of K steps (>= 0.97: the "
          "harness is within 3% of the loop)")
    print(f"{'framework':10s} {'tuned cell / loop':34s} {'K':>4s} {'ms/step':>8s}  "
          f"{'ratio':>5s} (95% CI)")
    for res in results:
        cell = f"harness {res['cell']['variant']} ({res['cell']['mode']})"
        print(f"{res['framework']:10s} {cell:34s} {res['k']:4d} "
              f"{res['harness_step_s'] * 1e3:8.4f}")
        for name, loop in res["loops"].items():
            mark = "  <- fastest" if name == res["fastest"] else ""
            print(f"{'':10s} {'  loop ' + name:34s} {'':4s} {loop['step_s'] * 1e3:8.4f}  "
                  f"{loop['ratio']:.3f} ({loop['ci'][0]:.3f}-{loop['ci'][1]:.3f}){mark}")
    print("\nverdict: harness tuned cell vs the fastest hand-written loop")
    for res in results:
        lo, hi = res["ci"]
        verdict = "meets" if res["meets_target"] else "BELOW"
        print(f"{res['framework']:10s} {res['ratio']:.3f} ({lo:.3f}-{hi:.3f}) vs {res['fastest']}"
              f": {verdict} the {TARGET} target, over {res['rounds']} paired rounds")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frameworks", default="torch,tensorflow,jax")
    p.add_argument("--paired-samples", type=int, default=100, help="paired rounds")
    p.add_argument("--python", action="append", default=[], metavar="FW=PATH",
                   help="the framework's interpreter (default: this one)")
    p.add_argument("--variant", action="append", default=[], metavar="FW=NAME:MODE",
                   help="the tuned cell's variant, instead of the tuning search's choice")
    p.add_argument("--tuning-dir", type=Path, default=ROOT / "results" / "tuning",
                   help="kept tuning searches (reused while valid, as a benchmark run does)")
    p.add_argument("--retune", action="store_true", help="search again even if one is kept")
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="CPUs of the cell process, as framebench --threads (default: all)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.child.write_text(json.dumps(paired(args.paired_samples)))
        return
    pythons = dict(item.split("=", 1) for item in args.python)
    variants = dict(item.split("=", 1) for item in args.variant)
    results = []
    for fw in args.frameworks.split(","):
        python = pythons.get(fw, sys.executable)
        cell, search = tuned_cell(fw, variants.get(fw), args.threads, pythons,
                                  args.tuning_dir, args.retune)
        print(f"{fw}: tuned cell {cell.variant} ({cell.mode}), {args.paired_samples} paired "
              "rounds ...", flush=True)
        results.append({**compare(cell, python, args.paired_samples), "search": search})
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
