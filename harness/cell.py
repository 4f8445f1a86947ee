"""The inside of one benchmark cell process: threads, import, build, first step, training budget,
evaluation, warm-up, then the steady-state timing that ``benchmarks/test_train_step.py`` hands to
pytest-benchmark, and a check that the framework's sync really waits.

The record (``harness.record.CellRecord``) is written to ``cell.json`` after every phase, so a
crash or timeout keeps what was measured before it. Host peak memory is taken per phase (VmHWM,
reset between phases).
"""

from __future__ import annotations

import itertools
import math
import os
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harness import backends, data, reference
from harness.flops import inference_flops, train_step_flops
from harness.measure import (
    clock,
    machine_probe,
    now_iso,
    nvml_process_bytes,
    peak_rss_bytes,
    release_free_heap,
    reset_peak_rss,
    set_threads,
)
from harness.model import graph
from harness.record import CellRecord
from harness.spec import Cell
from harness.turns import REWARM_S

CELL_ENV = "FRAMEBENCH_CELL"
OUT_ENV = "FRAMEBENCH_OUT"

STEADY_BATCHES = 8        # distinct device-resident batches cycled in the timed phase
OVERHEAD_FRACTION = 0.01  # clock + sync cost must stay under 1% of a sample
# A sync also ends the overlap of Python dispatch with asynchronous compute (JAX): the next
# sample restarts an empty pipeline, a cost of about one dispatch (tens of µs) that the idle
# sync time does not show. Samples of at least 20 ms keep it well under 1%; with 1 ms samples
# JAX's mlp step read 6-50% slower than a hand-written loop syncing every ~25 ms.
MIN_SAMPLE_S = 0.02
MIN_ROUNDS = 20
WARMUP_WINDOW = 5         # warm-up ends when the median of the last 5 samples moves < 2%
WARMUP_TOLERANCE = 0.02
WARMUP_MAX_S = 30.0
SYNC_CHECK_S = 0.1        # work per sync-check measurement
# A sync that takes less than half the time of a host copy of the same work did not wait.
# (0.75 flagged a synchronous torch CPU cell once in ~60, when the copy was slowed by noise.)
SYNC_CHECK_RATIO = 0.5
PROBE_S = 0.1             # machine probe per CPU, before the warm-up and after the samples
PROBE_SETTLE_S = 0.02
EVALS_PER_BUDGET = 8      # held-out evaluations per training budget, evenly spaced
EVAL_BATCH_FACTOR = 2     # evaluation batches: 2x the training batch (``eval_batch``)


def load_dataset(cell: Cell) -> data.Dataset:
    """The cell's data, shaped for its workload and size; a dataset of the wrong kind (text for
    an image model) is refused with the datasets that fit."""
    w = cell.workload_spec
    kind = data.kind_of(cell.dataset_name)
    if kind != w.input_kind:
        fits = [n for n, k in data.DATASETS.items() if k == w.input_kind]
        raise ValueError(f"dataset {cell.dataset_name!r} holds {kind}, but {w.name} needs "
                         f"{w.input_kind} data; valid datasets for it: {', '.join(fits)}")
    return data.load(cell.dataset_name, cell.data_dir, seed=cell.seed,
                     input_shape=w.image_shape, seq_len=w.seq_len(cell.size_name))


def make_spec(cell: Cell, dataset: data.Dataset, seed: int | None = None) -> backends.Spec:
    """The framework-neutral description a backend builds from: model, canonical initial
    arrays (from ``seed``, default the cell's), optimiser and schedule over the cell's training
    budget."""
    w = cell.workload_spec
    model = w.model(cell.size_name, dataset.input_shape, dataset.num_classes)
    params, state = graph.init(model, dataset.input_shape,
                               cell.seed if seed is None else seed)
    return backends.Spec(model, dataset.input_shape, params, state, w.optimizer, w.schedule,
                         budget_steps(cell, dataset))


def out_dir(cell: Cell) -> Path:
    """The cell process's folder ($FRAMEBENCH_OUT). Each rank of a data-parallel cell of one
    process per replica (torchrun's $RANK) runs the cell: rank 0 writes the cell's record,
    the others theirs in ``rank<N>/`` inside it."""
    out, rank = Path(os.environ[OUT_ENV]), os.environ.get("RANK", "0")
    return out if cell.replicas == 1 or rank == "0" else out / f"rank{rank}"


