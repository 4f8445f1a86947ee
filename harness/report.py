"""A run's tables -> one self-contained HTML report (plotly.js inlined, opens offline).

Imports no framework: it reads only results/<run-id>/ (tables and run.json).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from harness import results, stats
from harness.backends import (
    BACKENDS,
    IDIOMATIC_DESCRIPTIONS,
    MODE_DESCRIPTIONS,
    SELF_CHECK,
    TIER_DESCRIPTIONS,
)
from harness.measure import NOISE_LIMIT
from harness.record import RunManifest, read_json
from harness.spec import WORKLOADS

TEMPLATES = Path(__file__).parent / "templates"
COLORS = {"torch": "#ee4c2c", "tensorflow": "#ff8f00", "jax": "#4285f4"}
DASHES = {"eager": "solid", "graph": "dot", "compiled": "dash"}
OVERHEAD_LIMIT = 0.01


HEADLINE_TIERS = ("tuned", "idiomatic", "identical")  # verdicts come from the first present


def label(row: Any) -> str:
    if row["tier"] == "tuned":
        if _missing(row["variant"]) or not row["variant"]:
            return f"{row['framework']} tuned (no variant: its search failed)"
        return f"{row['framework']} tuned: {row['variant']} ({row['mode']})"
    return f"{row['framework']} {row['tier']} {row['mode']}"


def describe(row: Any) -> str:
    """What a cell runs, in words."""
    fw, mode = row["framework"], row["mode"]
    if row["tier"] == "idiomatic":
        return IDIOMATIC_DESCRIPTIONS.get((fw, mode), "")
    variant = "" if _missing(row["variant"]) else row["variant"]
    if row["tier"] == "tuned" and variant not in ("identical", "idiomatic"):
        info = BACKENDS.get(fw)
        found = [v.description for v in info.variants if v.name == variant] if info \
            else []
        return found[0] if found else ""
    table = IDIOMATIC_DESCRIPTIONS if variant == "idiomatic" else MODE_DESCRIPTIONS
    text = table.get((fw, mode), "")
    return f"{text} (debugging mode)" if _flag(row["debug_mode"]) and "debug" not in text \
        else text


def _missing(value: Any) -> bool:
    return value is None or pd.isna(value)


def _flag(value: Any) -> bool:
    """A nullable boolean cell as a plain bool (missing is False)."""
    return not _missing(value) and bool(value)


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


def fmt_s(seconds: float | None) -> str:
    if _missing(seconds):
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs" if seconds >= 1e-5 else f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float | None) -> str:
    return "–" if _missing(n) else f"{n / 2**20:.0f} MiB"


def _figure_html(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", height=360, margin=dict(l=60, r=20, t=40, b=60))
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _throughput(ok: pd.DataFrame) -> str:
    fig = go.Figure()
    for _, r in ok.iterrows():
        y = r["items_per_s"]
        lo, hi = y * r["step_median_s"] / r["step_ci_high_s"], \
            y * r["step_median_s"] / r["step_ci_low_s"]
        fig.add_bar(x=[label(r)], y=[y], showlegend=False,
                    error_y=dict(type="data", symmetric=False, array=[hi - y], arrayminus=[y - lo]),
                    marker_color=COLORS.get(r["framework"], "#888"))
    unit = ok["unit"].iloc[0]
    fig.update_layout(title=f"Throughput ({unit}/s, log scale; bars: 95% CI)", yaxis_type="log")
    return _figure_html(fig)


def _memory(ok: pd.DataFrame) -> str:
    fig = go.Figure()
    for _, r in ok.iterrows():
        fig.add_bar(x=[label(r)], y=[r["peak_rss_bytes"] / 2**20], showlegend=False,
                    marker_color=COLORS.get(r["framework"], "#888"))
    fig.update_layout(title="Peak host memory of the cell process (MiB)")
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


def _ratio_text(r: Any) -> str:
    return (f"{r['ratio']:.2f}× (95% CI {r['ci_low']:.2f}–{r['ci_high']:.2f})")


def headline(ok: pd.DataFrame) -> pd.DataFrame:
    """The cells the verdicts compare: the tuned tier's if the run has it (else idiomatic, else
    identical), debugging modes left out."""
    real = ok[ok["debug_mode"] != True]  # noqa: E712 - nullable boolean
    for tier in HEADLINE_TIERS:
        if (real["tier"] == tier).any():
            return real[real["tier"] == tier]
    return real


def findings(ok: pd.DataFrame, ratios: pd.DataFrame, speedups: pd.DataFrame) -> list[str]:
    """Plain-language findings for one workload: who leads (tuned against tuned), what the
    code people write costs against the tuned figure, compile trade-offs, memory, quality."""
    if ok.empty:
        return ["No cell of this workload finished, so there is nothing to compare."]
    lines = []
    lead = headline(ok)
    ranked = lead.sort_values("step_median_s") if len(lead) else ok.sort_values("step_median_s")
    best = ranked.iloc[0]
    text = (f"Fastest steady-state training ({best['tier']} tier): <b>{label(best)}</b> at "
            f"{fmt_s(best['step_median_s'])} per step ({best['items_per_s']:,.0f} "
            f"{best['unit']}/s)")
    rival = ranked[ranked["framework"] != best["framework"]]
    if len(rival):
        other = rival.iloc[0]
        pair = ratios[(ratios["a"] == other["cell_id"]) & (ratios["b"] == best["cell_id"])]
        if pair.empty:
            pair = ratios[(ratios["b"] == other["cell_id"]) & (ratios["a"] == best["cell_id"])]
            inverted = True
        else:
            inverted = False
        if len(pair):
            p = pair.iloc[0]
            ratio, lo, hi = ((1 / p["ratio"], 1 / p["ci_high"], 1 / p["ci_low"]) if inverted
                             else (p["ratio"], p["ci_low"], p["ci_high"]))
            verdict = stats.label(lo, hi)
            text += (f"; the best other framework, {label(other)}, takes {ratio:.2f}× as long "
                     f"(95% CI {lo:.2f}–{hi:.2f})")
            if verdict == stats.NO_DIFFERENCE:
                text += f": <b>{verdict}</b>"
    lines.append(text + ".")
    idiomatic = ok[ok["tier"] == "idiomatic"].sort_values("step_median_s")
    if len(idiomatic) > 1:
        lines.append("As users write it (idiomatic tier): " + ", ".join(
            f"{label(r)} {fmt_s(r['step_median_s'])}" for _, r in idiomatic.iterrows()) + ".")
    ups = speedups[speedups["idiomatic"].isin(ok["cell_id"]) & speedups["tuned"].isin(
        ok["cell_id"])]
    if len(ups):
        lines.append("Tuned against idiomatic: " + "; ".join(
            f"{r.framework} {r.speedup:.2f}× ({r.variant}; 95% CI {r.ci_low:.2f}–"
            f"{r.ci_high:.2f})" for r in ups.itertuples()) + ".")
    for fw, group in ok[ok["tier"] != "tuned"].groupby(["framework", "tier"]):
        modes = group.set_index("mode")
        if "eager" not in modes.index:
            continue
        eager = modes.loc["eager"]
        parts = []
        for mode, r in modes.drop(index="eager").iterrows():
            ratio = eager["step_median_s"] / r["step_median_s"]
            speed = f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"
            when = ("never pays off" if _missing(r["break_even_step"])
                    else "pays off from the first step" if r["break_even_step"] <= 1
                    else f"pays off after {r['break_even_step']:,.0f} steps")
            parts.append(f"{mode} is {speed} per step than eager; its first step "
                         f"({fmt_s(r['first_step_cold_s'])} cold) {when}")
        if parts:
            lines.append(f"{' '.join(fw)}: " + "; ".join(parts) + ".")
    for _, r in ok[ok["graph_breaks"].fillna(0) > 0].iterrows():
        lines.append(f"{label(r)} did not run as one compiled graph: Dynamo counted "
                     f"{r['graph_breaks']} graph break(s) and compiled "
                     f"{r['compiles'] if pd.notna(r['compiles']) else '?'} graph(s).")
    mem = ok.sort_values("peak_rss_bytes")
    lines.append(f"Lowest peak host memory: {label(mem.iloc[0])} "
                 f"({fmt_bytes(mem.iloc[0]['peak_rss_bytes'])}); highest: "
                 f"{label(mem.iloc[-1])} ({fmt_bytes(mem.iloc[-1]['peak_rss_bytes'])}).")
    if best["step_median_s"] < 2e-3:
        lines.append("Caveat: steps this short (milliseconds or less) measure each framework's "
                     "per-step dispatch overhead more than its arithmetic; a bigger model or "
                     "batch can rank the frameworks differently.")
    acc = ok["test_accuracy"].dropna()
    ppl = ok["test_perplexity"].dropna()
    if not ppl.empty:
        lines.append(f"Test perplexity after the same budget: {ppl.min():.2f}–{ppl.max():.2f}; "
                     f"next-token accuracy {acc.min():.3f}–{acc.max():.3f}.")
    elif not acc.empty:
        lines.append(f"Test accuracy after the same budget: {acc.min():.3f}–{acc.max():.3f} "
                     f"(spread {100 * (acc.max() - acc.min()):.1f} points).")
    target = WORKLOADS[ok["workload"].iloc[0]].target if ok["workload"].iloc[0] in WORKLOADS \
        else None
    met = ok["target_met"].dropna()
    if target is not None and not met.empty:
        missed = ok[ok["target_met"] == False]  # noqa: E712 - nullable boolean
        lines.append(f"Target {target}: " + ("reached by every cell." if missed.empty else
                     "<b>missed</b> by " + ", ".join(missed.apply(label, axis=1)) + "."))
    return lines


def _rows(cells: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for _, r in cells.iterrows():
        ok = r["status"] == "ok"
        rows.append({
            "label": label(r), "what": describe(r), "tier": r["tier"],
            "debug": _flag(r["debug_mode"]), "status": r["status"],
            "compiles": "–" if _missing(r["compiles"]) else f"{r['compiles']:,.0f}",
            "breaks": "" if _missing(r["graph_breaks"]) else f"{r['graph_breaks']:,.0f}",
            "step": fmt_s(r["step_median_s"]) if ok else "–",
            "ci": f"{fmt_s(r['step_ci_low_s'])} – {fmt_s(r['step_ci_high_s'])}" if ok else "–",
            "vs": "–" if _missing(r["vs_fastest"]) else f"{r['vs_fastest']:.2f}×",
            "throughput": f"{r['items_per_s']:,.0f}" if ok else "–",
            "mfu": "–" if _missing(r["mfu"]) else f"{r['mfu']:.1%}",
            "import": fmt_s(r["import_s"]), "build": fmt_s(r["build_s"]),
            "cold": fmt_s(r["first_step_cold_s"]), "warm": fmt_s(r["first_step_warm_s"]),
            "warmup": "–" if _missing(r["warmup_steps"]) else f"{r['warmup_steps']:,.0f}",
            "break_even": ("" if r["mode"] == "eager" else "never")
            if _missing(r["break_even_step"]) else f"{r['break_even_step']:,.0f}",
            "memory": fmt_bytes(r["peak_rss_bytes"]),
            "accuracy": "–" if _missing(r["test_accuracy"]) else f"{r['test_accuracy']:.3f}",
            "perplexity": "–" if _missing(r["test_perplexity"]) else
                          f"{r['test_perplexity']:.2f}",
            "samples": "–" if _missing(r["n_samples"]) else
                       f"{r['n_processes']} × {r['n_samples'] // max(r['n_processes'], 1)}",
        })
    return rows


def _ratio_rows(cells: pd.DataFrame, ratios: pd.DataFrame) -> list[dict[str, str]]:
    """Pairs worth reading, tier by tier (tuned first): every tuned pair; in the other tiers
    the same mode in two frameworks, and each framework's best mode."""
    ids = set(cells["cell_id"])
    ok = cells[cells["status"] == "ok"]
    best = set(ok.sort_values("step_median_s").groupby(["tier", "framework"])["cell_id"].first())
    mode = dict(zip(cells["cell_id"], cells["mode"]))
    name = dict(zip(cells["cell_id"], cells.apply(label, axis=1)))
    rows = []
    mine = ratios[ratios["a"].isin(ids)]
    for tier in HEADLINE_TIERS:
        for _, r in mine[mine["tier"] == tier].iterrows():
            if tier == "tuned" or mode[r["a"]] == mode[r["b"]] or {r["a"], r["b"]} <= best:
                rows.append({"tier": tier, "a": name[r["a"]], "b": name[r["b"]],
                             "ratio": _ratio_text(r), "verdict": r["verdict"]})
    return rows


