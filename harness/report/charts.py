"""The report's plotly figures, each returned as an HTML fragment (plotly.js is inlined once by
the template): throughput against memory with its Pareto front, performance profiles, step-time
distributions, where the first process's time went, and the loss curves."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.report.decide import CRITERIA, criterion_value, memory_of, real_cells
from harness.report.fmt import is_missing, label, short_label

COLORS = {"torch": "#ee4c2c", "tensorflow": "#ff8f00", "jax": "#4285f4"}
DASHES = {"eager": "solid", "graph": "dot", "compiled": "dash"}
SYMBOLS = {"identical": "circle", "idiomatic": "square", "tuned": "diamond"}
PHASE_COLORS = {"import": "#9e9e9e", "build": "#795548", "first step (compile)": "#e53935",
                "training budget": "#43a047", "steady state": "#1e88e5", "other": "#d0d0d0"}
MAX_POINTS = 400           # per loss curve in a chart (downsampled beyond)
MAX_SAMPLES = 200          # per step-time distribution in a chart (quantiles beyond)


def _figure_html(fig: go.Figure, height: int = 360) -> str:
    fig.update_layout(template="plotly_white", height=height, font=dict(size=11),
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def pareto_front(memory: list[float], speed: list[float]) -> list[int]:
    """Indices of the points no other point beats on both memory (lower) and speed (higher),
    by increasing memory."""
    order = sorted(range(len(memory)), key=lambda i: (memory[i], -speed[i]))
    front: list[int] = []
    for i in order:
        if not front or speed[i] > speed[front[-1]]:
            front.append(i)
    return front


def pareto_figure(ok: pd.DataFrame) -> str:
    cells = [r for _, r in real_cells(ok).iterrows()
             if not is_missing(r["items_per_s"]) and memory_of(r) is not None]
    if not cells:
        return ""
    mem = [memory_of(r) / 2**20 for r in cells]
    speed = [float(r["items_per_s"]) for r in cells]
    front = pareto_front(mem, speed)
    fig = go.Figure()
    fig.add_scatter(x=[mem[i] for i in front], y=[speed[i] for i in front], mode="lines",
                    line=dict(color="#777", dash="dot", shape="hv"), name="Pareto front")
    for i, r in enumerate(cells):
        y = speed[i]
        lo = y * r["step_median_s"] / r["step_ci_high_s"]
        hi = y * r["step_median_s"] / r["step_ci_low_s"]
        fig.add_scatter(x=[mem[i]], y=[y], mode="markers+text" if i in front else "markers",
                        text=[short_label(r)] if i in front else None,
                        textposition="top center", name=label(r),
                        marker=dict(color=COLORS.get(r["framework"], "#888"), size=11,
                                    symbol=SYMBOLS.get(r["tier"], "circle"),
                                    line=dict(width=1, color="#333")),
                        error_y=dict(type="data", symmetric=False, array=[hi - y],
                                     arrayminus=[y - lo], thickness=1))
    unit = ok["unit"].iloc[0]
    kind = "GPU allocator peak" if ok["device"].iloc[0] == "cuda" else "peak host memory"
    fig.update_layout(title=f"Throughput against {kind}: up and left is better "
                            "(dotted: the Pareto front)",
                      xaxis_title=f"{kind} (MiB)", yaxis_title=f"{unit}/s (log)",
                      yaxis_type="log", legend=dict(font=dict(size=10), orientation="h",
                                                    yanchor="top", y=-0.2))
    return _figure_html(fig, 480)


def performance_profile(values: list[dict[str, float | None]], frameworks: list[str],
                        higher_is_better: bool) -> dict[str, list[float]]:
    """Dolan–Moré: per framework, its figure on each workload over the best one's (>= 1; inf
    where it has none)."""
    out: dict[str, list[float]] = {fw: [] for fw in frameworks}
    for group in values:
        present = {fw: v for fw, v in group.items() if v is not None and v > 0}
        if not present:
            continue
        best = max(present.values()) if higher_is_better else min(present.values())
        for fw in frameworks:
            v = present.get(fw)
            out[fw].append(float("inf") if v is None else
                           (best / v if higher_is_better else v / best))
    return out


def profile_figure(decisions: list[dict[str, Any]]) -> str:
    frameworks = list(dict.fromkeys(fw for d in decisions for fw in d["heads"]["framework"]))
    panels = [c for c in CRITERIA if c.key in ("throughput", "startup", "memory")]
    if not frameworks:
        return ""
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=[c.title.split(" (")[0] for c in panels])
    for col, c in enumerate(panels, start=1):
        values = []
        for d in decisions:
            group: dict[str, float | None] = {fw: None for fw in frameworks}
            for _, r in d["heads"].iterrows():
                group[r["framework"]] = criterion_value(r, c.key, d["language_model"])
            values.append(group)
        profile = performance_profile(values, frameworks, c.higher_is_better)
        finite = [r for rs in profile.values() for r in rs if np.isfinite(r)]
        top = max(2.0, 1.2 * max(finite, default=1.0))
        for fw, rs in profile.items():
            if not rs:
                continue
            xs = sorted({1.0, top, *[r for r in rs if np.isfinite(r)]})
            ys = [float(np.mean([r <= x * (1 + 1e-9) for r in rs])) for x in xs]
            fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=fw, legendgroup=fw,
                            showlegend=col == 1, line=dict(shape="hv", width=3,
                                                           color=COLORS.get(fw, "#888")),
                            marker=dict(size=6), row=1, col=col)
        fig.update_xaxes(type="log", title_text="τ (within a factor τ of the best)",
                         range=[np.log10(0.97), np.log10(top)], row=1, col=col)
    fig.update_yaxes(title_text="share of workloads", range=[-0.03, 1.05], row=1, col=1)
    fig.update_layout(title=f"Performance profiles over {len(decisions)} workload(s) "
                            "(each framework's headline cell; higher and further left is "
                            "better)", legend=dict(orientation="h", y=-0.25))
    return _figure_html(fig, 380)


def steps_figure(ok: pd.DataFrame, samples: pd.DataFrame) -> str:
    fig = go.Figure()
    for _, r in ok.iterrows():
        values = samples.loc[samples["cell_id"] == r["cell_id"], "step_s"].to_numpy(float)
        if not len(values):
            continue
        if len(values) > MAX_SAMPLES:  # quantiles keep the distribution's shape
            values = np.quantile(values, np.linspace(0, 1, MAX_SAMPLES))
        fig.add_box(y=values * 1e3, name=short_label(r) if r["tier"] == "tuned" else label(r),
                    marker_color=COLORS.get(r["framework"], "#888"), boxpoints="outliers",
                    showlegend=False)
    if not fig.data:
        return ""
    fig.update_layout(title="Step time of every timing sample, all processes (ms, log scale)",
                      yaxis_type="log", yaxis_title="ms per step")
    return _figure_html(fig, 400)


def phase_times(cells: pd.DataFrame, per_process: pd.DataFrame,
                samples: pd.DataFrame) -> list[dict[str, Any]]:
    """Where each cell's first (cold) process spent its time, phase by phase (seconds)."""
    out = []
    for _, c in cells.iterrows():
        procs = per_process[(per_process["cell_id"] == c["cell_id"])
                            & (per_process["repeat"] == 0)]
        if procs.empty:
            continue
        p = procs.iloc[0]
        timed = samples[(samples["cell_id"] == c["cell_id"]) & (samples["repeat"] == 0)]
        k = 1 if is_missing(p["steps_per_sample"]) else int(p["steps_per_sample"])
        steady = (0.0 if is_missing(p["warmup_s"]) else float(p["warmup_s"])) + \
            float(timed["step_s"].sum()) * k
        phases = {"import": p["import_s"], "build": p["build_s"],
                  "first step (compile)": p["first_step_s"], "training budget": p["train_s"],
                  "steady state": steady}
        phases = {k: 0.0 if is_missing(v) else float(v) for k, v in phases.items()}
        wall = 0.0 if is_missing(p["wall_s"]) else float(p["wall_s"])
        phases["other"] = max(0.0, wall - sum(phases.values()))
        out.append({"label": label(c), "phases": phases})
    return out


