"""The decision: per comparison group (workload, size, device, batch, precision), who leads on
each criterion a person may choose by, by how much and how sure we are, the rankings by each
priority, and plain sentences; then one line per priority across all groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.backends import SELF_CHECK
from harness.report.fmt import fmt_bytes, fmt_level, fmt_s, fmt_times, is_missing, or_empty
from harness.report.verdicts import pair_between, verdict_words
from harness.results import infer_heads

# Cells timed apart (one after another, minutes apart) are not paired: on a machine whose speed
# drifts, their ratio is shown but no verdict is drawn from it.
UNPAIRED = "no verdict: timed apart, not paired"
ACCURACY_TIE = 0.01        # test accuracies closer than 1 point read as a tie
PERPLEXITY_TIE = 0.01      # perplexities within 1% of each other read as a tie
HEADLINE_TIERS = ("tuned", "idiomatic", "identical")  # verdicts come from the first present


@dataclass(frozen=True)
class Criterion:
    """One thing a person may choose a framework by."""

    key: str
    title: str
    higher_is_better: bool


CRITERIA = (
    Criterion("throughput", "training throughput", True),
    Criterion("latency", "inference latency (batch 1, p50)", False),
    Criterion("infer_throughput", "inference throughput (large batch)", True),
    Criterion("startup", "start-up (import + build + cold first step)", False),
    Criterion("first_step", "cold first step (compile)", False),
    Criterion("memory", "peak memory", False),
    Criterion("accuracy", "accuracy", True),
    Criterion("time_to_target", "time to target (median over seeds)", False),
)
PRIORITIES = {"throughput": "throughput", "latency": "inference latency",
              "startup": "start-up", "memory": "memory", "accuracy": "accuracy",
              "time_to_target": "time to accuracy"}
NOT_MEASURED: tuple[str, ...] = ()
# criteria read from the infer scenario's cells (each framework's best path), and the metric of
# the ratios rows behind every ratio-backed lead
INFER_CRITERIA = {"latency": "latency_p50_s", "infer_throughput": "step_median_s"}
RATIO_METRICS = {"throughput": "step", "latency": "latency", "infer_throughput": "request"}


def real_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells a person would choose between: no debugging modes, no harness self-check."""
    return cells[(cells["debug_mode"] != True)  # noqa: E712 - nullable boolean
                 & (cells["framework"] != SELF_CHECK)]


def headline(ok: pd.DataFrame) -> pd.DataFrame:
    """The cells the verdicts compare: the tuned tier's if the run has it (else idiomatic, else
    identical), debugging modes left out."""
    real = real_cells(ok)
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


def memory_of(r: Any) -> float | None:
    """A cell's peak memory: the GPU allocator's on CUDA where measured, else the host's."""
    value = r["device_peak_bytes"] if r["device"] == "cuda" and not is_missing(
        r["device_peak_bytes"]) else r["peak_rss_bytes"]
    return None if is_missing(value) else float(value)


def criterion_value(row: Any, key: str, language_model: bool) -> float | None:
    """A headline cell's figure on one criterion (None where not measured)."""
    if key in ("throughput", "infer_throughput"):
        value = row["items_per_s"]
    elif key == "latency":
        value = row["latency_p50_s"]
    elif key == "startup":
        parts = [row["import_s"], row["build_s"], row["first_step_cold_s"]]
        value = None if any(is_missing(p) for p in parts) else float(sum(parts))
    elif key == "first_step":
        value = row["first_step_cold_s"]
    elif key == "memory":
        return memory_of(row)
    elif key == "time_to_target":
        value = row.get("ttt_median_s")
    else:
        value = row["test_perplexity"] if language_model else row["test_accuracy"]
    return None if is_missing(value) else float(value)


