"""Per-device truth: a GEMM peak per device and precision, measured pinned like the cells; MFU of
each cell against its own device's peak; datasheet peaks by exact GPU model; device memory
peaks per phase (the evaluation apart, JAX's lifetime counter read honestly)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness import results
from harness.backends import peak
from harness.flops import datasheet_peak
from harness.measure import cpu_model
from harness.record import CellRecord, Outcome, RunManifest
from harness.spec import Cell


def test_datasheet_matches_the_exact_gpu_model() -> None:
    sxm, pcie, nvl = (datasheet_peak(f"NVIDIA H100 {m}", "bf16")
                      for m in ("80GB HBM3", "PCIe", "NVL"))
    assert sxm == 989.4e12 and pcie == 756.5e12 and nvl == 835.5e12
    assert datasheet_peak("NVIDIA H100 PCIe", "fp32") != datasheet_peak("NVIDIA H100 80GB HBM3",
                                                                         "fp32")
    assert datasheet_peak("NVIDIA H200", "tf32") == 494.7e12
    assert datasheet_peak("NVIDIA A100-PCIE-40GB", "tf32") == 156e12
    assert datasheet_peak("Tesla T4", "bf16") is None  # Turing: no bfloat16 tensor cores
    # a name that only contains a known one is not that model
    assert datasheet_peak("NVIDIA H100", "bf16") is None
    assert datasheet_peak("NVIDIA H100 80GB HBM3 (some fork)", "bf16") is None
    assert datasheet_peak("AMD EPYC 7B13", "fp32") is None and datasheet_peak(None, "fp32") is None


def test_who_measures_each_device_and_precision() -> None:
    assert peak.frameworks_for("cpu", "fp32", ["jax", "torch", "jax"]) == ["jax", "torch",
                                                                           "numpy"]
    assert peak.frameworks_for("cpu", "bf16", ["torch"]) == ["torch"]  # numpy has no bf16
    assert peak.frameworks_for("cuda", "fp32", ["torch"]) == ["torch"]  # numpy: CPU only


def test_peaks_are_keyed_per_device_and_precision_and_pinned_like_the_cells() -> None:
    """One entry per (device, precision) of the cells, each measured in the environment the
    runner gives such a cell: pinned to its one thread, no GPU visible for the CPU, the
    framework's own configure applied. A cuda group on a machine without a GPU is recorded
    without a figure, with the reason."""
    pytest.importorskip("jax")
    cpu = Cell("jax", "mlp", "compiled", device="cpu", precision="fp32", threads=1)
    cells = [Cell("noop", "mlp", "eager", threads=1), cpu,
             Cell("jax", "mlp", "compiled", device="cuda", precision="fp32", threads=1)]
    said: list[str] = []
    peaks = peak.measure_device_peaks(cells, {"jax": sys.executable}, say=said.append)
    assert set(peaks) == {"cpu-fp32", "cuda-fp32"}
    p = peaks["cpu-fp32"]
    assert set(p["by_framework"]) == {"jax", "numpy"}
    assert all(v > 1e8 for v in p["by_framework"].values())
    assert p["flops_per_s"] == max(p["by_framework"].values())
    assert p["framework"] in p["by_framework"]
    assert p["threads"] == 1 and len(p["affinity"]) == 1
    assert p["env"]["OMP_NUM_THREADS"] == "1" and p["env"]["MKL_NUM_THREADS"] == "1"
    assert p["env"]["CUDA_VISIBLE_DEVICES"] == "" and p["env"]["JAX_PLATFORMS"] == "cpu"
    assert p["settings"]["jax"]["cpu_threads_from_affinity"] == 1
    assert p["settings"]["jax"]["matmul_precision"] == "highest"  # fp32: TF32 off
    assert p["device_name"] == cpu_model() and p["datasheet_flops_per_s"] is None
    assert not p["errors"]
    gpu = peaks["cuda-fp32"]
    if gpu["flops_per_s"] is None:  # no GPU here: no figure, and why
        assert gpu["by_framework"] == {} and "jax" in gpu["errors"] and said
    else:
        assert gpu["device_name"] and gpu["env"]["JAX_PLATFORMS"] is None


def test_the_measuring_process_applies_the_backends_configure(monkeypatch) -> None:  # noqa: ANN001
    """In process (a fake matmul): set_threads, then the backend's configure with the cell's
    device, precision and threads, whose read-back is recorded."""
    calls: list[tuple] = []

    class Backend:
        @staticmethod
        def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
            calls.append((device, precision, threads))
            return {"matmul_tf32": precision == "tf32"}

    monkeypatch.setattr("harness.backends.load", lambda fw: Backend)
    monkeypatch.setattr("harness.measure.set_threads",
                        lambda n: {"threads": n, "affinity": list(range(n))})
    monkeypatch.setitem(peak.MAKERS, "torch", lambda device, precision, n: (lambda k: None,
                                                                            None))
    monkeypatch.setitem(peak.SIZES, "cpu", 8)
    out = peak.measure("torch", "cpu", "tf32", 1)
    assert calls == [("cpu", "tf32", 1)]
    assert out["settings"] == {"matmul_tf32": True} and out["threads"] == 1
    assert out["flops_per_s"] > 0 and out["n"] == 8


def test_combine_keeps_every_figure_and_the_best() -> None:
    figures = {"torch": {"flops_per_s": 3e14, "threads": 4, "affinity": [0, 1, 2, 3],
                         "device_name": "NVIDIA H100 PCIe", "settings": {"a": 1}},
               "jax": {"flops_per_s": 5e14, "device_name": "NVIDIA H100 PCIe"},
               "tensorflow": {"error": "no GPU"}}
    p = peak.combine("cuda", "bf16", figures, threads=4)
    assert p["flops_per_s"] == 5e14 and p["framework"] == "jax"
    assert p["by_framework"] == {"torch": 3e14, "jax": 5e14}
    assert p["errors"] == {"tensorflow": "no GPU"}
    assert p["datasheet_flops_per_s"] == 756.5e12  # the PCIe card's, not the SXM's
    none = peak.combine("cuda", "bf16", {"torch": {"error": "x"}}, 2, "Some New GPU")
    assert none["flops_per_s"] is None and none["datasheet_flops_per_s"] is None


def _row(cell_id: str, device: str, precision: str, peak_flops: float | None,
         sheet: float | None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(results.SCHEMA)
    row.update(run_id="r", cell_id=cell_id, workload="mlp", size="small", framework="torch",
               tier="identical", mode="eager", device=device, batch_size=32,
               precision=precision, status="ok", repeat=0, debug_mode=False,
               train_step_flops=int(1e9), items_per_step=32, steps_per_sample=1,
               machine_probe_s=1e-3, step_median_s=1e-2, peak_flops_per_s=peak_flops,
               datasheet_peak_flops_per_s=sheet, **extra)
    return row


def test_mfu_uses_each_cells_own_device_and_precision_peak() -> None:
    table = results._frame([_row("a-cpu", "cpu", "fp32", 1e11, None),
                            _row("b-cuda", "cuda", "bf16", 5e14, 989.4e12)], results.SCHEMA)
    groups = {"a-cpu": [np.full(30, 1e-2)], "b-cuda": [np.full(30, 1e-4)]}
    # the run-wide arguments (old runs' single peak) must not be used when rows carry peaks
    s = results.summarize(table, groups, 123.0, "NVIDIA H100 PCIe").set_index("cell_id")
    assert s.loc["a-cpu", "mfu"] == pytest.approx(1e9 / 1e-2 / 1e11)
    assert s.loc["a-cpu", "peak_flops_per_s"] == 1e11 and pd.isna(s.loc["a-cpu", "mfu_datasheet"])
    assert s.loc["b-cuda", "mfu"] == pytest.approx(1e9 / 1e-4 / 5e14)
    assert s.loc["b-cuda", "peak_flops_per_s"] == 5e14
    assert s.loc["b-cuda", "mfu_datasheet"] == pytest.approx(1e9 / 1e-4 / 989.4e12)


def test_an_unlisted_gpu_has_no_datasheet_mfu_and_old_tables_use_the_run_peak() -> None:
    groups = {"b-cuda": [np.full(30, 1e-4)]}
    table = results._frame([_row("b-cuda", "cuda", "fp32", 4e13, None)], results.SCHEMA)
    s = results.summarize(table, groups).iloc[0]
    assert s["mfu"] == pytest.approx(1e13 / 4e13) and pd.isna(s["mfu_datasheet"])
    old = results._frame([_row("b-cuda", "cuda", "fp32", None, None)], results.SCHEMA)
    s = results.summarize(old, groups, 5e13, "NVIDIA A100-SXM4-80GB").iloc[0]
    assert s["mfu"] == pytest.approx(0.2) and s["mfu_datasheet"] == pytest.approx(1e13 / 19.5e12)


def test_cell_peaks_reads_new_and_old_runs() -> None:
    new = RunManifest(device_peaks={
        "cpu-fp32": {"flops_per_s": 1e11, "datasheet_flops_per_s": None},
        "cuda-bf16": {"flops_per_s": 6e14, "datasheet_flops_per_s": 989.4e12}})
    assert results.cell_peaks(new, "cuda", "bf16") == (6e14, 989.4e12)
    assert results.cell_peaks(new, "cpu", "fp32") == (1e11, None)
    assert results.cell_peaks(new, "cuda", "fp32") == (None, None)  # not measured: no MFU
    old = RunManifest(peak_flops_per_s=2e11, host={"gpus": [{"name": "NVIDIA H200"}]})
    assert results.cell_peaks(old, "cpu", "fp32") == (2e11, None)
    assert results.cell_peaks(old, "cuda", "bf16") == (2e11, 989.4e12)


def test_collect_keeps_the_evaluation_out_of_the_training_device_peak(tmp_path: Path) -> None:
    cell = Cell("torch", "mlp", "eager", device="cuda", precision="bf16")
    RunManifest(run_id="r", device_peaks={"cuda-bf16": {
        "flops_per_s": 6e14, "datasheet_flops_per_s": 989.4e12}}).save(tmp_path)
    proc = tmp_path / "cells" / cell.id / "r0"
    proc.mkdir(parents=True)
    (proc / "cell_spec.json").write_text(cell.to_json())
    Outcome("ok").save(proc / "outcome.json")
    CellRecord(cell_id=cell.id, status="ok",
               phase_peak_rss_bytes={"build": 10, "train": 20, "evaluate": 30, "steady": 15},
               phase_device_peak_bytes={"build": 100, "first_step": 400, "train": 500,
                                        "evaluate": 900, "steady": None},
               ).save(proc / "cell.json")
    row = results.collect(tmp_path)[0].iloc[0]
    assert row["device_peak_bytes"] == 500 and row["device_peak_evaluate_bytes"] == 900
    assert row["peak_rss_evaluate_bytes"] == 30 and row["peak_rss_steady_bytes"] == 15
    assert row["peak_flops_per_s"] == 6e14 and row["datasheet_peak_flops_per_s"] == 989.4e12


def test_jax_phase_peak_only_where_the_phase_raised_the_lifetime_counter() -> None:
    """JAX cannot reset its peak: a phase that stayed below an earlier phase's peak reports
    None rather than that earlier figure."""
    pytest.importorskip("jax")
    from harness.backends.jax.identical import OnDevice, phase_peak

    assert phase_peak(None, 100) == 100 and phase_peak(100, 150) == 150
    assert phase_peak(150, 150) is None and phase_peak(None, None) is None

    class Counter:  # a GPU whose lifetime peak the test moves
        platform = "gpu"
        peak = 0

        def memory_stats(self) -> dict[str, int]:
            return {"peak_bytes_in_use": self.peak, "bytes_in_use": 0}

    trainer, device = OnDevice(), Counter()
    trainer.device = device
    seen = {}
    device.peak = 100                               # build: no reset before it (no trainer)
    seen["build"] = trainer.device_peak_bytes()
    for phase, peak_after in (("first_step", 400), ("train", 400), ("evaluate", 900),
                              ("steady", 900)):
        trainer.reset_device_peak()
        device.peak = peak_after
        seen[phase] = trainer.device_peak_bytes()
    assert seen == {"build": 100, "first_step": 400, "train": None, "evaluate": 900,
                    "steady": None}
    device.platform = "cpu"
    assert trainer.device_peak_bytes() is None
