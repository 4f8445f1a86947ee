"""The evidence of one workload section: findings in words and the rows of its tables (every
cell, the ratios worth reading, idiomatic against tuned per framework, the tuned search)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness.backends import INFER_DESCRIPTIONS
from harness.report.decide import HEADLINE_TIERS
from harness.report.fmt import (
    describe,
    flag,
    fmt_bytes,
    fmt_level,
    fmt_s,
    is_missing,
    label,
    or_empty,
)
from harness.report.verdicts import settle_of, speedup_text, timing_text, verdict_words
from harness.spec import WORKLOADS


def findings(ok: pd.DataFrame, speedups: pd.DataFrame) -> list[str]:
    """Details for one workload beyond the decision: the code people write, what tuning buys,
    compile trade-offs, graph breaks, memory range, quality. Plain text (escaped in the page:
    names come from the results)."""
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
            f"{r['framework']} {speedup_text(r)}" for _, r in ups.iterrows()) + ".")
    for fw, group in ok[ok["tier"] != "tuned"].groupby(["framework", "tier"]):
        modes = group.set_index("mode")
        if "eager" not in modes.index:
            continue
        eager = modes.loc["eager"]
        parts = []
        for mode, r in modes.drop(index="eager").iterrows():
            ratio = eager["step_median_s"] / r["step_median_s"]
            speed = f"{ratio:.1f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"
            when = ("never pays off" if is_missing(r["break_even_step"])
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
                     "MISSED by " + ", ".join(missed.apply(label, axis=1)) + "."))
    return lines


def cell_rows(cells: pd.DataFrame) -> list[dict[str, str]]:
    """One row per cell for the section's main table."""
    rows = []
    for _, r in cells.iterrows():
        ok = r["status"] == "ok"
        rows.append({
            "label": label(r), "what": describe(r), "tier": r["tier"],
            "debug": flag(r["debug_mode"]), "status": r["status"],
            "compiles": "–" if is_missing(r["compiles"]) else f"{r['compiles']:,.0f}",
            "breaks": "" if is_missing(r["graph_breaks"]) else f"{r['graph_breaks']:,.0f}",
            "step": fmt_s(r["step_median_s"]) if ok else "–",
            "ci": f"{fmt_s(r['step_ci_low_s'])} – {fmt_s(r['step_ci_high_s'])}" if ok else "–",
            "vs": "–" if is_missing(r["vs_fastest"]) else f"{r['vs_fastest']:.2f}×",
            "throughput": "–" if not ok or is_missing(r["items_per_s"]) else
            f"{r['items_per_s']:,.0f}",
            "mfu": "–" if is_missing(r["mfu"]) else f"{r['mfu']:.1%}",
            "import": fmt_s(r["import_s"]), "build": fmt_s(r["build_s"]),
            "cold": fmt_s(r["first_step_cold_s"]), "warm": fmt_s(r["first_step_warm_s"]),
            "warmup": "–" if is_missing(r["warmup_steps"]) else f"{r['warmup_steps']:,.0f}",
            "break_even": ("" if r["mode"] == "eager" else "never")
            if is_missing(r["break_even_step"]) else f"{r['break_even_step']:,.0f}",
            "memory": fmt_bytes(r["peak_rss_bytes"]),
            "device_memory": fmt_bytes(r["device_peak_bytes"]),
            "accuracy": "–" if is_missing(r["test_accuracy"]) else f"{r['test_accuracy']:.3f}",
            "perplexity": "–" if is_missing(r["test_perplexity"]) else
                          f"{r['test_perplexity']:.2f}",
            "samples": "–" if is_missing(r["n_samples"]) else
                       f"{r['n_processes']} × {r['n_samples'] // max(r['n_processes'], 1)}",
        })
    return rows


