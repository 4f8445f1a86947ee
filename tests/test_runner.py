"""The runner survives cells that crash, hang or get interrupted, and skips missing frameworks."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from harness import limits, results, runner
from harness.spec import Cell

REAL = Cell("torch", "mlp", "eager", epochs=1, steady_seconds=0.2)
CRASH = Cell("jax", "mlp", "eager")
HANG = Cell("tensorflow", "mlp", "graph")


def injected(cell: Cell, out_dir: Path, python: str) -> list[str]:
    """Real command for REAL; a crashing or hanging process for the injected cells."""
    if cell == CRASH:
        return [python, "-c", "import os; print('about to crash', flush=True); os.abort()"]
    if cell == HANG:
        return [python, "-c", "import time; print('hanging', flush=True); time.sleep(3600)"]
    return runner.cell_command(cell, out_dir, python)


def test_crash_and_hang_are_recorded_and_the_rest_completes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    outcomes = runner.run_cells([CRASH, HANG, REAL], tmp_path, timeout_s=30, command=injected)
    by_cell = {o.cell: o for o in outcomes}
    assert by_cell[CRASH].status == "failed"
    assert "SIGABRT" in by_cell[CRASH].reason and "about to crash" in by_cell[CRASH].reason
    assert by_cell[HANG].status == "failed"
    assert "timed out after 30 s" in by_cell[HANG].reason and "hanging" in by_cell[HANG].reason
    assert by_cell[REAL].status == "ok", by_cell[REAL].reason
    (tmp_path / "run.json").write_text('{"run_id": "faults"}')
    table = results.write(tmp_path)["results"].set_index("cell_id")
    assert table.loc[REAL.id, "step_median_s"] > 0
    assert table.loc[REAL.id, "test_accuracy"] > 0.1
    assert (tmp_path / "cells" / REAL.id / "r0" / "benchmark.json").exists()
    assert set(table["status"]) == {"ok", "failed"}


def test_a_raising_cell_keeps_its_traceback(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    corrupt = tmp_path / "mnist"
    corrupt.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (corrupt / name).write_bytes(b"corrupt")
    bad = Cell("torch", "mlp", "eager", dataset="mnist", data_dir=str(corrupt))
    [outcome] = runner.run_cells([bad], tmp_path / "run", timeout_s=120)
    assert outcome.status == "failed"
    assert "SHA-256" in outcome.reason and "Traceback" in outcome.reason
    assert outcome.record.import_s > 0  # what was measured before the error is kept


def test_missing_framework_is_skipped_with_install_hint(tmp_path: Path) -> None:
    fake = tmp_path / "python-without-site"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    fake.chmod(0o755)
    [outcome] = runner.run_cells([REAL], tmp_path, pythons={"torch": str(fake)})
    assert outcome.status == "skipped"
    assert "pip install 'framebench[torch]'" in outcome.reason


def test_ctrl_c_keeps_finished_cells(tmp_path: Path) -> None:
    quick = [Cell("jax", w, "eager") for w in ("mlp", "cnn")] + [HANG, CRASH]

    def command(cell: Cell, out_dir: Path, python: str) -> list[str]:
        if cell == HANG:
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
            return [python, "-c", "import time; time.sleep(3600)"]
        return [python, "-c", "pass"]

    # As a shell starts a background job: SIGINT ignored. The runner installs its own handler
    # while cells run (runner.stop_on_signals), and puts the inherited one back after.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        outcomes = runner.run_cells(quick, tmp_path, timeout_s=60, command=command)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [o.status for o in outcomes] == ["failed", "failed", "interrupted"]
    assert outcomes[-1].reason == "interrupted (SIGINT)"
    assert len(outcomes) == 3  # the cell after the interrupt never started
    assert (tmp_path / "cells" / quick[0].id / "r0" / "outcome.json").exists()


TURN_CELLS = [Cell("torch", "mlp", "eager"), Cell("tensorflow", "mlp", "graph"),
              Cell("jax", "mlp", "compiled")]
FAKE_CELL = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from harness.record import CellRecord
from harness.turns import Turns
turns = Turns.from_env()
rounds = turns.agree({want})
with open({log!r}, "a") as log:
    for i in range(turns.warmup_rounds + rounds):
        turns.wait()
        start = time.monotonic()
        time.sleep(0.005)
        print(json.dumps([{name!r}, i, start, time.monotonic()]), file=log, flush=True)
        if {crash} and i == 3:
            os.abort()
        turns.done()
turns.finish()
CellRecord(status="ok").save(__import__("pathlib").Path({out!r}) / "cell.json")
"""


