"""Clocks, memory and host facts. Imports no framework."""

from __future__ import annotations

import os
import platform
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


def summarize(samples: list[float] | np.ndarray) -> dict[str, float]:
    """Median, quartiles, IQR, min, mean of timing samples (seconds)."""
    a = np.asarray(samples, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1),
            "min": float(a.min()), "mean": float(a.mean()), "n": int(a.size)}


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


ENV_PREFIXES = ("XLA_", "TF_", "OMP_", "MKL_", "OPENBLAS_", "TORCH", "JAX_", "CUDA_",
                "XLA_PYTHON_CLIENT_", "PYTORCH_")


def host_info() -> dict[str, object]:
    """Facts about the machine and software that every row of a run shares."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        **git_state(Path(__file__).resolve().parents[1]),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
