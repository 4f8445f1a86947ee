"""Faults injected for real: stop signals to the runner (whatever dispositions it inherited), a
run killed with SIGKILL and resumed, a run folder held by another process, bad --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.record import RunLock
from tests.conftest import ROOT, _env, run_cli

RUNNER = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from harness import runner
from harness.backends import SELF_CHECK
from harness.spec import Cell
quick, hang, after = (Cell(SELF_CHECK, w, "eager") for w in ("mlp", "cnn", "resnet"))
def command(cell, out_dir, python):
    if cell == hang:  # a cell with a child of its own: both must go
        return ["/bin/sh", "-c", f"sleep 3600 & echo $! > {{out_dir}}/grandchild; wait"]
    return [python, "-c", "pass"]
outcomes = runner.run_cells([quick, hang, after], Path(sys.argv[1]), timeout_s=120,
                            command=command)
print(json.dumps([[o.cell.workload, o.status, o.reason] for o in outcomes]))
"""


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a container's init may not reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def wait_for(root: Path, pattern: str, count: int = 1, timeout_s: float = 120) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = list(root.glob(pattern))
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {count} {root}/{pattern} after {timeout_s} s")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_keeps_finished_cells_and_kills_the_running_tree(
        tmp_path: Path, stop: signal.Signals) -> None:
    """The runner starts with SIGINT ignored, as a shell starts a background job: every stop
    signal still ends the run the same way. The finished cell is kept, the running cell and
    its own child are killed (no orphan), the cell after it never starts."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(root=str(ROOT)))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "run")], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    [marker] = wait_for(tmp_path / "run", "cells/*/r0/grandchild")
    time.sleep(0.2)
    grandchild = int(marker.read_text())
    assert alive(grandchild)
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    outcomes = json.loads(out.strip().splitlines()[-1])
    assert [o[:2] for o in outcomes] == [["mlp", "failed"], ["cnn", "interrupted"]], outcomes
    assert outcomes[1][2] == f"interrupted ({stop.name})"
    assert not alive(grandchild)
    kept = list((tmp_path / "run" / "cells").glob("*/r0/outcome.json"))
    assert len(kept) == 2  # the finished cell and the interrupted one, each recorded


def cell_processes(marker: str) -> list[int]:
    """Live processes whose command line mentions ``marker`` (a cell's output folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and alive(int(entry.name)):
                pids.append(int(entry.name))
    return pids


# A small real run: the no-op cell and JAX cells only (seconds each).
JAX_RUN = ["--frameworks", "jax", "--workloads", "mlp,cnn", "--tiers", "identical", "--modes",
           "compiled", "--scenarios", "train", "--quick", "--steady-seconds", "0.2"]


def start_cli(args: list[str], cwd: Path, **popen: Any) -> subprocess.Popen:
    """`framebench ARGS` started in the background, as a user's shell would."""
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, env=_env(),
                            **popen)


def test_a_run_killed_with_sigkill_resumes_to_the_same_cells(tmp_path: Path) -> None:
    """SIGKILL to the runner half-way (nothing can be written then): its cell processes die
    with it, and --resume runs the unfinished cells only, in the run's own settings, to the
    same set of cells an uninterrupted run makes; what finished before is kept untouched."""
    pytest.importorskip("jax")
    from harness.__main__ import make_cells, run_parser

    args = [*JAX_RUN, "--repeats", "2", "--results-dir", "r", "--run-id", "killed"]
    run_dir = tmp_path / "r" / "killed"
    proc = start_cli(args, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(run_dir, "cells/*/r*/outcome.json", count=2, timeout_s=300)  # no-op and a real one
    proc.kill()
    proc.wait()
    time.sleep(0.5)
    assert cell_processes(str(run_dir)) == []  # none left running on its own
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("cells/*/r*/outcome.json")}
    assert 2 <= len(before) < 5
    done = run_cli("--resume", "killed", "--results-dir", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(before)} of 5 cell processes finished before" in done.stdout
    table = pd.read_parquet(run_dir / "results.parquet")
    expected = {(c.id, c.repeat) for c in make_cells(run_parser().parse_args(args))}
    assert set(zip(table["cell_id"], table["repeat"])) == expected
    assert (table["status"] == "ok").all(), table[["cell_id", "reason"]]
    for path, mtime in before.items():  # kept, not run again
        assert path.stat().st_mtime_ns == mtime
    assert json.loads((run_dir / "run.json").read_text())["resumed"]


