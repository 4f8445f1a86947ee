"""Reading the ratio tables: a pair of cells as x / y with its CI, verdicts in words, the
tuned-over-idiomatic speed-up, and the level the CIs were corrected to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness import stats
from harness.report.fmt import flag, fmt_level, is_missing, or_empty


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
    paired: bool = True  # False: the two were timed apart (their verdict is not a decision)


def pair_between(ratios: pd.DataFrame, x: str, y: str, metric: str = "step") -> Pair | None:
    """The ratios row of cells x and y on a metric (step; infer: latency or request), oriented
    as x / y."""
    flip = {"faster": "slower", "slower": "faster"}
    ratios = ratios[ratios["metric"].fillna("step") == metric]
    for a, b, inverted in ((x, y, False), (y, x, True)):
        rows = ratios[(ratios["a"] == a) & (ratios["b"] == b)]
        if rows.empty:
            continue
        r = rows.iloc[0]
        settle = settle_of(r)
        timing = timing_text(r)
        paired = flag(r.get("paired"))
        if inverted:
            return Pair(1 / r["ratio"], 1 / r["ci_high"], 1 / r["ci_low"], float(r["level"]),
                        flip.get(r["verdict"], r["verdict"]), settle, timing, paired)
        return Pair(r["ratio"], r["ci_low"], r["ci_high"], float(r["level"]), r["verdict"],
                    settle, timing, paired)
    return None


def settle_of(r: Any) -> int | None:
    """A ratio row's settle_repeats as an int (None where missing)."""
    return None if is_missing(r["settle_repeats"]) else int(r["settle_repeats"])


def timing_text(r: Any) -> str:
    """How a ratio row's two cells were timed, in words."""
    timing = or_empty(r.get("timing"))
    if timing == "turns" or flag(r.get("paired")):
        n = r.get("n_pairs")
        return "timed in turns" + ("" if is_missing(n) else f", {int(n)} pairs")
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


def speedup_text(r: Any, with_variant: bool = True) -> str:
    """idiomatic / tuned step time with its CI and what it means (and the tuned variant)."""
    level = fmt_level(float(r["level"]))
    verdict = stats.verdict(1 / r["ci_high"], 1 / r["ci_low"])  # tuned time / idiomatic
    settle = settle_of(r)
    margin = f"{stats.EQUIVALENCE_MARGIN:.0%}"
    words = {"faster": f"tuning pays (≥{margin})",
             "slower": f"the tuned cell is slower (≥{margin})",
             "equivalent": f"equivalent within ±{margin}"}.get(verdict) or verdict_words(
        verdict, "tuned", "idiomatic", r["ci_low"], r["ci_high"], settle)
    variant = f"{r['variant']}; " if with_variant and not is_missing(r["variant"]) else ""
    return (f"{r['speedup']:.2f}× ({variant}{level} CI {r['ci_low']:.2f}–{r['ci_high']:.2f}, "
            f"{words})")


def correction(ratios: pd.DataFrame) -> dict[str, Any]:
    """The level of the CIs behind verdicts and the m it corrects for."""
    levels = ratios["level"].dropna()
    if levels.empty or (levels == stats.LEVEL).all():
        return {"corrected": False, "level": fmt_level(stats.LEVEL), "m": len(ratios)}
    level = float(levels.min())
    return {"corrected": True, "level": fmt_level(level),
            "m": int(round(stats.ALPHA / (1 - level)))}

