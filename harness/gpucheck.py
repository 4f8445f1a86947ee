"""The GPU verification: every CUDA path of framebench run on the NVIDIA GPUs present, and
its figures checked for sanity. ``nox -s gpu`` (a venv per framework with its CUDA wheels), or
from the source tree with a machine's own Python where neither nox nor a registry is there::

    PYTHONPATH=. python3 -m harness.gpucheck --python torch=python3 --python jax=python3

Three short runs (``--quick`` budgets) through the ordinary runner, on device ``cuda``:
``precision`` (mlp, identical tier, every mode, fp32 / tf32 / bf16), ``infer`` (cnn, every
inference path) and, with two GPUs or more, ``parallel`` (mlp on 1 and on every GPU). Then each
cell's record must show: it finished; a sync that waits (the sync check); an allocator peak
above the parameters' bytes and below the GPU's memory; NVML's figure for the process at least
that peak; TF32 read back on exactly the tf32 cells; bf16 as the compute type of the bf16 cells;
a compiled mode that compiled; MFU against the datasheet above 0 and below 1; inference outputs
that match the numpy reference; a scaling efficiency above 0 and at most 1.2. The checks, with
their figures, go to the terminal and to ``gpucheck.json`` in the results folder. Exit status 0:
all passed; 1: a check failed; 2: no NVIDIA GPU here, so nothing was verified.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness import results
from harness.backends import FRAMEWORKS
from harness.measure import gpu_info

NO_GPU = 2


@dataclass
class Check:
    run: str
    cell: str
    what: str
    ok: bool
    detail: str


def runs(gpus: int) -> dict[str, list[str]]:
    """The check's runs: name -> framebench options (device, budgets and tiers included)."""
    common = ["--devices", "cuda", "--quick", "--tiers", "identical", "--steady-seconds", "0.5"]
    out = {
        "precision": [*common, "--workloads", "mlp", "--scenarios", "train",
                      "--modes", "eager,graph,compiled", "--precision", "fp32,tf32,bf16"],
        "infer": [*common, "--workloads", "cnn", "--scenarios", "infer",
                  "--infer-paths", "eager,compiled,export"],
    }
    if gpus >= 2:
        out["parallel"] = [*common, "--workloads", "mlp", "--scenarios", "train",
                           "--modes", "eager,graph,compiled", "--replicas", f"1,{gpus}"]
    return out


def tf32_read_back(framework: str, settings: dict[str, Any]) -> bool | None:
    """Whether the framework's float32 matmuls may use TF32, as its settings read back (None:
    the settings do not say)."""
    if framework == "torch":
        if "cuda_matmul_fp32_precision" in settings:
            return settings["cuda_matmul_fp32_precision"] == "tf32"
        return settings.get("cuda_matmul_allow_tf32")
    if framework == "tensorflow":
        return settings.get("matmul_tf32")
    if framework == "jax":
        precision = settings.get("matmul_precision")
        return None if precision is None else precision == "tensorfloat32"
    return None