def _figure(key: str, value: float, unit: str, language_model: bool) -> str:
    if key in ("throughput", "infer_throughput"):
        return f"{value:,.0f} {unit}/s"
    if key == "memory":
        return fmt_bytes(value)
    if key == "time_to_target":
        return fmt_s(value)
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
    if key in RATIO_METRICS:
        return _ratio_lead(out, key, row, row2, ratios, tier)
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
    if key == "time_to_target":
        return _target_lead(out, row, row2, value, value2)
    if key == "memory":
        factor = value2 / value if value > 0 else float("inf")
        n_proc = int(row["n_processes"]) if not is_missing(row["n_processes"]) else 1
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


def _target_lead(out: dict[str, Any], row: Any, row2: Any, value: float,
                 value2: float) -> dict[str, Any]:
    """Time to the workload's target: the median over seeds (compile included), with MLPerf's
    mean (fastest and slowest dropped) beside it; unpaired: seeds train one after another."""
    fw, fw2 = row["framework"], row2["framework"]
    factor = value2 / value if value > 0 else float("inf")
    seeds = int(row["ttt_seeds"])
    mean = "" if is_missing(row.get("ttt_mlperf_s")) else \
        f"; MLPerf mean {fmt_s(float(row['ttt_mlperf_s']))}"
    out.update(ratio=f"{fmt_times(factor)} sooner than {fw2}",
               evidence=f"{int(row['ttt_met'])} of {seeds} seeds met it{mean}; unpaired, no CI")
    out["sentence"] = (
        f"{fw} reaches the target ({row['ttt_target']}) soonest: median {fmt_s(value)} over "
        f"{seeds} seed(s), compile included{mean}; {fw2} takes {fmt_s(value2)}, "
        f"{fmt_times(factor)} as long (seeds run one after another: unpaired, no CI).")
    return out


def _ratio_lead(out: dict[str, Any], key: str, row: Any, row2: Any, ratios: pd.DataFrame,
                tier: str) -> dict[str, Any]:
    """A lead backed by a ratios row (time of the leader's cell / the runner-up's): training
    throughput, inference latency and inference throughput."""
    fw, fw2 = row["framework"], row2["framework"]
    if key == "throughput":
        lead = f"{fw} trains fastest ({tier} tier): {{f}} the throughput of {fw2}"
        same = f"{fw} and {fw2} train equally fast ({tier} tier)"
    elif key == "latency":
        lead = (f"{fw} answers one request soonest ({path_name(row)}, p50 {out['figure']}): "
                f"{{f}} as fast as {fw2}'s {path_name(row2)} (p50 "
                f"{fmt_s(float(row2['latency_p50_s']))})")
        same = f"{fw} and {fw2} answer one request equally fast"
    else:
        lead = (f"{fw} serves large batches fastest ({path_name(row)}, {out['figure']}): "
                f"{{f}} the throughput of {fw2}'s {path_name(row2)}")
        same = f"{fw} and {fw2} serve large batches equally fast"
    label = "as fast as" if key == "latency" else "the throughput of"
    pair = pair_between(ratios, row["cell_id"], row2["cell_id"], RATIO_METRICS[key])
    if pair is None:
        factor = criterion_ratio(key, row, row2)
        out.update(ratio=f"{factor:.2f}× {label} {fw2}",
                   evidence="no ratio in this run's table, no CI")
        out["sentence"] = lead.format(f=f"{factor:.2f}×") + " (no CI)."
        return out
    factor, lo, hi = 1 / pair.ratio, 1 / pair.hi, 1 / pair.lo
    ci = f"{fmt_level(pair.level)} CI {lo:.2f}–{hi:.2f}"
    if not pair.paired:  # timed apart: a figure for the report, not a decision
        out.update(ratio=f"{factor:.2f}× {label} {fw2}", ci=f"unpaired {ci}",
                   verdict=UNPAIRED, evidence=pair.timing)
        out["sentence"] = lead.format(f=f"{factor:.2f}×") + f" (unpaired {ci}; {UNPAIRED})."
        return out
    words = verdict_words(pair.verdict, fw, fw2, lo, hi, pair.settle)
    out.update(ratio=f"{factor:.2f}× {label} {fw2}", ci=ci, verdict=words,
               evidence=pair.timing)
    out["sentence"] = lead.format(f=f"{factor:.2f}×") + f" ({ci}, {words})."
    if pair.verdict == "equivalent":
        out["sentence"] = f"{same}: {fw} is at {factor:.2f}× ({ci}, {words})."
    return out