def ratio_rows(cells: pd.DataFrame, ratios: pd.DataFrame) -> list[dict[str, str]]:
    """Pairs worth reading, tier by tier (tuned first): every tuned pair; in the other tiers
    the same mode in two frameworks, and each framework's best mode."""
    ids = set(cells["cell_id"])
    ok = cells[cells["status"] == "ok"]
    best = set(ok.sort_values("step_median_s").groupby(["tier", "framework"])["cell_id"].first())
    mode = dict(zip(cells["cell_id"], cells["mode"]))
    name = dict(zip(cells["cell_id"], cells.apply(label, axis=1)))
    fws = dict(zip(cells["cell_id"], cells["framework"]))
    rows = []
    mine = ratios[ratios["a"].isin(ids) & ~ratios["precision"].fillna("").str.contains("/")]
    for tier in HEADLINE_TIERS:
        for _, r in mine[mine["tier"] == tier].iterrows():
            if tier == "tuned" or mode[r["a"]] == mode[r["b"]] or {r["a"], r["b"]} <= best:
                unpaired = ""
                if "unpaired_ratio" in r and not is_missing(r["unpaired_ratio"]):
                    unpaired = (f"{r['unpaired_ratio']:.2f}× ({r['unpaired_ci_low']:.2f}–"
                                f"{r['unpaired_ci_high']:.2f})")
                rows.append({
                    "tier": tier, "a": name[r["a"]], "b": name[r["b"]],
                    "ratio": f"{r['ratio']:.2f}×",
                    "ci": f"{fmt_level(float(r['level']))} CI {r['ci_low']:.2f}–"
                          f"{r['ci_high']:.2f}",
                    "verdict": verdict_words(r["verdict"], fws[r["a"]], fws[r["b"]],
                                             r["ci_low"], r["ci_high"], settle_of(r)),
                    "timing": timing_text(r), "unpaired": unpaired})
    return rows


def _step(r: Any) -> str:
    return "–" if r is None or r["status"] != "ok" else fmt_s(r["step_median_s"])


def _rate(r: Any) -> str:
    return "–" if r is None or is_missing(r["items_per_s"]) else f"{r['items_per_s']:,.0f}"


def choice_rows(cells: pd.DataFrame, speedups: pd.DataFrame) -> list[dict[str, str]]:
    """Per framework: the code people write (idiomatic), the tuned figure, the speed-up."""
    rows = []
    for fw, group in cells.groupby("framework", sort=False):
        by_tier = {t: g.sort_values("step_median_s").iloc[0] for t, g in group.groupby("tier")}
        idiom, tuned = by_tier.get("idiomatic"), by_tier.get("tuned")
        up = speedups[(speedups["framework"] == fw)
                      & speedups["tuned"].isin(group["cell_id"])
                      & speedups["idiomatic"].isin(group["cell_id"])]
        up = up[up["idiomatic"] == idiom["cell_id"]] if idiom is not None else up.iloc[:0]

        rows.append({
            "framework": fw,
            "idiomatic": "–" if idiom is None else f"{idiom['mode']}",
            "idiomatic_step": _step(idiom), "idiomatic_rate": _rate(idiom),
            "tuned": "–" if tuned is None else f"{or_empty(tuned['variant']) or '–'} "
                                                f"({tuned['mode']})",
            "tuned_step": _step(tuned), "tuned_rate": _rate(tuned),
            "speedup": "–" if up.empty else speedup_text(up.iloc[0], with_variant=False),
        })
    return rows


def search_rows(tuning: pd.DataFrame) -> list[dict[str, str]]:
    """One row per variant the tuned search tried."""
    rows = []
    for _, r in tuning.iterrows():
        rows.append({
            "framework": r["framework"], "variant": r["variant"], "mode": r["mode"],
            "description": or_empty(r["description"]),
            "step": fmt_s(r["median_s"]),
            "vs": "–" if is_missing(r["vs_identical"]) else
            f"{r['vs_identical']:.3f} ({r['vs_identical_ci_low']:.3f}–"
            f"{r['vs_identical_ci_high']:.3f})",
            "correct": "yes" if flag(r["correct"]) else
            "differs by design" if not is_missing(r["differences"]) else "no",
            "differences": "; ".join(json.loads(r["differences"])) if not is_missing(
                r["differences"]) else "",
            "diff": "–" if is_missing(r["max_loss_diff"]) else f"{r['max_loss_diff']:.1e}",
            "error": or_empty(r["error"]), "chosen": flag(r["chosen"]),
            "searched": or_empty(r["searched"]),
        })
    return rows