def check_tables(run: str, tables: dict[str, pd.DataFrame],
                 gpus: list[dict[str, Any]]) -> list[Check]:
    """The sanity checks of one run's tables (``harness.results.load``)."""
    memory = min((g.get("memory_total_bytes") or 0 for g in gpus), default=0) or None
    summary, per_process = tables["summary"], tables["results"]
    out: list[Check] = []

    def add(cell: str, what: str, ok: bool, detail: str) -> None:
        out.append(Check(run, cell, what, bool(ok), detail))

    cells = summary[summary["framework"].isin(list(FRAMEWORKS))]
    if cells.empty:
        add("-", "cells ran", False, "the run has no cell of a framework")
    for _, c in cells.iterrows():
        cid = c["cell_id"]
        if c["status"] == "skipped":
            add(cid, "ran", False, f"skipped: {c['reason']}")
            continue
        add(cid, "finished", c["status"] == "ok", str(c["status"]) + (
            f": {str(c['reason'])[:300]}" if c["status"] != "ok" else ""))
        if c["status"] != "ok":
            continue
        procs = per_process[per_process["cell_id"] == cid]
        settings = json.loads(procs["settings"].dropna().iloc[0]) \
            if procs["settings"].notna().any() else {}
        if c["scenario"] == "train":
            add(cid, "sync waits for the work", c["sync_ok"] is True,
                f"sync check ok: {c['sync_ok']}")
            params = (c["param_count"] or 0) * 4  # float32 weights in every precision
            peak = c["device_peak_bytes"]
            add(cid, "allocator peak plausible",
                pd.notna(peak) and params < peak and (memory is None or peak < memory),
                f"peak {_mib(peak)} MiB; parameters {_mib(params)} MiB; GPU {_mib(memory)} MiB")
            nvml = procs["nvml_process_bytes"].max()
            add(cid, "NVML sees the process", pd.notna(nvml) and nvml > 0
                and (pd.isna(peak) or nvml >= peak) and (memory is None or nvml <= memory),
                f"NVML {_mib(nvml)} MiB, allocator peak {_mib(peak)} MiB")
            mfu = c["mfu_datasheet"]
            add(cid, "MFU below the datasheet peak", pd.notna(mfu) and 0 < mfu < 1,
                f"MFU (datasheet) {mfu:.3f}" if pd.notna(mfu) else "no MFU")
            if c["mode"] != "eager":
                add(cid, "the compiled mode compiled", pd.notna(c["compiles"])
                    and c["compiles"] >= 1, f"compiles {c['compiles']}")
        tf32 = tf32_read_back(c["framework"], settings)
        add(cid, "TF32 read back as asked", tf32 is (c["precision"] == "tf32"),
            f"precision {c['precision']}, TF32 read back: {tf32}")
        if c["precision"] == "bf16":
            dtype = str(settings.get("compute_dtype", ""))
            add(cid, "bf16 compute", "bfloat16" in dtype, f"compute dtype {dtype!r}")
        if c["scenario"] == "infer":
            err = c["reference_error"]
            add(cid, "outputs match the numpy reference", pd.notna(err),
                f"largest relative error {err:.2e}" if pd.notna(err) else "not checked")
    for _, s in tables["scaling"].iterrows():
        eff = s["efficiency"]
        add(s["parallel"], "scaling efficiency plausible", pd.notna(eff) and 0 < eff <= 1.2,
            f"{s['replicas']} GPUs: efficiency {eff:.2f} ({s['mechanism']})")
    return out


def _mib(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else f"{value / 2**20:.0f}"


def main(argv: list[str] | None = None) -> int:
    from harness.__main__ import main as framebench

    p = argparse.ArgumentParser(prog="python -m harness.gpucheck", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--python", action="append", default=[], metavar="FW=PATH",
                   help="a framework's interpreter (default: this one for every framework)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--reports-dir", type=Path, default=Path("reports"))
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help="comma list (default: all; one that is not installed is reported as "
                   "not verified)")
    args = p.parse_args(argv)
    gpus = gpu_info()
    if not gpus:
        print("gpucheck: no NVIDIA GPU visible here (NVML reports none, or nvidia-ml-py is "
              "missing): the CUDA paths are NOT verified.")
        return NO_GPU
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    checks: list[Check] = []
    for name, options in runs(len(gpus)).items():
        run_id = f"gpucheck-{stamp}-{name}"
        pythons = [a for py in args.python for a in ("--python", py)]
        code = framebench([*options, "--frameworks", args.frameworks, *pythons,
                           "--run-id", run_id, "--results-dir", str(args.results_dir),
                           "--reports-dir", str(args.reports_dir)])
        run_dir = args.results_dir / run_id
        if not (run_dir / "results.parquet").exists():
            checks.append(Check(name, "-", "run finished", False, f"framebench exited {code} "
                                "without tables"))
            continue
        checks += check_tables(name, results.load(run_dir), gpus)
    report = {"gpus": gpus, "passed": all(c.ok for c in checks),
              "checks": [asdict(c) for c in checks]}
    path = args.results_dir / f"gpucheck-{stamp}.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.run:9} {c.cell[:58]:58} {c.what}: {c.detail}")
    failed = [c for c in checks if not c.ok]
    print(f"gpucheck: {len(checks) - len(failed)} of {len(checks)} checks passed on "
          f"{', '.join(str(g.get('name')) for g in gpus)}; written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
