"""Data-parallel cells (--replicas) through the whole harness: which cells are made, how each
framework's cell process is started, and an end-to-end run whose scaling table and report
come from real two-replica cells in all three frameworks. The trainers' correctness (N
replicas equal one device at N times the batch) is in tests/test_parallel_<fw>.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import results
from harness.runner import cell_command, cell_env
from harness.spec import Cell
from tests.conftest import run_cli


def cells(*argv: str) -> list[Cell]:
    from harness.__main__ import make_cells, run_parser

    return make_cells(run_parser().parse_args(["--workloads", "mlp", "--scenarios", "train",
                                               *argv]))[1:]


def test_replicas_make_identical_cells_in_the_parallel_modes_only() -> None:
    made = cells("--tiers", "identical,tuned", "--replicas", "1,2")
    parallel = {(c.framework, c.mode) for c in made if c.replicas == 2}
    assert parallel == {("torch", "eager"), ("torch", "compiled"), ("tensorflow", "graph"),
                        ("tensorflow", "compiled"), ("jax", "compiled")}
    assert all(c.tier == "identical" and c.id.split("-")[5] == "cpux2"
               for c in made if c.replicas == 2)
    assert all(c.replicas == 1 for c in made if c.tier == "tuned")
    assert cells("--tiers", "identical")[0].replicas == 1  # the default: one device


def test_replicas_without_the_identical_tier_is_refused_with_the_fix(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit, match="add --tiers identical"):
        cells("--replicas", "2")
    with pytest.raises(SystemExit):
        cells("--tiers", "identical", "--replicas", "0")
    assert "a replica count must be a whole number from 1" in capsys.readouterr().err


def test_each_framework_starts_its_replicas_its_own_way(tmp_path: Path) -> None:
    def cell(fw: str, mode: str) -> Cell:
        return Cell(framework=fw, workload="mlp", mode=mode, replicas=2, threads=2)

    torch = cell_command(cell("torch", "eager"), tmp_path, "py")
    assert torch[:5] == ["py", "-m", "torch.distributed.run", "--standalone",
                         "--nproc-per-node=2"]
    assert cell_env(cell("torch", "eager"), tmp_path, tmp_path)["OMP_NUM_THREADS"] == "1"
    assert cell_command(cell("jax", "compiled"), tmp_path, "py")[:3] == ["py", "-m", "pytest"]
    jax = cell_env(cell("jax", "compiled"), tmp_path, tmp_path)
    assert "--xla_force_host_platform_device_count=2" in jax["XLA_FLAGS"]
    assert jax["OMP_NUM_THREADS"] == "2"  # one process: the replicas share its threads
    tf = cell_env(cell("tensorflow", "graph"), tmp_path, tmp_path)  # logical devices, in-process
    assert "device_count" not in tf.get("XLA_FLAGS", "")


@pytest.mark.slow
def test_two_replicas_train_and_scale_in_every_framework(tmp_path: Path) -> None:
    """mlp at batch 32 per replica on 1 and on 2 CPU devices, each framework in its quickest
    mode: every cell finishes and learns, the scaling table has a row per framework, torch's
    second rank kept its own record with the same losses, and the report shows the section."""
    proc = run_cli("--quick", "--workloads", "mlp", "--tiers", "identical", "--replicas", "1,2",
                   "--scenarios", "train", "--steady-seconds", "0.2", "--run-id", "dp",
                   "--results-dir", str(tmp_path / "results"), "--reports-dir",
                   str(tmp_path / "reports"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "results" / "dp"
    tables = results.load(run_dir)
    summary = tables["summary"]
    two = summary[summary["replicas"] == 2]
    assert sorted(two["framework"]) == ["jax", "tensorflow", "torch"]
    assert (two["status"] == "ok").all(), two[["cell_id", "reason"]].to_string()
    assert (two["test_accuracy"] > 0.5).all()  # it trained (10 classes: chance is 0.1)
    assert (two["samples_per_s"] == 64 / two["step_median_s"]).all()  # both replicas' rows
    scaling = tables["scaling"]
    assert sorted(scaling["framework"]) == ["jax", "tensorflow", "torch"]
    assert ((scaling["efficiency"] > 0) & (scaling["ci_low"] <= scaling["efficiency"])
            & (scaling["efficiency"] <= scaling["ci_high"])).all()
    assert scaling["mechanism"].str.len().gt(10).all()
    torch_cell = two[two["framework"] == "torch"]["cell_id"].iloc[0]
    rank0 = json.loads((run_dir / "cells" / torch_cell / "r0" / "cell.json").read_text())
    rank1 = json.loads((run_dir / "cells" / torch_cell / "r0" / "rank1" / "cell.json")
                       .read_text())
    assert rank0["manifest"]["parallel"]["replicas"] == 2
    assert len(rank1["losses"]) == len(rank0["losses"]) > 10  # every rank ran every step
    html = (tmp_path / "reports" / "dp" / "index.html").read_text()
    assert 'id="scaling-table"' in html