def budget_steps(cell: Cell, dataset: data.Dataset) -> int:
    """Training steps in the budget: epochs (possibly fractional) of whole batches."""
    return max(1, round(cell.epochs * (len(dataset.x_train) // cell.global_batch)))


class CellRun:
    def __init__(self, cell: Cell, out_dir: str | os.PathLike) -> None:
        self.cell = cell
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.record = CellRecord(cell_id=cell.id, repeat=cell.repeat, started=now_iso())
        self.trainer: Any = None
        self.backend: Any = None
        self.dataset: data.Dataset | None = None
        self.steady: list[Any] = []
        self._phase: str | None = None  # the memory phase running (``phase``)
        self._timed_from = 0.0          # when the timed samples began (``calibrate``)
        self.rewarm_steps = 0

    @classmethod
    def from_env(cls) -> CellRun:
        cell = Cell.from_json(os.environ[CELL_ENV])
        return cls(cell, out_dir(cell))

    def save(self) -> None:
        self.record.save(self.out / "cell.json")

    def fail(self, status: str, reason: str) -> None:
        self.record.status, self.record.reason, self.record.ended = status, reason, now_iso()
        self.save()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Peak host memory (and device allocator peak, on GPU) and wall time of one phase;
        evaluations inside it (``held_out``) count in the evaluate phase instead."""
        self._reset_peaks()
        self._phase = name
        t0, evaluating = clock(), self.record.phase_s.get("evaluate", 0.0)
        yield
        self._phase = None
        self._keep_peaks(name)
        self.spent(name, clock() - t0 - (self.record.phase_s.get("evaluate", 0.0) - evaluating))
        self.save()

    def spent(self, name: str, seconds: float) -> None:
        """Add wall seconds to a phase's time (``CellRecord.phase_s``)."""
        self.record.phase_s[name] = self.record.phase_s.get(name, 0.0) + seconds

    def held_out(self, trainer: Any, dataset: data.Dataset) -> dict[str, float]:
        """``evaluate`` during a phase, its memory kept apart: the phase's peaks so far are
        kept, the evaluation's go to the evaluate phase (they are not the training's)."""
        phase = self._phase
        if phase is None:  # a further seed, after the memory figures
            return evaluate(trainer, dataset, self.cell)
        self._keep_peaks(phase)
        self._reset_peaks()
        t0 = clock()
        metrics = evaluate(trainer, dataset, self.cell)
        self.spent("evaluate", clock() - t0)
        self._keep_peaks("evaluate")
        self._reset_peaks()
        return metrics

    def _reset_peaks(self) -> None:
        reset_peak_rss()
        if self.trainer is not None:
            self.trainer.reset_device_peak()

    def _keep_peaks(self, name: str) -> None:
        """The peaks since the last reset, into the phase's (the larger, if it has one)."""
        def larger(table: dict[str, int | None], value: int | None) -> None:
            if value is not None:
                table[name] = max(table.get(name) or 0, value)

        larger(self.record.phase_peak_rss_bytes, peak_rss_bytes())
        if self.trainer is not None:
            larger(self.record.phase_device_peak_bytes, self.trainer.device_peak_bytes())

    def open(self) -> tuple[Any, data.Dataset, backends.Spec]:
        """Pin the threads, import and configure the framework, load the data and describe
        the model: what every scenario does first. Returns (backend, dataset, spec)."""
        c, r = self.cell, self.record
        w = c.workload_spec
        rank = int(os.environ.get("LOCAL_RANK", "0")) if c.processes > 1 else 0
        # before the framework loads; each process of a data-parallel cell on its own CPUs
        r.threads = set_threads(c.process_threads, rank * c.process_threads)
        with self.phase("import"):
            t0 = clock()
            backend = backends.load(c.framework)
            r.import_s = clock() - t0
        r.settings = backend.configure(c.device, c.precision, c.process_threads)
        self.backend = backend
        r.framework_info = backend.info()

        dataset = load_dataset(c)
        spec = make_spec(c, dataset)
        shape = dataset.input_shape
        r.dataset, r.data_source, r.data_sha256 = dataset.name, dataset.source, dataset.sha256
        r.dataset_train_size, r.dataset_test_size = len(dataset.x_train), len(dataset.x_test)
        r.input_shape, r.unit = list(shape), w.unit
        r.items_per_step = c.global_batch * w.items_per_example(shape)
        r.param_count = graph.param_count(spec.model, shape)
        r.inference_flops = inference_flops(spec.model, shape, c.global_batch)
        return backend, dataset, spec

    def open_trainer(self) -> tuple[data.Dataset, backends.Spec]:
        """``open``, then the build phase: the cell's trainer, its FLOPs and its manifest."""
        c, r = self.cell, self.record
        backend, dataset, spec = self.open()
        r.train_step_flops = train_step_flops(spec.model, dataset.input_shape, c.global_batch)
        with self.phase("build"):
            t0 = clock()
            self.trainer = build(backend, spec, c)
            self.trainer.sync()
            r.build_s = clock() - t0
        r.implementation = dict(self.trainer.implementation)
        r.manifest = {**self.trainer.manifest, "tier": c.tier, "mode": c.mode,
                      "variant": c.variant or None, "scenario": c.scenario,
                      "settings": r.settings, "threads": r.threads,
                      "versions": r.framework_info}
        return dataset, spec

    def prepare(self) -> None:
        """Everything before the timed phase; raises backends.Unavailable to skip. A cell that
        trains runs its budget with held-out evaluations on a fixed schedule (the time to the
        workload's target); its further seeds train after the timing (``train_seeds``)."""
        c, r = self.cell, self.record
        dataset, _ = self.open_trainer()
        trainer = self.trainer
        steps = budget_steps(c, dataset)
        batches = self._batches(dataset, steps, c.seed)
        with self.phase("first_step"):
            loss, r.first_step_s = first_step(trainer, batches)
            r.compile_cache = "cold" if c.repeat == 0 else "warm"
        losses = [loss]
        if c.train:
            with self.phase("train"):
                evals, r.train_s = self._train(trainer, dataset, batches, losses, steps)
            r.train_steps, r.final_loss = len(losses), losses[-1]
            with self.phase("evaluate"):  # fixed-size batches; its peaks kept apart
                metrics = self._evaluate(dataset)
            evals.append([steps, r.train_s, metrics[c.workload_spec.target.metric]])
            r.seeds = [seed_run(c, c.seed, r.build_s, r.first_step_s, r.compile_cache, evals)]
        self.dataset = dataset
        r.losses = losses
        self.steady = [trainer.put(x, y) for x, y in
                       _take(data.batches(dataset.x_train, dataset.y_train, c.global_batch,
                                          epoch=math.ceil(c.epochs), seed=c.seed),
                             STEADY_BATCHES)]
        self.save()

    def _batches(self, dataset: data.Dataset, steps: int,
                 seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The budget's batches: whole epochs in the shared order, the last one cut short."""
        c = self.cell
        epoch = 0
        while True:
            for batch in data.batches(dataset.x_train, dataset.y_train, c.global_batch, epoch,
                                      seed):
                if steps == 0:
                    return
                steps -= 1
                yield batch
            epoch += 1

    def _train(self, trainer: Any, dataset: data.Dataset,
               batches: Iterator[tuple[np.ndarray, np.ndarray]], losses: list[float],
               steps: int, to_target: bool = False) -> tuple[list[list[float]], float]:
        """The training loop, written once for every framework: the rest of the budget after
        the first step (or the tier's own loop where its idiom has one: ``Trainer.fit``, one
        call per stretch between evaluations). Held-out evaluations after the steps of
        ``eval_schedule``, not timed: returns them, as [step, training seconds so far, the
        target's metric], and the training seconds. ``to_target``: stop at the first
        evaluation that meets the workload's target (as an MLPerf run ends).

        Losses are read back every step (as a loop that logs them does), so this phase is not
        the throughput measurement.
        """
        target = self.cell.workload_spec.target
        evals: list[list[float]] = []
        done, train_s = 1, 0.0
        for stop in [*eval_schedule(steps), steps]:
            chunk = list(itertools.islice(batches, stop - done))
            t0 = clock()
            if hasattr(trainer, "fit"):  # the tier's own loop (Keras model.fit)
                losses += trainer.fit(chunk) if chunk else []
            else:
                for x, y in chunk:
                    losses.append(float(trainer.numpy(trainer.step(trainer.put(x, y)))))
            trainer.sync()
            train_s += clock() - t0
            done = stop
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"training diverged: loss {losses[-1]} at step "
                                         f"{len(losses)}")
            if stop < steps or to_target:
                evals.append([stop, train_s, self.held_out(trainer, dataset)[target.metric]])
                if to_target and target.met(evals[-1][2]):
                    break
        return evals, train_s

    def _evaluate(self, dataset: data.Dataset) -> dict[str, float]:
        """The trained model on the test split (``evaluate``), into the record."""
        w = self.cell.workload_spec
        metrics = evaluate(self.trainer, dataset, self.cell)
        r = self.record
        r.test_accuracy, r.test_perplexity = metrics["accuracy"], metrics.get("perplexity")
        r.target_met = w.target.met(metrics[w.target.metric])
        return metrics

    def train_seeds(self) -> None:
        """The budgets of the cell's further seeds (``Cell.seeds``), each with a fresh model
        and trainer, after the timed samples and the memory figures (two models are alive at
        once here: not the cell's footprint)."""
        c = self.cell
        if not c.train:
            return
        steps = budget_steps(c, self.dataset)
        for seed in range(c.seed + 1, c.seed + c.seeds):
            t0 = clock()
            self.record.seeds.append(self._train_seed(self.dataset, seed, steps))
            self.spent("seeds", clock() - t0)
            self.save()

    def _train_seed(self, dataset: data.Dataset, seed: int, steps: int) -> dict[str, Any]:
        """One more seed's budget (its initial weights and batch order), with a fresh model and
        trainer in this process: what a second training run on the same machine pays (the
        framework imported, its compile caches warm). It stops at the target (only its time
        to the target is used); a seed that fails is recorded as such."""
        c = self.cell
        try:
            spec = make_spec(c, dataset, seed)
            t0 = clock()
            trainer = build(self.backend, spec, c)
            trainer.sync()
            build_s = clock() - t0
            batches = self._batches(dataset, steps, seed)
            loss, first_s = first_step(trainer, batches)
            losses = [loss]
            evals, _ = self._train(trainer, dataset, batches, losses, steps, to_target=True)
            return seed_run(c, seed, build_s, first_s, "warm", evals)
        except Exception as exc:  # noqa: BLE001 - recorded; the cell's timing goes on
            return {"seed": seed, "error": "".join(
                traceback.format_exception_only(type(exc), exc)).strip()[-500:]}

    def timed_sample(self, k: int) -> None:
        """K training steps on device-resident batches, then one sync: one timing sample."""
        run_steps(self.trainer, self.steady, k)
        self.trainer.sync()

    def rewarm(self, *_: Any) -> None:
        """Untimed steps for at least REWARM_S: before each sample timed in turns, after the
        process waited for its turn (harness.turns)."""
        self.timed_sample(self.rewarm_steps)

    def time_sample(self, k: int) -> float:
        """One timing sample, clock included: what pytest-benchmark measures."""
        t0 = clock()
        self.timed_sample(k)
        return clock() - t0

    def calibrate(self, in_turns: bool = False) -> tuple[int, int]:
        """Steps per sample K (clock + sync under 1% of a sample), then warm up until the step
        time is stable; returns (K, rounds)."""
        trainer, t_cal = self.trainer, clock()
        self.timed_sample(len(self.steady))
        idle = []
        for _ in range(100):
            t0 = clock()
            trainer.sync()
            idle.append(clock() - t0)
        overhead = float(np.median(idle)) + _clock_cost()
        single, t0 = [], clock()
        while agree(trainer, clock() - t0 < 0.2 or len(single) < 3):
            single.append(self.time_sample(1))
        # the median: one slow moment of the machine must not shrink K
        est = max(float(np.median(single)) - overhead, 1e-9)
        k = agree(trainer, steps_per_sample(trainer, est, overhead))
        self._probe_machine("before")

        reset_peak_rss()  # the "steady" memory phase: warm-up and timed samples
        trainer.reset_device_peak()
        t_start, samples, stable = clock(), [], False
        while agree(trainer, clock() - t_start < WARMUP_MAX_S):
            samples.append(self.time_sample(k))
            if len(samples) >= 2 * WARMUP_WINDOW:
                before = np.median(samples[-2 * WARMUP_WINDOW:-WARMUP_WINDOW])
                now = np.median(samples[-WARMUP_WINDOW:])
                if agree(trainer, abs(now - before) <= WARMUP_TOLERANCE * before):
                    stable = True
                    break
        per_sample = float(np.median(samples[-WARMUP_WINDOW:]))
        self.rewarm_steps = agree(trainer, max(k, math.ceil(REWARM_S * k / per_sample)))
        # --steady-seconds covers each turn's untimed re-warm too, where the cell takes turns
        per_turn = per_sample + (REWARM_S if in_turns else 0.0)
        rounds = agree(trainer, max(MIN_ROUNDS, int(self.cell.steady_seconds / per_turn)))
        r = self.record
        r.steps_per_sample, r.rounds, r.sync_overhead_s, r.calibration_step_s = (
            k, rounds, overhead, est)
        r.warmup_samples, r.warmup_steps = len(samples), len(samples) * k
        r.warmup_s, r.warmup_stable = clock() - t_start, stable
        self.spent("warmup", clock() - t_cal)
        self._timed_from = clock()
        self.save()
        return k, rounds

    def finish(self, samples: list[float]) -> None:
        """Record the steady-state samples (seconds per K steps), memory, and the sync check."""
        self.spent("timed", clock() - self._timed_from)
        self._probe_machine("after")
        r = self.record
        step_s = [s / r.steps_per_sample for s in samples]
        r.step_samples_s = step_s
        r.phase_peak_rss_bytes["steady"] = peak_rss_bytes()
        r.phase_device_peak_bytes["steady"] = self.trainer.device_peak_bytes()
        r.peak_rss_bytes = training_peak(r.phase_peak_rss_bytes)
        r.nvml_process_bytes = nvml_process_bytes(os.getpid())
        r.sync_check = sync_check(self.trainer, self.steady, float(np.median(step_s)))
        r.compile_stats = compile_stats(self.trainer)
        self.train_seeds()
        r.status, r.ended = "ok", now_iso()
        self.save()

    def _probe_machine(self, when: str) -> None:
        """The machine's speed just before the warm-up and just after the timed samples (a
        fixed pure-Python unit on each CPU; ``harness.measure.machine_probe``)."""
        time.sleep(PROBE_SETTLE_S)  # let the framework's spinning pool threads go idle
        probe = machine_probe(PROBE_S)
        self.record.machine_probe_s[when] = {str(cpu): t for cpu, t in probe.items()}

    def crashed(self, exc: BaseException) -> None:
        if isinstance(exc, backends.Unavailable):
            self.fail("skipped", str(exc))
        else:
            self.fail("failed", "".join(traceback.format_exception(exc))[-4000:])


def training_peak(phase_peaks: dict[str, int | None]) -> int | None:
    """The process's memory figure: its peak over every phase but the held-out evaluations
    (their own figure: evaluating is not training)."""
    return max((v for p, v in phase_peaks.items() if v and p != "evaluate"), default=None)


def build(backend: Any, spec: backends.Spec, cell: Cell) -> Any:
    """The cell's trainer. A tuned cell whose search chose the identical or idiomatic step
    builds that tier's trainer; a cell on several replicas, the backend's data-parallel one."""
    if cell.replicas > 1:
        return backends.load_parallel(cell.framework).build(
            spec, cell.mode, cell.device, cell.precision, cell.replicas)
    tier, variant = cell.tier, cell.variant
    if tier == "tuned" and variant in backends.TIERS:
        tier, variant = variant, ""
    return backend.build(spec, cell.mode, cell.device, cell.precision, tier, variant)


def first_step(trainer: Any, batches: Iterator[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[float, float]:
    """The first training step (where graph-building frameworks trace and compile), synced:
    (its loss, its seconds)."""
    batch = trainer.put(*next(batches))
    t0 = clock()
    loss = trainer.step(batch)
    trainer.sync()
    return float(trainer.numpy(loss)), clock() - t0


def eval_schedule(steps: int) -> list[int]:
    """The steps after which training stops for a held-out evaluation, before the budget's
    end: every ``steps / EVALS_PER_BUDGET`` steps (the end is evaluated too)."""
    every = max(1, math.ceil(steps / EVALS_PER_BUDGET))
    return list(range(every, steps, every))


def evaluate(trainer: Any, dataset: data.Dataset, cell: Cell) -> dict[str, float]:
    """Accuracy (per image, or per predicted token) and, for language models, perplexity on the
    test split, in evaluation behaviour; computed here once for every framework. Batches of
    EVAL_BATCH_FACTOR times the training batch (``eval_batch``); the C heap's freed pages are
    returned afterwards."""
    workload = cell.workload_spec
    chunk = eval_batch(cell)
    logits = np.concatenate([
        trainer.numpy(trainer.predict(trainer.put(dataset.x_test[i:i + chunk])))
        for i in range(0, len(dataset.x_test), chunk)])
    out = {"accuracy": float((logits.argmax(axis=-1) == dataset.y_test).mean())}
    if "perplexity" in workload.metrics:
        out["perplexity"] = float(np.exp(reference.cross_entropy(logits, dataset.y_test)))
    release_free_heap()  # the peak stays in VmHWM; the phases after it do not carry the rest
    return out


def eval_batch(cell: Cell) -> int:
    """The evaluation's batch. Small batches cost TensorFlow and JAX tens of ms of call
    overhead each (the transformer's 728 test sequences took TensorFlow 3.0 s at the training
    batch of 16, 1.5 s at 64; its LSTM's 3.3 s at 32, 1.5 s at 128); larger ones leave memory
    with the allocator that the phases after them keep in their RSS, even after
    ``release_free_heap`` (TensorFlow's LSTM: steady phase 848 MB after evaluations at 4x
    the training batch, 780 MB at 2x and at 1x)."""
    return cell.batch_size * EVAL_BATCH_FACTOR


def seed_run(cell: Cell, seed: int, build_s: float | None, first_step_s: float | None,
             compile_cache: str | None, evals: list[list[float]]) -> dict[str, Any]:
    """One seed's time to the workload's target: build, the first step (compile included) and
    the training steps up to the first evaluation that met it (evaluations not counted);
    steps and seconds are None if the budget ended first."""
    target = cell.workload_spec.target
    hit = next((e for e in evals if target.met(e[2])), None)
    fixed = (build_s or 0.0) + (first_step_s or 0.0)
    return {"seed": seed, "build_s": build_s, "first_step_s": first_step_s,
            "compile_cache": compile_cache, "evals": evals, "final": evals[-1][2],
            "steps_to_target": hit[0] if hit else None,
            "time_to_target_s": fixed + hit[1] if hit else None}


def run_steps(trainer: Any, placed: list[Any], k: int) -> None:
    """K steps cycling over placed batches, no sync: the tier's own loop where it has one."""
    if hasattr(trainer, "steps"):
        trainer.steps(placed, k)
        return
    for i in range(k):
        trainer.step(placed[i % len(placed)])


def agree(trainer: Any, value: int | bool) -> int:
    """A decision taken from this process's clock, made the same in every process of the
    cell: a data-parallel trainer of one process per replica (torch DDP) takes rank 0's, or
    its ranks would run different numbers of steps and wait on each other for ever."""
    return trainer.agree(int(value)) if hasattr(trainer, "agree") else int(value)


def steps_per_sample(trainer: Any, step_s: float, overhead_s: float) -> int:
    """K: clock + sync under 1% of a sample, and a sample at least MIN_SAMPLE_S long (or the
    trainer's own floor, where each sample carries a fixed cost)."""
    floor = max(MIN_SAMPLE_S, getattr(trainer, "min_sample_s", 0.0))
    return max(1, math.ceil(overhead_s / (OVERHEAD_FRACTION * step_s)),
               math.ceil(floor / step_s))


def compile_stats(trainer: Any) -> dict[str, int]:
    """Graph breaks, recompilations or traces so far, where the framework counts them."""
    return dict(trainer.compile_stats()) if hasattr(trainer, "compile_stats") else {}


def sync_check(trainer: Any, batches: list[Any], step_s: float) -> dict[str, Any]:
    """Does ``sync`` wait for the work? Time N steps three ways: issue only; issue then sync;
    issue then copy every parameter to the host (which must wait). A sync that returns early
    looks like 'issue only' and far faster than the copy; the copy's own cost is subtracted."""
    n = agree(trainer, max(1, math.ceil(SYNC_CHECK_S / max(step_s, 1e-9))))

    def timed(finish: Any) -> float:
        trainer.sync()
        t0 = clock()
        for i in range(n):
            trainer.step(batches[i % len(batches)])
        finish()
        elapsed = clock() - t0
        trainer.sync()
        trainer.weights()
        return elapsed

    trainer.sync()
    t0 = clock()
    trainer.weights()
    copy_s = clock() - t0
    trials: dict[str, list[float]] = {"issue": [], "sync": [], "read": []}
    for _ in range(3):  # interleaved, best of three: machine noise hits all three alike
        trials["issue"].append(timed(lambda: None))
        trials["sync"].append(timed(trainer.sync))
        trials["read"].append(timed(trainer.weights) - copy_s)
    issue_s, sync_s, read_s = (min(trials[k]) for k in ("issue", "sync", "read"))
    return {"ok": bool(sync_s >= SYNC_CHECK_RATIO * read_s), "steps": n, "issue_only_s": issue_s,
            "sync_s": sync_s, "readback_s": read_s,
            "asynchronous": bool(issue_s < SYNC_CHECK_RATIO * sync_s)}


def _clock_cost() -> float:
    t0 = clock()
    for _ in range(1000):
        clock()
    return (clock() - t0) / 1000


def _take(iterator: Any, n: int) -> list[Any]:
    return [item for _, item in zip(range(n), iterator)]