def phases_figure(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    fig = go.Figure()
    names = [r["label"] for r in rows]
    for phase, color in PHASE_COLORS.items():
        fig.add_bar(y=names, x=[r["phases"][phase] for r in rows], name=phase,
                    orientation="h", marker_color=color)
    fig.update_layout(barmode="stack", title="Where the first process's time went "
                      "(cold caches; other: start, data, evaluation, checks)",
                      xaxis_title="seconds", yaxis=dict(autorange="reversed"),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right",
                                  x=1.0, traceorder="normal"),
                      margin=dict(l=260, t=80))
    return _figure_html(fig, 140 + 26 * len(rows))


def loss_figure(cells: pd.DataFrame, losses: pd.DataFrame) -> str:
    fig = go.Figure()
    for i, (_, row) in enumerate(cells.iterrows()):
        curve = losses[losses["cell_id"] == row["cell_id"]]
        if curve.empty:
            continue
        if len(curve) > MAX_POINTS:  # keep the first steps (the certificate), thin the rest
            keep = np.unique(np.r_[np.arange(10), np.linspace(0, len(curve) - 1, MAX_POINTS)
                                   .astype(int)])
            curve = curve.iloc[keep]
        # Identical curves hide each other: draw each narrower than the one below it.
        fig.add_scatter(x=curve["step"], y=curve["loss"], mode="lines", name=label(row),
                        line=dict(color=COLORS.get(row["framework"], "#888"),
                                  dash=DASHES.get(row["mode"], "solid"),
                                  width=max(1.0, 7.0 - 1.0 * i)))
    if not fig.data:
        return ""
    fig.update_layout(title="Training loss at every step (same weights, same batches)",
                      xaxis_title="step", yaxis_title="cross-entropy", yaxis_type="log",
                      legend=dict(font=dict(size=10)))
    return _figure_html(fig, 400)