def infer_rows(infer: pd.DataFrame) -> list[dict[str, Any]]:
    """The infer scenario's table: every path of every framework per workload, latency
    percentiles at batch 1 (and the requests behind the p99), throughput at the large batch,
    the first request of each (compiling or exporting), the check against the reference."""
    rows = []
    for _, r in infer.iterrows():
        ok = r["status"] == "ok"
        above = "" if is_missing(r["latency_above_p99"]) else (
            f"{int(r['latency_above_p99'])} of {int(r['latency_requests'])} requests above")
        rows.append({
            "workload": f"{r['workload']} {r['size']}", "framework": r["framework"],
            "tier": r["tier"], "path": r["mode"], "what": describe_path(r),
            "status": r["status"], "ok": ok,
            "p50": fmt_s(r["latency_p50_s"]), "p90": fmt_s(r["latency_p90_s"]),
            "p99": fmt_s(r["latency_p99_s"]), "above_p99": above,
            "batch": "" if is_missing(r["batch_size"]) else int(r["batch_size"]),
            "throughput": "–" if is_missing(r["items_per_s"])
            else f"{r['items_per_s']:,.0f} {r['unit']}/s",
            "first_latency": fmt_s(r["first_request_s"]),
            "first_batch": fmt_s(r["first_step_cold_s"]),
            "reference": "–" if is_missing(r["reference_error"])
            else f"{r['reference_error']:.1e}",
            "memory": fmt_bytes(r["peak_rss_bytes"]),
            "reason": or_empty(r["reason"])[-300:],
        })
    return rows


def describe_path(row: Any) -> str:
    return INFER_DESCRIPTIONS.get((row["framework"], row["mode"]), "")


