"""A run's tables -> one self-contained HTML report (plotly.js inlined, opens offline).

Imports no framework: it reads only results/<run-id>/ (tables and run.json).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from harness import results
from harness.backends import MODE_DESCRIPTIONS

TEMPLATES = Path(__file__).parent / "templates"
COLORS = {"torch": "#ee4c2c", "tensorflow": "#ff8f00", "jax": "#4285f4"}
DASHES = {"eager": "solid", "graph": "dot", "compiled": "dash"}


def label(row: Any) -> str:
    return f"{row['framework']} {row['mode']}"


def _fmt_s(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fmt_bytes(n: float | None) -> str:
    return "–" if n is None or pd.isna(n) else f"{n / 2**20:.0f} MiB"


def _figure_html(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", height=360, margin=dict(l=60, r=20, t=40, b=60))
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _bars(ok: pd.DataFrame, column: str, title: str, scale: float = 1.0,
          err: tuple[str, str] | None = None, log: bool = False) -> str:
    fig = go.Figure()
    for _, row in ok.iterrows():
        y = row[column] * scale
        error_y = None
        if err:  # throughput interval from the step-time quartiles
            lo, hi = row["batch_size"] / row[err[1]], row["batch_size"] / row[err[0]]
            error_y = dict(type="data", symmetric=False, array=[hi - y], arrayminus=[y - lo])
        fig.add_bar(x=[label(row)], y=[y], name=label(row), error_y=error_y,
                    marker_color=COLORS.get(row["framework"], "#888"), showlegend=False)
    fig.update_layout(title=title, yaxis_type="log" if log else "linear")
    return _figure_html(fig)


def _loss_figure(cells: pd.DataFrame, losses: pd.DataFrame) -> str:
    fig = go.Figure()
    for i, (_, row) in enumerate(cells.iterrows()):
        curve = losses[losses["cell_id"] == row["cell_id"]]
        if curve.empty:
            continue
        # Identical curves hide each other: draw each narrower than the one below it.
        fig.add_scatter(x=curve["step"], y=curve["loss"], mode="lines", name=label(row),
                        line=dict(color=COLORS.get(row["framework"], "#888"),
                                  dash=DASHES.get(row["mode"], "solid"),
                                  width=max(1.0, 7.0 - 1.0 * i)))
    fig.update_layout(title="Training loss at every step (same weights, same batches)",
                      xaxis_title="step", yaxis_title="cross-entropy", yaxis_type="log")
    return _figure_html(fig)


def loss_agreement(cells: pd.DataFrame, losses: pd.DataFrame, first: int = 10) -> float | None:
    """Largest difference between any two cells' losses over the first steps (the models are
    identical, so this should be float32 rounding)."""
    curves = [losses[losses["cell_id"] == c]["loss"].to_numpy()[:first] for c in cells["cell_id"]]
    curves = [c for c in curves if len(c) == first]
    if len(curves) < 2:
        return None
    stack = np.stack(curves)
    return float((stack.max(axis=0) - stack.min(axis=0)).max())


def summary(ok: pd.DataFrame) -> list[str]:
    """Plain-language findings for one workload."""
    if ok.empty:
        return ["No cell of this workload finished, so there is nothing to compare."]
    lines = []
    ranked = ok.sort_values("step_median_s")
    best = ranked.iloc[0]
    text = f"Fastest steady-state training: <b>{label(best)}</b> at " \
           f"{_fmt_s(best['step_median_s'])} per step ({best['samples_per_s']:,.0f} samples/s)"
    if len(ranked) > 1:
        second = ranked.iloc[1]
        text += f", {second['step_median_s'] / best['step_median_s']:.2f}× faster than the " \
                f"next, {label(second)}"
    if len(ranked) > 2:
        text += f"; slowest is {label(ranked.iloc[-1])} at " \
                f"{ranked.iloc[-1]['step_median_s'] / best['step_median_s']:.1f}× the time"
    lines.append(text + ".")
    for fw, group in ok.groupby("framework"):
        modes = group.set_index("mode")
        if "eager" not in modes.index:
            continue
        eager = modes.loc["eager"]
        parts = []
        for mode, r in modes.drop(index="eager").iterrows():
            ratio = eager["step_median_s"] / r["step_median_s"]
            speed = f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"
            parts.append(f"{mode} is {speed} per step than eager, after a first step of "
                         f"{_fmt_s(r['first_step_s'])}")
        if parts:
            lines.append(f"{fw}: " + "; ".join(parts)
                         + f" (eager's first step: {_fmt_s(eager['first_step_s'])}).")
    slow = ok.sort_values("first_step_s").iloc[-1]
    lines.append(f"Longest start-up: {label(slow)}, whose first step (compile included) took "
                 f"{_fmt_s(slow['first_step_s'])}.")
    mem = ok.sort_values("peak_rss_bytes")
    lines.append(f"Lowest peak host memory: {label(mem.iloc[0])} "
                 f"({_fmt_bytes(mem.iloc[0]['peak_rss_bytes'])}); highest: "
                 f"{label(mem.iloc[-1])} ({_fmt_bytes(mem.iloc[-1]['peak_rss_bytes'])}).")
    if best["step_median_s"] < 2e-3:
        lines.append("Caveat: steps this short (milliseconds or less) measure each framework's "
                     "per-step dispatch overhead more than its arithmetic; a bigger model or "
                     "batch can rank the frameworks differently.")
    acc = ok["test_accuracy"].dropna()
    if not acc.empty:
        lines.append(f"Test accuracy after the same budget: {acc.min():.3f}–{acc.max():.3f} "
                     f"(spread {100 * (acc.max() - acc.min()):.1f} points).")
    return lines


def _table_rows(cells: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for _, r in cells.iterrows():
        ok = r["status"] == "ok"
        rows.append({
            "label": label(r), "framework": r["framework"], "mode": r["mode"],
            "what": MODE_DESCRIPTIONS.get((r["framework"], r["mode"]), ""),
            "status": r["status"],
            "step": _fmt_s(r["step_median_s"]) if ok else "–",
            "iqr": _fmt_s(r["step_iqr_s"]) if ok else "–",
            "throughput": f"{r['samples_per_s']:,.0f}" if ok else "–",
            "first_step": _fmt_s(r["first_step_s"]),
            "import": _fmt_s(r["import_s"]),
            "memory": _fmt_bytes(r["peak_rss_bytes"]),
            "accuracy": "–" if pd.isna(r["test_accuracy"]) else f"{r['test_accuracy']:.3f}",
            "samples": "–" if pd.isna(r["n_samples"]) else
                       f"{r['n_samples']} × {r['steps_per_sample']} steps",
        })
    return rows


def context(run_dir: Path) -> dict[str, Any]:
    table, losses, _ = results.load(run_dir)
    run = {"host": {}, "argv": [], **json.loads((run_dir / "run.json").read_text())}
    sections = []
    order = {w: i for i, w in enumerate(run.get("workloads", {}))}
    table = table.sort_values("workload", key=lambda w: w.map(order), kind="stable")
    for workload, cells in table.groupby("workload", sort=False):
        cells = cells.sort_values(["framework", "mode"])
        ok = cells[cells["status"] == "ok"]
        sections.append({
            "workload": workload,
            "description": run.get("workloads", {}).get(workload, ""),
            "rows": _table_rows(cells),
            "summary": summary(ok),
            "throughput": _bars(ok, "samples_per_s", "Throughput (samples/s, log scale; "
                                "bars: IQR)", err=("step_q1_s", "step_q3_s"), log=True)
                          if not ok.empty else "",
            "memory": _bars(ok, "peak_rss_bytes", "Peak host memory of the cell process (MiB)",
                            scale=1 / 2**20) if not ok.empty else "",
            "losses": _loss_figure(cells, losses),
            "agreement": loss_agreement(cells, losses),
        })
    versions: dict[str, dict[str, Any]] = {}
    for fw, info in run.get("framework_info", {}).items():
        versions[fw] = info
    problems = table[table["status"] != "ok"]
    return {
        "run": run, "sections": sections, "versions": versions,
        "problems": [{"cell_id": r["cell_id"], "status": r["status"], "reason": r["reason"] or ""}
                     for _, r in problems.iterrows()],
        "plotlyjs": get_plotlyjs(), "schema": results.SCHEMA,
    }


def render(run_dir: Path, reports_dir: Path) -> Path:
    """Write reports/<run-id>/index.html and copy it to reports/latest.html."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(**context(run_dir))
    out = reports_dir / run_dir.name / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    shutil.copyfile(out, reports_dir / "latest.html")
    return out
