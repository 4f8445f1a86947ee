"""Run-to-run spread: the same cells' medians over several runs, and the machine's own noise.

For every cell in all the runs: its median step time in each, and (max - min) / median over the
runs. For every run: the range and median of its machine probe (harness.measure.machine_probe),
which says how much of that spread the host itself moved. With --ratios: the *decision ratios*
instead (between frameworks, within one tier: the `ratios` table), their spread over the runs,
and the width of their CIs (paired where the run timed the cells in turns, and the unpaired
statistic on the same samples), so two protocols can be set side by side:

    python benchmarks/run_spread.py results/RUN1 results/RUN2 results/RUN3 [--workload mlp]
    python benchmarks/run_spread.py results/T1 results/T2 results/T3 --ratios --tier tuned
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
    p.add_argument("--ratios", action="store_true",
                   help="the between-framework ratios, their run-to-run spread and CI widths")
    p.add_argument("--tier", default="tuned", help="with --ratios: the tier (default tuned)")
    args = p.parse_args()
    if args.ratios:
        ratio_spread(args.runs, args.tier, args.workload)
        return
    medians = {}
    for run in args.runs:
        tables = results.load(run, lenient=True)
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


def ratio_spread(runs: list[Path], tier: str, workload: str | None) -> None:
    """Each decision ratio per run, its spread (max - min) / median over the runs, and the CI
    width as (high - low) / ratio: the run's own (paired if timed in turns) and the unpaired
    statistic's, which resamples each cell on its own."""
    ratios, widths = {}, []
    for run in runs:
        r = results.load(run, lenient=True)["ratios"]
        r = r[(r["tier"] == tier) & (r["metric"] == "step")]  # training steps
        if workload:
            r = r[r["workload"] == workload]
        pair = r["a"].str.replace(f"-{tier}", "") + " / " + r["b"].str.replace(f"-{tier}", "")
        ratios[run.name] = pd.Series(r["ratio"].to_numpy(), index=pair.to_numpy())
        widths.append(pd.DataFrame({
            "run": run.name, "pair": pair.to_numpy(), "paired": r["paired"].to_numpy(),
            "width": ((r["ci_high"] - r["ci_low"]) / r["ratio"]).to_numpy(),
            "unpaired_width": ((r["unpaired_ci_high"] - r["unpaired_ci_low"])
                               / r["unpaired_ratio"]).to_numpy(),
            "level": r["level"].to_numpy()}))
    table = pd.DataFrame(ratios).dropna()
    table["spread"] = (table.max(axis=1) - table.min(axis=1)) / table.median(axis=1)
    print(f"\n{tier} tier: time ratio a / b per run, and (max - min) / median over the runs")
    print(table.to_string(float_format=lambda x: f"{x:.3f}",
                          formatters={"spread": "{:.1%}".format}))
    print(f"spread: median {table['spread'].median():.1%}, largest {table['spread'].max():.1%}, "
          f"{(table['spread'] < 0.03).sum()} of {len(table)} under 3%")
    w = pd.concat(widths)
    print(f"CI width (high - low) / ratio, median over the ratios of every run "
          f"(levels {w['level'].min():.4f}-{w['level'].max():.4f}): the run's own "
          f"{'paired' if w['paired'].all() else 'unpaired' if not w['paired'].any() else 'mixed'}"
          f" {w['width'].median():.1%}; unpaired statistic on the same samples "
          f"{w['unpaired_width'].median():.1%}")


if __name__ == "__main__":
    main()
