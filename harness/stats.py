"""Statistics over timing samples: medians with bootstrap confidence intervals, ratios between
cells (paired where they were timed in turns), and three-outcome verdicts. Pure numpy; imports
no framework.

Samples come in groups, one per process (repeat). The bootstrap is hierarchical: resample the
processes with replacement, then the samples within each, so process-to-process variation (the
larger noise on a shared machine) widens the interval as it should. Paired ratios (one per
rotation of cells timed in turns) are resampled in blocks of consecutive rotations, because a
slow period of the machine lasts seconds and makes neighbouring rotations alike.

Verdicts on a time ratio A/B: *faster* / *slower* when the CI lies wholly below / above the
equivalence band 1 +- 3%, *equivalent* when it lies inside the band, *inconclusive* otherwise.
A report makes many comparisons at once: the CIs behind its verdicts are Bonferroni-corrected,
each at level 1 - 0.05 / m for m comparisons (``corrected_level``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOT = 2000
LEVEL = 0.95
ALPHA = 1 - LEVEL
EQUIVALENCE_MARGIN = 0.03  # ratios inside 1 +- 3% count as no difference worth naming
VERDICTS = ("faster", "slower", "equivalent", "inconclusive")
TAIL_RESAMPLES = 20        # bootstrap resamples beyond each end of a CI, at least
MAX_SETTLE_REPEATS = 100   # beyond this, "would need more than 100 repeats"

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


def block_medians(groups: Groups, max_blocks: int = 100) -> list[np.ndarray]:
    """Each process's samples (in time order) as the medians of at most max_blocks runs of
    consecutive samples: the unit a bootstrap resamples when a process holds thousands of
    correlated samples (an infer cell's requests). It keeps the bootstrap's cost bounded and
    respects the correlation between neighbouring samples, as blocks do."""
    out = []
    for g in groups:
        a = np.asarray(g, dtype=float)
        if len(a) > max_blocks:
            a = np.array([np.median(b) for b in np.array_split(a, max_blocks)])
        out.append(a)
    return out


def median_ci(groups: Groups, level: float = LEVEL, n_boot: int = N_BOOT,
              seed: int = 0) -> tuple[float, float, float]:
    """Median of all samples and the percentile bootstrap CI of that median."""
    lo, hi = _interval(bootstrap_medians(groups, n_boot, seed), level)
    return float(np.median(_pooled(groups))), lo, hi


def ratio_ci(a: Groups, b: Groups, level: float = LEVEL, n_boot: int | None = None,
             seed: int = 0) -> tuple[float, float, float]:
    """median(a) / median(b) and its bootstrap CI, a and b resampled independently: for cells
    that were not timed in turns (the protocol before paired timing, and runs compared with
    each other)."""
    n_boot = n_boot or boot_count(level)
    boots = bootstrap_medians(a, n_boot, seed) / bootstrap_medians(b, n_boot, seed + 1)
    lo, hi = _interval(boots, level)
    return float(np.median(_pooled(a)) / np.median(_pooled(b))), lo, hi


def paired_ratio_ci(ratios: Groups, level: float = LEVEL, n_boot: int | None = None,
                    seed: int = 0) -> tuple[float, float, float]:
    """The median of per-rotation time ratios A/B (one group per process, rotations in time
    order) and its CI: processes resampled with replacement, then blocks of consecutive
    rotations within each (circular block bootstrap, blocks of about sqrt(n) rotations)."""
    arrays = [np.asarray(g, dtype=float) for g in ratios if len(g)]
    if not arrays:
        raise ValueError("no paired samples")
    n_boot = n_boot or boot_count(level)
    rng = np.random.default_rng(seed)
    width = max(len(a) for a in arrays)
    resampled = np.full((len(arrays), n_boot, width), np.nan)
    for i, a in enumerate(arrays):
        n = len(a)
        block = max(1, round(np.sqrt(n)))
        starts = rng.integers(0, n, size=(n_boot, -(-n // block)))
        idx = (starts[..., None] + np.arange(block)).reshape(n_boot, -1)[:, :n] % n
        resampled[i, :, :n] = a[idx]
    chosen = rng.integers(0, len(arrays), size=(n_boot, len(arrays)))
    values = resampled[chosen, np.arange(n_boot)[:, None]]          # (n_boot, k, width)
    boots = np.nanmedian(values.reshape(n_boot, -1), axis=1)
    lo, hi = _interval(boots, level)
    return float(np.median(np.concatenate(arrays))), lo, hi


def corrected_level(comparisons: int, alpha: float = ALPHA) -> float:
    """Bonferroni: each of m CIs at 1 - alpha / m keeps the chance of any false verdict among
    them under alpha."""
    return 1.0 - alpha / max(1, comparisons)


def boot_count(level: float) -> int:
    """Bootstrap resamples enough for at least TAIL_RESAMPLES beyond each end of the CI."""
    return max(N_BOOT, int(np.ceil(TAIL_RESAMPLES / ((1.0 - level) / 2))))


def _pooled(groups: Groups) -> np.ndarray:
    return np.concatenate([np.asarray(g, dtype=float) for g in groups])


def _interval(boots: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return float(lo), float(hi)


def verdict(lo: float, hi: float, margin: float = EQUIVALENCE_MARGIN) -> str:
    """Verdict on a time ratio A/B from its CI: 'faster' (A takes less time: the CI lies wholly
    below 1 - margin), 'slower' (wholly above 1 + margin), 'equivalent' (wholly inside
    1 +- margin), else 'inconclusive'."""
    if hi < 1.0 - margin:
        return "faster"
    if lo > 1.0 + margin:
        return "slower"
    if lo >= 1.0 - margin and hi <= 1.0 + margin:
        return "equivalent"
    return "inconclusive"


def settle_repeats(ratio: float, lo: float, hi: float, repeats: int,
                   margin: float = EQUIVALENCE_MARGIN) -> int | None:
    """For an inconclusive verdict: about how many repeats (fresh processes, the unit the CI
    resamples) would likely settle it, assuming the estimate stays where it is and the CI
    narrows as 1/sqrt(repeats); None if the estimate sits on the band's edge or it would take
    more than MAX_SETTLE_REPEATS."""
    half = (np.log(hi) - np.log(lo)) / 2
    edge = np.log(1.0 + margin) if ratio >= 1.0 else -np.log(1.0 - margin)
    gap = abs(abs(np.log(ratio)) - edge)
    if gap <= 1e-3:
        return None
    need = int(np.ceil(max(1, repeats) * (half / gap) ** 2))
    return need if need <= MAX_SETTLE_REPEATS else None


def break_even_step(first_compiled_s: float, step_compiled_s: float, first_eager_s: float,
                    step_eager_s: float) -> float | None:
    """The step count after which compiled mode's total time (first step included) beats eager;
    None if compiled never catches up, or a time is missing (a first step that failed). 1.0
    means it wins from the first step."""
    times = (first_compiled_s, step_compiled_s, first_eager_s, step_eager_s)
    if any(t is None or not isinstance(t, (int, float, np.number)) or np.isnan(t)
           for t in times):
        return None
    if step_compiled_s >= step_eager_s:
        return None if first_compiled_s > first_eager_s else 1.0
    extra = (first_compiled_s - first_eager_s) / (step_eager_s - step_compiled_s)
    return max(1.0, 1.0 + float(np.ceil(extra)))
