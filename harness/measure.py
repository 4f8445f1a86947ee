"""Clocks, memory and host facts. Imports no framework."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

clock = time.perf_counter


def peak_rss_bytes() -> int | None:
    """This process's peak resident set (VmHWM from /proc/self/status), Linux only.

    Not ru_maxrss: across fork+exec a child inherits its parent's peak there.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs), so the next
    reading is the peak of what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_free_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``): memory that a
    finished phase freed but the allocator kept would otherwise count in the RSS of every phase
    after it. Does nothing where glibc is not the allocator."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def set_threads(threads: int, first: int = 0) -> dict[str, object]:
    """Pin this process to `threads` CPUs of its affinity mask (0 = all of them) from its
    `first` on (each process of a data-parallel cell takes its own), before any framework
    starts its thread pools; frameworks size their pools from this mask, and the backends
    also set torch's and TensorFlow's intra-op counts explicitly."""
    if not hasattr(os, "sched_getaffinity"):
        return {"threads": threads, "affinity": None}
    mask = sorted(os.sched_getaffinity(0))
    if 0 < threads < len(mask):
        first = first if first + threads <= len(mask) else 0
        os.sched_setaffinity(0, mask[first:first + threads])
    used = sorted(os.sched_getaffinity(0))
    return {"threads": len(used), "affinity": used}


PROBE_UNIT = 20_000  # iterations of the probe's pure-Python loop: about 1 ms on a 2020s core
NOISE_LIMIT = 0.05   # a probe this much slower than the run's quietest: a noisy machine


def _probe_unit() -> int:
    total = 0
    for i in range(PROBE_UNIT):
        total += i * i
    return total


def machine_probe(seconds: float = 0.1) -> dict[int, float]:
    """How fast this machine is right now: {cpu: mean time of a fixed single-threaded
    pure-Python work unit}, measured on each CPU of the affinity mask in turn for `seconds`.

    The work never changes, so on a quiet machine the figure does not either; a neighbour on a
    shared host (invisible in steal time on the VMs checked here) shows up as a slower unit.
    Only this thread moves between CPUs; the mask is restored afterwards.
    """
    if not hasattr(os, "sched_getaffinity"):
        cpus, restore = [-1], None
    else:
        restore = os.sched_getaffinity(0)
        cpus = sorted(restore)
    out = {}
    try:
        for cpu in cpus:
            if restore is not None:
                os.sched_setaffinity(0, {cpu})
            _probe_unit()  # settle on the CPU
            n, t0 = 0, clock()
            while clock() - t0 < seconds or n < 5:
                _probe_unit()
                n += 1
            out[cpu] = (clock() - t0) / n  # the mean: time lost to other processes counts
    finally:
        if restore is not None:
            os.sched_setaffinity(0, restore)
    return out


def device_memory_bytes(device: str) -> int | None:
    """Memory a cell can use on a device: the host's available memory for "cpu" (psutil), the
    first GPU's total memory for "cuda" (NVML); None where unknown."""
    if device == "cpu":
        import psutil

        return int(psutil.virtual_memory().available)
    nvml = _nvml()
    if nvml is None or nvml.nvmlDeviceGetCount() == 0:
        return None
    return int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(0)).total)


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _nvml():  # noqa: ANN202 - the pynvml module, initialised, or None
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no library, no driver, no GPU: all mean "no NVML here"
        return None


def nvml_process_bytes(pid: int) -> int | None:
    """GPU memory NVML attributes to this process, summed over devices; None without NVML."""
    nvml = _nvml()
    if nvml is None:
        return None
    total = 0
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory:
                total += proc.usedGpuMemory
    return total


