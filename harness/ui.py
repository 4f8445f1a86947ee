"""Terminal output: a progress bar over the cells and a summary table at the end (rich)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness import results, runner
from harness.backends import SELF_CHECK
from harness.measure import NOISE_LIMIT
from harness.spec import Cell

# Not a terminal (nox, CI logs): rich would assume 80 columns and wrap the summary table.
console = Console() if sys.stdout.isatty() else Console(width=140)
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "interrupted": "red"}


def run_with_progress(cells: list[Cell], run_dir: Path, pythons: dict[str, str],
                      timeout_s: float, refused: dict[str, str] | None = None,
                      alone: dict[str, str] | None = None,
                      finished: dict | None = None,
                      executor: Callable[..., list[runner.Outcome]] | None = None
                      ) -> list[runner.Outcome]:
    """Run the cells (``runner.run_cells``, or an ``executor`` with its contract: a Ray
    cluster's) under a progress bar, a line per finished process."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console,
                  refresh_per_second=1) as progress:  # the cells share these CPUs
        # a largest-batch search runs as many processes as it needs: each counts when it ends
        task = progress.add_task("cells", total=sum(
            c.scenario != "largest" and (c.id, c.repeat) not in (finished or {}) for c in cells))

        def start(cell: Cell) -> None:
            progress.update(task, description=cell.id)

        def done(outcome: runner.Outcome) -> None:
            if outcome.cell.scenario == "largest":
                progress.update(task, total=progress.tasks[task].total + 1)
            progress.advance(task)
            style = STATUS_STYLE.get(outcome.status, "")
            first = (outcome.reason or "").strip().splitlines()[:1]
            progress.console.print(f"[{style}]{outcome.status:>11}[/] {outcome.cell.id} "
                                   f"({outcome.wall_s:.0f} s){': ' + first[0] if first else ''}")

        return (executor or runner.run_cells)(
            cells, run_dir, pythons, timeout_s, on_start=start, on_done=done, refused=refused,
            alone=alone, finished=finished)


def print_search(record: dict) -> None:
    """One tuned-tier search: every candidate, its time, its ratio to the identical step of
    its mode (paired rounds), and whether it passed the correctness check."""
    chosen = record.get("chosen") or {}
    t = Table(title=f"tuning {record['framework']} {record['workload']} {record['size']} "
                    f"{record['device']} b{record['batch_size']} {record['precision']}: "
                    f"{record['rounds']} paired rounds")
    for col in ("variant", "mode", "median step ms", "vs identical (95% CI)", "correct",
                "chosen"):
        t.add_column(col, justify="left" if col in ("variant", "mode") else "right")
    for c in record["candidates"]:
        ci = c.get("vs_identical_ci")
        t.add_row(c["variant"], c["mode"],
                  f"{c['median_s'] * 1e3:.3f}" if "median_s" in c else "–",
                  f"{c['vs_identical']:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "–",
                  "yes" if c["check"]["ok"] else f"[red]no[/] {c.get('error', '')[:60]}",
                  "◀" if (c["variant"], c["mode"]) == (chosen.get("variant"),
                                                       chosen.get("mode")) else "")
    console.print(t)


def measure_peaks(cells: list[Cell], pythons: dict[str, str]) -> dict[str, dict]:
    """The GEMM peak of each device and precision the cells use, each framework (and numpy on
    the CPU) in its own interpreter, pinned and configured like the cells
    (``harness.backends.peak``); keyed "<device>-<precision>" (RunManifest.device_peaks)."""
    from harness.backends import peak

    with console.status("measuring GEMM peaks per device and precision (numpy and each "
                        "framework, pinned like the cells)"):
        peaks = peak.measure_device_peaks(cells, pythons, say=lambda m: console.print(
            f"[yellow]{m}[/]"))
    for name, p in peaks.items():
        figures = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in p["by_framework"].items())
        sheet = p["datasheet_flops_per_s"]
        console.print(f"GEMM peak {name} ({p['device_name']}, {p['threads']} threads): "
                      f"{figures or 'none measured'} GFLOP/s"
                      + (f"; datasheet {sheet / 1e12:.1f} TFLOP/s" if sheet else ""))
    return peaks