def largest_rows(largest: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per largest-batch search, with a sentence."""
    rows = []
    for _, r in largest.iterrows():
        cap = "" if is_missing(r["memory_cap_bytes"]) else \
            f" under a {fmt_bytes(r['memory_cap_bytes'])} cap"
        best = None if is_missing(r["largest_batch"]) else int(r["largest_batch"])
        oom = None if is_missing(r["oom_batch"]) else int(r["oom_batch"])
        if best is None:
            sentence = f"{r['framework']} could not train {r['workload']} at any batch{cap}."
        else:
            sentence = (f"{r['framework']} trains {r['workload']} at batch {best:,}{cap}"
                        + (f"; batch {oom:,} ran out of memory (it reached "
                           f"{fmt_bytes(r['oom_peak_bytes'])})" if oom else "") + ".")
        rows.append({
            "workload": f"{r['workload']} {r['size']}", "framework": r["framework"],
            "tier": r["tier"], "mode": r["mode"], "device": r["device"],
            "cap": fmt_bytes(r["memory_cap_bytes"]),
            "largest": "–" if best is None else f"{best:,}",
            "oom": "–" if oom is None else f"{oom:,}",
            "tries": int(r["tries"]), "stopped": or_empty(r["stopped"]),
            "throughput": "–" if is_missing(r["items_per_s"]) else f"{r['items_per_s']:,.0f}/s",
            "memory": fmt_bytes(r["memory_peak_bytes"] if not is_missing(r["memory_peak_bytes"])
                                else r["peak_rss_bytes"]),
            "sentence": sentence,
        })
    return rows


def accuracy_rows(ttt: pd.DataFrame, order: dict[str, int]) -> list[dict[str, Any]]:
    """The accuracy scenario's table: per training cell, its seeds' time to the target."""
    rows = []
    ttt = ttt.sort_values(["workload", "tier", "framework"],
                          key=lambda c: c.map(order) if c.name == "workload" else c)
    for _, r in ttt.iterrows():
        rows.append({
            "workload": f"{r['workload']} {r['size']}", "framework": r["framework"],
            "tier": r["tier"], "target": r["target"],
            "met": f"{int(r['met'])} of {int(r['seeds'])}", "all_met": r["met"] == r["seeds"],
            "median": "not reached" if is_missing(r["median_s"]) else fmt_s(r["median_s"]),
            "mlperf": "–" if r["seeds"] < 3 else "not reached" if is_missing(
                r["mlperf_mean_s"]) else fmt_s(r["mlperf_mean_s"]),
            "steps": "–" if is_missing(r["median_steps"]) else f"{r['median_steps']:,.0f}",
            "cold": "not reached" if is_missing(r["cold_s"]) else fmt_s(r["cold_s"]),
        })
    return rows


def precision_rows(cells: pd.DataFrame, ratios: pd.DataFrame) -> list[dict[str, Any]]:
    """Each reduced-precision cell beside its framework's fp32 cell: the speed-up (training:
    paired where they were timed in the same turns; inference: the ratio of the figures), and
    what it costs in quality (test accuracy or perplexity after the same budget, the median
    time to target)."""
    by_id = cells.set_index("cell_id")
    rows = []
    for _, r in ratios[ratios["precision"].fillna("").str.contains("/")].iterrows():
        low, base = by_id.loc[r["a"]], by_id.loc[r["b"]]
        lm = not is_missing(base["test_perplexity"])
        metric = "test_perplexity" if lm else "test_accuracy"
        quality = "–" if is_missing(low[metric]) or is_missing(base[metric]) else (
            f"perplexity {base[metric]:.2f} → {low[metric]:.2f}" if lm else
            f"accuracy {base[metric]:.3f} → {low[metric]:.3f}")
        ttt = "–" if is_missing(base.get("ttt_median_s")) and is_missing(
            low.get("ttt_median_s")) else (f"{_or_miss(base.get('ttt_median_s'))} → "
                                           f"{_or_miss(low.get('ttt_median_s'))}")
        rows.append({
            "scenario": "training", "workload": f"{low['workload']} {low['size']}",
            "framework": low["framework"], "tier": low["tier"], "what": label(low),
            "precision": r["precision"], "speedup": f"{1 / r['ratio']:.2f}×",
            "ci": f"{fmt_level(float(r['level']))} CI {1 / r['ci_high']:.2f}–"
                  f"{1 / r['ci_low']:.2f}",
            "verdict": verdict_words(r["verdict"], low["precision"], base["precision"],
                                     r["ci_low"], r["ci_high"], settle_of(r)),
            "timing": timing_text(r), "quality": quality, "time_to_target": ttt})
    infer = cells[(cells["scenario"] == "infer") & (cells["status"] == "ok")]
    keys = ["framework", "tier", "mode", "workload", "size", "device", "batch_size"]
    for _, group in infer.groupby(keys, sort=False):
        base = group[group["precision"] == "fp32"]
        for _, low in group[group["precision"] != "fp32"].iterrows():
            if base.empty:
                continue
            b = base.iloc[0]
            rows.append({
                "scenario": "inference", "workload": f"{low['workload']} {low['size']}",
                "framework": low["framework"], "tier": low["tier"],
                "what": f"{low['mode']} path", "precision": f"{low['precision']}/fp32",
                "speedup": f"{b['latency_p50_s'] / low['latency_p50_s']:.2f}× latency, "
                           f"{low['items_per_s'] / b['items_per_s']:.2f}× throughput",
                "ci": "", "verdict": "unpaired (infer cells run one after another)",
                "timing": "",
                "quality": f"logits within {low['reference_error']:.1e} of the float64 "
                           "reference" if not is_missing(low["reference_error"]) else "–",
                "time_to_target": ""})
    return rows


def _or_miss(value: Any) -> str:
    return "not reached" if is_missing(value) else fmt_s(float(value))


def scaling_rows(scaling: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per data-parallel cell against its one-device cell, with a sentence."""
    rows = []
    for _, r in scaling.iterrows():
        eff = r["efficiency"]
        rows.append({
            "workload": f"{r['workload']} {r['size']}", "framework": r["framework"],
            "mode": r["mode"], "device": r["device"], "replicas": int(r["replicas"]),
            "batch": int(r["batch_size"]), "mechanism": or_empty(r["mechanism"]),
            "single": f"{r['single_samples_per_s']:,.0f}/s",
            "parallel": f"{r['samples_per_s']:,.0f}/s",
            "efficiency": f"{eff:.2f} ({r['ci_low']:.2f}–{r['ci_high']:.2f})",
            "sentence": f"{r['framework']} on {int(r['replicas'])} {r['device']} replicas of "
                        f"{r['workload']} at batch {int(r['batch_size'])} each runs "
                        f"{r['samples_per_s'] / r['single_samples_per_s']:.2f}x the examples "
                        f"per second of one device: {eff:.0%} of perfect scaling.",
        })
    return rows