def latency_figure(infer: pd.DataFrame) -> str:
    """Per workload, each framework's paths: p50 latency at batch 1 as a bar, whiskers to the
    p90 and p99 (log scale: paths differ by orders of magnitude)."""
    ok = infer[(infer["status"] == "ok") & infer["latency_p50_s"].notna()]
    if ok.empty:
        return ""
    workloads = list(dict.fromkeys(ok["workload"]))
    fig = make_subplots(rows=1, cols=len(workloads), subplot_titles=workloads,
                        shared_yaxes=False)
    for col, workload in enumerate(workloads, start=1):
        for _, r in ok[ok["workload"] == workload].iterrows():
            p50, p90, p99 = (float(r[f"latency_p{q}_s"]) * 1e3 for q in (50, 90, 99))
            name = f"{r['framework']} {r['mode']}"
            fig.add_bar(x=[name], y=[p50], marker_color=COLORS.get(r["framework"], "#777"),
                        marker_pattern_shape={"eager": "", "compiled": "/",
                                              "export": "."}.get(r["mode"], ""),
                        error_y=dict(type="data", symmetric=False, array=[p99 - p50],
                                     arrayminus=[0]),
                        customdata=[[p90, p99]], name=name,
                        hovertemplate=f"{name}<br>p50 %{{y:.3f}} ms<br>p90 %{{customdata[0]:.3f}}"
                                      " ms<br>p99 %{customdata[1]:.3f} ms<extra></extra>",
                        showlegend=False, row=1, col=col)
        fig.update_yaxes(type="log", title_text="ms per request (p50, whisker to p99)"
                         if col == 1 else None, row=1, col=col)
    fig.update_layout(title="Inference latency at batch 1 (idiomatic and identical tiers; "
                            "bar: p50, whisker: p99)", bargap=0.25)
    return _figure_html(fig, height=380)


