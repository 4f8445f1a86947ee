"""The infer scenario of one cell process: the model in evaluation behaviour (batch norm on
running statistics, no gradient, the canonical weights) served through one of the framework's
paths (``harness.spec.INFER_PATHS``: eager, compiled, exported and loaded back; each backend's
``infer.py`` says how), timed per request.

A request is one call on an input already on the device (a server that has decoded its
request), its logits copied back to the host: the copy waits for the work, so every request is
synchronised. Two measurements, each a pytest-benchmark test (``benchmarks/test_infer.py``):
latency at batch 1 (percentiles over the requests) and throughput at the cell's batch size. The
first request of each batch size is timed apart (it compiles or exports), and its logits are
checked against the numpy reference (``harness.reference``): a path whose outputs differ fails.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from harness import reference
from harness.backends import BACKENDS
from harness.cell import MIN_ROUNDS, WARMUP_MAX_S, WARMUP_TOLERANCE, CellRun
from harness.measure import clock, now_iso, nvml_process_bytes, peak_rss_bytes, reset_peak_rss

LATENCY_BATCH = 1
MIN_REQUESTS = 200       # latency: p99 then rests on the 2 slowest requests at least
LATENCY_MAX_S = 10.0     # ... unless a request is slow: at most this long per measurement
MIN_THROUGHPUT_REQUESTS = MIN_ROUNDS
WARMUP_WINDOW = 25       # warm-up ends when the median of the last 25 requests moves < 2%
REFERENCE_ROWS = 8       # examples checked against the numpy reference per batch size
# Largest |logit - reference| / max(1, largest |reference logit|) accepted per precision: fp32
# paths reorder sums (XLA fusion, oneDNN blocking), tf32 and bf16 round their inputs.
TOLERANCE = {"fp32": 1e-3, "tf32": 2e-2, "bf16": 8e-2}


def load_paths(framework: str) -> Any:
    """The backend's inference module (``harness/backends/<fw>/infer.py``)."""
    return importlib.import_module(f"{BACKENDS[framework].module}.infer")


def rows(x: np.ndarray, n: int) -> np.ndarray:
    """The first n examples of x, cycled if x holds fewer."""
    return x[np.arange(n) % len(x)]


