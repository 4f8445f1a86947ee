"""The inside of one benchmark cell process: import, build, train to budget, evaluate, then the
steady-state timing that ``benchmarks/test_train_step.py`` hands to pytest-benchmark.

The record is written to ``cell.json`` after every phase, so a crash or timeout keeps what was
measured before it.
"""

from __future__ import annotations

import json
import math
import os
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from harness import backends, data
from harness.init import init_weights
from harness.measure import clock, now_iso, peak_rss_bytes, summarize
from harness.spec import WORKLOADS, Cell, param_count

CELL_ENV = "FRAMEBENCH_CELL"
OUT_ENV = "FRAMEBENCH_OUT"

STEADY_BATCHES = 8        # distinct device-resident batches cycled in the timed phase
TARGET_SAMPLE_S = 0.025   # one sample = K steps + one sync, long enough that sync+clock cost ~0
MIN_ROUNDS = 30


class CellRun:
    def __init__(self, cell: Cell, out_dir: str | os.PathLike) -> None:
        self.cell = cell
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.record: dict[str, Any] = {"cell_id": cell.id, "status": "running",
                                       "started": now_iso()}
        self.trainer: Any = None
        self.steady: list[Any] = []

    @classmethod
    def from_env(cls) -> CellRun:
        return cls(Cell.from_json(os.environ[CELL_ENV]), os.environ[OUT_ENV])

    def save(self) -> None:
        tmp = self.out / "cell.json.tmp"
        tmp.write_text(json.dumps(self.record, indent=1, default=_jsonable))
        tmp.replace(self.out / "cell.json")

    def fail(self, status: str, reason: str) -> None:
        self.record.update(status=status, reason=reason, ended=now_iso())
        self.save()

    def prepare(self) -> None:
        """Everything before the timed phase; raises backends.Unavailable to skip."""
        c = self.cell
        workload = WORKLOADS[c.workload]
        t0 = clock()
        backend = backends.load(c.framework)
        self.record["import_s"] = clock() - t0
        self.record["framework_info"] = backend.info()
        self.save()

        dataset = data.load(c.dataset, c.data_dir, seed=c.seed)
        if dataset.num_classes != workload.num_outputs:
            raise ValueError(f"{c.dataset} has {dataset.num_classes} classes but {c.workload} "
                             f"outputs {workload.num_outputs} logits")
        weights = init_weights(workload, dataset.input_shape, c.seed)
        self.record.update(dataset_train_size=len(dataset.x_train),
                           dataset_test_size=len(dataset.x_test),
                           input_shape=list(dataset.input_shape),
                           param_count=param_count(workload.layers, dataset.input_shape))

        t0 = clock()
        self.trainer = trainer = backend.build(workload, weights, c.mode, c.device,
                                               dataset.input_shape)
        trainer.sync()
        self.record["build_s"] = clock() - t0
        self.save()

        self._train(dataset)
        logits = trainer.numpy(trainer.predict(trainer.put(dataset.x_test)))
        self.record["test_accuracy"] = float((logits.argmax(axis=1) == dataset.y_test).mean())
        self.steady = [trainer.put(x, y) for x, y in
                       _take(data.batches(dataset.x_train, dataset.y_train, c.batch_size,
                                          epoch=c.epochs, seed=c.seed), STEADY_BATCHES)]
        self.save()

    def _train(self, dataset: data.Dataset) -> None:
        """The training loop, written once for every framework: the fixed budget of epochs.

        The first step (which includes any tracing or compiling) is timed on its own. Losses are
        read back every step, so this phase is not the throughput measurement.
        """
        c, trainer = self.cell, self.trainer
        losses: list[float] = []
        t_start = clock()
        for epoch in range(c.epochs):
            for x, y in data.batches(dataset.x_train, dataset.y_train, c.batch_size, epoch,
                                     c.seed):
                batch = trainer.put(x, y)
                t0 = clock()
                loss = trainer.step(batch)
                if not losses:
                    trainer.sync()
                    self.record["first_step_s"] = clock() - t0
                    self.save()
                losses.append(float(trainer.numpy(loss)))
        trainer.sync()
        self.record.update(train_s=clock() - t_start, train_steps=len(losses), losses=losses,
                           final_loss=losses[-1] if losses else None)
        if losses and not math.isfinite(losses[-1]):
            raise FloatingPointError(f"training diverged: final loss {losses[-1]}")

    def timed_sample(self, k: int) -> None:
        """K training steps on device-resident batches, then one sync: one timing sample."""
        trainer, batches = self.trainer, self.steady
        for i in range(k):
            trainer.step(batches[i % len(batches)])
        trainer.sync()

    def calibrate(self) -> tuple[int, int, int]:
        """Choose steps per sample (K), rounds and warm-up rounds from a rough step time."""
        self.timed_sample(len(self.steady))  # warm: every steady batch seen once
        n, t0 = 0, clock()
        while clock() - t0 < 0.2 or n < 3:
            self.timed_sample(1)
            n += 1
        est = (clock() - t0) / n
        k = max(1, math.ceil(TARGET_SAMPLE_S / est))
        rounds = max(MIN_ROUNDS, int(self.cell.steady_seconds / (k * est)))
        warmup = max(3, rounds // 10)
        self.record.update(steps_per_sample=k, rounds=rounds, warmup_rounds=warmup,
                           calibration_step_s=est)
        self.save()
        return k, rounds, warmup

    def finish(self, samples: list[float]) -> None:
        """Record the steady-state samples (seconds per K steps) and the process's peak memory."""
        k = self.record["steps_per_sample"]
        step_s = [s / k for s in samples]
        stats = summarize(step_s)
        self.record.update(
            status="ok", step_samples_s=step_s,
            step_median_s=stats["median"], step_q1_s=stats["q1"], step_q3_s=stats["q3"],
            step_iqr_s=stats["iqr"], step_min_s=stats["min"],
            samples_per_s=self.cell.batch_size / stats["median"],
            peak_rss_bytes=peak_rss_bytes(), ended=now_iso())
        self.save()

    def crashed(self, exc: BaseException) -> None:
        if isinstance(exc, backends.Unavailable):
            self.fail("skipped", str(exc))
        else:
            self.fail("failed", "".join(traceback.format_exception(exc))[-4000:])


def _take(iterator: Any, n: int) -> list[Any]:
    return [item for _, item in zip(range(n), iterator)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
