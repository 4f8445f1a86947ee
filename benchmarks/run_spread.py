"""Run-to-run spread: the same cells' medians over several runs, and the machine's own noise.

For every cell in all the runs: its median step time in each, and (max - min) / median over the
runs. For every run: the range and median of its machine probe (harness.measure.machine_probe),
which says how much of that spread the host itself moved.

    python benchmarks/run_spread.py results/RUN1 results/RUN2 results/RUN3 [--workload mlp]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import results  # noqa: E402
from harness.backends import SELF_CHECK  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (results/<run-id>)")
    p.add_argument("--workload", default=None, help="only this workload's cells")
    args = p.parse_args()
    medians = {}
    for run in args.runs:
        tables = results.load(run)
        probe = tables["results"]["machine_probe_s"].dropna()
        if len(probe):
            print(f"{run.name}: machine probe {probe.min() * 1e3:.3f}-{probe.max() * 1e3:.3f} ms "
                  f"(median {probe.median() * 1e3:.3f}): the machine moved by "
                  f"{probe.max() / probe.min() - 1:.0%}")
        s = tables["summary"]
        s = s[(s["framework"] != SELF_CHECK) & s["step_median_s"].notna()]
        if args.workload:
            s = s[s["workload"] == args.workload]
        medians[run.name] = s.set_index("cell_id")["step_median_s"] * 1e3
    table = pd.DataFrame(medians).dropna()
    table["spread"] = (table.max(axis=1) - table.min(axis=1)) / table.median(axis=1)
    print("\nmedian step time (ms) per run, and (max - min) / median over the runs")
    print(table.to_string(float_format=lambda x: f"{x:.3f}",
                          formatters={"spread": "{:.1%}".format}))


if __name__ == "__main__":
    main()
