"""Raw cell outputs -> pandas tables -> Parquet and CSV. The schemas live here.

Per run, all keyed by ``run_id`` and ``cell_id`` (a cell runs in --repeats fresh processes):
- ``results``: one row per cell process (repeat): what that process measured;
- ``summary``: one row per cell: statistics over all its samples and processes (median with a
  bootstrap CI, phases, MFU, break-even) - what the report reads;
- ``ratios``: time ratios between cells of different frameworks (same tier, workload, size,
  device, batch, precision; debugging modes left out) with a CI and a verdict;
- ``speedups``: each framework's tuned cell against its idiomatic cell (how much working at it
  buys);
- ``tuning``: every candidate of every tuned-tier search the run used (``tuning/*.json``);
- ``losses`` (loss at every training step), ``samples`` (every steady-state sample; infer: every
  request at the throughput batch) and ``latencies`` (infer: every request at batch 1).
Run-wide facts (host, versions, GEMM peak, arguments) are in ``run.json`` beside them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness import stats
from harness.backends import BACKENDS, FRAMEWORKS, SELF_CHECK
from harness.flops import datasheet_peak
from harness.record import (
    SCHEMA_VERSION,
    CellRecord,
    Outcome,
    RunManifest,
    UnreadableFile,
    atomic,
    newer,
    read_json,
)
from harness.spec import Cell

CELL_COLUMNS: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run this row belongs to (see run.json)"),
    "cell_id": ("string", "workload-size-framework-tier[-mode]-device-b<batch> (precision if "
                "not fp32; a tuned cell's id names no mode; -infer for the infer scenario)"),
    "scenario": ("string", "train (steady-state training step) | infer (deployment: latency "
                 "per request at batch 1, throughput at batch_size: harness.infer)"),
    "workload": ("string", "workload name (harness.model.workloads)"),
    "size": ("string", "the workload's named size (--size)"),
    "framework": ("string", "torch | tensorflow | jax (noop: the harness self-check)"),
    "tier": ("string", "identical (the same step op for op) | idiomatic (as the framework's "
             "tutorials write it) | tuned (the fastest correct variant of a paired search)"),
    "mode": ("string", "eager | graph | compiled (a tuned cell: its chosen variant's); infer: "
             "the path, eager | compiled | export"),
    "variant": ("string", "tuned: the variant its search chose (identical and idiomatic are "
                "candidates too); else empty"),
    "debug_mode": ("boolean", "a mode nobody trains with (JAX op-by-op eager): kept out of "
                   "verdicts and the tuned search"),
    "device": ("string", "cpu | cuda"),
    "batch_size": ("Int64", "examples per training step (infer: per throughput request); "
                   "data parallel: per replica"),
    "replicas": ("Int64", "devices the cell trained on, data parallel with the framework's own "
                 "mechanism (harness/backends/<fw>/parallel.py); 1: one device"),
    "dataset": ("string", "dataset name"),
    "unit": ("string", "what throughput counts: images | tokens"),
    "precision": ("string", "fp32 | tf32 | bf16 (settings read back are in `settings`)"),
    "status": ("string", "ok | failed | skipped | interrupted"),
    "reason": ("string", "why a cell failed or was skipped (error tail), else empty"),
    "node": ("string", "the Ray node that ran it (--executor ray: host name and node id; "
             "its facts and GEMM peaks are in run.json's nodes); empty: this machine"),
    "timing": ("string", "turns (timed in rotation with the cells it is compared with: "
               "harness.turns) | alone: <why> (a debugging mode, the self-check, or no partner)"),
}

# The infer scenario's own columns (results and summary); there step_* and first_step_s are the
# requests at the throughput batch, each a call and the copy of its logits to the host.
INFER_COLUMNS: dict[str, tuple[str, str]] = {
    "latency_batch": ("Int64", "infer: the batch size latency is measured at (1)"),
    "latency_requests": ("Int64", "infer: timed requests at the latency batch"),
    "latency_p50_s": ("Float64", "infer: median latency of one request at batch 1"),
    "latency_p90_s": ("Float64", "infer: 90th percentile latency at batch 1"),
    "latency_p99_s": ("Float64", "infer: 99th percentile latency at batch 1"),
    "latency_above_p99": ("Int64", "infer: requests slower than the p99 (what the p99 rests on)"),
    "first_request_s": ("Float64", "infer: the first request at batch 1, compiling or exporting "
                        "that shape (first_step_s: the throughput batch's)"),
    "reference_error": ("Float64", "infer: largest |logit - numpy reference| / max(1, largest "
                        "|reference logit|) over the checked batch sizes"),
}

SCHEMA: dict[str, tuple[str, str]] = {
    **CELL_COLUMNS,
    "repeat": ("Int64", "which of the cell's fresh processes (0 = cold compile caches)"),
    "framework_version": ("string", "version of the framework the cell ran"),
    "threads": ("Int64", "CPUs the process was pinned to (frameworks' pools sized to it)"),
    "settings": ("string", "JSON: effective thread, precision and allocator settings read back"),
    "implementation": ("string", "JSON: the path the framework took where it has several "
                       "(e.g. its LSTM: fused kernel or a scan)"),
    "manifest": ("string", "JSON: the exact configuration: tier, mode, variant, API, optimiser "
                 "implementation, compile options, flags, stated differences from the identical "
                 "algorithm, settings read back, versions"),
    "graph_breaks": ("Int64", "torch.compile: graph breaks Dynamo counted (0 = one graph)"),
    "compiles": ("Int64", "compilations or traces of the step (above 1: it recompiled)"),
    "compile_stats": ("string", "JSON: the framework's own compile counters"),
    "data_source": ("string", "where the data came from (real, upsampled, synthetic; version)"),
    "data_sha256": ("string", "SHA-256 of a text corpus's bytes (tells two runs' text apart)"),
    "param_count": ("Int64", "trainable parameters"),
    "items_per_step": ("Int64", "images, or tokens, per training step"),
    "train_step_flops": ("Int64", "analytic FLOPs of one training step (harness.flops)"),
    "peak_flops_per_s": ("Float64", "GEMM peak of the cell's device at its precision, measured in "
                         "this run pinned and configured like the cell (run.json device_peaks; "
                         "a run from before: its one peak)"),
    "datasheet_peak_flops_per_s": ("Float64", "the datasheet peak of the cell's GPU model at its "
                                   "precision (harness.flops); empty on CPU or an unlisted GPU"),
    "import_s": ("Float64", "time to import the framework in a fresh process"),
    "build_s": ("Float64", "time to build the model, load weights and make the optimiser"),
    "first_step_s": ("Float64", "first training step, synced; includes tracing/compiling"),
    "compile_cache": ("string", "cold (empty caches, repeat 0) | warm (persistent caches kept)"),
    "train_s": ("Float64", "training budget after the first step, loss read back every step"),
    "train_steps": ("Int64", "training steps in the budget (first step included)"),
    "test_accuracy": ("Float64", "accuracy on the test split after the training budget "
                      "(per image, or per predicted token)"),
    "test_perplexity": ("Float64", "language models: exp(mean next-token cross-entropy) on the "
                        "test split"),
    "target_met": ("boolean", "the workload's accuracy or perplexity target was reached"),
    "final_loss": ("Float64", "training loss at the last step of the budget"),
    "warmup_steps": ("Int64", "steps run until the step time was stable"),
    "warmup_s": ("Float64", "time spent warming up"),
    "warmup_stable": ("boolean", "whether the rolling median settled before the limit"),
    "steps_per_sample": ("Int64", "K: steps per timing sample (one sync per sample)"),
    "sync_overhead_s": ("Float64", "cost of one clock read + sync when idle"),
    "n_samples": ("Int64", "steady-state timing samples"),
    "step_median_s": ("Float64", "median steady-state time per training step in this process"),
    "step_q1_s": ("Float64", "first quartile of the step time"),
    "step_q3_s": ("Float64", "third quartile of the step time"),
    "step_min_s": ("Float64", "fastest sample's time per step"),
    "peak_rss_bytes": ("Int64", "peak resident memory of the process while training: every "
                       "phase but the held-out evaluations (VmHWM)"),
    "peak_rss_import_bytes": ("Int64", "VmHWM during the framework import"),
    "peak_rss_build_bytes": ("Int64", "VmHWM while building (reset before the phase)"),
    "peak_rss_first_step_bytes": ("Int64", "VmHWM during the first step (compile)"),
    "peak_rss_train_bytes": ("Int64", "VmHWM during the training budget, its evaluations "
                             "apart"),
    "peak_rss_steady_bytes": ("Int64", "VmHWM during warm-up and steady-state timing"),
    "peak_rss_evaluate_bytes": ("Int64", "VmHWM during the test-set evaluations (batches of "
                                "the training batch's size)"),
    "device_peak_bytes": ("Int64", "GPU allocator peak (torch/TF/JAX's own counter), the largest "
                          "of the training phases (build, first step, training budget, steady "
                          "state; not the evaluation); empty on CPU. JAX cannot reset its "
                          "peak: a phase counts only where it raised the process's peak"),
    "device_peak_evaluate_bytes": ("Int64", "GPU allocator peak during the test-set evaluation; "
                                   "empty on CPU (JAX: empty unless it raised the peak)"),
    "nvml_process_bytes": ("Int64", "GPU memory NVML attributes to the process; empty on CPU"),
    "sync_ok": ("boolean", "the sync check: sync waited for the work"),
    "machine_probe_s": ("Float64", "slowest CPU's time for the fixed machine probe, just before "
                        "the warm-up or just after the samples, whichever was slower"),
    "wall_s": ("Float64", "wall time of the cell process, start to exit"),
    "memory_cap_bytes": ("Int64", "--memory-cap: the host memory the kernel allowed the process "
                         "(its own memory cgroup); empty without a cap"),
    "out_of_memory": ("boolean", "the kernel's OOM killer stopped the process at its cap"),
    "memory_peak_bytes": ("Int64", "with a cap: the peak of the process's memory cgroup (page "
                          "cache included): the figure an out-of-memory cell reached"),
    **INFER_COLUMNS,
}

SUMMARY_SCHEMA: dict[str, tuple[str, str]] = {
    **CELL_COLUMNS,
    "n_processes": ("Int64", "fresh processes (repeats) that finished"),
    "n_samples": ("Int64", "timing samples over all processes"),
    "step_median_s": ("Float64", "median step time over all samples of all processes"),
    "step_ci_low_s": ("Float64", "95% hierarchical bootstrap CI of the median, low end"),
    "step_ci_high_s": ("Float64", "95% hierarchical bootstrap CI of the median, high end"),
    "step_iqr_s": ("Float64", "interquartile range of all samples"),
    "samples_per_s": ("Float64", "examples (images or sequences) per second: batch_size x "
                      "replicas / step_median_s"),
    "items_per_s": ("Float64", "throughput in the workload's unit (images/s or tokens/s)"),
    "vs_fastest": ("Float64", "step time / the fastest cell's of the same workload and device"),
    "import_s": ("Float64", "median framework import time"),
    "build_s": ("Float64", "median build time"),
    "first_step_cold_s": ("Float64", "first step with empty compile caches (repeat 0)"),
    "first_step_warm_s": ("Float64", "median first step of later processes (persistent caches)"),
    "warmup_steps": ("Int64", "median warm-up length in steps"),
    "break_even_step": ("Float64", "step after which this mode's total time beats eager's"),
    "peak_rss_bytes": ("Int64", "largest VmHWM of any process"),
    "device_peak_bytes": ("Int64", "largest GPU allocator peak of any process over the "
                          "training phases (the evaluation apart)"),
    "test_accuracy": ("Float64", "accuracy after the training budget (repeat 0)"),
    "test_perplexity": ("Float64", "language models: test perplexity after the budget"),
    "target_met": ("boolean", "the workload's quality target was reached (repeat 0)"),
    "data_source": ("string", "where the data came from"),
    "param_count": ("Int64", "trainable parameters"),
    "train_step_flops": ("Int64", "analytic FLOPs per training step"),
    "achieved_flops_per_s": ("Float64", "train_step_flops / step_median_s"),
    "peak_flops_per_s": ("Float64", "the peak mfu divides by: the GEMM peak of the cell's "
                         "device at its precision, measured in this run pinned like the cell"),
    "mfu": ("Float64", "achieved_flops_per_s / peak_flops_per_s (the cell's own device and "
            "precision; a data-parallel cell on N GPUs: N times it)"),
    "mfu_datasheet": ("Float64", "achieved_flops_per_s / the datasheet peak of the cell's GPU "
                      "model at its precision, times its replicas (cuda cells; empty for a "
                      "model harness.flops does not list)"),
    "overhead_fraction": ("Float64", "the no-op cell's harness cost per sample / this sample"),
    "sync_ok": ("boolean", "every process passed the sync check"),
    "graph_breaks": ("Int64", "most graph breaks of any process (torch.compile)"),
    "compiles": ("Int64", "most compilations or traces of the step in any process"),
    "machine_slowdown": ("Float64", "slowest machine probe of the cell's processes / the run's "
                         "fastest (1.00 = the machine was as quiet as it ever was in this run)"),
    **INFER_COLUMNS,
}

RATIO_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run"),
    "scenario": ("string", "train | infer (infer: time per request at the throughput batch)"),
    "tier": ("string", ""), "workload": ("string", ""), "size": ("string", ""),
    "device": ("string", ""),
    "batch_size": ("Int64", ""), "replicas": ("Int64", ""),
    "precision": ("string", "both cells' precision; a reduced precision against the same "
                  "framework's fp32 cell: \"bf16/fp32\" (or tf32/fp32)"),
    "metric": ("string", "what is timed: step (train: a training step) | latency (infer: a "
               "request at batch 1) | request (infer: a request at the throughput batch)"),
    "a": ("string", "cell id of the numerator"), "b": ("string", "cell id of the denominator"),
    "ratio": ("Float64", "time per step (or request) of a / of b (below 1: a is faster); "
              "paired: the median of the per-rotation ratios, else the ratio of the medians"),
    "ci_low": ("Float64", "bootstrap CI of the ratio at `level`, low end (paired: processes, "
               "then blocks of consecutive rotations resampled)"),
    "ci_high": ("Float64", "bootstrap CI of the ratio at `level`, high end"),
    "level": ("Float64", "the CI's confidence level: 1 - 0.05/m, Bonferroni-corrected for the "
              "m verdicts of the run"),
    "verdict": ("string", "faster | slower (a against b: the CI lies wholly below 0.97 / above "
                "1.03) | equivalent (wholly inside 0.97-1.03) | inconclusive"),
    "settle_repeats": ("Int64", "inconclusive: about how many repeats (--repeats) would likely "
                       "settle it; empty if more than 100, or the ratio sits on the band's edge"),
    "paired": ("boolean", "a and b were timed in turns: the ratio comes from paired samples"),
    "timing": ("string", "turns, or why the two were timed apart (the cells' `timing`)"),
    "n_pairs": ("Int64", "paired samples (rotations) over all processes"),
    "unpaired_ratio": ("Float64", "ratio of the two cells' medians, each cell resampled on its "
                       "own (the statistic of cells timed apart), for comparison"),
    "unpaired_ci_low": ("Float64", "its CI at the same level, low end"),
    "unpaired_ci_high": ("Float64", "its CI at the same level, high end"),
}
SPEEDUP_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run"),
    "scenario": ("string", "train (the tuned tier exists for training only)"),
    "workload": ("string", ""), "size": ("string", ""), "device": ("string", ""),
    "batch_size": ("Int64", ""), "replicas": ("Int64", ""), "precision": ("string", ""),
    "framework": ("string", ""),
    "idiomatic": ("string", "cell id of the idiomatic cell"),
    "tuned": ("string", "cell id of the tuned cell"),
    "variant": ("string", "the variant the tuned cell runs"),
    "speedup": ("Float64", "idiomatic median step time / tuned (above 1: tuning pays)"),
    "ci_low": ("Float64", "bootstrap CI of the speed-up at `level`, low end (the two cells "
               "are timed apart: resampled independently)"),
    "ci_high": ("Float64", "bootstrap CI of the speed-up at `level`, high end"),
    "level": ("Float64", "the CI's confidence level (Bonferroni-corrected, as in ratios)"),
    "verdict": ("string", "the tuned cell against the idiomatic one: faster | slower | "
                "equivalent | inconclusive"),
    "settle_repeats": ("Int64", "inconclusive: about how many repeats would settle it"),
}
TUNING_SCHEMA: dict[str, tuple[str, str]] = {
    "scenario": ("string", "train (the search is over training-step variants)"),
    "framework": ("string", ""), "workload": ("string", ""), "size": ("string", ""),
    "device": ("string", ""), "batch_size": ("Int64", ""), "precision": ("string", ""),
    "searched": ("string", "when the search ran (a kept search is reused while the machine, "
                 "the framework version and the candidates are the same)"),
    "variant": ("string", "candidate: identical, idiomatic, or a named variant"),
    "mode": ("string", "the candidate's mode"),
    "description": ("string", "what the candidate changes"),
    "correct": ("boolean", "followed the identical tier's loss trajectory (harness.tune)"),
    "max_loss_diff": ("Float64", "largest loss difference from the identical trajectory over "
                      "the checked steps"),
    "differences": ("string", "JSON: how the candidate's algorithm differs from the identical "
                    "one by design, as it states (such a candidate is shown, not chosen)"),
    "error": ("string", "why the candidate could not run, else empty"),
    "median_s": ("Float64", "median step time over the paired rounds"),
    "vs_identical": ("Float64", "median of per-round time ratios to the identical step of the "
                     "same mode (below 1: faster)"),
    "vs_identical_ci_low": ("Float64", "95% bootstrap CI, low end"),
    "vs_identical_ci_high": ("Float64", "95% bootstrap CI, high end"),
    "chosen": ("boolean", "the fastest correct candidate: the tuned tier's configuration"),
    "compile_stats": ("string", "JSON: compile counters after the checked steps"),
}
SCALING_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run"),
    "scenario": ("string", "train"),
    "framework": ("string", ""), "tier": ("string", ""), "mode": ("string", ""),
    "workload": ("string", ""), "size": ("string", ""), "device": ("string", ""),
    "batch_size": ("Int64", "examples per replica per step"), "precision": ("string", ""),
    "replicas": ("Int64", "devices of the data-parallel cell"),
    "single": ("string", "cell id of the one-device cell"),
    "parallel": ("string", "cell id of the data-parallel cell"),
    "samples_per_s": ("Float64", "the data-parallel cell's throughput (examples/s, all "
                      "replicas)"),
    "single_samples_per_s": ("Float64", "the one-device cell's throughput"),
    "efficiency": ("Float64", "scaling efficiency: throughput at N / (N x throughput at 1) = "
                   "the one-device step time / the data-parallel step time (1: perfect)"),
    "ci_low": ("Float64", "bootstrap CI of the efficiency at `level`, low end (the two cells "
               "are timed apart: resampled independently)"),
    "ci_high": ("Float64", "its CI, high end"),
    "level": ("Float64", "the CI's confidence level (0.95: a figure, not a verdict)"),
    "mechanism": ("string", "the framework's data-parallel mechanism"),
}
LARGEST_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run"),
    "scenario": ("string", "largest"),
    "framework": ("string", ""), "tier": ("string", ""), "mode": ("string", ""),
    "workload": ("string", ""), "size": ("string", ""), "device": ("string", ""),
    "precision": ("string", ""),
    "memory_cap_bytes": ("Int64", "the host-memory cap of every try (CPU); empty on a GPU"),
    "largest_batch": ("Int64", "the largest batch that trained (empty: none did)"),
    "oom_batch": ("Int64", "the smallest batch that ran out of memory (empty: none did)"),
    "tries": ("Int64", "processes the search ran (growth steered by the tries' memory "
              "peaks, then bisection)"),
    "stopped": ("string", "bisected (to within 12.5%) | fits at the search's limit | the "
                "failure that ended it"),
    "step_median_s": ("Float64", "median step time at the largest batch"),
    "items_per_s": ("Float64", "training throughput at the largest batch (the workload's unit)"),
    "peak_rss_bytes": ("Int64", "the process's VmHWM at the largest batch"),
    "memory_peak_bytes": ("Int64", "its memory cgroup's peak at the largest batch (with a cap)"),
    "oom_peak_bytes": ("Int64", "the figure the out-of-memory try reached (its cgroup's peak)"),
}
ACCURACY_SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run"),
    "scenario": ("string", "accuracy"),
    "cell_id": ("string", "the training cell whose first process trained this seed"),
    "framework": ("string", ""), "tier": ("string", ""), "mode": ("string", ""),
    "variant": ("string", "tuned: the variant its search chose"),
    "workload": ("string", ""), "size": ("string", ""), "device": ("string", ""),
    "batch_size": ("Int64", ""), "precision": ("string", ""),
    "seed": ("Int64", "initial weights and batch order (the held-out data is the same)"),
    "compile_cache": ("string", "cold: the process's first build (the cell's first seed); warm: "
                      "a later seed, built afresh in the same process (framework imported, "
                      "compile caches warm)"),
    "target": ("string", "the workload's target on held-out data, e.g. accuracy ≥ 0.95"),
    "budget_steps": ("Int64", "training steps in the budget (the seed trains all of them)"),
    "steps_to_target": ("Int64", "steps at the first evaluation that met the target (empty: "
                        "missed in the budget)"),
    "time_to_target_s": ("Float64", "build + first step (compile included) + the training "
                         "steps up to that evaluation; evaluations not counted (empty: missed)"),
    "build_s": ("Float64", "model and trainer construction"),
    "first_step_s": ("Float64", "the first step, synced (tracing and compilation)"),
    "final_metric": ("Float64", "the target's metric at the end of the budget (a further seed: "
                     "where it stopped, at the target)"),
    "met": ("boolean", "the target was met at some evaluation within the budget"),
    "evals": ("string", "JSON [[step, training seconds so far, metric], ...]: the fixed "
              "evaluation schedule"),
    "error": ("string", "why this seed did not finish (the cell's timing went on)"),
}
LOSSES_SCHEMA = {"run_id": "string", "scenario": "string", "cell_id": "string", "repeat": "Int64",
                 "step": "Int64", "loss": "Float64"}
SAMPLES_SCHEMA = {"run_id": "string", "scenario": "string", "cell_id": "string",
                  "repeat": "Int64", "sample": "Int64", "step_s": "Float64"}
LATENCIES_SCHEMA = {"run_id": "string", "scenario": "string", "cell_id": "string",
                    "repeat": "Int64", "request": "Int64", "latency_s": "Float64"}
PHASES = ("import", "build", "first_step", "train", "evaluate", "steady")
TRAINING_PHASES = ("build", "first_step", "train", "steady")  # device_peak_bytes: evaluation apart
SCHEMA_KEY = b"framebench_schema"  # the tables' schema version, in their Parquet metadata
COMPARISON_KEYS = ["scenario", "tier", "workload", "size", "device", "batch_size", "replicas",
                   "precision"]


def collect(run_dir: Path) -> tuple[pd.DataFrame, ...]:
    """Build the per-process table, losses, samples, latencies and the seeds' times to target
    from a run directory's raw files."""
    run = RunManifest.read(run_dir)
    run_id = run.run_id
    rows, losses, samples, latencies, seeds = [], [], [], [], []
    for proc_dir in sorted((run_dir / "cells").glob("*/r*/")):
        try:
            outcome = Outcome.read(proc_dir / "outcome.json", strict=True)
            if outcome is None:
                continue  # never started, or stopped before the runner judged it
            record = CellRecord.read(proc_dir / "cell.json", strict=True)
        except UnreadableFile as exc:  # listed as failed, with the file named
            outcome, record = Outcome("failed", f"unreadable record: {exc}"), CellRecord()
        cell = Cell.from_json(json.dumps(read_json(proc_dir / "cell_spec.json", strict=True)))
        cell_id, repeat = proc_dir.parent.name, int(proc_dir.name[1:])
        step_samples = record.step_samples_s
        device_peaks = [v for p, v in record.phase_device_peak_bytes.items()
                        if v and p in TRAINING_PHASES]
        peak, sheet = cell_peaks(run, cell.device, cell.precision, outcome.node)
        fields = asdict(record)
        row = {k: fields.get(k) for k in SCHEMA}
        row.update({k: getattr(cell, k) for k in ("scenario", "workload", "framework", "tier",
                                                  "mode", "device", "batch_size", "replicas",
                                                  "precision")})
        counters = record.compile_stats
        row.update(
            run_id=run_id, cell_id=cell_id, repeat=repeat, status=outcome.status,
            node=outcome.node,
            timing=outcome.timing or None,
            reason=outcome.reason, wall_s=outcome.wall_s,
            memory_cap_bytes=cell.memory_cap or None, out_of_memory=outcome.out_of_memory,
            memory_peak_bytes=outcome.memory_peak_bytes,
            size=cell.size_name, dataset=record.dataset or cell.dataset_name,
            framework_version=record.framework_info.get("framework_version"),
            threads=record.threads.get("threads"),
            settings=json.dumps(record.settings) if record.settings else None,
            implementation=json.dumps(record.implementation) if record.implementation else None,
            variant=cell.variant or None,
            debug_mode=cell.scenario == "train" and cell.framework in BACKENDS
            and cell.mode in BACKENDS[cell.framework].debug_modes,
            manifest=json.dumps(record.manifest, sort_keys=True, default=str)
            if record.manifest else None,
            compile_stats=json.dumps(counters) if counters else None,
            graph_breaks=counters.get("graph_breaks"), compiles=counters.get("compiles"),
            n_samples=len(step_samples) or None,
            sync_ok=record.sync_check.get("ok"),
            machine_probe_s=record.slowest_probe_s,
            device_peak_bytes=max(device_peaks) if device_peaks else None,
            device_peak_evaluate_bytes=record.phase_device_peak_bytes.get("evaluate"),
            peak_flops_per_s=peak, datasheet_peak_flops_per_s=sheet,
            **{f"peak_rss_{p}_bytes": record.phase_peak_rss_bytes.get(p) for p in PHASES})
        if step_samples:
            q1, med, q3 = np.percentile(step_samples, [25, 50, 75])
            row.update(step_median_s=med, step_q1_s=q1, step_q3_s=q3,
                       step_min_s=min(step_samples))
        if record.latency_samples_s:
            row.update(_latency(record.latency_samples_s))
        checks = [c.get("max_error") for c in record.reference_check.values()]
        row.update(latency_batch=record.latency_batch,
                   first_request_s=record.first_request_s.get(str(record.latency_batch)),
                   reference_error=max(checks) if checks else None)
        rows.append(row)
        key = (run_id, cell.scenario, cell_id, repeat)
        losses += [(*key, i, v) for i, v in enumerate(record.losses)]
        samples += [(*key, i, v) for i, v in enumerate(step_samples)]
        latencies += [(*key, i, v) for i, v in enumerate(record.latency_samples_s)]
        if cell.framework in FRAMEWORKS:  # not the self-check
            seeds += [_seed_row(row, cell, s) for s in record.seeds]
    return (_frame(rows, SCHEMA), _frame(losses, LOSSES_SCHEMA), _frame(samples, SAMPLES_SCHEMA),
            _frame(latencies, LATENCIES_SCHEMA), _frame(seeds, ACCURACY_SCHEMA))