def test_a_run_folder_is_held_by_one_process(tmp_path: Path) -> None:
    held = f"in use by another framebench process \\(pid {os.getpid()}\\)"
    with RunLock(tmp_path), pytest.raises(SystemExit, match=held):
        RunLock(tmp_path).__enter__()
    with RunLock(tmp_path):  # released: free again
        pass


def test_bad_resume_names_the_runs_there(tmp_path: Path) -> None:
    (tmp_path / "r" / "old").mkdir(parents=True)
    (tmp_path / "r" / "old" / "run.json").write_text('{"run_id": "old", "argv": ["framebench"]}')
    for args, message in [
        (["--resume", "nope"], "--resume nope: no run there"),
        (["--resume", "nope"], "runs in r: old"),
        (["--resume", "old", "--epochs", "2"], "--epochs cannot change them"),
    ]:
        proc = run_cli(*args, "--results-dir", "r", cwd=tmp_path)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.fixture()
def small_disk(tmp_path: Path):  # noqa: ANN201 - yields the mount point
    """A 1 MiB tmpfs (needs root, as CI and this machine have): a disk that really fills."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_gives_a_clear_error_and_keeps_the_previous_files(small_disk: Path) -> None:
    from harness.record import write_json

    run_dir = small_disk / "results" / "full"
    run_dir.mkdir(parents=True)
    write_json(run_dir / "run.json", {"run_id": "full", "argv": ["framebench"]})
    before = (run_dir / "run.json").read_bytes()
    (small_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 16 * 1024))  # all but 16 KiB
    with pytest.raises(OSError):
        write_json(run_dir / "run.json", {"big": "x" * 100_000})
    assert (run_dir / "run.json").read_bytes() == before  # intact, and no temporary left
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json"]
    proc = run_cli("report", "full", "--results-dir", str(small_disk / "results"),
                   "--reports-dir", str(small_disk / "reports"), cwd=small_disk.parent)
    assert proc.returncode != 0 and "no space left on the device" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (run_dir / "run.json").read_bytes() == before


def test_corrupt_truncated_and_future_files_are_named_never_a_traceback(tmp_path: Path) -> None:
    """Real damage to a run's files: a table cut in half, a manifest that is not JSON, a table
    and a manifest from a newer framebench, a cell's outcome cut short (listed as failed with
    the file named; the other cells are still read)."""
    from harness import results
    from harness.record import SCHEMA_VERSION, Outcome
    from tests.test_compare import CELLS, make_run

    a, b = make_run(tmp_path, "a", seed=1), make_run(tmp_path, "b", seed=2)
    compare = ["compare", "a", "b", "--results-dir", str(tmp_path),
               "--reports-dir", str(tmp_path / "reports")]

    summary = b / "summary.parquet"
    intact = summary.read_bytes()
    summary.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(results.UnreadableFile, match=f"{summary} is corrupt or truncated"):
        results.load(b)
    proc = run_cli(*compare, cwd=tmp_path)  # compare collects the tables again from records
    assert proc.returncode == 0, proc.stderr
    assert len(results.load(b)["summary"]) == len(pd.read_parquet(a / "summary.parquet"))

    import pyarrow.parquet as pq
    table = pq.read_table(summary)
    pq.write_table(table.replace_schema_metadata(
        {**table.schema.metadata, results.SCHEMA_KEY: str(SCHEMA_VERSION + 1).encode()}), summary)
    proc = run_cli(*compare, cwd=tmp_path)
    assert proc.returncode != 0 and "was written by a newer framebench" in proc.stderr

    manifest = a / "run.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    proc = run_cli("report", str(a), "--reports-dir", str(tmp_path / "reports"), cwd=tmp_path)
    assert proc.returncode != 0 and f"{manifest} is corrupt or truncated" in proc.stderr
    assert "Traceback" not in proc.stderr
    manifest.write_text(text.replace('"schema": 1', f'"schema": {SCHEMA_VERSION + 1}'))
    proc = run_cli("report", str(a), "--reports-dir", str(tmp_path / "reports"), cwd=tmp_path)
    assert proc.returncode != 0 and "was written by a newer framebench (schema 2" in proc.stderr

    manifest.write_text(text)
    damaged = a / "cells" / next(iter(CELLS)).id / "r0" / "outcome.json"
    damaged.write_text(damaged.read_text()[:10])
    table = results.write(a)["results"]
    row = table[(table["cell_id"] == damaged.parent.parent.name) & (table["repeat"] == 0)]
    assert list(row["status"]) == ["failed"] and str(damaged) in row["reason"].iloc[0]
    assert (table["status"] == "ok").sum() == len(table) - 1  # the rest read as before
    assert Outcome.read(damaged) is None  # the lenient reader (the runner's) is unchanged



def test_a_segfault_and_a_silent_exit_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    """A real SIGSEGV (a null pointer read), a process that exits 0 without its record, and a
    normal cell after them."""
    from harness import runner
    from harness.backends import SELF_CHECK
    from harness.spec import Cell

    segv, silent, fine = (Cell(SELF_CHECK, w, "eager", epochs=0.1, steady_seconds=0.1)
                          for w in ("mlp", "cnn", "resnet"))

    def command(cell: Cell, out_dir: Path, python: str) -> list[str]:
        if cell == segv:
            return [python, "-c", "import ctypes; ctypes.string_at(0)"]
        if cell == silent:
            return [python, "-c", "print('bye')"]
        return runner.cell_command(cell, out_dir, python)

    outcomes = {o.cell.workload: o for o in runner.run_cells([segv, silent, fine], tmp_path,
                                                             timeout_s=120, command=command)}
    assert outcomes["mlp"].status == "failed"
    assert outcomes["mlp"].reason.startswith("crashed: killed by SIGSEGV")
    assert outcomes["cnn"].reason.startswith("exited with code 0 without writing its record")
    assert "bye" in outcomes["cnn"].reason  # the log's tail
    assert outcomes["resnet"].status == "ok", outcomes["resnet"].reason


def test_sigterm_to_the_cli_writes_the_table_and_report_of_what_finished(tmp_path: Path) -> None:
    """`kill` (SIGTERM) to a real run started as a background job (SIGINT ignored): it exits
    with 128 + 15 after writing the table and the report of what it has, the running cell
    recorded as interrupted; --resume then finishes it."""
    pytest.importorskip("jax")
    args = [*JAX_RUN, "--results-dir", "r", "--reports-dir", "p", "--run-id", "termed"]
    run_dir = tmp_path / "r" / "termed"
    proc = start_cli(args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for(run_dir, "cells/*/r0/outcome.json", count=1, timeout_s=300)  # the no-op cell
    wait_for(run_dir, "cells/mlp-*jax*/r0/cell.json", count=1, timeout_s=300)  # one running
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "framebench --resume termed" in out
    table = pd.read_parquet(run_dir / "results.parquet")
    assert "interrupted (SIGTERM)" in set(table["reason"].dropna()), table[["cell_id", "reason"]]
    assert (tmp_path / "p" / "termed" / "index.html").exists()
    assert json.loads((run_dir / "run.json").read_text())["interrupted"] is True
    done = run_cli("--resume", "termed", "--results-dir", "r", "--reports-dir", "p",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_parquet(run_dir / "results.parquet")
    assert len(table) == 3 and (table["status"] == "ok").all(), table[["cell_id", "reason"]]