class InferRun(CellRun):
    def prepare(self) -> None:
        """Import, build the model from the canonical weights, then for each batch size the
        first request (compiling or exporting that shape), checked against the reference.
        Raises backends.Unavailable to skip."""
        c, r = self.cell, self.record
        backend, dataset, spec = self.open()
        build_mode = BACKENDS[c.framework].tier_modes(c.tier)[0]  # the model; no step runs
        with self.phase("build"):
            t0 = clock()
            self.trainer = backend.build(spec, build_mode, c.device, c.precision, c.tier)
            self.predictor = load_paths(c.framework).predictor(self.trainer, c.tier, c.mode)
            r.build_s = clock() - t0
        r.implementation = dict(self.trainer.implementation)
        r.manifest = {**self.predictor.manifest, "tier": c.tier, "mode": c.mode,
                      "scenario": "infer", "settings": r.settings, "threads": r.threads,
                      "versions": r.framework_info,
                      "request": "input on the device, logits copied to the host"}
        r.latency_batch = LATENCY_BATCH
        self.requests: dict[int, Callable[[], np.ndarray]] = {}  # batch size: one request
        with self.phase("first_step"):
            for batch in dict.fromkeys((LATENCY_BATCH, c.batch_size)):
                x = rows(dataset.x_test, batch)
                placed = self.trainer.put(x)
                t0 = clock()
                fn = self.predictor.for_batch(placed)
                logits = self.trainer.numpy(fn(placed))
                r.first_request_s[str(batch)] = clock() - t0
                self._check(spec, x, logits, batch)
                self.requests[batch] = self._request(fn, placed)
        r.first_step_s = r.first_request_s[str(c.batch_size)]
        r.compile_cache = "cold" if c.repeat == 0 else "warm"
        self.save()

    def _request(self, fn: Callable[[Any], Any], placed: Any) -> Callable[[], np.ndarray]:
        numpy = self.trainer.numpy
        return lambda: numpy(fn(placed))

    def _check(self, spec: Any, x: np.ndarray, logits: np.ndarray, batch: int) -> None:
        """The path's logits against the float64 numpy reference on the first examples."""
        n = min(batch, REFERENCE_ROWS)
        want, _ = reference.forward(spec.model, spec.params, spec.state, x[:n])
        tolerance = TOLERANCE[self.cell.precision]
        error = reference_error(np.asarray(logits)[:n], want)
        self.record.reference_check[str(batch)] = {"max_error": error, "tolerance": tolerance,
                                                   "rows": n}
        self.save()
        if not error <= tolerance:
            raise AssertionError(
                f"the {self.cell.mode} path's logits differ from the numpy reference at batch "
                f"{batch}: relative error {error:.2e} > {tolerance:.0e}")

    def calibrate_requests(self, batch: int) -> tuple[Callable[[], np.ndarray], int]:
        """Warm up requests of one batch size until their median is stable; returns the
        request and how many to time (enough for the percentiles, within the time limits)."""
        request = self.requests[batch]
        if batch == LATENCY_BATCH:
            self._probe_machine("before")
            reset_peak_rss()  # the "steady" memory phase: warm-ups and timed requests
            self.trainer.reset_device_peak()
        t_start, times, stable = clock(), [], False
        while clock() - t_start < WARMUP_MAX_S:
            t0 = clock()
            request()
            times.append(clock() - t0)
            if len(times) >= 2 * WARMUP_WINDOW:
                before = np.median(times[-2 * WARMUP_WINDOW:-WARMUP_WINDOW])
                now = np.median(times[-WARMUP_WINDOW:])
                if abs(now - before) <= WARMUP_TOLERANCE * before:
                    stable = True
                    break
        per_request = float(np.median(times[-WARMUP_WINDOW:]))
        if batch == LATENCY_BATCH:
            wanted = max(MIN_REQUESTS, self.cell.steady_seconds / per_request)
            count = int(min(wanted, max(MIN_THROUGHPUT_REQUESTS, LATENCY_MAX_S / per_request)))
            self.record.warmup_stable = stable
        else:
            count = max(MIN_THROUGHPUT_REQUESTS, int(self.cell.steady_seconds / per_request))
            self.record.warmup_stable = bool(self.record.warmup_stable and stable)
        elapsed = clock() - t_start
        self.record.warmup_s = (self.record.warmup_s or 0.0) + elapsed
        self.spent("warmup", elapsed)
        self.save()
        return request, count

    def keep(self, batch: int, samples: list[float]) -> None:
        """The timed requests of one batch size (pytest-benchmark's samples)."""
        if batch == LATENCY_BATCH:
            self.record.latency_samples_s = list(samples)
        if batch == self.cell.batch_size:
            self.record.step_samples_s = list(samples)
            self.record.steps_per_sample, self.record.rounds = 1, len(samples)
        self.save()

    def finish(self, samples: list[float] | None = None) -> None:
        """Memory and the end of the record, once both measurements are in."""
        r = self.record
        if r.status != "running":
            return  # a measurement failed: its reason stands
        self._probe_machine("after")
        r.phase_peak_rss_bytes["steady"] = peak_rss_bytes()
        r.phase_device_peak_bytes["steady"] = self.trainer.device_peak_bytes()
        r.peak_rss_bytes = max(v for v in r.phase_peak_rss_bytes.values() if v)
        r.nvml_process_bytes = nvml_process_bytes(os.getpid())
        # each request copies its logits to the host, which waits for the work
        r.sync_check = {"ok": True, "how": "every request copies its logits to the host"}
        r.compile_stats = self.predictor.compile_stats()
        r.status, r.ended = "ok", now_iso()
        self.save()



def reference_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest |got - want| / max(1, largest |want|): logits against the reference (inf if the
    shapes differ)."""
    got = np.asarray(got, np.float64)
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))
