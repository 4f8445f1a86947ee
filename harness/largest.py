"""The largest batch that trains: a search, each try a fresh cell process at one batch size.

From the cell's batch size (8x it under a memory cap), the batch grows while training fits;
once a try runs out of memory, bisection narrows the gap between the largest batch that fit and
the smallest that did not, until they are within RESOLUTION. (If the first try fails, the
batch halves until one fits.) Under a known cap, each try's memory peak steers the next: memory
is close to linear in the batch, so the line through two tries that fit predicts where the cap
is reached, and the search takes about half the tries of plain doubling and bisection.

Out of memory means: on a CPU, the kernel stopped the process at its ``--memory-cap``
(``harness.limits``, a memory cgroup per process: the machine never swaps); on a GPU, the
framework's allocator raised its out-of-memory error. A try that fails for another reason ends
the search with that reason.

A try (``benchmarks/test_largest_batch.py``, ``FitRun``) imports, builds, runs the first step
at its batch (examples cycled where the batch exceeds the training split) and times a few more
steps with pytest-benchmark: the tries of a search are also a batch-size sweep of training
throughput and peak memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np

from harness.cell import CellRun, training_peak
from harness.infer import rows
from harness.measure import clock, now_iso, nvml_process_bytes, peak_rss_bytes, reset_peak_rss

MAX_BATCH = 2**20
RESOLUTION = 1.125       # bisection stops when the failing batch is within 12.5% of the fitting
AIM = 0.9                # growing, the next try aims at this fraction of the batch that
                         # the line predicts fills the cap
GROWTH_LIMIT = 16        # ... and grows the batch at most this many times
FAR_GROWTH = 8           # without a line yet, a try under 3/4 of the cap grows this much
TRY_STEPS = 3            # timed steps per try, after the first
DEFAULT_CPU_CAP = 2**30  # the search's host-memory cap on a CPU without --memory-cap
OOM = re.compile(r"out of memory|OutOfMemory|RESOURCE_EXHAUSTED|ResourceExhausted|"
                 r"Cannot allocate memory|std::bad_alloc|MemoryError", re.I)


def search(start: int, attempt: Callable[[int], tuple[str, int | None]],
           cap: int | None = None) -> tuple[int | None, int | None, str]:
    """(largest batch that fit, smallest that ran out of memory, why it stopped). ``attempt``
    runs one try and says "ok", "oom" or a failure reason, with the try's memory peak (or
    None). With a ``cap`` and the peaks of two tries that fit, the next batch comes from the
    straight line through them (memory grows linearly with the batch): growing, it aims at
    AIM of the batch where the line meets the cap (at least ×RESOLUTION, at most
    ×GROWTH_LIMIT); bisecting, at that batch if it lies in the gap. A line that does not rise
    (the process's fixed memory dominates) grows the batch ×GROWTH_LIMIT; with one try, under
    3/4 of the cap, it grows ×FAR_GROWTH. Otherwise the batch doubles, and bisection halves
    the gap. Under a cap the first try is ×FAR_GROWTH the start (the start itself is what the
    training scenario measures)."""
    good: int | None = None
    bad: int | None = None
    fits: list[tuple[int, int]] = []  # (batch, peak) of the tries that fit
    batch = min(MAX_BATCH, start * FAR_GROWTH) if cap else start  # the start: a training cell's
    while True:  # growing (or halving down, if the start does not fit)
        result, peak = attempt(batch)
        if result == "ok":
            good = batch
            if peak:
                fits.append((batch, peak))
            if bad is not None:
                break
            if batch >= MAX_BATCH:
                return good, None, f"fits at the search's limit of {MAX_BATCH}"
            edge = _predict(fits, cap) if cap else None
            aim = AIM * edge if edge else None
            if aim is not None:
                step = min(max(aim, batch * RESOLUTION), batch * GROWTH_LIMIT)
            elif cap and len(fits) >= 2:  # memory not rising yet: fixed costs dominate
                step = batch * GROWTH_LIMIT
            else:  # far below the cap, a long stride: the next two tries give the line
                step = batch * (FAR_GROWTH if cap and peak and peak < cap * 3 / 4 else 2)
            batch = min(MAX_BATCH, max(batch + 1, int(step)))
        elif result == "oom":
            bad = batch
            if good is not None:
                break
            if batch == 1:
                return None, 1, "batch 1 does not fit"
            batch //= 2
        else:
            return good, bad, result
    while bad > good * RESOLUTION and bad - good > 1:  # bisection
        edge = _predict(fits, cap) if cap else None
        margin = RESOLUTION ** 0.5  # a try at least this far inside the gap
        batch = (good + bad) // 2 if edge is None or not good < edge < bad else int(
            min(max(edge, good * margin), bad / margin))
        batch = min(max(batch, good + 1), bad - 1)
        result, peak = attempt(batch)
        if result == "ok":
            good = batch
            if peak:
                fits.append((batch, peak))
        elif result == "oom":
            bad = batch
        else:
            return good, bad, result
    return good, bad, "bisected"


def _predict(fits: list[tuple[int, int]], memory: float) -> float | None:
    """The batch at which the line through two fitting tries reaches ``memory``: the largest,
    and the largest at most half its batch (tries closer together give a slope made of noise;
    the smallest if none is that far); None if there are not two, or the line does not rise."""
    if len(fits) < 2:
        return None
    *rest, (b1, p1) = sorted(fits)
    b0, p0 = next((f for f in reversed(rest) if f[0] <= b1 / 2), rest[0])
    slope = (p1 - p0) / (b1 - b0)
    return b1 + (memory - p1) / slope if slope > 0 else None


def classify(status: str, reason: str | None, out_of_memory: bool) -> str:
    """A try's result for the search: ok, oom, or its failure reason."""
    if status == "ok":
        return "ok"
    if out_of_memory or OOM.search(reason or ""):
        return "oom"
    return f"{status}: {(reason or '').splitlines()[0] if reason else 'no reason'}"


class FitRun(CellRun):
    """One try: import, build, the first training step at the cell's batch, then the timed
    steps (the pytest-benchmark test) and the memory peaks."""

    def prepare(self) -> None:
        c, r = self.cell, self.record
        dataset, _ = self.open_trainer()
        order = np.random.default_rng(c.seed).permutation(len(dataset.x_train))
        x, y = dataset.x_train[order], dataset.y_train[order]
        with self.phase("first_step"):
            batch = self.trainer.put(rows(x, c.batch_size), rows(y, c.batch_size))
            t0 = clock()
            loss = self.trainer.step(batch)
            self.trainer.sync()
            r.first_step_s = clock() - t0
        r.losses = [float(self.trainer.numpy(loss))]
        self.steady = [batch]
        r.steps_per_sample = 1
        reset_peak_rss()
        self.trainer.reset_device_peak()
        self.save()

    def finish(self, samples: list[float]) -> None:
        r = self.record
        r.step_samples_s = list(samples)
        r.phase_peak_rss_bytes["steady"] = peak_rss_bytes()
        r.phase_device_peak_bytes["steady"] = self.trainer.device_peak_bytes()
        r.peak_rss_bytes = training_peak(r.phase_peak_rss_bytes)
        r.nvml_process_bytes = nvml_process_bytes(os.getpid())
        r.status, r.ended = "ok", now_iso()
        self.save()

