"""Raw cell outputs -> pandas tables -> Parquet and CSV. The schema lives here.

Three tables per run, all keyed by ``run_id`` and ``cell_id``:
- ``results``: one row per cell (the contract between measuring and reporting);
- ``losses``: the training loss at every step of every cell;
- ``samples``: every steady-state timing sample of every cell.
Run-wide facts (host, versions, arguments) are in ``run.json`` beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

# column -> (pandas dtype, description). Units are in the names: _s seconds, _bytes bytes.
SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the run this row belongs to (see run.json)"),
    "cell_id": ("string", "workload-framework-mode-device-b<batch>"),
    "workload": ("string", "workload name (harness.spec.WORKLOADS)"),
    "framework": ("string", "torch | tensorflow | jax"),
    "mode": ("string", "eager | graph | compiled"),
    "device": ("string", "cpu | cuda"),
    "batch_size": ("Int64", "examples per training step"),
    "dataset": ("string", "dataset name"),
    "precision": ("string", "numeric precision policy"),
    "status": ("string", "ok | failed | skipped | interrupted"),
    "reason": ("string", "why a cell failed or was skipped (error tail), else empty"),
    "framework_version": ("string", "version of the framework the cell ran"),
    "intra_op_threads": ("Int64", "framework's intra-op thread setting as read back (0 = default)"),
    "param_count": ("Int64", "trainable parameters"),
    "import_s": ("Float64", "time to import the framework in a fresh process"),
    "build_s": ("Float64", "time to build the model, load weights and make the optimiser"),
    "first_step_s": ("Float64", "first training step, synced; includes tracing/compiling"),
    "train_s": ("Float64", "whole training budget, first step and per-step loss readback included"),
    "train_steps": ("Int64", "training steps in the budget"),
    "test_accuracy": ("Float64", "accuracy on the test split after the training budget"),
    "final_loss": ("Float64", "training loss at the last step of the budget"),
    "steps_per_sample": ("Int64", "K: steps per timing sample (one sync per sample)"),
    "n_samples": ("Int64", "steady-state timing samples"),
    "step_median_s": ("Float64", "median steady-state time per training step"),
    "step_q1_s": ("Float64", "first quartile of the step time"),
    "step_q3_s": ("Float64", "third quartile of the step time"),
    "step_iqr_s": ("Float64", "interquartile range of the step time"),
    "step_min_s": ("Float64", "fastest sample's time per step"),
    "samples_per_s": ("Float64", "throughput: batch_size / step_median_s"),
    "peak_rss_bytes": ("Int64", "peak resident memory of the cell process (VmHWM)"),
    "wall_s": ("Float64", "wall time of the cell process, start to exit"),
}
LOSSES_SCHEMA = {"run_id": "string", "cell_id": "string", "step": "Int64", "loss": "Float64"}
SAMPLES_SCHEMA = {"run_id": "string", "cell_id": "string", "sample": "Int64", "step_s": "Float64"}


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def collect(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build the three tables from the raw per-cell files of a run directory."""
    run_id = _read(run_dir / "run.json").get("run_id", run_dir.name)
    rows, losses, samples = [], [], []
    for cell_dir in sorted((run_dir / "cells").glob("*/")):
        outcome = _read(cell_dir / "outcome.json")
        if not outcome:
            continue  # never started
        record = _read(cell_dir / "cell.json")
        cell = _read(cell_dir / "cell_spec.json")
        info = record.get("framework_info", {})
        step_samples = record.get("step_samples_s", [])
        row = {k: record.get(k) for k in SCHEMA}
        row.update({k: cell.get(k) for k in ("workload", "framework", "mode", "device",
                                              "batch_size", "dataset", "precision")})
        row.update(run_id=run_id, cell_id=cell_dir.name, status=outcome.get("status"),
                   reason=outcome.get("reason"), wall_s=outcome.get("wall_s"),
                   framework_version=info.get("framework_version"),
                   intra_op_threads=info.get("intra_op_threads"),
                   n_samples=len(step_samples) or None)
        rows.append(row)
        losses += [(run_id, cell_dir.name, i, v) for i, v in enumerate(record.get("losses", []))]
        samples += [(run_id, cell_dir.name, i, v) for i, v in enumerate(step_samples)]
    table = pd.DataFrame(rows, columns=list(SCHEMA))
    return (conform(table),
            _typed(pd.DataFrame(losses, columns=list(LOSSES_SCHEMA)), LOSSES_SCHEMA),
            _typed(pd.DataFrame(samples, columns=list(SAMPLES_SCHEMA)), SAMPLES_SCHEMA))


def conform(table: pd.DataFrame) -> pd.DataFrame:
    """Check a results table against SCHEMA and cast it; raises ValueError naming what is off."""
    missing = [c for c in SCHEMA if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks columns {missing}; schema: {list(SCHEMA)}")
    return _typed(table[list(SCHEMA)], {c: t for c, (t, _) in SCHEMA.items()})


def _typed(df: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    return df.astype(dtypes).reset_index(drop=True)


def write(run_dir: Path) -> pd.DataFrame:
    """Collect a run's raw outputs and save results/losses/samples as Parquet, results as CSV."""
    table, losses, samples = collect(run_dir)
    table.to_parquet(run_dir / "results.parquet", index=False)
    table.to_csv(run_dir / "results.csv", index=False)
    losses.to_parquet(run_dir / "losses.parquet", index=False)
    samples.to_parquet(run_dir / "samples.parquet", index=False)
    return table


def load(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read a run's tables back, checked against the schema."""
    if not (run_dir / "results.parquet").exists():
        raise FileNotFoundError(f"{run_dir} holds no results.parquet; is it a framebench run?")
    return (conform(pd.read_parquet(run_dir / "results.parquet")),
            _typed(pd.read_parquet(run_dir / "losses.parquet"), LOSSES_SCHEMA),
            _typed(pd.read_parquet(run_dir / "samples.parquet"), SAMPLES_SCHEMA))


def schema_markdown() -> str:
    return "\n".join(f"| `{c}` | {t} | {d} |" for c, (t, d) in SCHEMA.items())
