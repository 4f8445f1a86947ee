"""A run's tables -> one self-contained HTML report that chooses (plotly.js inlined, opens
offline, prints), plus a Markdown summary beside it.

The decision comes first: per workload and device, who leads on training throughput, start-up,
peak memory and accuracy, by how much and how sure we are; then plain sentences, the charts, the
per-cell evidence and the fairness section. Imports no framework: it reads only
results/<run-id>/ (tables and run.json).

Modules: fmt (shared formatting), tables (reading a run's tables), verdicts (ratios and their
words), decide (the decision), evidence (per-workload findings and table rows), charts (plotly
figures), fairness (certificates, caveats, the harness's own checks), markdown (summary.md).
This module gathers them into the template's context and renders.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from plotly.offline import get_plotlyjs

from harness import results, stats
from harness.backends import SELF_CHECK, TIER_DESCRIPTIONS
from harness.record import RunManifest, atomic
from harness.report.charts import (
    accuracy_figure,
    batch_figure,
    latency_figure,
    loss_figure,
    pareto_figure,
    pareto_front,
    performance_profile,
    phase_times,
    phases_figure,
    profile_figure,
    steps_figure,
)
from harness.report.decide import (
    CRITERIA,
    HEADLINE_TIERS,
    NOT_MEASURED,
    PRIORITIES,
    decision,
    overall,
)
from harness.report.evidence import (
    accuracy_rows,
    cell_rows,
    choice_rows,
    findings,
    infer_rows,
    largest_rows,
    precision_rows,
    ratio_rows,
    scaling_rows,
    search_rows,
)
from harness.report.fairness import (
    caveats,
    device_peak,
    loss_agreement,
    precision_in_effect,
    search_agreement,
    trust,
)
from harness.report.fmt import is_missing, or_empty
from harness.report.markdown import summary
from harness.report.tables import load_tables, table_links
from harness.report.verdicts import correction, verdict_words
from harness.spec import WORKLOADS

__all__ = ["TEMPLATES", "caveats", "context", "decision", "load_tables", "pareto_front",
           "performance_profile", "render", "verdict_words"]

TEMPLATES = Path(__file__).parent.parent / "templates"


def _groups(real: pd.DataFrame, keys: list[str]) -> list[tuple[Any, pd.DataFrame]]:
    return list(real.groupby(keys, sort=False, dropna=False))


def with_time_to_target(cells: pd.DataFrame, ttt: pd.DataFrame) -> pd.DataFrame:
    """The training cells with their seeds' time to target (``results.time_to_target``) as
    ttt_* columns."""
    cols = {"median_s": "ttt_median_s", "mlperf_mean_s": "ttt_mlperf_s", "seeds": "ttt_seeds",
            "met": "ttt_met", "target": "ttt_target", "median_steps": "ttt_steps"}
    return cells.merge(ttt[["cell_id", *cols]].rename(columns=cols), on="cell_id", how="left")


def context(run_dir: Path) -> dict[str, Any]:
    """Everything the template and summary.md show, worked out from the run's folder."""
    tables = load_tables(run_dir)
    summary, losses, ratios = tables["summary"], tables["losses"], tables["ratios"]
    speedups, tuning, samples = tables["speedups"], tables["tuning"], tables["samples"]
    per_process = tables["results"]
    run = asdict(RunManifest.read(run_dir))
    noop = summary[summary["framework"] == SELF_CHECK]
    order = {w: i for i, w in enumerate(run["workloads"])}
    # one-device cells; the data-parallel ones have their own section (``scaling``)
    measured = summary[(summary["framework"] != SELF_CHECK)
                       & (summary["replicas"].fillna(1) == 1)].sort_values(
        "workload", key=lambda w: w.map(order), kind="stable")
    ttt = results.time_to_target(tables["accuracy"])
    real = with_time_to_target(measured[measured["scenario"] == "train"], ttt)
    infer = measured[measured["scenario"] == "infer"]
    manifests = {r["cell_id"]: json.loads(r["manifest"]) for _, r in
                 per_process[per_process["repeat"] == 0].iterrows()
                 if not is_missing(r["manifest"])}
    where = ["workload", "size", "device", "precision"]
    decisions = [decision(cells, ratios, infer.merge(cells[where].drop_duplicates()))
                 for _, cells in _groups(real, [*where, "batch_size"])]
    if real.empty:  # an infer-only run: decide on inference alone
        decisions = [decision(cells.iloc[:0], ratios, cells) for _, cells in
                     _groups(infer, where)]
    several = {"size": real.groupby("workload")["size"].nunique().max() > 1,
               **{k: real.groupby(["workload", "size", "device"])[k].nunique(dropna=False)
                  .max() > 1 for k in ("batch_size", "precision")}}
    for d in decisions:
        extra = [f"size {d['size']}" if several["size"] else "",
                 f"batch {d['batch_size']}" if several["batch_size"] else "",
                 d["precision"] if several["precision"] else ""]
        if any(extra):
            d["where"] = d["where"][:-1] + ", " + ", ".join(e for e in extra if e) + ")"
        d["caveats"] = caveats(d["heads"], manifests)
    sections = []
    tier_order = {t: i for i, t in enumerate(HEADLINE_TIERS)}
    repeat0 = losses[losses["repeat"] == 0]
    for (workload, size), cells in _groups(real, ["workload", "size"]):
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
            "cuda": bool((cells["device"] == "cuda").any()),
            "rows": cell_rows(cells), "ratios": ratio_rows(cells, ratios),
            "choice": choice_rows(cells, speedups),
            "search": search_rows(searched),
            "findings": findings(ok, speedups),
            "pareto": pareto_figure(ok) if len(ok) else "",
            "steps": steps_figure(ok, samples) if len(ok) else "",
            "phases": phases_figure(phase_times(cells, per_process, samples)),
            "losses": loss_figure(cells, repeat0),
            "agreement": loss_agreement(identical, repeat0, 3),
            "agreement10": loss_agreement(identical, repeat0),
            "search_agreement": search_agreement(run_dir, workload, size),
            "caveats": [c for d in decisions if (d["workload"], d["size"]) == (workload, size)
                        for c in d["caveats"]],
        })
    checks = trust(real, noop, per_process)
    problems = per_process[per_process["status"] != "ok"]
    device_peaks = run.get("device_peaks") or {}
    return {
        "run": run, "sections": sections, "trust": checks, "decisions": decisions,
        "infer": infer_rows(infer), "latency_chart": latency_figure(infer),
        "largest": largest_rows(tables["largest"]), "batch_chart": batch_figure(measured),
        "scaling": scaling_rows(tables["scaling"]),
        "accuracy": accuracy_rows(ttt, order),
        "precision_rows": precision_rows(pd.concat([real, infer]), ratios),
        "accuracy_chart": accuracy_figure(tables["accuracy"]),
        "criteria": CRITERIA, "priorities": PRIORITIES, "not_measured": NOT_MEASURED,
        "overall": overall(decisions), "profile": profile_figure(decisions),
        "correction": correction(ratios), "margin": f"{stats.EQUIVALENCE_MARGIN:.0%}",
        "precision": precision_in_effect(per_process),
        "versions": run["framework_info"],
        "implementations": sorted(set(per_process["implementation"].dropna())),
        "peaks": {k: f"{v / 1e9:.0f} GFLOP/s" for k, v in
                  run["gemm_peak_flops_per_s"].items()},
        "device_peaks": {k: device_peak(v) for k, v in device_peaks.items()},
        "problems": [{"cell_id": f"{r['cell_id']} (repeat {r['repeat']})", "status": r["status"],
                      "reason": or_empty(r["reason"])} for _, r in problems.iterrows()],
        "manifests": json.dumps(manifests, sort_keys=True).replace("</", "<\\/"),
        "tiers": TIER_DESCRIPTIONS,
    }


def render(run_dir: Path, reports_dir: Path) -> Path:
    """Write reports/<run-id>/index.html and summary.md, copy the report to
    reports/latest.html (its links adjusted), and return the report's path."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    template = env.get_template("report.html.j2")
    ctx = context(run_dir)
    out = reports_dir / run_dir.name / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    plotlyjs = get_plotlyjs()
    links = table_links(run_dir, out.parent)
    pages = {
        out: template.render(**ctx, links=links, plotlyjs=plotlyjs, summary_href="summary.md"),
        out.parent / "summary.md": summary(ctx, links),
        reports_dir / "latest.html": template.render(
            **ctx, links=table_links(run_dir, reports_dir), plotlyjs=plotlyjs,
            summary_href=f"{out.parent.name}/summary.md")}
    for path, text in pages.items():
        with atomic(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return out

