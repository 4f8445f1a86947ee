"""A run's tables -> one self-contained HTML report that chooses (plotly.js inlined, opens
offline, prints), plus a Markdown summary beside it.

The decision comes first: per workload and device, who leads on training throughput, start-up,
peak memory and accuracy, by how much and how sure we are; then plain sentences, the charts, the
per-cell evidence and the fairness section. Imports no framework: it reads only
results/<run-id>/ (tables and run.json).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

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
SYMBOLS = {"identical": "circle", "idiomatic": "square", "tuned": "diamond"}
PHASE_COLORS = {"import": "#9e9e9e", "build": "#795548", "first step (compile)": "#e53935",
                "training budget": "#43a047", "steady state": "#1e88e5", "other": "#d0d0d0"}
OVERHEAD_LIMIT = 0.01
ACCURACY_TIE = 0.01        # test accuracies closer than 1 point read as a tie
PERPLEXITY_TIE = 0.01      # perplexities within 1% of each other read as a tie
MAX_POINTS = 400           # per loss curve in a chart (downsampled beyond)
MAX_SAMPLES = 200          # per step-time distribution in a chart (quantiles beyond)

HEADLINE_TIERS = ("tuned", "idiomatic", "identical")  # verdicts come from the first present


@dataclass(frozen=True)
class Criterion:
    """One thing a person may choose a framework by."""

    key: str
    title: str
    higher_is_better: bool


CRITERIA = (
    Criterion("throughput", "training throughput", True),
    Criterion("startup", "start-up (import + build + cold first step)", False),
    Criterion("first_step", "cold first step (compile)", False),
    Criterion("memory", "peak memory", False),
    Criterion("accuracy", "accuracy", True),
)
PRIORITIES = {"throughput": "throughput", "startup": "start-up", "memory": "memory",
              "accuracy": "accuracy"}
NOT_MEASURED = ("latency (inference)", "time to accuracy")


def label(row: Any) -> str:
    if row["tier"] == "tuned":
        if _missing(row["variant"]) or not row["variant"]:
            return f"{row['framework']} tuned (no variant: its search failed)"
        return f"{row['framework']} tuned: {row['variant']} ({row['mode']})"
    return f"{row['framework']} {row['tier']} {row['mode']}"


def short_label(row: Any) -> str:
    return f"{row['framework']} {row['tier']}" + ("" if row["tier"] == "tuned"
                                                  else f" {row['mode']}")


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
    return value is None or (not isinstance(value, (list, dict)) and pd.isna(value))


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


def fmt_level(level: float) -> str:
    """0.95 -> '95%', 0.998333 -> '99.83%'."""
    return f"{100 * level:.2f}".rstrip("0").rstrip(".") + "%"


def fmt_times(factor: float) -> str:
    """A factor with the digits that matter: 1.04×, 2.4×, 14×."""
    if not np.isfinite(factor):
        return "∞×"
    return f"{factor:.2f}×" if factor < 2 else f"{factor:.1f}×" if factor < 10 \
        else f"{factor:.0f}×"


def _real(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells a person would choose between: no debugging modes, no harness self-check."""
    return cells[(cells["debug_mode"] != True)  # noqa: E712 - nullable boolean
                 & (cells["framework"] != SELF_CHECK)]


# -- tables -----------------------------------------------------------------------------------

def load_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """The run's tables. A run written before a column existed gets it empty, and its ratios and
    speed-ups the columns of the current contract, so old runs still render."""
    try:
        tables = results.load(run_dir)
    except ValueError:
        tables = {}
        for name, schema in results.TABLES.items():
            path = run_dir / f"{name}.parquet"
            df = pd.read_parquet(path) if path.exists() else pd.DataFrame()
            dtypes = {c: (t[0] if isinstance(t, tuple) else t) for c, t in schema.items()}
            for col in dtypes:
                if col not in df.columns:
                    df[col] = pd.NA
            tables[name] = df[list(dtypes)].astype(dtypes).reset_index(drop=True)
    tables["ratios"] = _with_verdicts(tables["ratios"], tables["summary"], "ci_low", "ci_high")
    tables["speedups"] = _with_verdicts(tables["speedups"], tables["summary"], "ci_low",
                                        "ci_high")
    return tables


def _with_verdicts(df: pd.DataFrame, summary: pd.DataFrame, lo: str, hi: str) -> pd.DataFrame:
    """Fill what an older table lacks: the CI's level (0.95, uncorrected), a verdict from the CI
    (stats.verdict), settle_repeats, and how the cells were timed."""
    df = df.copy()
    if "level" not in df.columns:
        df["level"] = pd.Series(np.nan, index=df.index, dtype="Float64")
    df["level"] = df["level"].astype("Float64").fillna(stats.LEVEL)
    if "verdict" not in df.columns:
        df["verdict"] = pd.Series(pd.NA, index=df.index, dtype="string")
    known = df["verdict"].isin(stats.VERDICTS).fillna(False).astype(bool)
    for idx in df.index[~known]:
        df.loc[idx, "verdict"] = stats.verdict(df.loc[idx, lo], df.loc[idx, hi]) \
            if not _missing(df.loc[idx, lo]) else "inconclusive"
    if "settle_repeats" not in df.columns:
        processes = dict(zip(summary["cell_id"], summary["n_processes"]))
        settle: list[Any] = []
        for _, r in df.iterrows():
            ratio = r["ratio"] if "ratio" in df.columns else r.get("speedup")
            cells = [r[k] for k in ("a", "b", "idiomatic", "tuned") if k in df.columns]
            n = min((int(processes[c]) for c in cells if not _missing(processes.get(c))),
                    default=1)
            settle.append(stats.settle_repeats(ratio, r[lo], r[hi], n)
                          if r["verdict"] == "inconclusive" and not _missing(r[lo]) else None)
        df["settle_repeats"] = pd.Series(settle, index=df.index, dtype="Int64")
    if "timing" not in df.columns:
        df["timing"] = "sequential: this run predates paired timing"
    for col, fill in (("paired", False), ("n_pairs", None)):
        if col not in df.columns:
            df[col] = fill
    return df


