"""Statistics over timing samples: medians with bootstrap confidence intervals, and ratios
between frameworks with a significance label. Pure numpy; imports no framework.

Samples come in groups, one per process (repeat). The bootstrap is hierarchical: resample the
processes with replacement, then the samples within each, so process-to-process variation (the
larger noise on a shared machine) widens the interval as it should.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
EQUIVALENCE_MARGIN = 0.03  # ratios inside 1 +- 3% count as no difference worth naming
NO_DIFFERENCE = "no significant difference"

Groups = Sequence[Sequence[float] | np.ndarray]


def bootstrap_medians(groups: Groups, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """n_boot medians of hierarchical resamples of the pooled samples."""
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not arrays:
        raise ValueError("no samples to bootstrap")
    rng = np.random.default_rng(seed)
    k = len(arrays)
    sizes = np.array([len(a) for a in arrays])
    width = sizes.max()
    padded = np.full((k, width), np.nan)
    for i, a in enumerate(arrays):
        padded[i, : len(a)] = a
    chosen = rng.integers(0, k, size=(n_boot, k))                       # processes
    n_chosen = sizes[chosen]                                              # (n_boot, k)
    within = (rng.random((n_boot, k, width)) * n_chosen[..., None]).astype(int)
    values = padded[chosen[..., None], within]                            # (n_boot, k, width)
    values[np.arange(width)[None, None, :] >= n_chosen[..., None]] = np.nan
    return np.nanmedian(values.reshape(n_boot, -1), axis=1)


def median_ci(groups: Groups, level: float = LEVEL, n_boot: int = N_BOOT,
              seed: int = 0) -> tuple[float, float, float]:
    """Median of all samples and the percentile bootstrap CI of that median."""
    lo, hi = _interval(bootstrap_medians(groups, n_boot, seed), level)
    return float(np.median(_pooled(groups))), lo, hi


def ratio_ci(a: Groups, b: Groups, level: float = LEVEL, n_boot: int = N_BOOT,
             seed: int = 0) -> tuple[float, float, float]:
    """median(a) / median(b) and its bootstrap CI (a and b resampled independently)."""
    boots = bootstrap_medians(a, n_boot, seed) / bootstrap_medians(b, n_boot, seed + 1)
    lo, hi = _interval(boots, level)
    return float(np.median(_pooled(a)) / np.median(_pooled(b))), lo, hi


def _pooled(groups: Groups) -> np.ndarray:
    return np.concatenate([np.asarray(g, dtype=float) for g in groups])


def _interval(boots: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return float(lo), float(hi)


def label(lo: float, hi: float, margin: float = EQUIVALENCE_MARGIN) -> str:
    """Verdict on a time ratio A/B from its CI: 'faster' (A takes less time), 'slower', or
    no significant difference when the CI contains 1 or lies inside 1 +- margin."""
    if lo <= 1.0 <= hi or (lo >= 1.0 - margin and hi <= 1.0 + margin):
        return NO_DIFFERENCE
    return "faster" if hi < 1.0 else "slower"


def break_even_step(first_compiled_s: float, step_compiled_s: float, first_eager_s: float,
                    step_eager_s: float) -> float | None:
    """The step count after which compiled mode's total time (first step included) beats eager;
    None if compiled never catches up. 1.0 means it wins from the first step."""
    if step_compiled_s >= step_eager_s:
        return None if first_compiled_s > first_eager_s else 1.0
    extra = (first_compiled_s - first_eager_s) / (step_eager_s - step_compiled_s)
    return max(1.0, 1.0 + float(np.ceil(extra)))