def gpu_info() -> list[dict[str, object]]:
    """Name, driver, memory, clocks and power limit of each GPU (NVML); [] without NVML."""
    nvml = _nvml()
    if nvml is None:
        return []
    gpus = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        def get(fn, *args, h=h):  # noqa: ANN001, ANN202
            try:
                return fn(h, *args)
            except Exception:
                return None
        gpus.append({
            "index": i, "name": get(nvml.nvmlDeviceGetName),
            "driver": nvml.nvmlSystemGetDriverVersion(),
            "memory_total_bytes": getattr(get(nvml.nvmlDeviceGetMemoryInfo), "total", None),
            "sm_clock_mhz": get(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
            "sm_clock_max_mhz": get(nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_SM),
            "power_limit_w": (get(nvml.nvmlDeviceGetPowerManagementLimit) or 0) / 1000 or None,
        })
    return gpus


CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
             "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in CPU_FLAGS if f in have]
    except OSError:
        pass
    return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state(repo: Path) -> dict[str, object]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None
            else None}


# The environment variables a run records: those that change what the frameworks, their thread
# pools or their allocators do, by name. Never by prefix: "TF_" also catches Terraform's
# TF_VAR_* (which often hold secrets), "CUDA_" or "TORCH" whatever a site invents.
ENV_ALLOWLIST = frozenset({
    # thread pools and math libraries
    "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY", "OMP_DYNAMIC",
    "OMP_SCHEDULE", "KMP_AFFINITY", "KMP_BLOCKTIME", "KMP_SETTINGS", "MKL_NUM_THREADS",
    "MKL_DYNAMIC", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "DNNL_DEFAULT_FPMATH_MODE",
    "ONEDNN_DEFAULT_FPMATH_MODE", "MALLOC_ARENA_MAX", "LD_PRELOAD", "PYTHONHASHSEED",
    # CUDA
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING", "CUDA_MODULE_LOADING",
    "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "NCCL_DEBUG", "NCCL_P2P_DISABLE",
    "NCCL_IB_DISABLE",
    # PyTorch
    "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_NO_CUDA_MEMORY_CACHING", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    "TORCH_CUDNN_V8_API_ENABLED", "TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_COMPILE_THREADS",
    "TORCHINDUCTOR_FREEZING", "TORCHINDUCTOR_MAX_AUTOTUNE", "TORCHINDUCTOR_FX_GRAPH_CACHE",
    "TORCHDYNAMO_DISABLE", "TORCH_COMPILE_DEBUG", "TORCH_LOGS", "TRITON_CACHE_DIR",
    # TensorFlow and Keras
    "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "TF_FORCE_GPU_ALLOW_GROWTH",
    "TF_GPU_ALLOCATOR", "TF_ENABLE_AUTO_MIXED_PRECISION", "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS", "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC",
    "TF_USE_LEGACY_KERAS", "TF_GPU_THREAD_MODE", "KERAS_BACKEND",
    # JAX and XLA
    "XLA_FLAGS", "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR", "JAX_PLATFORMS", "JAX_ENABLE_X64",
    "JAX_DEFAULT_MATMUL_PRECISION", "JAX_COMPILATION_CACHE_DIR", "JAX_DISABLE_JIT",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
})
# A value that looks like a credential is recorded as REDACTED even on the allowlist: a
# secret-ish word, a URL with a password, or a long token of base64/hex characters.
SECRET_VALUE = re.compile(
    r"(?i)(password|passwd|secret|token|api[_-]?key|credential|bearer)"
    r"|://[^/\s:@]+:[^/\s@]+@"
    r"|^[A-Za-z0-9+/_\-]{32,}={0,2}$")
REDACTED = "REDACTED"


def recorded_env(environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """The allowlisted environment variables (``ENV_ALLOWLIST``) that are set, credentials
    redacted: what a run records of its environment."""
    environ = os.environ if environ is None else environ
    return {k: REDACTED if SECRET_VALUE.search(v) else v
            for k, v in sorted(environ.items()) if k in ENV_ALLOWLIST}


def host_info() -> dict[str, object]:
    """Facts about the machine and software that every row of a run shares."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "gpus": gpu_info(),
        "env": recorded_env(),
        **git_state(Path(__file__).resolve().parents[1]),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
