from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=_env())


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "160"
    return env


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small end-to-end run: an image and a language model, all three frameworks, all
    three tiers (each framework's quickest mode; the tuned tier's search over it), a fifth of
    the default training budget, two seeds each (time to target: a cold and a warm one)."""
    base = tmp_path_factory.mktemp("small_run")
    proc = run_cli("--quick", "--workloads", "mlp,transformer", "--tiers",
                   "identical,idiomatic,tuned",
                   "--steady-seconds", "0.2", "--seeds", "2", "--run-id", "small", "--results-dir",
                   str(base / "results"), "--reports-dir", str(base / "reports"), cwd=base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (base / "stdout.txt").write_text(proc.stdout)
    return base
