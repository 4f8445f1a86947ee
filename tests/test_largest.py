"""The largest-batch search: doubling then bisection (checked against a known limit), failures
that end it, and a real search whose tries the kernel stops at the memory cap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import largest, limits
from tests.conftest import run_cli


def fake(limit: int, tried: list[int], fail_at: int | None = None,
         memory=None):  # noqa: ANN001, ANN201
    """A try: fits up to ``limit``; ``memory(batch)`` its peak, if given."""
    def attempt(batch: int) -> tuple[str, int | None]:
        tried.append(batch)
        if batch == fail_at:
            return "failed: boom", None
        peak = memory(batch) if memory else None
        return ("ok" if batch <= limit else "oom"), peak
    return attempt


def test_doubling_then_bisection_brackets_the_limit() -> None:
    tried: list[int] = []
    good, bad, why = largest.search(32, fake(1000, tried))
    assert tried[:6] == [32, 64, 128, 256, 512, 1024]  # doubling until it runs out
    assert good <= 1000 < bad and bad <= good * largest.RESOLUTION and why == "bisected"
    assert all(512 < b < 1024 for b in tried[6:])  # then bisection between the two


@pytest.mark.parametrize(("cap_mib", "base_mib", "per_example"), [
    (2048, 500, 2_000), (2048, 500, 40_000), (2048, 500, 2_000_000),
    (1024, 680, 1_000), (1024, 340, 2_500)])  # the last two: TensorFlow's and torch's mlp
def test_memory_peaks_steer_the_search_to_the_cap_in_fewer_tries(
        cap_mib: int, base_mib: int, per_example: int) -> None:
    """A process of base_mib plus per_example bytes per example (with noise that can hide the
    slope at small batches), capped: the line through the fitting tries' peaks finds the limit
    with far fewer tries than doubling and bisection, and brackets it as tightly."""
    cap, base = cap_mib * 2**20, base_mib * 2**20
    rng = np.random.default_rng(per_example)

    def memory(batch: int) -> int:
        return int(base + per_example * batch + rng.normal(0, 6 * 2**20))
    limit = (cap - base) // per_example
    steered: list[int] = []
    good, bad, why = largest.search(32, fake(limit, steered, memory=memory), cap=cap)
    assert why == "bisected" and good <= limit < bad <= good * largest.RESOLUTION
    plain: list[int] = []
    assert largest.search(32, fake(limit, plain))[:2] != (None, None)
    assert len(steered) <= min(8, len(plain) - 3), (steered, plain)


def test_a_start_that_does_not_fit_halves_first() -> None:
    tried: list[int] = []
    good, bad, _ = largest.search(4096, fake(700, tried))
    assert tried[:4] == [4096, 2048, 1024, 512] and good <= 700 < bad
    assert largest.search(4, fake(0, []))[:2] == (None, 1)  # nothing fits


def test_another_failure_ends_the_search_with_its_reason() -> None:
    good, bad, why = largest.search(32, fake(1000, [], fail_at=256))
    assert (good, bad, why) == (128, None, "failed: boom")


def test_a_try_is_out_of_memory_by_the_kernel_or_by_the_framework() -> None:
    assert largest.classify("ok", None, False) == "ok"
    assert largest.classify("failed", "crashed: killed by SIGKILL", True) == "oom"
    for reason in ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate",
                   "RESOURCE_EXHAUSTED: Out of memory while trying to allocate",
                   "ResourceExhaustedError: OOM when allocating tensor"):
        assert largest.classify("failed", reason, False) == "oom", reason
    assert largest.classify("failed", "ValueError: bad\nmore", False) == "failed: ValueError: bad"


@pytest.mark.slow
def test_a_real_search_under_a_memory_cap(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    try:
        limits.MemoryCap.check(2**30)
    except PermissionError as exc:
        pytest.skip(f"no memory cgroup can be made here: {exc}")
    proc = run_cli("--scenarios", "largest", "--workloads", "cnn", "--frameworks", "torch",
                   "--tiers", "idiomatic", "--memory-cap", "700M", "--run-id", "big",
                   "--results-dir", "r", "--reports-dir", "p", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "r" / "big"
    [row] = pd.read_parquet(run_dir / "largest.parquet").to_dict("records")
    assert row["framework"] == "torch" and row["memory_cap_bytes"] == 700 * 2**20
    assert 32 <= row["largest_batch"] < row["oom_batch"] <= row["largest_batch"] * 1.125 + 1
    assert row["stopped"] == "bisected" and row["tries"] >= 4
    assert row["oom_peak_bytes"] >= 0.9 * 700 * 2**20 and row["items_per_s"] > 0
    table = pd.read_parquet(run_dir / "results.parquet")
    tries = table[table["scenario"] == "largest"]
    assert len(tries) == row["tries"] and tries["out_of_memory"].sum() >= 1
    assert (tries[tries["status"] == "ok"]["memory_peak_bytes"] <= 700 * 2**20).all()
    bench = json.loads(next((run_dir / "cells").glob("*-b256-largest/r0/benchmark.json"))
                       .read_text())
    assert len(bench["benchmarks"][0]["stats"]["data"]) == largest.TRY_STEPS
    html = (tmp_path / "p" / "big" / "index.html").read_text()
    assert 'id="largest-table"' in html and "ran out of memory" in html