def _fmt(value: float, fmt: str) -> str:
    return "–" if pd.isna(value) else format(value, fmt)


def print_summary(summary: pd.DataFrame, run_dir: Path, report_path: Path | str,
                  accuracy: pd.DataFrame | None = None) -> None:
    t = Table(title=f"framebench {run_dir.name}")
    ttt = {} if accuracy is None else {
        r["cell_id"]: r for _, r in results.time_to_target(accuracy).iterrows()}
    left = ("workload", "framework", "tier", "mode")
    for col in (*left, "status", "median step / request (95% CI) ms", "throughput /s",
                "first step s", "peak RSS MiB", "MFU", "quality (infer: latency at batch 1)"):
        t.add_column(col, justify="left" if col in left else "right")
    real = summary[summary["framework"] != SELF_CHECK]
    for _, r in real.sort_values(["workload", "step_median_s"]).iterrows():
        ok = r["status"] == "ok"
        quality = (f"ppl {r['test_perplexity']:.2f}" if pd.notna(r["test_perplexity"])
                   else _fmt(r["test_accuracy"], ".3f"))
        if r["cell_id"] in ttt:  # time to target: median over seeds, and how many met it
            tt = ttt[r["cell_id"]]
            quality += (f"; target {_fmt(tt['median_s'], '.2f')} s" if pd.notna(tt["median_s"])
                        else "; target not reached") + f" ({tt['met']}/{tt['seeds']} seeds)"
        mode = f"{r['variant']} ({r['mode']})" if r["tier"] == "tuned" else r["mode"]
        if r["scenario"] == "infer":  # a request at the throughput batch; latency at batch 1
            mode = f"infer: {mode}"
            quality = (f"p50 {r['latency_p50_s'] * 1e3:.3f} ms, p99 "
                       f"{r['latency_p99_s'] * 1e3:.3f} ms" if pd.notna(r["latency_p50_s"])
                       else "–")
        t.add_row(f"{r['workload']} {r['size']}", r["framework"], r["tier"], mode,
                  f"[{STATUS_STYLE.get(r['status'], '')}]{r['status']}[/]",
                  f"{r['step_median_s'] * 1e3:.3f} ({r['step_ci_low_s'] * 1e3:.3f}–"
                  f"{r['step_ci_high_s'] * 1e3:.3f})" if ok else "–",
                  f"{_fmt(r['items_per_s'], ',.0f')} {r['unit']}" if ok else "–",
                  _fmt(r["first_step_cold_s"], ".2f"),
                  _fmt(r["peak_rss_bytes"] / 2**20, ".0f"), _fmt(r["mfu"], ".1%"),
                  quality)
    console.print(t)
    overhead = real["overhead_fraction"].max()
    if pd.notna(overhead):
        style = "bold red" if overhead > 0.01 else "green"
        console.print(f"harness cost (no-op cell): at most [{style}]{overhead:.3%}[/] of a sample")
    slowdown = summary["machine_slowdown"].max()
    if pd.notna(slowdown):
        style = "yellow" if slowdown > 1 + NOISE_LIMIT else "green"
        console.print(f"machine noise (fixed probe): its speed moved by [{style}]"
                      f"{slowdown - 1:.0%}[/] during the run")
    failed = real[real["sync_ok"] == False]  # noqa: E712 - nullable boolean
    if len(failed):
        console.print("[bold red]UNTRUSTWORTHY[/]: sync check failed for "
                      + ", ".join(failed["cell_id"]))
    console.print(f"results: {run_dir}")
    console.print(f"report:  [bold]{report_path}[/]")