def test_compared_cells_take_their_samples_in_turns(tmp_path: Path) -> None:
    """Cells of one comparison group are prepared one by one, then sample in rotation: one at
    a time, never overlapping, every other rotation reversed; a cell that crashes mid-way
    drops out and the others finish their turns."""
    log = tmp_path / "samples.jsonl"
    wants = {"torch": 5, "tensorflow": 3, "jax": 4}

    def command(cell: Cell, out_dir: Path, python: str) -> list[str]:
        return [python, "-c", FAKE_CELL.format(
            root=str(runner.ROOT), want=wants[cell.framework], log=str(log),
            name=cell.framework, crash=cell.framework == "jax", out=str(out_dir))]

    outcomes = runner.run_cells(TURN_CELLS, tmp_path / "run", timeout_s=60, command=command)
    by_fw = {o.cell.framework: o for o in outcomes}
    assert by_fw["torch"].status == by_fw["tensorflow"].status == "ok"
    assert by_fw["jax"].status == "failed" and "SIGABRT" in by_fw["jax"].reason
    assert {o.timing for o in outcomes} == {"turns"}
    assert by_fw["torch"].partners == [c.id for c in TURN_CELLS]
    samples = [json.loads(line) for line in log.read_text().splitlines()]
    spans = sorted((start, end) for _, _, start, end in samples)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    order = [(name, i) for name, i, _, _ in sorted(samples, key=lambda s: s[2])]
    rotations = 2 + max(wants.values())  # warm-up rotations + the most any cell wanted
    assert sum(name == "torch" for name, _ in order) == rotations
    assert sum(name == "tensorflow" for name, _ in order) == rotations
    assert sum(name == "jax" for name, _ in order) == 4  # crashed in its fourth sample
    assert [n for n, _ in order[:6]] == ["torch", "tensorflow", "jax", "jax", "tensorflow",
                                         "torch"]
    assert order[-2:] in ([("torch", rotations - 1), ("tensorflow", rotations - 1)],
                          [("tensorflow", rotations - 1), ("torch", rotations - 1)])
    outcome = json.loads((tmp_path / "run" / "cells" / TURN_CELLS[0].id / "r0"
                          / "outcome.json").read_text())
    assert outcome["timing"] == "turns"


def test_cells_asked_to_run_alone_say_why(tmp_path: Path) -> None:
    def command(cell: Cell, out_dir: Path, python: str) -> list[str]:
        return [python, "-c", f"from harness.record import CellRecord; from pathlib import Path;"
                f" CellRecord(status='ok').save(Path({str(out_dir)!r}) / 'cell.json')"]

    outcomes = runner.run_cells(TURN_CELLS[:2], tmp_path, command=command,
                                alone={c.id: "--timing alone" for c in TURN_CELLS[:2]})
    assert [o.timing for o in outcomes] == ["alone: --timing alone"] * 2
    assert all(o.status == "ok" for o in outcomes)


def test_a_cell_over_its_memory_cap_is_stopped_by_the_kernel_and_recorded(
        tmp_path: Path) -> None:
    """--memory-cap for real: the kernel's OOM killer stops a process that allocates past its
    cgroup's limit; the cell is recorded as out of memory with the peak it reached and what it
    measured before, and the next cell (a real, capped training cell) runs and finishes."""
    pytest.importorskip("torch")
    cap = 200 * 2**20
    try:
        limits.MemoryCap.check(cap)
    except PermissionError as exc:
        pytest.skip(f"no memory cgroup can be made here: {exc}")
    hog = Cell("jax", "cnn", "eager", memory_cap=cap)
    real = dataclasses.replace(REAL, memory_cap=4 * 2**30)

    def command(cell: Cell, out_dir: Path, python: str) -> list[str]:
        if cell != hog:
            return runner.cell_command(cell, out_dir, python)
        record = json.dumps({"status": "running", "import_s": 0.5})
        return [python, "-c", f"open({str(out_dir / 'cell.json')!r}, 'w').write({record!r}); "
                "print('allocating', flush=True); "
                "blocks = [b'x' * (50 * 2**20) for _ in range(40)]"]  # 2 GiB, touched

    outcomes = runner.run_cells([hog, real], tmp_path, timeout_s=120, command=command)
    by_cell = {o.cell: o for o in outcomes}
    o = by_cell[hog]
    assert o.status == "failed" and o.out_of_memory, o.reason
    assert o.reason.startswith("out of memory: the kernel stopped it at the --memory-cap of "
                               "200 MiB") and "allocating" in o.reason
    assert 0.9 * cap <= o.memory_peak_bytes <= cap + 2**20
    assert o.record.import_s == 0.5  # what it measured before is kept
    assert by_cell[real].status == "ok" and not by_cell[real].out_of_memory, by_cell[real].reason
    assert by_cell[real].memory_peak_bytes > 100 * 2**20  # a real framework, held to 4 GiB
    (tmp_path / "run.json").write_text('{"run_id": "cap"}')
    table = results.write(tmp_path)["results"].set_index("cell_id")
    assert bool(table.loc[hog.id, "out_of_memory"]) and table.loc[hog.id, "memory_cap_bytes"] == cap
    assert not list(Path(limits._own_cgroup()[1]).glob("framebench-*"))  # cgroups removed


def test_memory_sizes_parse_with_units() -> None:
    assert limits.parse_bytes("4G") == 4 * 2**30 and limits.parse_bytes("512m") == 512 * 2**20
    assert limits.parse_bytes("1.5GiB") == int(1.5 * 2**30) and limits.parse_bytes("1000") == 1000
    for bad in ("", "-1G", "4X", "G"):
        with pytest.raises(ValueError, match="positive number"):
            limits.parse_bytes(bad)
