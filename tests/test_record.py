"""The run's files are dataclasses written and read in one module, atomically and tolerantly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import data
from harness.cell import budget_steps, load_dataset
from harness.record import CellRecord, Outcome, RunManifest
from harness.spec import Cell


def test_cell_record_round_trips_and_reads_older_and_newer_files(tmp_path: Path) -> None:
    record = CellRecord(cell_id="c", test_perplexity=np.float32(7.5), losses=[2.0, 1.5],
                        machine_probe_s={"before": {"0": 1e-3}})
    record.save(tmp_path / "cell.json")
    assert not list(tmp_path.glob("*.tmp"))  # written to a temporary name, then renamed
    back = CellRecord.read(tmp_path / "cell.json")
    assert back == CellRecord(cell_id="c", test_perplexity=7.5, losses=[2.0, 1.5],
                              machine_probe_s={"before": {"0": 1e-3}})
    assert back.slowest_probe_s == 1e-3
    raw = json.loads((tmp_path / "cell.json").read_text())
    raw["a_future_field"] = 1          # a newer writer's field is ignored
    del raw["losses"]                  # an older writer's missing field takes its default
    (tmp_path / "cell.json").write_text(json.dumps(raw))
    assert CellRecord.read(tmp_path / "cell.json").losses == []
    (tmp_path / "cell.json").write_text('{"cell_id": "c", "status": "ru')  # a process died
    assert CellRecord.read(tmp_path / "cell.json") == CellRecord()
    assert Outcome.read(tmp_path / "missing.json") is None


def test_run_manifest_round_trip(tmp_path: Path) -> None:
    manifest = RunManifest(run_id="r1", argv=["framebench", "--quick"], repeats=2,
                           gemm_peak_flops_per_s={"numpy": 1e11})
    assert not RunManifest.exists(tmp_path)
    manifest.save(tmp_path)
    assert RunManifest.exists(tmp_path) and RunManifest.read(tmp_path) == manifest
    (tmp_path / "other").mkdir()
    assert RunManifest.read(tmp_path / "other").run_id == "other"  # named after its folder


def test_a_dataset_of_the_wrong_kind_is_refused() -> None:
    cell = Cell("torch", "transformer", "eager", dataset="digits")
    with pytest.raises(ValueError, match="transformer needs text data; valid datasets for it: "
                                         "pydoc, tinyshakespeare"):
        load_dataset(cell)


def test_budgets_may_be_fractions_of_an_epoch() -> None:
    digits = data.digits()
    steps_per_epoch = len(digits.x_train) // 32
    assert budget_steps(Cell("torch", "mlp", "eager", epochs=10), digits) == 10 * steps_per_epoch
    assert budget_steps(Cell("torch", "mlp", "eager", epochs=0.5), digits) == \
        round(0.5 * steps_per_epoch)
    assert budget_steps(Cell("torch", "mlp", "eager", epochs=1e-6), digits) == 1
    text = load_dataset(Cell("torch", "lstm", "eager"))
    assert text.input_shape == (64,) and text.sha256 and "pydoc_data" in text.source