# -- verdicts and ratios ----------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """Time of x / time of y with its CI and x's verdict (faster: x takes less time)."""

    ratio: float
    lo: float
    hi: float
    level: float
    verdict: str
    settle: int | None
    timing: str


def pair_between(ratios: pd.DataFrame, x: str, y: str) -> Pair | None:
    """The ratios row of cells x and y, oriented as x / y."""
    flip = {"faster": "slower", "slower": "faster"}
    for a, b, inverted in ((x, y, False), (y, x, True)):
        rows = ratios[(ratios["a"] == a) & (ratios["b"] == b)]
        if rows.empty:
            continue
        r = rows.iloc[0]
        settle = None if _missing(r["settle_repeats"]) else int(r["settle_repeats"])
        timing = _timing_text(r)
        if inverted:
            return Pair(1 / r["ratio"], 1 / r["ci_high"], 1 / r["ci_low"], float(r["level"]),
                        flip.get(r["verdict"], r["verdict"]), settle, timing)
        return Pair(r["ratio"], r["ci_low"], r["ci_high"], float(r["level"]), r["verdict"],
                    settle, timing)
    return None


def _timing_text(r: Any) -> str:
    timing = _text(r.get("timing"))
    if timing == "turns" or _flag(r.get("paired")):
        n = r.get("n_pairs")
        return "timed in turns" + ("" if _missing(n) else f", {int(n)} pairs")
    return timing or "sequential (timed apart)"


def verdict_words(verdict: str, winner: str, loser: str, lo: float, hi: float,
                  settle: int | None) -> str:
    """A verdict for a person: `winner` is the side whose time is the numerator."""
    margin = f"{stats.EQUIVALENCE_MARGIN:.0%}"
    if verdict == "faster":
        return f"{winner} is faster (≥{margin})"
    if verdict == "slower":
        return f"{loser} is faster (≥{margin})"
    if verdict == "equivalent":
        return f"equivalent within ±{margin}"
    why = (f"would need more than {stats.MAX_SETTLE_REPEATS} repeats, or sits at the "
           f"±{margin} edge" if settle is None else f"about {settle} repeats would settle it")
    return f"inconclusive (CI {lo:.2f}–{hi:.2f}; {why})"


# -- the decision -----------------------------------------------------------------------------

def headline(ok: pd.DataFrame) -> pd.DataFrame:
    """The cells the verdicts compare: the tuned tier's if the run has it (else idiomatic, else
    identical), debugging modes left out."""
    real = _real(ok)
    for tier in HEADLINE_TIERS:
        if (real["tier"] == tier).any():
            return real[real["tier"] == tier]
    return real


