"""The harness beside a minimal hand-written loop (benchmarks/handwritten.py), in one run.

For each framework, the harness's `mlp` compiled cell against the hand-written loop of the same
configuration, two ways:

* **processes**: the whole harness cell (a fresh pytest-benchmark process) and the hand-written
  script (a fresh process of its own), alternated over --repeats rounds. This includes
  everything that differs between the two processes, and also the machine's process-to-process
  noise, which on a shared host is larger than any harness overhead.
* **paired**: one process holds both: the harness's cell is prepared and calibrated as in a
  benchmark run, then its timing sample (``CellRun.time_sample``: K steps and one sync) and K
  steps of the hand-written loop plus its sync alternate, sample by sample, --paired-samples
  times. Machine noise hits both sides of a pair alike, so the paired ratio isolates what the
  harness's own step and timing add.

Ratios are harness / hand-written (1.00 = no overhead), with 95% bootstrap CIs.

    python benchmarks/compare_handwritten.py [--frameworks torch,tensorflow,jax] [--repeats 5]
        [--paired-samples 200] [--python torch=.nox/bench-torch/bin/python ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import runner, stats  # noqa: E402
from harness.measure import clock, default_threads  # noqa: E402
from harness.spec import Cell  # noqa: E402


def paired(cell: Cell, out_dir: Path, n: int) -> dict[str, float]:
    """Inside one process: harness samples and hand-written samples, alternated."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import handwritten

    from harness.cell import CellRun

    run = CellRun(cell, out_dir)
    run.prepare()
    k, _ = run.calibrate()
    step, sync = getattr(handwritten, f"{cell.framework}_loop")(*handwritten.batches(8))

    def hand_sample() -> float:
        t0 = clock()
        for i in range(k):
            step(i)
        sync()
        return clock() - t0

    hand_sample()  # the hand-written loop compiles; then 1 s of warm-up (the harness's was
    t0 = clock()   # its calibration)
    while clock() - t0 < 1.0:
        hand_sample()
    samples: dict[str, list[float]] = {"harness": [], "hand": []}
    for i in range(n):
        order = [("harness", lambda: run.time_sample(k)), ("hand", hand_sample)]
        for name, sample in order if i % 2 == 0 else reversed(order):
            samples[name].append(sample() / k)
    harness_s, hand_s = np.array(samples["harness"]), np.array(samples["hand"])
    ratio, lo, hi = stats.median_ci([harness_s / hand_s])
    return {"k": k, "harness_s": float(np.median(harness_s)), "hand_s": float(np.median(hand_s)),
            "ratio": ratio, "ci_low": lo, "ci_high": hi}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frameworks", default="torch,tensorflow,jax")
    p.add_argument("--repeats", type=int, default=5, help="rounds of fresh processes")
    p.add_argument("--paired-samples", type=int, default=200)
    p.add_argument("--python", action="append", default=[], metavar="FW=PATH")
    p.add_argument("--paired-child", metavar="FW", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.paired_child:
        cell = Cell(args.paired_child, "mlp", "compiled", threads=default_threads(), train=False)
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(paired(cell, Path(tmp), args.paired_samples)))
        return
    pythons = dict(item.split("=", 1) for item in args.python)
    frameworks = args.frameworks.split(",")
    rows: dict[str, dict[str, list[float]]] = {fw: {"harness": [], "hand": []} for fw in frameworks}
    pairs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = frameworks[r % len(frameworks):] + frameworks[: r % len(frameworks)]
            for fw in order:
                python = pythons.get(fw, sys.executable)
                cell = Cell(fw, "mlp", "compiled", threads=default_threads())
                env = runner.cell_env(cell, Path(tmp), Path(tmp) / "cache" / f"{fw}{r}")
                for kind in [("harness", "hand"), ("hand", "harness")][r % 2]:
                    if kind == "harness":
                        [out] = runner.run_cells([cell], Path(tmp) / str(r), pythons)
                        if out.status != "ok":
                            raise SystemExit(f"{fw} harness cell {out.status}: {out.reason}")
                        value = float(np.median(out.record.step_samples_s))
                    else:
                        done = subprocess.run(
                            [python, str(ROOT / "benchmarks" / "handwritten.py"), fw],
                            capture_output=True, text=True, check=True, env=env)
                        value = json.loads(done.stdout.strip().splitlines()[-1])["step_median_s"]
                    rows[fw][kind].append(value)
                    print(f"round {r + 1} {fw:10s} {kind:8s} {value * 1e3:8.3f} ms/step",
                          flush=True)
        for fw in frameworks:
            env = runner.cell_env(Cell(fw, "mlp", "compiled"), Path(tmp), Path(tmp) / "paired")
            done = subprocess.run(
                [pythons.get(fw, sys.executable), __file__, "--paired-child", fw,
                 "--paired-samples", str(args.paired_samples)],
                capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"{fw} paired comparison failed:\n{done.stderr[-3000:]}")
            pairs[fw] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"paired     {fw:10s} done", flush=True)

    print(f"\nprocesses: {args.repeats} rounds of fresh processes, median of per-round ratios")
    print("framework   harness ms/step   hand-written ms/step   ratio  (95% CI)   rounds")
    for fw, v in rows.items():
        ratios = np.array(v["harness"]) / np.array(v["hand"])
        r, lo, hi = stats.median_ci([ratios])
        print(f"{fw:10s} {np.median(v['harness']) * 1e3:16.3f} {np.median(v['hand']) * 1e3:22.3f}"
              f"   {r:.3f} ({lo:.3f}-{hi:.3f})   {', '.join(f'{x:.2f}' for x in ratios)}")
    print(f"\npaired: one process, {args.paired_samples} alternated samples of K steps each")
    print("framework   harness ms/step   hand-written ms/step   ratio  (95% CI)   K")
    for fw, v in pairs.items():
        print(f"{fw:10s} {v['harness_s'] * 1e3:16.3f} {v['hand_s'] * 1e3:22.3f}"
              f"   {v['ratio']:.3f} ({v['ci_low']:.3f}-{v['ci_high']:.3f})   {v['k']}")


if __name__ == "__main__":
    main()
