"""Terminal output: a progress bar over the cells and a summary table at the end (rich)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import runner
from harness.spec import Cell

# Not a terminal (nox, CI logs): rich would assume 80 columns and wrap the summary table.
console = Console() if sys.stdout.isatty() else Console(width=140)
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "interrupted": "red"}


def run_with_progress(cells: list[Cell], run_dir: Path, pythons: dict[str, str],
                      timeout_s: float) -> list[runner.Outcome]:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("cells", total=len(cells))

        def start(cell: Cell) -> None:
            progress.update(task, description=cell.id)

        def done(outcome: runner.Outcome) -> None:
            progress.advance(task)
            style = STATUS_STYLE.get(outcome.status, "")
            first = (outcome.reason or "").strip().splitlines()[:1]
            progress.console.print(f"[{style}]{outcome.status:>11}[/] {outcome.cell.id} "
                                   f"({outcome.wall_s:.0f} s){': ' + first[0] if first else ''}")

        return runner.run_cells(cells, run_dir, pythons, timeout_s, on_start=start, on_done=done)


def print_summary(table: pd.DataFrame, run_dir: Path, report_path: Path) -> None:
    t = Table(title=f"framebench {run_dir.name}")
    for col in ("workload", "framework", "mode", "status", "median step", "samples/s",
                "first step", "peak RSS", "accuracy"):
        t.add_column(col, justify="left" if col in ("workload", "framework", "mode") else "right")
    for _, r in table.sort_values(["workload", "step_median_s"]).iterrows():
        ok = r["status"] == "ok"
        t.add_row(r["workload"], r["framework"], r["mode"],
                  f"[{STATUS_STYLE.get(r['status'], '')}]{r['status']}[/]",
                  f"{r['step_median_s'] * 1e3:.3f} ms" if ok else "–",
                  f"{r['samples_per_s']:,.0f}" if ok else "–",
                  "–" if pd.isna(r["first_step_s"]) else f"{r['first_step_s']:.2f} s",
                  "–" if pd.isna(r["peak_rss_bytes"]) else f"{r['peak_rss_bytes'] / 2**20:.0f} MiB",
                  "–" if pd.isna(r["test_accuracy"]) else f"{r['test_accuracy']:.3f}")
    console.print(t)
    console.print(f"results: {run_dir}")
    console.print(f"report:  [bold]{report_path}[/]")