def headline_cells(cells: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """The headline tier of one comparison group and each framework's fastest finished cell in
    it (one row per framework)."""
    lead = headline(cells[cells["status"] == "ok"])
    if lead.empty:
        return None, lead
    best = lead.sort_values("step_median_s", na_position="last").groupby(
        "framework", sort=False).head(1)
    return str(best["tier"].iloc[0]), best


def criterion_value(row: Any, key: str, language_model: bool) -> float | None:
    """A headline cell's figure on one criterion (None where not measured)."""
    if key == "throughput":
        value = row["items_per_s"]
    elif key == "startup":
        parts = [row["import_s"], row["build_s"], row["first_step_cold_s"]]
        value = None if any(_missing(p) for p in parts) else float(sum(parts))
    elif key == "first_step":
        value = row["first_step_cold_s"]
    elif key == "memory":
        value = row["device_peak_bytes"] if row["device"] == "cuda" and not _missing(
            row["device_peak_bytes"]) else row["peak_rss_bytes"]
    else:
        value = row["test_perplexity"] if language_model else row["test_accuracy"]
    return None if _missing(value) else float(value)


def _figure(key: str, value: float, unit: str, language_model: bool) -> str:
    if key == "throughput":
        return f"{value:,.0f} {unit}/s"
    if key == "memory":
        return fmt_bytes(value)
    if key == "accuracy":
        return f"perplexity {value:.2f}" if language_model else f"accuracy {value:.3f}"
    return fmt_s(value)


def _better(criterion: Criterion, language_model: bool) -> bool:
    """Whether higher values win (perplexity: lower wins)."""
    if criterion.key == "accuracy" and language_model:
        return False
    return criterion.higher_is_better


def rank(heads: pd.DataFrame, criterion: Criterion, language_model: bool
         ) -> list[tuple[str, float, Any]]:
    """(framework, value, row), best first; frameworks without the figure left out."""
    scored = [(r["framework"], v, r) for _, r in heads.iterrows()
              if (v := criterion_value(r, criterion.key, language_model)) is not None]
    return sorted(scored, key=lambda t: -t[1] if _better(criterion, language_model) else t[1])


def _lead(criterion: Criterion, ranked: list[tuple[str, float, Any]], ratios: pd.DataFrame,
          unit: str, language_model: bool, memory_kind: str, tier: str) -> dict[str, Any]:
    """Who leads on one criterion, the ratio to the runner-up, its CI, verdict and sentence."""
    key = criterion.key
    out: dict[str, Any] = {"key": key, "leader": "", "figure": "", "versus": "", "ratio": "",
                           "ci": "", "verdict": "", "evidence": "", "sentence": "", "tie": False}
    if not ranked:
        out["verdict"] = "not measured in this run"
        return out
    fw, value, row = ranked[0]
    out.update(leader=fw, figure=_figure(key, value, unit, language_model))
    if len(ranked) < 2:
        out["evidence"] = "only one framework finished"
        return out
    fw2, value2, row2 = ranked[1]
    out["versus"] = fw2
    n_proc = int(row["n_processes"]) if not _missing(row["n_processes"]) else 1
    if key == "throughput":
        pair = pair_between(ratios, row["cell_id"], row2["cell_id"])
        if pair is None:
            factor = value / value2
            out.update(ratio=f"{factor:.2f}× the throughput of {fw2}",
                       evidence="no ratio in this run's table, no CI")
            out["sentence"] = (f"{fw} trains fastest ({tier} tier): {factor:.2f}× the "
                               f"throughput of {fw2} ({out['figure']}; no CI).")
            return out
        factor, lo, hi = 1 / pair.ratio, 1 / pair.hi, 1 / pair.lo
        words = verdict_words(pair.verdict, fw, fw2, lo, hi, pair.settle)
        level = fmt_level(pair.level)
        out.update(ratio=f"{factor:.2f}× the throughput of {fw2}",
                   ci=f"{level} CI {lo:.2f}–{hi:.2f}",
                   verdict=words, evidence=pair.timing)
        out["sentence"] = (f"{fw} trains fastest ({tier} tier): {factor:.2f}× the throughput "
                           f"of {fw2} ({level} CI {lo:.2f}–{hi:.2f}, {words}).")
        if pair.verdict == "equivalent":
            out["sentence"] = (f"{fw} and {fw2} train equally fast ({tier} tier): {fw} has "
                               f"{factor:.2f}× the throughput ({level} CI {lo:.2f}–{hi:.2f}, "
                               f"{words}).")
        return out
    if key in ("startup", "first_step"):
        factor = value2 / value if value > 0 else float("inf")
        what = ("starts up" if key == "startup" else "finishes its cold first step")
        out.update(ratio=f"{fmt_times(factor)} sooner than {fw2}",
                   evidence="one measurement (cold caches), no CI")
        out["sentence"] = (f"{fw} {what} {fmt_times(factor)} sooner than {fw2}: {fmt_s(value)} "
                           f"against {fmt_s(value2)}"
                           + (" (import, build and first step with empty compile caches"
                              if key == "startup" else " (tracing and compiling included")
                           + "; one measurement each, no CI).")
        return out
    if key == "memory":
        factor = value2 / value if value > 0 else float("inf")
        evidence = ("one measurement" if n_proc <= 1 else
                    f"largest of {n_proc} processes, no CI")
        out.update(ratio=f"{fw2} needs {fmt_times(factor)} as much", evidence=evidence)
        out["sentence"] = (f"{fw} needs the least {memory_kind}: {fmt_bytes(value)}; {fw2} "
                           f"needs {fmt_times(factor)} as much ({fmt_bytes(value2)}; "
                           f"{evidence}).")
        return out
    values = [v for _, v, _ in ranked]
    if language_model:
        spread = max(values) / min(values) - 1 if min(values) > 0 else float("inf")
        tie = spread < PERPLEXITY_TIE
        out.update(ratio=f"{fw2}'s is {fmt_times(value2 / value)} as high" if not tie else "",
                   evidence="one training run each, no CI")
        out["sentence"] = (
            f"Test perplexity after the same budget is a tie: {min(values):.2f}–"
            f"{max(values):.2f} (within {PERPLEXITY_TIE:.0%}; one training run each)."
            if tie else
            f"{fw} reaches the lowest test perplexity, {value:.2f} against {fw2}'s "
            f"{value2:.2f} (one training run each, no CI).")
    else:
        spread = max(values) - min(values)
        tie = spread < ACCURACY_TIE
        out.update(ratio=f"+{100 * (value - value2):.1f} points over {fw2}" if not tie else "",
                   evidence="one training run each, no CI")
        out["sentence"] = (
            f"Test accuracy after the same budget is a tie: {min(values):.3f}–"
            f"{max(values):.3f} (within {100 * ACCURACY_TIE:.0f} point; one training run "
            f"each)." if tie else
            f"{fw} reaches the best test accuracy, {value:.3f} against {fw2}'s {value2:.3f} "
            f"({100 * (value - value2):.1f} points; one training run each, no CI).")
    if tie:
        low, high = (_figure(key, min(values), unit, language_model),
                     f"{max(values):.2f}" if language_model else f"{max(values):.3f}")
        out.update(tie=True, leader="tie", figure=f"{low}–{high}",
                   verdict="a tie: " + ", ".join(f for f, _, _ in ranked))
    return out


def decision(cells: pd.DataFrame, ratios: pd.DataFrame) -> dict[str, Any]:
    """The decision for one comparison group (workload, size, device, batch, precision): the
    lead on every criterion, the ranking by each priority and plain sentences."""
    first = cells.iloc[0]
    real = _real(cells)
    tier, heads = headline_cells(cells)
    lm = bool(cells["test_perplexity"].notna().any())
    unit = _text(first["unit"]) or "items"
    memory_kind = ("GPU allocator peak" if first["device"] == "cuda"
                   and heads["device_peak_bytes"].notna().any() else "peak host memory")
    where = f"{first['workload']} ({first['device']})"
    leads, rankings = {}, {}
    for c in CRITERIA:
        ranked = rank(heads, c, lm)
        leads[c.key] = _lead(c, ranked, ratios, unit, lm, memory_kind, tier or "–")
        rankings[c.key] = [{"framework": f, "figure": _figure(c.key, v, unit, lm)}
                           for f, v, _ in ranked]
    finished = set(heads["framework"])
    missing = [fw for fw in dict.fromkeys(real["framework"]) if fw not in finished]
    for key in rankings:
        rankings[key] += [{"framework": fw, "figure": "did not finish"} for fw in missing]
    sentences = []
    if heads.empty:
        sentences.append(f"On {where}, no cell finished, so there is nothing to compare.")
    elif len(heads) == 1:
        sentences.append(f"On {where}, only {heads['framework'].iloc[0]}'s {tier} cell "
                         f"finished ({leads['throughput']['figure']}): nothing to compare.")
    else:
        sentences.append(f"On {where}, {leads['throughput']['sentence']}")
        for key in ("startup", "first_step", "memory", "accuracy"):
            if leads[key]["sentence"]:
                sentences.append(leads[key]["sentence"])
    for fw in missing:
        bad = real[(real["framework"] == fw) & (real["status"] != "ok")]
        status = bad["status"].iloc[0] if len(bad) else "missing"
        sentences.append(f"{fw} has no finished {tier or 'headline'} cell here ({status}): "
                         f"see Failures and skips.")
    return {
        "workload": first["workload"], "size": first["size"], "device": first["device"],
        "batch_size": first["batch_size"], "precision": first["precision"], "where": where,
        "anchor": f"workload-{first['workload']}-{first['size']}", "tier": tier or "–",
        "language_model": lm, "leads": leads, "rankings": rankings, "sentences": sentences,
        "heads": heads, "memory_kind": memory_kind, "unit": unit,
    }


def overall(decisions: list[dict[str, Any]]) -> dict[str, str]:
    """Per priority, one line across workloads: who leads how often."""
    out = {}
    for key, name in PRIORITIES.items():
        counts: dict[str, int] = {}
        for d in decisions:
            leader = d["leads"][key]["leader"]
            if leader:
                counts[leader] = counts.get(leader, 0) + 1
        n = sum(1 for d in decisions if d["leads"][key]["leader"])
        parts = [f"{'a tie' if fw == 'tie' else fw} on {k} of {n}" for fw, k in
                 sorted(counts.items(), key=lambda t: -t[1])]
        out[key] = (f"By {name}: " + ", ".join(parts) + " workload(s)." if parts else
                    f"By {name}: not measured in this run.")
    return out


# -- charts -----------------------------------------------------------------------------------

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


def _memory_of(r: Any) -> float | None:
    value = r["device_peak_bytes"] if r["device"] == "cuda" and not _missing(
        r["device_peak_bytes"]) else r["peak_rss_bytes"]
    return None if _missing(value) else float(value)


def _pareto_figure(ok: pd.DataFrame) -> str:
    cells = [r for _, r in _real(ok).iterrows()
             if not _missing(r["items_per_s"]) and _memory_of(r) is not None]
    if not cells:
        return ""
    mem = [_memory_of(r) / 2**20 for r in cells]
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


def _profile_figure(decisions: list[dict[str, Any]]) -> str:
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


def _steps_figure(ok: pd.DataFrame, samples: pd.DataFrame) -> str:
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
        k = 1 if _missing(p["steps_per_sample"]) else int(p["steps_per_sample"])
        steady = (0.0 if _missing(p["warmup_s"]) else float(p["warmup_s"])) + \
            float(timed["step_s"].sum()) * k
        phases = {"import": p["import_s"], "build": p["build_s"],
                  "first step (compile)": p["first_step_s"], "training budget": p["train_s"],
                  "steady state": steady}
        phases = {k: 0.0 if _missing(v) else float(v) for k, v in phases.items()}
        wall = 0.0 if _missing(p["wall_s"]) else float(p["wall_s"])
        phases["other"] = max(0.0, wall - sum(phases.values()))
        out.append({"label": label(c), "phases": phases})
    return out


def _phases_figure(rows: list[dict[str, Any]]) -> str:
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


def _loss_figure(cells: pd.DataFrame, losses: pd.DataFrame) -> str:
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


# -- evidence per workload --------------------------------------------------------------------

def loss_agreement(cells: pd.DataFrame, losses: pd.DataFrame, first: int = 10) -> float | None:
    """Largest difference between any two cells' losses over the first steps (the models are
    identical, so this should be float32 rounding)."""
    curves = [losses[losses["cell_id"] == c]["loss"].to_numpy()[:first] for c in cells["cell_id"]]
    curves = [c for c in curves if len(c) == first]
    if len(curves) < 2:
        return None
    stack = np.stack(curves)
    return float((stack.max(axis=0) - stack.min(axis=0)).max())


def findings(ok: pd.DataFrame, ratios: pd.DataFrame, speedups: pd.DataFrame) -> list[str]:
    """Details for one workload beyond the decision: the code people write, what tuning buys,
    compile trade-offs, graph breaks, memory range, quality."""
    if ok.empty:
        return ["No cell of this workload finished, so there is nothing to compare."]
    lines = []
    idiomatic = ok[ok["tier"] == "idiomatic"].sort_values("step_median_s")
    if len(idiomatic) > 1:
        lines.append("As users write it (idiomatic tier): " + ", ".join(
            f"{label(r)} {fmt_s(r['step_median_s'])}" for _, r in idiomatic.iterrows()) + ".")
    ups = speedups[speedups["idiomatic"].isin(ok["cell_id"]) & speedups["tuned"].isin(
        ok["cell_id"])]
    if len(ups):
        lines.append("Tuned against idiomatic: " + "; ".join(
            f"{r['framework']} {_speedup_text(r)}" for _, r in ups.iterrows()) + ".")
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
    lines.append(f"Lowest peak host memory of any cell: {label(mem.iloc[0])} "
                 f"({fmt_bytes(mem.iloc[0]['peak_rss_bytes'])}); highest: "
                 f"{label(mem.iloc[-1])} ({fmt_bytes(mem.iloc[-1]['peak_rss_bytes'])}).")
    if ok["step_median_s"].min() < 2e-3:
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


def _speedup_text(r: Any) -> str:
    """idiomatic / tuned step time with its CI and what it means."""
    level = fmt_level(float(r["level"]))
    verdict = stats.verdict(1 / r["ci_high"], 1 / r["ci_low"])  # tuned time / idiomatic
    settle = None if _missing(r["settle_repeats"]) else int(r["settle_repeats"])
    margin = f"{stats.EQUIVALENCE_MARGIN:.0%}"
    words = {"faster": f"tuning pays (≥{margin})",
             "slower": f"the tuned cell is slower (≥{margin})",
             "equivalent": f"equivalent within ±{margin}"}.get(verdict) or verdict_words(
        verdict, "tuned", "idiomatic", r["ci_low"], r["ci_high"], settle)
    variant = f"{r['variant']}; " if not _missing(r["variant"]) else ""
    return (f"{r['speedup']:.2f}× ({variant}{level} CI {r['ci_low']:.2f}–{r['ci_high']:.2f}, "
            f"{words})")


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
            "throughput": "–" if not ok or _missing(r["items_per_s"]) else
            f"{r['items_per_s']:,.0f}",
            "mfu": "–" if _missing(r["mfu"]) else f"{r['mfu']:.1%}",
            "import": fmt_s(r["import_s"]), "build": fmt_s(r["build_s"]),
            "cold": fmt_s(r["first_step_cold_s"]), "warm": fmt_s(r["first_step_warm_s"]),
            "warmup": "–" if _missing(r["warmup_steps"]) else f"{r['warmup_steps']:,.0f}",
            "break_even": ("" if r["mode"] == "eager" else "never")
            if _missing(r["break_even_step"]) else f"{r['break_even_step']:,.0f}",
            "memory": fmt_bytes(r["peak_rss_bytes"]),
            "device_memory": fmt_bytes(r["device_peak_bytes"]),
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
    fws = dict(zip(cells["cell_id"], cells["framework"]))
    rows = []
    mine = ratios[ratios["a"].isin(ids)]
    for tier in HEADLINE_TIERS:
        for _, r in mine[mine["tier"] == tier].iterrows():
            if tier == "tuned" or mode[r["a"]] == mode[r["b"]] or {r["a"], r["b"]} <= best:
                settle = None if _missing(r["settle_repeats"]) else int(r["settle_repeats"])
                unpaired = ""
                if "unpaired_ratio" in r and not _missing(r["unpaired_ratio"]):
                    unpaired = (f"{r['unpaired_ratio']:.2f}× ({r['unpaired_ci_low']:.2f}–"
                                f"{r['unpaired_ci_high']:.2f})")
                rows.append({
                    "tier": tier, "a": name[r["a"]], "b": name[r["b"]],
                    "ratio": f"{r['ratio']:.2f}×",
                    "ci": f"{fmt_level(float(r['level']))} CI {r['ci_low']:.2f}–"
                          f"{r['ci_high']:.2f}",
                    "verdict": verdict_words(r["verdict"], fws[r["a"]], fws[r["b"]],
                                             r["ci_low"], r["ci_high"], settle),
                    "timing": _timing_text(r), "unpaired": unpaired})
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
            "tuned": "–" if tuned is None else f"{_text(tuned['variant']) or '–'} "
                                                f"({tuned['mode']})",
            "tuned_step": step(tuned), "tuned_rate": rate(tuned),
            "speedup": "–" if up.empty else _speedup_text(up.iloc[0]).replace(
                f"{_text(up.iloc[0]['variant'])}; ", ""),
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


# -- fairness ---------------------------------------------------------------------------------

PRECISION_KEYS = re.compile(r"precision|dtype|tf32|bf16|fp16|denormal|amp", re.I)
THREAD_KEYS = re.compile(r"thread", re.I)
CAVEAT_KEYS = {  # manifest key: how a difference in it reads (in this order)
    "variant": "The configurations chosen differ",
    "mode": "The execution modes differ",
    "api": "The model and gradient APIs differ",
    "optimizer": "The optimiser implementations differ",
    "compile": "The compile options differ",
    "options": "The variants' options differ",
    "flags": "Flags differ",
}
SILENT_KEYS = {"tier", "settings", "threads", "differences", "versions"}


def _show(value: Any, limit: int = 240) -> str:
    """A manifest value in one line."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_show(v)}" for k, v in sorted(value.items())) or "none"
    elif isinstance(value, (list, tuple)):
        text = json.dumps(value)
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = "–" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def caveats(heads: pd.DataFrame, manifests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every difference between the configurations of the compared (headline) cells, as
    sentences; `strong` marks a difference that changes what is computed."""
    m = {r["framework"]: manifests.get(r["cell_id"], {}) for _, r in heads.iterrows()}
    m = {fw: man for fw, man in m.items() if man}
    if len(m) < 2:
        return []
    out: list[dict[str, Any]] = []

    def listing(values: dict[str, Any]) -> str:
        return "; ".join(f"{fw}: {_show(v)}" for fw, v in values.items())

    for fw, man in m.items():
        stated = man.get("differences")
        if stated:
            text = "; ".join(stated) if isinstance(stated, list) else str(stated)
            out.append({"text": f"{fw}'s cell differs from the identical algorithm by design: "
                                f"{text}.", "strong": True})
    keys = sorted((k for k in dict.fromkeys(k for man in m.values() for k in man)
                   if k not in SILENT_KEYS),
                  key=lambda k: list(CAVEAT_KEYS).index(k) if k in CAVEAT_KEYS else 99)
    for key in keys:
        values = {fw: man.get(key) for fw, man in m.items()}
        if len({_show(v) for v in values.values()}) < 2:
            continue
        if key == "flags" and not any(values.values()):
            continue
        lead = CAVEAT_KEYS.get(key, f"They differ in {key}")
        stated = {fw: v for fw, v in values.items() if v not in (None, {}, [], "")}
        absent = [fw for fw in values if fw not in stated]
        out.append({"text": f"{lead}: {listing(stated)}" + (f" ({', '.join(absent)}: none)"
                                                            if absent else "") + ".",
                    "strong": False})
        if key == "optimizer":
            flat = {fw: _flat(v) for fw, v in values.items() if isinstance(v, dict)}
            shared = [k for k in dict.fromkeys(k for f in flat.values() for k in f)
                      if k not in ("class", "") and sum(k in f for f in flat.values()) > 1]
            for sub in shared:
                subs = {fw: f[sub] for fw, f in flat.items() if sub in f}
                if len({_show(v) for v in subs.values()}) > 1:
                    out.append({"text": f"Optimiser setting {sub} differs: {listing(subs)}.",
                                "strong": True})
    settings = {fw: _flat(man.get("settings") or {}) for fw, man in m.items()}
    precision = {fw: {k: v for k, v in s.items() if PRECISION_KEYS.search(k)}
                 for fw, s in settings.items()}
    dtypes = {fw: p.get("compute_dtype") for fw, p in precision.items()
              if p.get("compute_dtype") is not None}
    if len(set(map(str, dtypes.values()))) > 1:
        out.append({"text": f"The compute dtypes differ: {listing(dtypes)}.", "strong": True})
    if any(precision.values()):
        out.append({"text": f"Precision settings read back: {listing(precision)}.",
                    "strong": False})
    pinned = {fw: (man.get("threads") or {}).get("threads") for fw, man in m.items()}
    pools = {fw: {k: v for k, v in s.items() if THREAD_KEYS.search(k)}
             for fw, s in settings.items()}
    same = len({str(v) for v in pinned.values()}) == 1
    out.append({"text": ("Threads: " + (f"every cell pinned to {next(iter(pinned.values()))} "
                                        "CPU(s)" if same else
                                        f"the cells were pinned to different CPU counts "
                                        f"({listing(pinned)})")
                         + (f"; pools read back: {listing(pools)}." if any(pools.values())
                            else ".")), "strong": not same})
    versions = {fw: (man.get("versions") or {}).get("framework_version") for fw, man in m.items()}
    if any(versions.values()):
        out.append({"text": "Versions: " + ", ".join(f"{fw} {v}" for fw, v in versions.items()
                                                     if v) + ".", "strong": False})
    return out


def precision_in_effect(per_process: pd.DataFrame) -> list[dict[str, str]]:
    """Per framework and precision mode, the precision settings its cells read back."""
    rows: dict[tuple[str, str], set[str]] = {}
    real = per_process[per_process["framework"] != SELF_CHECK]
    for _, r in real.iterrows():
        settings = json.loads(r["settings"]) if not _missing(r["settings"]) else {}
        shown = ", ".join(f"{k}={_show(v)}" for k, v in sorted(_flat(settings).items())
                          if PRECISION_KEYS.search(k))
        rows.setdefault((r["framework"], _text(r["precision"])), set()).add(shown or "–")
    return [{"framework": fw, "precision": p, "settings": "; ".join(sorted(s))}
            for (fw, p), s in rows.items()]


def _noise(probes: pd.Series, real: pd.DataFrame) -> dict[str, Any]:
    """How much the machine's own speed moved during the run (the fixed probe of every cell)."""
    spread = probes.max() / probes.min() - 1
    noisy = real[real["machine_slowdown"] > 1 + NOISE_LIMIT]
    return {"fastest": fmt_s(probes.min()), "slowest": fmt_s(probes.max()),
            "median": fmt_s(probes.median()), "limit": f"{NOISE_LIMIT:.0%}",
            "spread": f"{spread:.0%}", "warn": bool(spread > NOISE_LIMIT),
            "noisy": [f"{r.cell_id} (×{r.machine_slowdown:.2f})" for r in noisy.itertuples()]}


def _correction(ratios: pd.DataFrame) -> dict[str, Any]:
    """The level of the CIs behind verdicts and the m it corrects for."""
    levels = ratios["level"].dropna()
    if levels.empty or (levels == stats.LEVEL).all():
        return {"corrected": False, "level": fmt_level(stats.LEVEL), "m": len(ratios)}
    level = float(levels.min())
    return {"corrected": True, "level": fmt_level(level),
            "m": int(round(stats.ALPHA / (1 - level)))}


# -- links, context, rendering ----------------------------------------------------------------

def table_links(run_dir: Path, out_dir: Path) -> list[dict[str, str]]:
    """Links from out_dir to the run's tables (relative: --results-dir and --reports-dir are
    independent, so the path is worked out, not assumed)."""
    links = []
    for name in results.TABLES:
        files = []
        for ext in ("csv", "parquet"):
            path = run_dir / f"{name}.{ext}"
            if path.exists():
                try:
                    href = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
                except ValueError:  # another drive
                    href = path.resolve().as_uri()
                files.append({"ext": ext.upper() if ext == "csv" else "Parquet", "href": href})
        if files:
            links.append({"name": name, "files": files})
    return links


def _groups(real: pd.DataFrame, keys: list[str]) -> list[tuple[Any, pd.DataFrame]]:
    return list(real.groupby(keys, sort=False, dropna=False))


def context(run_dir: Path) -> dict[str, Any]:
    tables = load_tables(run_dir)
    summary, losses, ratios = tables["summary"], tables["losses"], tables["ratios"]
    speedups, tuning, samples = tables["speedups"], tables["tuning"], tables["samples"]
    per_process = tables["results"]
    run = asdict(RunManifest.read(run_dir))
    noop = summary[summary["framework"] == SELF_CHECK]
    real = summary[summary["framework"] != SELF_CHECK]
    order = {w: i for i, w in enumerate(run["workloads"])}
    real = real.sort_values("workload", key=lambda w: w.map(order), kind="stable")
    manifests = {r["cell_id"]: json.loads(r["manifest"]) for _, r in
                 per_process[per_process["repeat"] == 0].iterrows()
                 if not _missing(r["manifest"])}
    decisions = [decision(cells, ratios) for _, cells in _groups(
        real, ["workload", "size", "device", "batch_size", "precision"])]
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
            "rows": _rows(cells), "ratios": _ratio_rows(cells, ratios),
            "choice": _choice_rows(cells, speedups),
            "search": _search_rows(searched),
            "findings": findings(ok, ratios, speedups),
            "pareto": _pareto_figure(ok) if len(ok) else "",
            "steps": _steps_figure(ok, samples) if len(ok) else "",
            "phases": _phases_figure(phase_times(cells, per_process, samples)),
            "losses": _loss_figure(cells, repeat0),
            "agreement": loss_agreement(identical, repeat0, 3),
            "agreement10": loss_agreement(identical, repeat0),
            "search_agreement": search_agreement(run_dir, workload, size),
            "caveats": [c for d in decisions if (d["workload"], d["size"]) == (workload, size)
                        for c in d["caveats"]],
        })
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
    device_peaks = run.get("device_peaks") or {}
    return {
        "run": run, "sections": sections, "trust": trust, "decisions": decisions,
        "criteria": CRITERIA, "priorities": PRIORITIES, "not_measured": NOT_MEASURED,
        "overall": overall(decisions), "profile": _profile_figure(decisions),
        "correction": _correction(ratios), "margin": f"{stats.EQUIVALENCE_MARGIN:.0%}",
        "precision": precision_in_effect(per_process),
        "versions": run["framework_info"],
        "implementations": sorted(set(per_process["implementation"].dropna())),
        "peaks": {k: f"{v / 1e9:.0f} GFLOP/s" for k, v in
                  run["gemm_peak_flops_per_s"].items()},
        "device_peaks": {k: _device_peak(v) for k, v in device_peaks.items()},
        "problems": [{"cell_id": f"{r['cell_id']} (repeat {r['repeat']})", "status": r["status"],
                      "reason": r["reason"] or ""} for _, r in problems.iterrows()],
        "manifests": json.dumps(manifests, sort_keys=True).replace("</", "<\\/"),
        "tiers": TIER_DESCRIPTIONS,
    }


