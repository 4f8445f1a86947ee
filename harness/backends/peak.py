"""GEMM peaks for MFU: one per device and precision the run's cells use, measured the way those
cells run.

``measure_device_peaks(cells, pythons)`` (in the harness's process) groups the cells by
(device, precision) and, for each group, runs ``python -m harness.backends.peak FRAMEWORK
DEVICE PRECISION THREADS`` once per framework in that framework's own interpreter (numpy too,
on the CPU in float32), each in the environment the runner gives a representative cell of the
group (``harness.runner.cell_env``: OMP/MKL thread counts, CUDA_VISIBLE_DEVICES="" and
JAX_PLATFORMS=cpu for the CPU, the GPUs the cells see otherwise). Inside, the process does what
a cell does before its framework starts: ``harness.measure.set_threads`` pins it to the cell's
CPUs, then the backend's own ``configure(device, precision, threads)`` sets the intra-op pools
and the precision flags (fp32: TF32 off; tf32: on). It then times square N x N matmuls on the
device in the precision's compute dtype (fp32, tf32: float32 operands; bf16: bfloat16 operands,
what autocast and the bf16 casts give the cells' matmuls): a warm-up (which also compiles), then
samples of k matmuls and one sync, k sized so a sample lasts MIN_SAMPLE_S, best of REPEATS (or of
what fits in BUDGET_S). It prints one JSON line: the figure and the settings read back.

The device's peak is the best of its frameworks; every figure and the settings are kept
(``RunManifest.device_peaks``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

SIZES = {"cpu": 2048, "cuda": 8192}  # N: a GPU needs a larger product to reach its peak
MIN_SAMPLE_S = 0.05
REPEATS = 5
BUDGET_S = 5.0      # stop sampling after this long (a slow bf16 CPU matmul); one sample at least
TIMEOUT_S = 600.0
NUMPY = "numpy"
# the variables of the cell's environment that decide where and how wide the matmul runs
PINNING_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS",
               "CUDA_DEVICE_ORDER", "XLA_PYTHON_CLIENT_PREALLOCATE", "TF_FORCE_GPU_ALLOW_GROWTH")

Run = Callable[[int], None]  # issue k matmuls, then wait for all of them


def key(device: str, precision: str) -> str:
    """The key of a device's peak at a precision in ``RunManifest.device_peaks``."""
    return f"{device}-{precision}"


def frameworks_for(device: str, precision: str, frameworks: Iterable[str]) -> list[str]:
    """Who measures a (device, precision): each framework, and numpy on the CPU in float32
    (it has no bfloat16; TF32 does not exist on a CPU)."""
    out = list(dict.fromkeys(frameworks))
    if device == "cpu" and precision in ("fp32", "tf32"):
        out.append(NUMPY)
    return out


# --- inside the measuring process -----------------------------------------------------------

def _numpy(device: str, precision: str, n: int) -> tuple[Run, str | None]:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)

    def run(k: int) -> None:
        for _ in range(k):
            _ = a @ a

    return run, None


def _torch(device: str, precision: str, n: int) -> tuple[Run, str | None]:
    import torch

    from harness.backends.torch.identical import torch_device

    dev = torch_device(device)  # the cells' device (raises Unavailable without a GPU)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.rand(n, n, device=dev).to(dtype)
    cuda = dev.type == "cuda"

    def run(k: int) -> None:
        for _ in range(k):
            _ = a @ a
        if cuda:
            torch.cuda.synchronize(dev)

    return run, torch.cuda.get_device_name(dev) if cuda else None


