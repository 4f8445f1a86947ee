from __future__ import annotations

import numpy as np
import pytest

from harness import stats


def test_median_ci_brackets_the_truth_and_narrows_with_data() -> None:
    rng = np.random.default_rng(1)
    few = [rng.normal(10, 1, 30) for _ in range(3)]
    many = [rng.normal(10, 1, 300) for _ in range(3)]
    m, lo, hi = stats.median_ci(few)
    assert lo <= 10 <= hi and lo < m < hi
    _, lo2, hi2 = stats.median_ci(many)
    assert hi2 - lo2 < (hi - lo) / 2


def test_ci_coverage_is_close_to_nominal() -> None:
    """On many synthetic timing data sets (skewed, like real step times) the 95% interval
    contains the true median about 95% of the time."""
    rng = np.random.default_rng(7)
    true_median = np.exp(0.0)
    hits = 0
    trials = 200
    for t in range(trials):
        groups = [rng.lognormal(0.0, 0.3, 40) for _ in range(3)]
        _, lo, hi = stats.median_ci(groups, n_boot=500, seed=t)
        hits += lo <= true_median <= hi
    assert 0.88 <= hits / trials <= 0.995


def test_process_to_process_noise_widens_the_interval() -> None:
    rng = np.random.default_rng(3)
    steady = [rng.normal(1.0, 0.01, 50) for _ in range(3)]
    shifted = [rng.normal(mu, 0.01, 50) for mu in (0.95, 1.0, 1.05)]
    _, lo_a, hi_a = stats.median_ci(steady)
    _, lo_b, hi_b = stats.median_ci(shifted)
    assert hi_b - lo_b > 3 * (hi_a - lo_a)


def test_three_verdicts() -> None:
    rng = np.random.default_rng(5)
    base = [rng.normal(1.0, 0.05, 60) for _ in range(3)]
    slower = [rng.normal(1.2, 0.05, 60) for _ in range(3)]
    nearly = [rng.normal(1.01, 0.002, 600) for _ in range(3)]
    tight = [rng.normal(1.0, 0.002, 600) for _ in range(3)]
    r, lo, hi = stats.ratio_ci(slower, base)
    assert lo < r < hi and 1.1 < r < 1.3 and stats.verdict(lo, hi) == "slower"
    assert stats.verdict(*stats.ratio_ci(base, slower)[1:]) == "faster"
    r, lo, hi = stats.ratio_ci(nearly, tight)  # 1% apart, measured precisely: equivalent
    assert lo > 1.0 and stats.verdict(lo, hi) == "equivalent"
    few = [rng.normal(1.0, 0.3, 5) for _ in range(2)]  # too little data to say anything
    assert stats.verdict(*stats.ratio_ci(few, base)[1:]) == "inconclusive"
    # excluding 1 is not enough to be faster: the CI must clear the band
    assert stats.verdict(0.95, 0.99) == "inconclusive"
    assert stats.verdict(0.90, 0.969) == "faster" and stats.verdict(0.971, 1.029) == "equivalent"


def test_settle_repeats_grows_as_the_estimate_nears_the_band_edge() -> None:
    assert stats.settle_repeats(1.10, 1.00, 1.21, 2) < stats.settle_repeats(1.06, 0.99, 1.13, 2)
    assert stats.settle_repeats(1.03, 0.9, 1.15, 2) is None       # on the edge: never settles
    assert stats.settle_repeats(1.0, 0.5, 2.0, 2) is None         # > 100 repeats
    # half-width ln(1.21)/2 = 0.095 must shrink below the gap ln(1.10/1.03) = 0.066:
    # 2 x (0.095 / 0.066)^2 = 4.2 repeats
    assert stats.settle_repeats(1.10, 1.00, 1.21, 2) == 5


def test_bonferroni_level_and_enough_resamples() -> None:
    assert stats.corrected_level(1) == pytest.approx(0.95)
    assert stats.corrected_level(50) == pytest.approx(0.999)
    assert stats.boot_count(stats.corrected_level(50)) >= 20 / 0.0005


def test_pairing_cancels_a_shared_slow_period() -> None:
    """Two cells timed in turns through the same machine slowdowns: the paired ratio's CI is
    far narrower than the one that resamples each cell on its own, and still covers the truth."""
    rng = np.random.default_rng(11)
    machine = np.repeat(rng.lognormal(0.0, 0.25, 12), 5)  # slow periods lasting 5 rotations
    a = [machine * rng.lognormal(np.log(1.10), 0.02, 60) for _ in range(2)]
    b = [machine * rng.lognormal(0.0, 0.02, 60) for _ in range(2)]
    r, lo, hi = stats.paired_ratio_ci([x / y for x, y in zip(a, b)])
    _, ulo, uhi = stats.ratio_ci(a, b)
    assert lo < 1.10 < hi and 1.07 < r < 1.13
    assert (hi - lo) < (uhi - ulo) / 4
    assert stats.verdict(lo, hi) == "slower" and stats.verdict(ulo, uhi) != "slower"


def test_paired_ci_coverage_with_correlated_rotations() -> None:
    """Blocks of rotations, not single rotations, are resampled: with slowly drifting noise
    in the ratios themselves the interval still covers the true ratio most of the time."""
    rng = np.random.default_rng(3)
    hits, trials = 0, 100
    for t in range(trials):
        drift = np.repeat(rng.normal(0, 0.03, 10), 6)    # correlated over 6 rotations
        groups = [np.exp(drift + rng.normal(0, 0.01, 60)) for _ in range(2)]
        _, lo, hi = stats.paired_ratio_ci(groups, n_boot=400, seed=t)
        hits += lo <= 1.0 <= hi
    assert hits / trials >= 0.8


@pytest.mark.parametrize("args, want", [
    ((10.0, 1.0, 0.1, 2.0), 1 + 10),      # (10 - 0.1) / (2 - 1) = 9.9 -> 10 more steps
    ((0.1, 1.0, 0.2, 2.0), 1.0),          # compiled wins from the first step
    ((10.0, 2.0, 0.1, 1.0), None),        # slower per step and slower to start: never
])
def test_break_even_step(args: tuple[float, ...], want: float | None) -> None:
    assert stats.break_even_step(*args) == want


def test_block_medians_bound_a_long_process_and_keep_short_ones() -> None:
    from harness.stats import block_medians

    long, short = np.arange(10_000.0), np.arange(30.0)
    blocks = block_medians([long, short], max_blocks=100)
    assert len(blocks[0]) == 100 and blocks[0][0] == np.median(long[:100])
    assert np.array_equal(blocks[1], short)  # up to max_blocks samples: as they are