def _choice_rows(cells: pd.DataFrame, speedups: pd.DataFrame) -> list[dict[str, str]]:
    """Per framework: the code people write (idiomatic), the tuned figure, the speed-up."""
    rows = []
    for fw, group in cells.groupby("framework", sort=False):
        by_tier = {t: g.sort_values("step_median_s").iloc[0] for t, g in group.groupby("tier")}
        idiom, tuned = by_tier.get("idiomatic"), by_tier.get("tuned")
        up = speedups[(speedups["framework"] == fw)
                      & speedups["tuned"].isin(group["cell_id"])
                      & speedups["idiomatic"].isin(group["cell_id"])]
        up = up[up["idiomatic"] == idiom["cell_id"]] if idiom is not None else up.iloc[:0]

        def step(r: Any) -> str:
            return "–" if r is None or r["status"] != "ok" else fmt_s(r["step_median_s"])

        def rate(r: Any) -> str:
            return "–" if r is None or _missing(r["items_per_s"]) else f"{r['items_per_s']:,.0f}"

        rows.append({
            "framework": fw,
            "idiomatic": "–" if idiom is None else f"{idiom['mode']}",
            "idiomatic_step": step(idiom), "idiomatic_rate": rate(idiom),
            "tuned": "–" if tuned is None else f"{tuned['variant']} ({tuned['mode']})",
            "tuned_step": step(tuned), "tuned_rate": rate(tuned),
            "speedup": "–" if up.empty else
            f"{up.iloc[0]['speedup']:.2f}× ({up.iloc[0]['ci_low']:.2f}–"
            f"{up.iloc[0]['ci_high']:.2f})",
        })
    return rows