def _tensorflow(device: str, precision: str, n: int) -> tuple[Run, str | None]:
    import tensorflow as tf

    from harness.backends.tensorflow.identical import device_name

    where = device_name(device)  # the cells' device (raises Unavailable without a GPU)
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    with tf.device(where):
        a = tf.cast(tf.random.uniform((n, n)), dtype)
    mm = tf.function(lambda x: tf.linalg.matmul(x, x))
    gpu = where != "/CPU:0"

    def run(k: int) -> None:
        with tf.device(where):
            for _ in range(k):
                out = mm(a)
        if gpu:
            tf.test.experimental.sync_devices()
        else:
            out[0, 0].numpy()  # eager CPU ops return when done; this read is a sync anyway

    name = None
    if gpu:
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices(
            "GPU")[0])
        name = details.get("device_name")
    return run, name


def _jax(device: str, precision: str, n: int) -> tuple[Run, str | None]:
    import jax
    import jax.numpy as jnp

    from harness.backends.jax.identical import device_of

    dev = device_of(device)  # the cells' device (raises Unavailable without a GPU)
    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    a = jax.device_put(np.random.default_rng(0).random((n, n), dtype=np.float32), dev)
    a = a.astype(dtype)
    mm = jax.jit(lambda x: x @ x)  # the precision flag (configure) applies when it traces

    def run(k: int) -> None:
        jax.block_until_ready([mm(a) for _ in range(k)])

    return run, dev.device_kind if dev.platform != "cpu" else None