def _seed_row(row: dict[str, Any], cell: Cell, seed: dict[str, Any]) -> dict[str, Any]:
    """One row of the accuracy table: a seed's budget in a training cell's first process."""
    evals = seed.get("evals") or []
    return {**{k: row[k] for k in ("run_id", "cell_id", "framework", "tier", "mode", "variant",
                                   "workload", "size", "device", "batch_size", "precision")},
            "scenario": "accuracy", "seed": seed.get("seed"),
            "compile_cache": seed.get("compile_cache"),
            "target": str(cell.workload_spec.target),
            "budget_steps": evals[-1][0] if evals else None,
            "steps_to_target": seed.get("steps_to_target"),
            "time_to_target_s": seed.get("time_to_target_s"),
            "build_s": seed.get("build_s"), "first_step_s": seed.get("first_step_s"),
            "final_metric": seed.get("final"),
            "met": seed.get("steps_to_target") is not None if evals else None,
            "evals": json.dumps(evals) if evals else None, "error": seed.get("error")}


def time_to_target(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per training cell, over its seeds: how many met the target, the median time and steps to
    it, and MLPerf's summary (drop the fastest and the slowest seed, average the rest). A seed
    that missed (or failed) counts as infinitely slow, so it is the first dropped; a median or
    mean that still includes one is empty (not reached)."""
    keys = ["run_id", "cell_id", "framework", "tier", "workload", "size", "device",
            "batch_size", "precision", "target"]
    rows = []
    for key, g in accuracy.groupby(keys, sort=False, dropna=False):
        times = np.sort(g["time_to_target_s"].astype(float).fillna(np.inf).to_numpy())
        steps = np.sort(g["steps_to_target"].astype(float).fillna(np.inf).to_numpy())
        kept = times[1:-1] if len(times) >= 3 else times
        cold = g[g["compile_cache"] == "cold"]["time_to_target_s"]
        rows.append({**dict(zip(keys, key)), "seeds": len(g), "met": int(g["met"].sum()),
                     "median_s": _finite(np.median(times)),
                     "mlperf_mean_s": _finite(kept.mean()),
                     "median_steps": _finite(np.median(steps)),
                     "cold_s": _first(cold) if len(cold) else None})
    return pd.DataFrame(rows, columns=[*keys, "seeds", "met", "median_s", "mlperf_mean_s",
                                       "median_steps", "cold_s"])


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _latency(samples: list[float] | np.ndarray) -> dict[str, Any]:
    """Latency percentiles of requests, and how many requests lie above the p99."""
    a = np.asarray(samples, float)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"latency_requests": len(a), "latency_p50_s": p50, "latency_p90_s": p90,
            "latency_p99_s": p99, "latency_above_p99": int((a > p99).sum())}


def cell_peaks(run: RunManifest, device: str, precision: str,
               node: str | None = None) -> tuple[float | None, float | None]:
    """The peaks a cell's MFU is computed against: the GEMM peak of its device at its precision
    measured in this run pinned like the cell (``run.device_peaks``; on a Ray cluster, those
    its node measured: ``run.nodes``), and that device's datasheet peak. A run from before
    device peaks: its one peak (measured on each framework's default device) and the datasheet
    figure of its first GPU, for every cell, as it was."""
    peaks = (run.nodes.get(node) or {}).get("device_peaks") if node else None
    if peaks or run.device_peaks:
        entry = (peaks or run.device_peaks).get(f"{device}-{precision}") or {}
        return entry.get("flops_per_s"), entry.get("datasheet_flops_per_s")
    gpus = run.host.get("gpus") or [{}]
    sheet = datasheet_peak(gpus[0].get("name"), precision) if device == "cuda" else None
    return run.peak_flops_per_s, sheet


def sample_groups(samples: pd.DataFrame) -> dict[str, list[np.ndarray]]:
    """{cell_id: [step times of each process]}: the input of every statistic."""
    return {cid: [g["step_s"].to_numpy() for _, g in s.groupby("repeat")]
            for cid, s in samples.groupby("cell_id")}


def summarize(table: pd.DataFrame, groups: dict[str, list[np.ndarray]],
              peak_flops: float | None = None, gpu_name: str | None = None,
              latencies: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per cell: statistics over all samples of all its processes. MFU divides by the
    peak of the cell's own device and precision, which each row of the table carries
    (``peak_flops_per_s``, ``datasheet_peak_flops_per_s``: ``collect`` fills them from the run's
    device peaks). ``peak_flops`` and ``gpu_name`` serve only a table whose rows carry no peak
    at all (made before device peaks): one peak for every cell, the GPU's datasheet for cuda."""
    table = table.assign(scenario=table["scenario"].fillna("train"))  # rows from before it
    legacy = table["peak_flops_per_s"].isna().all() and table[
        "datasheet_peak_flops_per_s"].isna().all()
    noop = table[(table["framework"] == SELF_CHECK) & (table["status"] == "ok")]
    noop_step = float(noop["step_median_s"].median()) if len(noop) else None
    noop_sample = float(noop["sync_overhead_s"].median()) if len(noop) else None
    quietest = table["machine_probe_s"].min()
    rows = []
    for cell_id, procs in table.groupby("cell_id", sort=False):
        first = procs.iloc[0]
        ok = procs[procs["status"] == "ok"]
        row: dict[str, Any] = {k: first[k] for k in CELL_COLUMNS}
        row["status"] = "ok" if len(ok) == len(procs) else _worst(procs["status"])
        bad = procs[procs["status"] != "ok"]
        row["reason"] = bad["reason"].iloc[0] if len(bad) else None
        row["n_processes"] = len(ok)
        row["timing"] = procs["timing"].dropna().iloc[0] if procs["timing"].notna().any() \
            else None
        cold = procs[procs["repeat"] == 0]
        row["first_step_cold_s"] = cold["first_step_s"].iloc[0] if len(cold) else None
        warm = procs[procs["repeat"] > 0]["first_step_s"].dropna()
        row["first_step_warm_s"] = warm.median() if len(warm) else None
        trained = procs.dropna(subset=["test_accuracy"])
        for col in ("test_accuracy", "test_perplexity", "target_met"):
            row[col] = trained[col].iloc[0] if len(trained) else None
        row["data_source"] = procs["data_source"].dropna().iloc[0] \
            if procs["data_source"].notna().any() else None
        for col in ("import_s", "build_s"):
            row[col] = procs[col].median()
        row["warmup_steps"] = round(procs["warmup_steps"].median()) \
            if procs["warmup_steps"].notna().any() else None
        for col in ("peak_rss_bytes", "device_peak_bytes", "train_step_flops", "param_count",
                    "graph_breaks", "compiles"):
            row[col] = procs[col].max()
        row["sync_ok"] = bool(ok["sync_ok"].all()) if len(ok) else None
        row["machine_slowdown"] = procs["machine_probe_s"].max() / quietest
        if first["scenario"] == "infer":
            row["latency_batch"] = _first(procs["latency_batch"])
            row["first_request_s"] = cold["first_request_s"].iloc[0] if len(cold) else None
            row["reference_error"] = procs["reference_error"].max()
            pooled = latencies[latencies["cell_id"] == cell_id]["latency_s"] \
                if latencies is not None else []
            if len(pooled) and len(ok):
                row.update(_latency(pooled))
        if cell_id in groups and len(ok):
            med, lo, hi = stats.median_ci(stats.block_medians(groups[cell_id]))
            med = float(np.median(np.concatenate(groups[cell_id])))
            pooled = np.concatenate(groups[cell_id])
            q1, q3 = np.percentile(pooled, [25, 75])
            k = ok["steps_per_sample"].median()
            row.update(n_samples=len(pooled), step_median_s=med, step_ci_low_s=lo,
                       step_ci_high_s=hi, step_iqr_s=q3 - q1,
                       samples_per_s=first["batch_size"] * first["replicas"] / med)
            items = procs["items_per_step"].dropna()
            if len(items):
                row["items_per_s"] = items.iloc[0] / med
            if pd.notna(row["train_step_flops"]) and first["framework"] != SELF_CHECK:
                row["achieved_flops_per_s"] = row["train_step_flops"] / med
                peak, sheet = _first(procs["peak_flops_per_s"]), _first(
                    procs["datasheet_peak_flops_per_s"])
                if legacy:
                    peak, sheet = peak_flops, datasheet_peak(gpu_name, first["precision"])
                n = 1 if pd.isna(first["replicas"]) else int(first["replicas"])
                if first["device"] == "cuda" and n > 1:  # N GPUs: N times one GPU's peak
                    peak = None if pd.isna(peak) else peak * n  # (a CPU's replicas share its
                    sheet = None if pd.isna(sheet) else sheet * n  # cores: its one peak)
                if peak:
                    row["peak_flops_per_s"] = peak
                    row["mfu"] = row["achieved_flops_per_s"] / peak
                if first["device"] == "cuda" and sheet:
                    row["mfu_datasheet"] = row["achieved_flops_per_s"] / sheet
            if noop_step is not None and first["framework"] != SELF_CHECK \
                    and first["scenario"] == "train":
                row["overhead_fraction"] = (noop_sample + k * noop_step) / (k * med)
        rows.append(row)
    summary = _frame(rows, SUMMARY_SCHEMA)
    return _relate(summary)


def _relate(summary: pd.DataFrame) -> pd.DataFrame:
    """Fill vs_fastest (within a tier, debugging modes left out) and break_even_step (each
    compiled mode against the eager mode of its framework and tier)."""
    real = (summary["framework"] != SELF_CHECK) & (summary["debug_mode"] != True)  # noqa: E712
    for _, group in summary[real & summary["step_median_s"].notna()].groupby(COMPARISON_KEYS):
        fastest = group["step_median_s"].min()
        summary.loc[group.index, "vs_fastest"] = group["step_median_s"] / fastest
        for _, by_fw in group.groupby("framework"):
            eager = by_fw[by_fw["mode"] == "eager"]
            if eager.empty:
                continue
            e = eager.iloc[0]
            for idx, r in by_fw[by_fw["mode"] != "eager"].iterrows():
                summary.loc[idx, "break_even_step"] = stats.break_even_step(
                    r["first_step_cold_s"], r["step_median_s"], e["first_step_cold_s"],
                    e["step_median_s"])
    return summary


def ratios(summary: pd.DataFrame, table: pd.DataFrame, samples: pd.DataFrame,
           comparisons: int, latencies: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every pair of finished cells of different frameworks within one comparison group (one
    tier), and each reduced-precision cell against its framework's fp32 cell, debugging modes
    left out. Where both were timed in turns, the ratio comes from the
    pairs of samples taken in the same rotations."""
    level = stats.corrected_level(comparisons)
    by_process = process_samples(samples)
    turns = set(table.loc[table["timing"] == "turns", ["cell_id", "repeat"]]
                .itertuples(index=False, name=None))
    rows = []
    for key, a, b in [*_framework_pairs(summary), *_precision_pairs(summary)]:
        pooled_a, pooled_b = _groups(by_process, a), _groups(by_process, b)
        paired = [by_process[a, r][:n] / by_process[b, r][:n]
                  for (cid, r) in sorted(by_process) if cid == a and (a, r) in turns
                  and (b, r) in turns and (b, r) in by_process
                  for n in [min(len(by_process[a, r]), len(by_process[b, r]))]]
        u, ulo, uhi = stats.ratio_ci(pooled_a, pooled_b, level)
        r, lo, hi = stats.paired_ratio_ci(paired, level) if paired else (u, ulo, uhi)
        verdict = stats.verdict(lo, hi)
        repeats = len(paired) if paired else min(len(pooled_a), len(pooled_b))
        rows.append({"run_id": summary["run_id"].iloc[0], **dict(zip(COMPARISON_KEYS, key)),
                     "metric": "step", "a": a, "b": b, "ratio": r, "ci_low": lo, "ci_high": hi,
                     "level": level, "verdict": verdict,
                     "settle_repeats": stats.settle_repeats(r, lo, hi, repeats)
                     if verdict == "inconclusive" else None,
                     "paired": bool(paired), "n_pairs": sum(map(len, paired)) or None,
                     "timing": "turns" if paired else "; ".join(sorted(set(
                         table.loc[table["cell_id"].isin([a, b]), "timing"].dropna()))) or None,
                     "unpaired_ratio": u, "unpaired_ci_low": ulo, "unpaired_ci_high": uhi})
    return _frame(rows + infer_ratios(summary, samples, latencies, level), RATIO_SCHEMA)


INFER_METRICS = {"latency": "latency_p50_s", "request": "step_median_s"}


def infer_heads(cells: pd.DataFrame, column: str) -> pd.DataFrame:
    """Each framework's fastest finished infer cell by a column (its best path), in the
    idiomatic tier where the run has it (as people deploy), else the identical tier."""
    done = cells[(cells["scenario"] == "infer") & cells[column].notna()]
    if (done["tier"] == "idiomatic").any():
        done = done[done["tier"] == "idiomatic"]
    return done.sort_values(column).groupby("framework", sort=False).head(1)


def _infer_pairs(summary: pd.DataFrame) -> list[tuple[tuple, str, str, str]]:
    """(comparison key without tier, metric, cell a, cell b): per infer group and metric, the
    pairs between each framework's best path. Only these get verdicts; every path's figures
    are in the summary."""
    keys = [k for k in COMPARISON_KEYS if k != "tier"]
    infer = summary[(summary["scenario"] == "infer") & (summary["status"] == "ok")]
    return [(key, metric, a["cell_id"], b["cell_id"])
            for key, group in infer.groupby(keys, sort=False)
            for metric, column in INFER_METRICS.items()
            for (_, a), (_, b) in combinations(infer_heads(group, column).iterrows(), 2)]


def infer_ratios(summary: pd.DataFrame, samples: pd.DataFrame, latencies: pd.DataFrame | None,
                 level: float) -> list[dict[str, Any]]:
    """Ratios between the frameworks' best inference paths: latency at batch 1 and time per
    request at the throughput batch, each cell's processes resampled on its own (infer cells
    are timed one after another)."""
    by_metric = {"request": process_samples(samples),
                 "latency": process_samples(latencies.rename(
                     columns={"request": "sample", "latency_s": "step_s"}))
                 if latencies is not None else {}}
    tier = summary.set_index("cell_id")["tier"]
    rows = []
    for key, metric, a, b in _infer_pairs(summary):
        ga, gb = _groups(by_metric[metric], a), _groups(by_metric[metric], b)
        if not ga or not gb:
            continue
        # thousands of requests per process: resampled as blocks of consecutive requests
        _, lo, hi = stats.ratio_ci(stats.block_medians(ga), stats.block_medians(gb), level)
        r = float(np.median(np.concatenate(ga)) / np.median(np.concatenate(gb)))
        verdict = stats.verdict(lo, hi)
        scenario, *rest = key
        rows.append({"run_id": summary["run_id"].iloc[0], "scenario": scenario,
                     "tier": tier[a] if tier[a] == tier[b] else f"{tier[a]}/{tier[b]}",
                     **dict(zip([k for k in COMPARISON_KEYS if k not in ("scenario", "tier")],
                                rest)),
                     "metric": metric, "a": a, "b": b, "ratio": r, "ci_low": lo, "ci_high": hi,
                     "level": level, "verdict": verdict,
                     "settle_repeats": stats.settle_repeats(r, lo, hi, min(len(ga), len(gb)))
                     if verdict == "inconclusive" else None,
                     "paired": False, "n_pairs": None,
                     "timing": "alone: infer cells are timed one after another",
                     "unpaired_ratio": r, "unpaired_ci_low": lo, "unpaired_ci_high": hi})
    return rows


def _comparable(summary: pd.DataFrame) -> pd.DataFrame:
    """Finished training cells a ratio may compare: no self-check, no debugging mode."""
    return summary[(summary["framework"] != SELF_CHECK) & summary["step_median_s"].notna()
                   & (summary["debug_mode"] != True)  # noqa: E712
                   & (summary["scenario"] == "train")]


def _framework_pairs(summary: pd.DataFrame) -> list[tuple[tuple, str, str]]:
    """(comparison key, cell a, cell b) for every pair of finished training cells of different
    frameworks in one comparison group, debugging modes left out."""
    done = _comparable(summary)
    return [(key, a["cell_id"], b["cell_id"])
            for key, group in done.groupby(COMPARISON_KEYS, sort=False)
            for (_, a), (_, b) in combinations(group.iterrows(), 2)
            if a["framework"] != b["framework"]]


def _precision_pairs(summary: pd.DataFrame) -> list[tuple[tuple, str, str]]:
    """(comparison key with precision "<reduced>/fp32", reduced cell, fp32 cell) for each
    finished training cell at a reduced precision (tf32, bf16) and the same framework's cell
    at fp32 (same tier and mode; tuned: whatever each precision's search chose)."""
    done = _comparable(summary)
    same = [k for k in COMPARISON_KEYS if k != "precision"]
    out = []
    for _, group in done.groupby([*same, "framework"], sort=False):
        for _, base in group[group["precision"] == "fp32"].iterrows():
            for _, low in group[group["precision"] != "fp32"].iterrows():
                if low["tier"] == "tuned" or low["mode"] == base["mode"]:
                    key = tuple(f"{low['precision']}/fp32" if k == "precision" else low[k]
                                for k in COMPARISON_KEYS)
                    out.append((key, low["cell_id"], base["cell_id"]))
    return out


def _tier_pairs(summary: pd.DataFrame) -> list[tuple[tuple, Any, Any]]:
    """(key, idiomatic cell, tuned cell) of each framework (same workload, size, device,
    batch, precision)."""
    done = summary[summary["step_median_s"].notna()]
    keys = [k for k in COMPARISON_KEYS if k != "tier"] + ["framework"]
    return [(key, idiom, tuned) for key, group in done.groupby(keys, sort=False)
            for _, tuned in group[group["tier"] == "tuned"].iterrows()
            for _, idiom in group[group["tier"] == "idiomatic"].iterrows()]


def speedups(summary: pd.DataFrame, samples: pd.DataFrame, comparisons: int) -> pd.DataFrame:
    """Each framework's tuned cell against each of its idiomatic cells (same workload, size,
    device, batch, precision): idiomatic step time / tuned, with a CI (timed apart: each cell
    resampled on its own) and the tuned cell's verdict against the idiomatic one."""
    level = stats.corrected_level(comparisons)
    by_process = process_samples(samples)
    keys = [k for k in COMPARISON_KEYS if k != "tier"] + ["framework"]
    rows = []
    for key, idiom, tuned in _tier_pairs(summary):
        a, b = _groups(by_process, idiom["cell_id"]), _groups(by_process, tuned["cell_id"])
        r, lo, hi = stats.ratio_ci(a, b, level)
        verdict = stats.verdict(1 / hi, 1 / lo)
        rows.append({"run_id": tuned["run_id"], **dict(zip(keys, key)),
                     "idiomatic": idiom["cell_id"], "tuned": tuned["cell_id"],
                     "variant": tuned["variant"], "speedup": r, "ci_low": lo, "ci_high": hi,
                     "level": level, "verdict": verdict,
                     "settle_repeats": stats.settle_repeats(1 / r, 1 / hi, 1 / lo,
                                                            min(len(a), len(b)))
                     if verdict == "inconclusive" else None})
    return _frame(rows, SPEEDUP_SCHEMA)


def scaling(summary: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Each finished data-parallel cell against the same framework's one-device cell (same
    tier, mode, workload, size, device, per-replica batch and precision): its scaling
    efficiency, t(1 device) / t(N replicas) per step, with a 95% CI (timed apart)."""
    by_process = process_samples(samples)
    done = summary[summary["step_median_s"].notna() & (summary["scenario"] == "train")]
    keys = ["framework", "tier", "mode", "workload", "size", "device", "batch_size",
            "precision"]
    rows = []
    for _, group in done.groupby(keys, sort=False):
        single = group[group["replicas"] == 1]
        for _, one in single.iterrows():
            for _, many in group[group["replicas"] > 1].iterrows():
                r, lo, hi = stats.ratio_ci(_groups(by_process, one["cell_id"]),
                                           _groups(by_process, many["cell_id"]), 0.95)
                info = BACKENDS.get(many["framework"])
                rows.append({"run_id": many["run_id"], "scenario": "train",
                             **{k: many[k] for k in keys}, "replicas": many["replicas"],
                             "single": one["cell_id"], "parallel": many["cell_id"],
                             "samples_per_s": many["samples_per_s"],
                             "single_samples_per_s": one["samples_per_s"],
                             "efficiency": r, "ci_low": lo, "ci_high": hi, "level": 0.95,
                             "mechanism": info.parallel if info else None})
    return _frame(rows, SCALING_SCHEMA)


def process_samples(samples: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """{(cell_id, repeat): step times in sample order}. In a run timed in turns, sample i of
    every cell of a comparison group (same repeat) was taken in rotation i."""
    return {(cid, int(r)): g.sort_values("sample")["step_s"].to_numpy(dtype=float)
            for (cid, r), g in samples.groupby(["cell_id", "repeat"])}


def _groups(by_process: dict[tuple[str, int], np.ndarray], cell_id: str) -> list[np.ndarray]:
    return [v for (cid, _), v in sorted(by_process.items()) if cid == cell_id]


def comparison_count(summary: pd.DataFrame) -> int:
    """m, the verdicts a run's report states: between-framework ratios (training, and the best
    inference paths), reduced precision against fp32 and tuned-vs-idiomatic speed-ups (the
    Bonferroni correction's denominator)."""
    return (len(_framework_pairs(summary)) + len(_precision_pairs(summary))
            + len(_infer_pairs(summary)) + len(_tier_pairs(summary)))


def tuning(run_dir: Path) -> pd.DataFrame:
    """Every candidate of every tuned-tier search this run used, one row each."""
    rows = []
    for path in sorted((run_dir / "tuning").glob("*.json")):
        record = read_json(path)
        pick = record.get("chosen") or {}
        for c in record.get("candidates", []):
            ci = c.get("vs_identical_ci") or [None, None]
            rows.append({
                "scenario": "train",
                **{k: record.get(k) for k in ("framework", "workload", "size", "device",
                                              "batch_size", "precision")},
                "searched": record.get("created"), "variant": c["variant"], "mode": c["mode"],
                "description": c.get("description"), "correct": c["check"].get("ok"),
                "max_loss_diff": c["check"].get("max_diff"), "error": c.get("error"),
                "differences": json.dumps(c["differences"]) if c.get("differences") else None,
                "median_s": c.get("median_s"), "vs_identical": c.get("vs_identical"),
                "vs_identical_ci_low": ci[0], "vs_identical_ci_high": ci[1],
                "chosen": (c["variant"], c["mode"]) == (pick.get("variant"), pick.get("mode")),
                "compile_stats": json.dumps(c["compile_stats"]) if c.get("compile_stats")
                else None})
    return _frame(rows, TUNING_SCHEMA)


def largest(table: pd.DataFrame) -> pd.DataFrame:
    """One row per largest-batch search, from its tries (``harness.largest``)."""
    from harness.largest import classify

    tries = table[table["scenario"] == "largest"]
    keys = ["framework", "tier", "mode", "workload", "size", "device", "precision"]
    rows = []
    for key, g in tries.groupby(keys, sort=False):
        by_batch = {int(r["batch_size"]): classify(
            r["status"], r["reason"], bool(pd.notna(r["out_of_memory"]) and r["out_of_memory"]))
            for _, r in g.iterrows()}
        fit = [b for b, v in by_batch.items() if v == "ok"]
        best = max(fit) if fit else None
        oom = [b for b, v in by_batch.items() if v == "oom" and (best is None or b > best)]
        other = [v for v in by_batch.values() if v not in ("ok", "oom")]
        row = {"run_id": g["run_id"].iloc[0], "scenario": "largest", **dict(zip(keys, key)),
               "memory_cap_bytes": _first(g["memory_cap_bytes"]), "largest_batch": best,
               "oom_batch": min(oom) if oom else None, "tries": len(g),
               "stopped": other[0] if other else "bisected" if oom and fit
               else "fits at the search's limit" if fit else "batch 1 does not fit"}
        if best is not None:
            r = g[g["batch_size"] == best].iloc[0]
            row.update(step_median_s=r["step_median_s"],
                       items_per_s=r["items_per_step"] / r["step_median_s"]
                       if pd.notna(r["step_median_s"]) else None,
                       peak_rss_bytes=r["peak_rss_bytes"],
                       memory_peak_bytes=r["memory_peak_bytes"])
        if oom:
            row["oom_peak_bytes"] = g[g["batch_size"] == min(oom)]["memory_peak_bytes"].iloc[0]
        rows.append(row)
    return _frame(rows, LARGEST_SCHEMA)


def _first(values: pd.Series) -> Any:
    """The first non-missing value, or None."""
    values = values.dropna()
    return values.iloc[0] if len(values) else None


def _worst(statuses: pd.Series) -> str:
    for status in ("failed", "interrupted", "skipped"):
        if (statuses == status).any():
            return status
    return "ok"


def _frame(rows: list[Any], schema: dict[str, Any]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(schema))
    return _typed(df, schema)


def _typed(df: pd.DataFrame, schema: dict[str, Any]) -> pd.DataFrame:
    dtypes = {c: (t[0] if isinstance(t, tuple) else t) for c, t in schema.items()}
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; schema: {list(dtypes)}")
    return df[list(dtypes)].astype(dtypes).reset_index(drop=True)


def conform(table: pd.DataFrame) -> pd.DataFrame:
    """Check a results table against SCHEMA and cast it; raises ValueError naming what is off."""
    return _typed(table, SCHEMA)


TABLES = {"results": SCHEMA, "summary": SUMMARY_SCHEMA, "ratios": RATIO_SCHEMA,
          "speedups": SPEEDUP_SCHEMA, "tuning": TUNING_SCHEMA, "losses": LOSSES_SCHEMA,
          "samples": SAMPLES_SCHEMA, "latencies": LATENCIES_SCHEMA, "largest": LARGEST_SCHEMA,
          "accuracy": ACCURACY_SCHEMA, "scaling": SCALING_SCHEMA}
SMALL_TABLES = ("results", "summary", "ratios", "speedups", "tuning", "largest",
                "accuracy", "scaling")  # also CSV


def write(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Collect a run's raw outputs and save every table as Parquet (and the small ones as CSV)."""
    table, losses, samples, latencies, accuracy = collect(run_dir)
    run = RunManifest.read(run_dir)
    gpus = run.host.get("gpus") or [{}]
    groups = sample_groups(samples)
    summary = summarize(table, groups, run.peak_flops_per_s, gpus[0].get("name"), latencies)
    m = comparison_count(summary)
    tables = {"results": table, "summary": summary,
              "ratios": ratios(summary, table, samples, m, latencies),
              "speedups": speedups(summary, samples, m), "tuning": tuning(run_dir),
              "losses": losses, "samples": samples, "latencies": latencies,
              "largest": largest(table), "accuracy": accuracy,
              "scaling": scaling(summary, samples)}
    for name, df in tables.items():
        with atomic(run_dir / f"{name}.parquet") as tmp:
            table = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(table.replace_schema_metadata(
                {**(table.schema.metadata or {}), SCHEMA_KEY: str(SCHEMA_VERSION).encode()}), tmp)
        if name in SMALL_TABLES:
            with atomic(run_dir / f"{name}.csv") as tmp:
                df.to_csv(tmp, index=False)
    return tables


def load(run_dir: Path, lenient: bool = False) -> dict[str, pd.DataFrame]:
    """Read a run's tables back, checked against their schemas. ``lenient``: a table written
    before a column existed gets it empty (and a table written before it existed comes back
    empty), so older runs still render and compare without being rewritten."""
    if not (run_dir / "results.parquet").exists():
        raise FileNotFoundError(f"{run_dir} holds no results.parquet; is it a framebench run?")
    tables = {}
    for name, schema in TABLES.items():
        path = run_dir / f"{name}.parquet"
        df = read_table(path) if path.exists() or not lenient else pd.DataFrame()
        if lenient:
            # a run from before scenarios measured training only
            old = {"scenario": "train", "metric": "step", "replicas": 1}
            df = df.assign(**{c: old.get(c, pd.NA) if len(df) else pd.NA
                              for c in schema if c not in df.columns})
        tables[name] = _typed(df, schema)
    return tables


def read_table(path: Path) -> pd.DataFrame:
    """One of a run's Parquet tables; a corrupt or truncated file, or one written by a newer
    framebench (``SCHEMA_KEY`` in its metadata), is refused with a message naming it."""
    try:
        version = int((pq.read_schema(path).metadata or {}).get(SCHEMA_KEY, b"0"))
        df = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise UnreadableFile(f"{path} is corrupt or truncated ({str(exc)[:200]}); `framebench "
                             f"report {path.parent}` writes the tables again from the cells' "
                             "records") from None
    if version > SCHEMA_VERSION:
        raise newer(path, version)
    return df


def empty(name: str) -> pd.DataFrame:
    """A table with no rows, of the schema of TABLES[name]."""
    return _frame([], TABLES[name])


def schema_markdown(schema: dict[str, tuple[str, str]] = SCHEMA) -> str:
    return "\n".join(f"| `{c}` | {t} | {d} |" for c, (t, d) in schema.items())
