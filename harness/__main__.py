"""Command line: ``framebench [run options]`` runs a benchmark; ``framebench report RUN`` renders.

Names are checked before anything runs; an unknown one stops with the list of valid names.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from harness import results
from harness.backends import ALL_MODES, BACKENDS
from harness.data import DATASETS
from harness.measure import host_info, now_iso
from harness.spec import DEVICES, WORKLOADS, Cell, check_choice

QUICK_EPOCHS = 2
QUICK_STEADY_S = 0.5


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
        return names
    return parse


def _choice(kind: str, valid: tuple[str, ...]):  # noqa: ANN202 - argparse type factory
    def parse(text: str) -> str:
        try:
            return check_choice(kind, text, valid)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def _python(text: str) -> tuple[str, str]:
    fw, sep, path = text.partition("=")
    if not sep or fw not in BACKENDS:
        raise argparse.ArgumentTypeError(
            f"expected FRAMEWORK=PATH with FRAMEWORK one of {', '.join(BACKENDS)}, got {text!r}")
    return fw, path


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="framebench",
        description="Benchmark identical models and training loops on PyTorch, TensorFlow and "
                    "JAX; write results/<run-id>/ and reports/<run-id>/index.html. "
                    "`framebench report RUN` re-renders a report.")
    p.add_argument("--workloads", type=_names("workload", tuple(WORKLOADS)),
                   default=list(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)} "
                   "(default: all)")
    p.add_argument("--frameworks", type=_names("framework", tuple(BACKENDS)),
                   default=list(BACKENDS), help=f"comma list of {', '.join(BACKENDS)} "
                   "(default: all)")
    p.add_argument("--modes", type=_names("mode", ALL_MODES), default=list(ALL_MODES),
                   help="comma list of " + "; ".join(f"{fw}: {', '.join(b.modes)}"
                                                     for fw, b in BACKENDS.items())
                   + " (default: every mode of every framework)")
    p.add_argument("--devices", type=_names("device", DEVICES), default=["cpu"],
                   help=f"comma list of {', '.join(DEVICES)} (default: cpu)")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="comma list of batch sizes (default: each workload's own, 32)")
    p.add_argument("--dataset", type=_choice("dataset", DATASETS), default="digits",
                   help=f"one of {', '.join(DATASETS)} (default: digits, bundled, offline)")
    p.add_argument("--data-dir", default=None,
                   help="directory holding IDX files for mnist/fashion-mnist (default: "
                   "~/.cache/framebench/<dataset>, downloaded there when missing)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training budget in epochs (default: the workload's, 10)")
    p.add_argument("--steady-seconds", type=float, default=None,
                   help="time budget of the steady-state timing per cell (default: 2)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_EPOCHS} epochs and {QUICK_STEADY_S} s of timing")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batch order")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds before a cell is "
                   "killed and recorded as failed (default: 900)")
    p.add_argument("--run-id", default=None, help="name of the run (default: a timestamp)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--reports-dir", type=Path, default=Path("reports"))
    p.add_argument("--python", type=_python, action="append", default=[], metavar="FW=PATH",
                   help="interpreter that runs FW's cells (one virtualenv per framework); "
                   "default: this interpreter")
    return p


def make_cells(args: argparse.Namespace) -> list[Cell]:
    """The cross product, each framework with the modes it has; an empty product is an error."""
    cells = []
    for workload in args.workloads:
        w = WORKLOADS[workload]
        for device in args.devices:
            for batch in args.batch_sizes or [w.batch_size]:
                for fw in args.frameworks:
                    for mode in BACKENDS[fw].modes:
                        if mode not in args.modes:
                            continue
                        cells.append(Cell(
                            framework=fw, workload=workload, mode=mode, device=device,
                            batch_size=batch, dataset=args.dataset, data_dir=args.data_dir,
                            epochs=args.epochs or (QUICK_EPOCHS if args.quick else w.epochs),
                            steady_seconds=args.steady_seconds
                            or (QUICK_STEADY_S if args.quick else Cell.steady_seconds),
                            seed=args.seed))
    if not cells:
        raise SystemExit(
            f"framebench: no cell to run: none of the frameworks {', '.join(args.frameworks)} "
            f"has the modes {', '.join(args.modes)}. Modes by framework: "
            + "; ".join(f"{fw}: {', '.join(b.modes)}" for fw, b in BACKENDS.items()))
    return cells


def run(argv: list[str]) -> int:
    from harness import report, ui

    args = run_parser().parse_args(argv)
    cells = make_cells(args)
    run_id = args.run_id or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = args.results_dir / run_id
    if (run_dir / "run.json").exists():
        raise SystemExit(f"framebench: {run_dir} exists already; choose another --run-id")
    run_dir.mkdir(parents=True)
    meta = {"run_id": run_id, "started": now_iso(), "ended": None, "argv": ["framebench", *argv],
            "host": host_info(), "cells": [c.id for c in cells],
            "workloads": {w: WORKLOADS[w].description for w in args.workloads}}
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))

    outcomes = ui.run_with_progress(cells, run_dir, dict(args.python), args.timeout)
    meta.update(ended=now_iso(), interrupted=any(o.status == "interrupted" for o in outcomes),
                framework_info={o.cell.framework: o.record["framework_info"] for o in outcomes
                                if "framework_info" in o.record})
    (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
    table = results.write(run_dir)
    path = report.render(run_dir, args.reports_dir)
    ui.print_summary(table, run_dir, path)
    return 130 if meta["interrupted"] else 0


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
        runs = sorted(d for d in args.results_dir.glob("*/") if (d / "run.json").exists())
        if not runs:
            raise SystemExit(f"framebench report: no runs in {args.results_dir}")
        run_dir = runs[-1]
    else:
        run_dir = Path(args.run) if Path(args.run).is_dir() else args.results_dir / args.run
    if not (run_dir / "run.json").exists():
        raise SystemExit(f"framebench report: {run_dir} is not a run directory (no run.json)")
    results.write(run_dir)
    print(report.render(run_dir, args.reports_dir))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "report":
        return report_main(argv[1:])
    if argv and argv[0] == "run":
        argv = argv[1:]
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
