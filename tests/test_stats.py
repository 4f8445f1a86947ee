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


def test_ratio_labels() -> None:
    rng = np.random.default_rng(5)
    base = [rng.normal(1.0, 0.05, 60) for _ in range(3)]
    same = [rng.normal(1.0, 0.05, 60) for _ in range(3)]
    slower = [rng.normal(1.2, 0.05, 60) for _ in range(3)]
    nearly = [rng.normal(1.01, 0.002, 600) for _ in range(3)]
    tight = [rng.normal(1.0, 0.002, 600) for _ in range(3)]
    assert stats.label(*stats.ratio_ci(same, base)[1:]) == stats.NO_DIFFERENCE
    r, lo, hi = stats.ratio_ci(slower, base)
    assert lo < r < hi and 1.1 < r < 1.3 and stats.label(lo, hi) == "slower"
    assert stats.label(*stats.ratio_ci(base, slower)[1:]) == "faster"
    r, lo, hi = stats.ratio_ci(nearly, tight)  # 1% apart, measured precisely: within margin
    assert lo > 1.0 and stats.label(lo, hi) == stats.NO_DIFFERENCE


@pytest.mark.parametrize("args, want", [
    ((10.0, 1.0, 0.1, 2.0), 1 + 10),      # (10 - 0.1) / (2 - 1) = 9.9 -> 10 more steps
    ((0.1, 1.0, 0.2, 2.0), 1.0),          # compiled wins from the first step
    ((10.0, 2.0, 0.1, 1.0), None),        # slower per step and slower to start: never
])
def test_break_even_step(args: tuple[float, ...], want: float | None) -> None:
    assert stats.break_even_step(*args) == want