def _device_peak(entry: Any) -> str:
    """One run.json device_peaks entry in words."""
    if isinstance(entry, (int, float)):
        return f"{entry / 1e9:,.0f} GFLOP/s"
    if not isinstance(entry, dict):
        return _show(entry)
    parts = []
    if not _missing(entry.get("flops_per_s")):
        parts.append(f"{entry['flops_per_s'] / 1e9:,.0f} GFLOP/s")
    by_fw = entry.get("by_framework") or {}
    if by_fw:
        parts.append("(" + ", ".join(f"{fw} {v / 1e9:,.0f}" for fw, v in by_fw.items()
                                     if isinstance(v, (int, float))) + ")")
    if entry.get("device_name"):
        parts.append(f"on {entry['device_name']}")
    if entry.get("threads"):
        parts.append(f"{entry['threads']} thread(s)")
    if not _missing(entry.get("datasheet_flops_per_s")):
        parts.append(f"datasheet {entry['datasheet_flops_per_s'] / 1e12:,.1f} TFLOP/s")
    return " ".join(parts) or _show(entry)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(ctx: dict[str, Any], links: list[dict[str, str]]) -> str:
    """The decision table and the sentences in Markdown (for pull requests and terminals)."""
    run = ctx["run"]
    titles = [c.title for c in CRITERIA]
    lines = [f"# framebench run `{run['run_id']}`: decision summary", "",
             f"Run {run['started']} to {run['ended'] or '(unfinished)'}; precision "
             f"{run['precision'] or 'fp32'}, {run['repeats'] or 1} fresh process(es) per cell. "
             "Each framework's headline cell (tuned tier if present, else idiomatic, else "
             "identical) is compared; the full report is [index.html](index.html).", "",
             "| workload (device) | tier | " + " | ".join(titles) + " |",
             "|---|---|" + "---|" * len(titles)]
    for d in ctx["decisions"]:
        cells = []
        for c in CRITERIA:
            lead = d["leads"][c.key]
            if not lead["leader"]:
                cells.append(_md(lead["verdict"] or "–"))
                continue
            text = f"**{lead['leader']}** {lead['figure']}" if not lead["tie"] else \
                f"tie: {lead['figure']}"
            if lead["ratio"]:
                text += f", {lead['ratio']}"
            detail = "; ".join(x for x in (lead["ci"], lead["verdict"] if not lead["tie"]
                                           else "", lead["evidence"]) if x)
            cells.append(_md(text + (f" ({detail})" if detail else "")))
        lines.append(f"| {_md(d['where'])} | {d['tier']} | " + " | ".join(cells) + " |")
    for name in NOT_MEASURED:
        lines.append("| " + " | ".join([name, "", "not measured in this run"]
                                        + [""] * (len(titles) - 1)) + " |")
    lines += ["", "Rankings by priority:", ""]
    for d in ctx["decisions"]:
        ranks = "; ".join(f"by {name}: " + ", ".join(e["framework"] for e in
                                                      d["rankings"][key])
                          for key, name in PRIORITIES.items())
        lines.append(f"- {d['where']}: {ranks}")
    lines += [""] + [f"- {text}" for text in ctx["overall"].values()]
    for d in ctx["decisions"]:
        lines += ["", f"## {d['where']}", ""] + [f"- {s}" for s in d["sentences"]]
        if d["caveats"]:
            lines += ["", "Caveats (configurations of the compared cells):", ""]
            lines += [f"- {'**' if c['strong'] else ''}{c['text']}{'**' if c['strong'] else ''}"
                      for c in d["caveats"]]
    corr = ctx["correction"]
    lines += ["", "## Method", "",
              (f"Throughput ratios are step-time ratios with a CI; CIs behind verdicts are "
               f"Bonferroni-corrected for the m = {corr['m']} between-framework comparisons of "
               f"this report (each at 1 − 0.05/m = {corr['level']})." if corr["corrected"] else
               f"Throughput ratios carry {corr['level']} CIs (this run predates the "
               "multiple-comparison correction)."),
              f"Verdicts: faster/slower beyond ±{ctx['margin']}, equivalent within it, else "
              "inconclusive. Start-up, memory and accuracy are measured once per process: "
              "their ratios carry no CI.", "", "## Tables", ""]
    lines += [f"- {link['name']}: " + ", ".join(f"[{f['ext']}]({f['href']})"
                                                for f in link["files"]) for link in links]
    if ctx["problems"]:
        lines += ["", f"{len(ctx['problems'])} cell process(es) did not finish: "
                  + ", ".join(p["cell_id"] for p in ctx["problems"]) + "."]
    return "\n".join(lines) + "\n"


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
    out.write_text(template.render(**ctx, links=links, plotlyjs=plotlyjs,
                                   summary_href="summary.md"), encoding="utf-8")
    (out.parent / "summary.md").write_text(markdown(ctx, links), encoding="utf-8")
    (reports_dir / "latest.html").write_text(
        template.render(**ctx, links=table_links(run_dir, reports_dir), plotlyjs=plotlyjs,
                        summary_href=f"{out.parent.name}/summary.md"), encoding="utf-8")
    return out