def _blas_settings() -> dict[str, Any]:
    """numpy's BLAS and its thread count as read back (threadpoolctl, where installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {"blas": [{k: i.get(k) for k in ("internal_api", "version", "num_threads")}
                     for i in threadpool_info() if i.get("user_api") == "blas"]}


MAKERS = {NUMPY: _numpy, "torch": _torch, "tensorflow": _tensorflow, "jax": _jax}


def best_flops_per_s(run: Run, n: int) -> tuple[float, int]:
    """The best of REPEATS samples of k matmuls (at least MIN_SAMPLE_S each, within BUDGET_S)
    after a warm-up, as FLOP/s; and k."""
    run(1)  # warm-up: compiles, allocates, wakes the GPU's clocks
    t0 = time.perf_counter()
    run(1)
    one = time.perf_counter() - t0
    k = max(1, math.ceil(MIN_SAMPLE_S / max(one, 1e-9)))
    best, start = one, time.perf_counter()
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        run(k)
        best = min(best, (time.perf_counter() - t0) / k)
        if time.perf_counter() - start > BUDGET_S:
            break
    return 2 * n**3 / best, k


def measure(framework: str, device: str, precision: str, threads: int) -> dict[str, Any]:
    """In a fresh process of the framework's interpreter: pin and configure as a cell does
    (harness.cell: set_threads before the framework loads, then the backend's configure), and
    time the matmul."""
    from harness.measure import cpu_model, set_threads

    pinned = set_threads(threads)
    if framework == NUMPY:
        settings = _blas_settings()
    else:
        from harness import backends

        settings = backends.load(framework).configure(device, precision, threads)
    n = SIZES[device]
    run, name = MAKERS[framework](device, precision, n)
    flops, k = best_flops_per_s(run, n)
    return {"framework": framework, "device": device, "precision": precision, "n": n, "k": k,
            "flops_per_s": flops, "threads": pinned["threads"], "affinity": pinned["affinity"],
            "settings": settings, "env": {v: os.environ.get(v) for v in PINNING_ENV},
            "device_name": name if device != "cpu" else cpu_model()}


def main(argv: list[str]) -> int:
    framework, device, precision = argv[0], argv[1], argv[2]
    threads = int(argv[3]) if len(argv) > 3 else 0
    from harness.backends import Unavailable

    try:
        out = measure(framework, device, precision, threads)
    except Unavailable as exc:
        out = {"framework": framework, "device": device, "precision": precision,
               "unavailable": str(exc)}
    print(json.dumps(out, default=str))
    return 0


# --- in the harness's process ---------------------------------------------------------------

def run_one(python: str, framework: str, env: dict[str, str], device: str, precision: str,
            threads: int, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """One framework's figure, in its interpreter and the given environment; {"error": ...}
    when it could not measure."""
    from harness.runner import ROOT

    cmd = [python, "-m", "harness.backends.peak", framework, device, precision, str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:g} s"}
    except OSError as exc:
        return {"error": str(exc)}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout)[-500:] or f"exit code {done.returncode}"}
    out = json.loads(lines[-1])
    if "unavailable" in out:
        return {"error": out["unavailable"]}
    return out


def combine(device: str, precision: str, figures: dict[str, dict[str, Any]],
            threads: int, fallback_name: str | None = None) -> dict[str, Any]:
    """One device's peak at a precision from every framework's figure: the best of them, each
    figure, the settings they ran with, the device's name and its datasheet peak."""
    from harness.flops import datasheet_peak

    ok = {fw: f for fw, f in figures.items() if "error" not in f}
    by_framework = {fw: float(f["flops_per_s"]) for fw, f in ok.items()}
    best = max(by_framework, key=by_framework.__getitem__) if by_framework else None
    names = [f.get("device_name") for f in ok.values() if f.get("device_name")]
    name = names[0] if names else fallback_name
    first = next(iter(ok.values()), {})
    return {
        "device": device, "precision": precision,
        "flops_per_s": by_framework[best] if best else None, "framework": best,
        "by_framework": by_framework,
        "threads": first.get("threads", threads), "affinity": first.get("affinity"),
        "env": first.get("env", {}), "n": first.get("n", SIZES[device]),
        "settings": {fw: f.get("settings", {}) for fw, f in ok.items()},
        "errors": {fw: f["error"] for fw, f in figures.items() if "error" in f},
        "device_name": name,
        "datasheet_flops_per_s": datasheet_peak(name, precision) if device != "cpu" else None,
    }


def measure_device_peaks(cells: Iterable[Any], pythons: dict[str, str],
                         say: Callable[[str], None] = print,
                         timeout_s: float = TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """{"<device>-<precision>": peak entry (``combine``)} for every (device, precision) of the
    cells (the self-check cell left out), each framework measuring in its own interpreter
    (``pythons``, else this one) and in the environment the runner gives the group's first
    cell. A framework missing from its interpreter is left out; one that fails is recorded in
    the entry's ``errors``."""
    import tempfile

    from harness.backends import BACKENDS, SELF_CHECK
    from harness.measure import cpu_model, gpu_info
    from harness.runner import cell_env, framework_available

    groups: dict[tuple[str, str], list[Any]] = {}
    for cell in cells:
        if cell.framework != SELF_CHECK:
            groups.setdefault((cell.device, cell.precision), []).append(cell)
    available: dict[tuple[str, str], bool] = {}
    peaks: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="framebench-peak-") as tmp:
        for (device, precision), group in groups.items():
            rep = group[0]
            env = cell_env(rep, Path(tmp) / "out", Path(tmp) / "cache")
            figures: dict[str, dict[str, Any]] = {}
            for fw in frameworks_for(device, precision, [c.framework for c in group]):
                python = sys.executable if fw == NUMPY else pythons.get(fw, sys.executable)
                if fw != NUMPY:
                    probe = (python, BACKENDS[fw].import_name)
                    if probe not in available:
                        available[probe] = framework_available(*probe)
                    if not available[probe]:
                        continue
                figures[fw] = run_one(python, fw, env, device, precision, rep.threads,
                                      timeout_s)
                if "error" in figures[fw]:
                    last = (figures[fw]["error"].strip().splitlines() or [""])[-1]
                    say(f"GEMM peak of {fw} on {device} {precision} failed: {last}")
            gpus = gpu_info() if device == "cuda" else []
            fallback = cpu_model() if device == "cpu" else (gpus[0].get("name") if gpus
                                                            else None)
            peaks[key(device, precision)] = combine(device, precision, figures, rep.threads,
                                                    fallback)
    return peaks


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