def _search_rows(tuning: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for _, r in tuning.iterrows():
        rows.append({
            "framework": r["framework"], "variant": r["variant"], "mode": r["mode"],
            "description": _text(r["description"]),
            "step": fmt_s(r["median_s"]),
            "vs": "–" if _missing(r["vs_identical"]) else
            f"{r['vs_identical']:.3f} ({r['vs_identical_ci_low']:.3f}–"
            f"{r['vs_identical_ci_high']:.3f})",
            "correct": "yes" if _flag(r["correct"]) else
            "differs by design" if not _missing(r["differences"]) else "no",
            "differences": "; ".join(json.loads(r["differences"])) if not _missing(
                r["differences"]) else "",
            "diff": "–" if _missing(r["max_loss_diff"]) else f"{r['max_loss_diff']:.1e}",
            "error": _text(r["error"]), "chosen": _flag(r["chosen"]),
            "searched": _text(r["searched"]),
        })
    return rows


def search_agreement(run_dir: Path, workload: str, size: str) -> dict[str, float] | None:
    """The identical tier's trajectory as each framework's tuned search measured it (same
    weights, same first batches): the largest difference between frameworks over 3 and over
    all checked steps. The certificate of a run that ran no identical cells."""
    curves = [np.array(r["reference_losses"]) for r in
              (read_json(p) for p in sorted((run_dir / "tuning").glob("*.json")))
              if r.get("workload") == workload and r.get("size") == size
              and r.get("reference_losses")]
    n = min((len(c) for c in curves), default=0)
    if len(curves) < 2 or n < 3:
        return None
    stack = np.stack([c[:n] for c in curves])
    spread = stack.max(axis=0) - stack.min(axis=0)
    return {"first3": float(spread[:3].max()), "all": float(spread.max()), "steps": n,
            "frameworks": len(curves)}


def _noise(probes: pd.Series, real: pd.DataFrame) -> dict[str, Any]:
    """How much the machine's own speed moved during the run (the fixed probe of every cell)."""
    spread = probes.max() / probes.min() - 1
    noisy = real[real["machine_slowdown"] > 1 + NOISE_LIMIT]
    return {"fastest": fmt_s(probes.min()), "slowest": fmt_s(probes.max()),
            "median": fmt_s(probes.median()), "limit": f"{NOISE_LIMIT:.0%}",
            "spread": f"{spread:.0%}", "warn": bool(spread > NOISE_LIMIT),
            "noisy": [f"{r.cell_id} (×{r.machine_slowdown:.2f})" for r in noisy.itertuples()]}


def context(run_dir: Path) -> dict[str, Any]:
    tables = results.load(run_dir)
    summary, losses, ratios = tables["summary"], tables["losses"], tables["ratios"]
    speedups, tuning = tables["speedups"], tables["tuning"]
    run = asdict(RunManifest.read(run_dir))
    noop = summary[summary["framework"] == SELF_CHECK]
    real = summary[summary["framework"] != SELF_CHECK]
    order = {w: i for i, w in enumerate(run["workloads"])}
    real = real.sort_values("workload", key=lambda w: w.map(order), kind="stable")
    sections = []
    tier_order = {t: i for i, t in enumerate(HEADLINE_TIERS)}
    for (workload, size), cells in real.groupby(["workload", "size"], sort=False):
        cells = cells.sort_values(["tier", "framework", "mode"],
                                  key=lambda c: c.map(tier_order) if c.name == "tier" else c)
        ok = cells[cells["status"] == "ok"]
        spec = WORKLOADS.get(workload)
        identical = cells[cells["tier"] == "identical"]
        searched = tuning[(tuning["workload"] == workload) & (tuning["size"] == size)]
        sections.append({
            "workload": workload, "size": size, "anchor": f"{workload}-{size}",
            "description": run["workloads"].get(workload, ""),
            "size_description": spec.sizes[size].description if spec and size in spec.sizes
            else "",
            "data": "; ".join(sorted(set(cells["data_source"].dropna()))),
            "params": "–" if cells["param_count"].isna().all()
            else f"{int(cells['param_count'].max()):,}",
            "unit": cells["unit"].iloc[0],
            "target": str(spec.target) if spec else "",
            "training": spec.training if spec else "",
            "language_model": cells["test_perplexity"].notna().any(),
            "rows": _rows(cells), "ratios": _ratio_rows(cells, ratios),
            "choice": _choice_rows(cells, speedups),
            "search": _search_rows(searched),
            "findings": findings(ok, ratios, speedups),
            "throughput": _throughput(ok) if len(ok) else "",
            "memory": _memory(ok) if len(ok) else "",
            "losses": _loss_figure(cells, losses[losses["repeat"] == 0]),
            "agreement": loss_agreement(identical, losses[losses["repeat"] == 0], 3),
            "agreement10": loss_agreement(identical, losses[losses["repeat"] == 0]),
            "search_agreement": search_agreement(run_dir, workload, size),
        })
    per_process = tables["results"]
    failed_sync = sorted(set(per_process[(per_process["framework"] != SELF_CHECK)
                                         & (per_process["sync_ok"] == False)]["cell_id"]))  # noqa: E712
    overhead = real["overhead_fraction"].dropna()
    probes = per_process["machine_probe_s"].dropna()
    trust = {
        "sync_failed": failed_sync,
        "noop_step": fmt_s(noop["step_median_s"].iloc[0]) if len(noop) else None,
        "max_overhead": f"{overhead.max():.3%}" if len(overhead) else None,
        "overhead_warn": bool(len(overhead) and overhead.max() > OVERHEAD_LIMIT),
        "worst_overhead_cell": real.loc[overhead.idxmax(), "cell_id"] if len(overhead) else None,
        "unstable": sorted(set(per_process[per_process["warmup_stable"] == False]["cell_id"])),  # noqa: E712
        "settings": sorted(set(per_process["settings"].dropna())),
        "noise": _noise(probes, real) if len(probes) else None,
    }
    problems = per_process[per_process["status"] != "ok"]
    return {
        "run": run, "sections": sections, "trust": trust,
        "versions": run["framework_info"],
        "implementations": sorted(set(per_process["implementation"].dropna())),
        "peaks": {k: f"{v / 1e9:.0f} GFLOP/s" for k, v in
                  run["gemm_peak_flops_per_s"].items()},
        "problems": [{"cell_id": f"{r['cell_id']} (repeat {r['repeat']})", "status": r["status"],
                      "reason": r["reason"] or ""} for _, r in problems.iterrows()],
        "manifests": json.dumps({r["cell_id"]: json.loads(r["manifest"]) for _, r in
                                 per_process[per_process["repeat"] == 0].iterrows()
                                 if not _missing(r["manifest"])}, sort_keys=True)
        .replace("</", "<\\/"),  # inside a <script> element
        "tiers": TIER_DESCRIPTIONS,
        "plotlyjs": get_plotlyjs(),
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
