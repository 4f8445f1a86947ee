"""The GPU verification (harness.gpucheck): its checks pass on sane figures, name each insane
one, and on a machine without a GPU it says that nothing was verified."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from harness import gpucheck
from harness.measure import gpu_info
from tests.conftest import ROOT

GPU = {"name": "NVIDIA H200", "memory_total_bytes": 140 * 2**30}
SETTINGS = {
    "torch": lambda tf32: {"cuda_matmul_fp32_precision": "tf32" if tf32 else "ieee"},
    "tensorflow": lambda tf32: {"matmul_tf32": tf32},
    "jax": lambda tf32: {"matmul_precision": "tensorfloat32" if tf32 else "highest"},
}


def sane_tables() -> dict[str, pd.DataFrame]:
    """What a healthy GPU run's tables hold: a training cell per framework and precision, an
    inference cell, and a two-GPU scaling row."""
    summary, per_process = [], []
    for fw in SETTINGS:
        for precision in ("fp32", "tf32", "bf16"):
            cid = f"mlp-small-{fw}-identical-compiled-cuda-b32-{precision}"
            summary.append({
                "cell_id": cid, "framework": fw, "status": "ok", "reason": None,
                "scenario": "train", "mode": "compiled", "precision": precision,
                "sync_ok": True, "param_count": 1_000_000, "device_peak_bytes": 40 * 2**20,
                "mfu_datasheet": 0.02, "compiles": 1, "reference_error": None})
            settings = SETTINGS[fw](precision == "tf32")
            if precision == "bf16":
                settings["compute_dtype"] = "bfloat16"
            per_process.append({"cell_id": cid, "settings": json.dumps(settings),
                                "nvml_process_bytes": 600 * 2**20})
    infer = "cnn-small-torch-identical-export-cuda-b256-infer"
    summary.append({**summary[0], "cell_id": infer, "scenario": "infer", "mode": "export",
                    "precision": "fp32", "reference_error": 1e-6})
    per_process.append({**per_process[0], "cell_id": infer})
    scaling = [{"parallel": "mlp-small-jax-identical-compiled-cudax2-b32", "replicas": 2,
                "efficiency": 0.93, "mechanism": "jax.jit over a device mesh"}]
    return {"summary": pd.DataFrame(summary), "results": pd.DataFrame(per_process),
            "scaling": pd.DataFrame(scaling)}


def failures(tables: dict[str, pd.DataFrame]) -> set[tuple[str, str]]:
    return {(c.cell, c.what) for c in gpucheck.check_tables("t", tables, [GPU]) if not c.ok}


def test_sane_figures_pass_every_check() -> None:
    checks = gpucheck.check_tables("t", sane_tables(), [GPU])
    assert len(checks) > 40 and all(c.ok for c in checks), [c for c in checks if not c.ok]


def _where(df: pd.DataFrame, cell: str, **values: object) -> pd.DataFrame:
    df = df.copy()
    for k, v in values.items():
        df.loc[df["cell_id"] == cell, k] = v
    return df


PEAK, NVML = "allocator peak plausible", "NVML sees the process"


@pytest.mark.parametrize(("table", "values", "whats"), [
    ("summary", {"sync_ok": False}, ["sync waits for the work"]),
    ("summary", {"device_peak_bytes": None}, [PEAK]),
    ("summary", {"device_peak_bytes": 2**20}, [PEAK]),  # below the parameters' bytes
    ("summary", {"device_peak_bytes": 200 * 2**30}, [PEAK, NVML]),  # above the GPU and NVML
    ("summary", {"mfu_datasheet": 1.4}, ["MFU below the datasheet peak"]),  # unsynced timing
    ("summary", {"compiles": 0}, ["the compiled mode compiled"]),
    ("summary", {"status": "failed", "reason": "CUDA error"}, ["finished"]),
    ("results", {"nvml_process_bytes": None}, [NVML]),
    ("results", {"settings": json.dumps({"cuda_matmul_fp32_precision": "tf32"})},
     ["TF32 read back as asked"]),  # TF32 on in an fp32 cell
])
def test_each_insane_figure_fails_its_check(table: str, values: dict, whats: list[str]) -> None:
    cell = "mlp-small-torch-identical-compiled-cuda-b32-fp32"
    tables = sane_tables()
    tables[table] = _where(tables[table], cell, **values)
    assert failures(tables) == {(cell, w) for w in whats}


def test_bf16_compute_and_scaling_are_checked() -> None:
    tables = sane_tables()
    cell = "mlp-small-jax-identical-compiled-cuda-b32-bf16"
    tables["results"] = _where(tables["results"], cell, settings=json.dumps(
        {"matmul_precision": "highest", "compute_dtype": "float32"}))
    tables["scaling"].loc[0, "efficiency"] = 1.9
    assert failures(tables) == {(cell, "bf16 compute"), (
        "mlp-small-jax-identical-compiled-cudax2-b32", "scaling efficiency plausible")}


def test_a_run_with_two_gpus_adds_the_data_parallel_run() -> None:
    assert set(gpucheck.runs(1)) == {"precision", "infer"}
    parallel = gpucheck.runs(4)["parallel"]
    assert parallel[parallel.index("--replicas") + 1] == "1,4" and "cuda" in parallel


@pytest.mark.skipif(bool(gpu_info()), reason="a GPU is present: the check would run")
def test_without_a_gpu_it_says_nothing_was_verified(tmp_path) -> None:  # noqa: ANN001
    done = subprocess.run([sys.executable, "-m", "harness.gpucheck", "--results-dir",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == gpucheck.NO_GPU, done.stdout + done.stderr
    assert "NOT verified" in done.stdout and not list(tmp_path.iterdir())