def batch_figure(cells: pd.DataFrame) -> str:
    """Throughput and peak memory against the batch size, per workload: one line per framework,
    tier and mode wherever it ran at two or more batch sizes (a --batch-sizes sweep, or the
    tries of a largest-batch search)."""
    ok = cells[(cells["status"] == "ok") & cells["items_per_s"].notna()]
    kinds = {"train": "training", "largest": "training", "infer": "inference"}
    lines = [(k, g.sort_values("batch_size")) for k, g in ok.groupby(
        ["workload", "scenario", "framework", "tier", "mode"], sort=False)
        if g["batch_size"].nunique() >= 2]
    if not lines:
        return ""
    workloads = list(dict.fromkeys(k[0] for k, _ in lines))
    fig = make_subplots(rows=2, cols=len(workloads), subplot_titles=workloads,
                        shared_xaxes=True, vertical_spacing=0.08)
    for (workload, scenario, fw, tier, mode), g in lines:
        col = workloads.index(workload) + 1
        name = f"{fw} {tier} {mode} ({kinds.get(scenario, scenario)})"
        style = dict(color=COLORS.get(fw, "#777"),
                     dash="dot" if scenario == "infer" else "solid")
        memory = [m / 2**20 if m is not None else None for m in (memory_of(r) for _, r in
                                                                  g.iterrows())]
        fig.add_scatter(x=g["batch_size"], y=g["items_per_s"], mode="lines+markers",
                        line=style, name=name, legendgroup=name, row=1, col=col,
                        showlegend=name not in {t.name for t in fig.data})
        fig.add_scatter(x=g["batch_size"], y=memory, mode="lines+markers", line=style,
                        name=name, legendgroup=name, showlegend=False, row=2, col=col)
    fig.update_xaxes(type="log", title_text="batch size", row=2)
    fig.update_yaxes(type="log", title_text="throughput (/s)", row=1, col=1)
    fig.update_yaxes(title_text="peak memory (MiB)", row=2, col=1)
    fig.update_layout(title="Batch scaling: throughput (top) and peak memory (bottom)")
    return _figure_html(fig, height=560)


def accuracy_figure(accuracy: pd.DataFrame) -> str:
    """Per workload, the target's metric on held-out data against training time (build and
    first step included) at each evaluation of the fixed schedule: one line per seed, coloured
    by framework, the target as a horizontal line."""
    rows = accuracy[accuracy["evals"].notna()]
    if rows.empty:
        return ""
    workloads = list(dict.fromkeys(rows["workload"]))
    fig = make_subplots(rows=1, cols=len(workloads), subplot_titles=workloads)
    shown: set[str] = set()
    for col, workload in enumerate(workloads, start=1):
        for _, r in rows[rows["workload"] == workload].iterrows():
            evals = json.loads(r["evals"])
            fixed = float(r["build_s"] or 0) + float(r["first_step_s"] or 0)
            name = f"{r['framework']} {r['tier']}"
            fig.add_scatter(
                x=[fixed + e[1] for e in evals], y=[e[2] for e in evals], mode="lines+markers",
                name=name, legendgroup=name, showlegend=name not in shown,
                line=dict(color=COLORS.get(r["framework"], "#777"),
                          dash="solid" if r["tier"] == "tuned" else "dot", width=1),
                marker=dict(size=4, symbol=SYMBOLS.get(r["tier"], "circle")),
                hovertemplate=f"{name}, seed {r['seed']}<br>%{{x:.2f}} s: %{{y:.3f}}"
                              "<extra></extra>", row=1, col=col)
            shown.add(name)
        target = rows[rows["workload"] == workload]["target"].iloc[0]
        value = float(target.split()[-1])
        fig.add_hline(y=value, line=dict(color="#555", dash="dash", width=1), row=1, col=col)
        metric = target.split()[0]
        fig.update_yaxes(title_text=metric if col == 1 else None,
                         type="log" if metric == "perplexity" else "linear", row=1, col=col)
        fig.update_xaxes(title_text="seconds (build, first step, training)", row=1, col=col)
    fig.update_layout(title="Held-out quality against training time, every seed (dashed: the "
                            "target)")
    return _figure_html(fig, height=380)
