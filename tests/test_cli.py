from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_cli


def test_help_lists_the_options(tmp_path: Path) -> None:
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for option in ("--workloads", "--frameworks", "--modes", "--devices", "--batch-sizes",
                   "--dataset", "--epochs", "--quick", "--timeout", "--python"):
        assert option in proc.stdout
    assert "mlp, cnn" in proc.stdout and "torch, tensorflow, jax" in proc.stdout


def test_unknown_names_stop_before_anything_runs(tmp_path: Path) -> None:
    for args, message in [
        (["--workloads", "mlp,resnet"], "unknown workload 'resnet'; valid workloads: mlp, cnn"),
        (["--frameworks", "mxnet"], "valid frameworks: torch, tensorflow, jax"),
        (["--modes", "turbo"], "valid modes: eager, compiled, graph"),
        (["--devices", "tpu"], "valid devices: cpu, cuda"),
        (["--dataset", "cifar"], "valid datasets: digits, mnist, fashion-mnist, synthetic"),
        (["--modes", "graph", "--frameworks", "torch"], "tensorflow: eager, graph, compiled"),
    ]:
        proc = run_cli(*args, "--results-dir", "r", cwd=tmp_path)
        assert proc.returncode != 0
        assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


def test_end_to_end_run(small_run: Path) -> None:
    run_dir = small_run / "results" / "small"
    table = pd.read_parquet(run_dir / "results.parquet")
    assert len(table) == 6 and set(table["status"]) == {"ok"}
    assert set(table["framework"]) == {"torch", "tensorflow", "jax"}
    assert (table["step_median_s"] > 0).all() and (table["peak_rss_bytes"] > 50e6).all()
    for cell_id in table["cell_id"]:
        bench = json.loads((run_dir / "cells" / cell_id / "benchmark.json").read_text())
        [entry] = bench["benchmarks"]
        assert len(entry["stats"]["data"]) >= 30  # every pytest-benchmark sample is kept
    stdout = (small_run / "stdout.txt").read_text()
    assert "report:" in stdout and "median step" in stdout
    assert (small_run / "reports" / "latest.html").exists()
    assert json.loads((run_dir / "run.json").read_text())["framework_info"]["jax"]


def test_readme_documents_the_schema_and_test_command() -> None:
    from harness.results import schema_markdown
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert schema_markdown() in readme
    assert "nox -s tests" in readme and "nox -s tests" in (ROOT / ".ci" / "run").read_text()
