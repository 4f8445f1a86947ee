"""The harness beside a minimal hand-written loop (benchmarks/handwritten.py), interleaved.

For each framework: the harness's `mlp` compiled cell and the hand-written loop of the same
configuration, each in a fresh process, alternated over --repeats rounds. Prints the median step
times and the median of the per-round ratios (harness / hand-written; 1.00 = no overhead).

    python benchmarks/compare_handwritten.py [--frameworks torch,tensorflow,jax] [--repeats 3]
        [--python torch=.nox/bench-torch/bin/python ...]
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

from harness import runner  # noqa: E402
from harness.measure import default_threads  # noqa: E402
from harness.spec import Cell  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frameworks", default="torch,tensorflow,jax")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--python", action="append", default=[], metavar="FW=PATH")
    args = p.parse_args()
    pythons = dict(item.split("=", 1) for item in args.python)
    frameworks = args.frameworks.split(",")
    rows: dict[str, dict[str, list[float]]] = {fw: {"harness": [], "hand": []} for fw in frameworks}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = frameworks[r % len(frameworks):] + frameworks[: r % len(frameworks)]
            for fw in order:
                python = pythons.get(fw, sys.executable)
                runs = [("harness", "hand"), ("hand", "harness")][r % 2]
                cell = Cell(fw, "mlp", "compiled", threads=default_threads())
                for kind in runs:
                    if kind == "harness":
                        [out] = runner.run_cells([cell], Path(tmp) / str(r), pythons)
                        if out.status != "ok":
                            raise SystemExit(f"{fw} harness cell {out.status}: {out.reason}")
                        value = float(np.median(out.record["step_samples_s"]))
                    else:
                        env = runner.cell_env(cell, Path(tmp), Path(tmp) / "cache" / f"{fw}{r}")
                        done = subprocess.run(
                            [python, str(ROOT / "benchmarks" / "handwritten.py"), fw],
                            capture_output=True, text=True, check=True, env=env)
                        value = json.loads(done.stdout.strip().splitlines()[-1])["step_median_s"]
                    rows[fw][kind].append(value)
                    print(f"round {r + 1} {fw:10s} {kind:8s} {value * 1e3:8.3f} ms/step",
                          flush=True)
    print("\nframework   harness ms/step   hand-written ms/step   ratio (median of rounds)")
    for fw, v in rows.items():
        ratios = np.array(v["harness"]) / np.array(v["hand"])
        print(f"{fw:10s} {np.median(v['harness']) * 1e3:16.3f} {np.median(v['hand']) * 1e3:22.3f}"
              f" {np.median(ratios):12.3f}  (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")


if __name__ == "__main__":
    main()