def criterion_ratio(key: str, row: Any, row2: Any) -> float:
    """The leader's advantage on a ratio-backed criterion from the figures alone."""
    if key == "latency":
        return float(row2["latency_p50_s"]) / float(row["latency_p50_s"])
    return float(row["items_per_s"]) / float(row2["items_per_s"])


def path_name(row: Any) -> str:
    """An infer cell's path in words (its tier when not idiomatic)."""
    tier = "" if row["tier"] == "idiomatic" else f", {row['tier']} tier"
    return f"{row['mode']} path{tier}"


def decision(cells: pd.DataFrame, ratios: pd.DataFrame,
             infer: pd.DataFrame | None = None) -> dict[str, Any]:
    """The decision for one comparison group (workload, size, device, batch, precision): the
    lead on every criterion, the ranking by each priority and plain sentences. ``infer``: the
    infer scenario's cells of the same workload, size, device and precision (any batch)."""
    cells = cells[cells["scenario"].fillna("train") == "train"]
    first = cells.iloc[0] if len(cells) else infer.iloc[0]
    real = real_cells(cells)
    tier, heads = headline_cells(cells)
    lm = bool(cells["test_perplexity"].notna().any())
    unit = or_empty(first["unit"]) or "items"
    memory_kind = ("GPU allocator peak" if first["device"] == "cuda"
                   and heads["device_peak_bytes"].notna().any() else "peak host memory")
    where = f"{first['workload']} ({first['device']})"
    leads, rankings = {}, {}
    for c in CRITERIA:
        ranked = rank(heads if c.key not in INFER_CRITERIA
                      else infer_heads(_empty_if_none(infer, cells), INFER_CRITERIA[c.key]),
                      c, lm)
        leads[c.key] = _lead(c, ranked, ratios, unit, lm, memory_kind, tier or "–")
        if c.key == "time_to_target" and not ranked and "ttt_seeds" in heads \
                and heads["ttt_seeds"].notna().any():
            leads[c.key]["verdict"] = "not reached: every framework's median seed missed it"
        rankings[c.key] = [{"framework": f, "figure": _figure(c.key, v, unit, lm)}
                           for f, v, _ in ranked]
    finished = set(heads["framework"])
    missing = [fw for fw in dict.fromkeys(real["framework"]) if fw not in finished]
    for key in rankings:
        rankings[key] += [{"framework": fw, "figure": "did not finish"} for fw in missing]
    sentences = []
    if cells.empty:
        sentences += [f"On {where}, {leads[k]['sentence']}" for k in INFER_CRITERIA
                      if leads[k]["sentence"]]
    elif heads.empty:
        sentences.append(f"On {where}, no cell finished, so there is nothing to compare.")
    elif len(heads) == 1:
        sentences.append(f"On {where}, only {heads['framework'].iloc[0]}'s {tier} cell "
                         f"finished ({leads['throughput']['figure']}): nothing to compare.")
    else:
        sentences.append(f"On {where}, {leads['throughput']['sentence']}")
        for key in ("latency", "infer_throughput", "startup", "first_step", "memory",
                    "accuracy", "time_to_target"):
            if leads[key]["sentence"]:
                sentences.append(leads[key]["sentence"])
    for _, r in heads.iterrows():
        if not is_missing(r.get("ttt_seeds")) and is_missing(r.get("ttt_median_s")):
            sentences.append(f"{r['framework']} did not reach the target ({r['ttt_target']}) in "
                             f"most of its seeds: {int(r['ttt_met'])} of {int(r['ttt_seeds'])} "
                             "met it within the budget.")
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


def _empty_if_none(infer: pd.DataFrame | None, like: pd.DataFrame) -> pd.DataFrame:
    return like.iloc[:0] if infer is None else infer


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

