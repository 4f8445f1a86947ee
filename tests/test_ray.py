"""The Ray executor (harness.launch.ray) on a local two-node cluster, one timing slot each and a
fake GPU on one: units spread over the nodes and name them, a CUDA unit is pinned to its GPU,
failures and timeouts are results, Ctrl-C and timeouts leave no cell process behind, later
repeats find their caches warm, and the results table matches a local run's."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from harness import results, runner  # noqa: E402
from harness.backends import SELF_CHECK  # noqa: E402
from harness.launch import ray as launch  # noqa: E402
from harness.record import Outcome as OutcomeFile  # noqa: E402
from harness.spec import Cell  # noqa: E402

NODE = {"num_cpus": 1, "resources": {launch.SLOT: 1}, "object_store_memory": 80 * 2**20}

# Fake cell processes, chosen by the name of the cell's data_dir (the fake's own folder).
OK = "from pathlib import Path; from harness.record import CellRecord; " \
     "CellRecord(status='ok').save(Path({out!r}) / 'cell.json')"
FAKES = {
    "ok": OK,
    "env": "import json, os; json.dump({{k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', "
           "'OMP_NUM_THREADS')}}, open({out!r} + '/env.json', 'w')); " + OK,
    "crash": "import os; print('about to crash', flush=True); os.abort()",
    "hang": "import os, time; open({dir!r} + '/pid-' + {name!r}, 'w').write(str(os.getpid())); "
            "time.sleep(3600)",
    "kill-worker": "import os, signal; open({dir!r} + '/runs', 'a').write('run\\n'); "
                   "os.kill(os.getppid(), signal.SIGKILL)",
    "cache": "import json, os; from pathlib import Path; "
             "marker = Path(os.environ['TORCHINDUCTOR_CACHE_DIR']) / 'marker'; "
             "json.dump({{'warm': marker.exists()}}, open({out!r} + '/cache.json', 'w')); "
             "marker.parent.mkdir(parents=True, exist_ok=True); marker.touch(); " + OK,
    "turns": "from pathlib import Path; from harness.record import CellRecord; "
             "from harness.turns import Turns; t = Turns.from_env(); n = t.agree(2); "
             "[(t.wait(), t.done()) for _ in range(t.warmup_rounds + n)]; t.finish(); "
             "CellRecord(status='ok').save(Path({out!r}) / 'cell.json')",
}


def fake(cell: Cell, out_dir: Path, python: str) -> list[str]:
    """The real cell command for a real cell; else the fake its data_dir names."""
    if cell.data_dir is None:
        return runner.cell_command(cell, out_dir, python)
    kind = Path(cell.data_dir).name
    if kind == "raise":
        raise RuntimeError("no command for this cell")
    script = FAKES[kind].format(out=str(out_dir), dir=cell.data_dir, name=cell.id)
    return [python, "-c", f"import sys; sys.path.insert(0, {str(runner.ROOT)!r}); {script}"]


def noop(workload: str, **kw: object) -> Cell:
    return Cell(SELF_CHECK, workload, "eager", epochs=0.1, steady_seconds=0.1, **kw)


def faked(kind: str, tmp: Path, workload: str = "mlp", **kw: object) -> Cell:
    folder = tmp / kind
    folder.mkdir(exist_ok=True)
    return noop(workload, data_dir=str(folder), **kw)


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    """Two nodes, a timing slot each, a fake GPU on the second: {"cpu": name, "gpu": name}."""
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    c.add_node(**NODE, num_gpus=1)
    c.wait_for_nodes()
    launch.connect(c.address)
    try:
        names = {("gpu" if n["Resources"].get("GPU") else "cpu"):
                 launch.node_name(n["NodeManagerHostname"], n["NodeID"])
                 for n in ray.nodes() if n["Alive"]}
        assert len(names) == 2, names
        yield names
    finally:
        ray.shutdown()
        c.shutdown()


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def table(run_dir: Path) -> object:
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name}))
    return results.write(run_dir)["results"].sort_values("cell_id").reset_index(drop=True)


def test_units_spread_over_the_nodes_and_the_table_matches_a_local_run(
        cluster: dict[str, str], tmp_path: Path) -> None:
    """Two no-op cells (each alone) and a comparison group (timed in turns, one unit): the
    units run on both nodes, each outcome and outcome.json names its node, the group shares
    one; the results table has the rows and columns of a local run of the same cells."""
    cells = [noop("mlp"), noop("cnn")]
    frameworks = [f for f in ("torch", "tensorflow", "jax") if importlib.util.find_spec(f)]
    group = [replace_fw(faked("turns", tmp_path), fw) for fw in frameworks]
    cells += group if len(group) > 1 else []
    t0, started, ended = time.monotonic(), {}, {}
    outcomes = launch.run_cells(
        cells, tmp_path / "ray", timeout_s=120, command=fake,
        on_start=lambda c: started.setdefault(c.id, time.monotonic()),
        on_done=lambda o: ended.setdefault(o.cell.id, time.monotonic()))
    assert sorted(o.cell.id for o in outcomes) == sorted(c.id for c in cells)
    assert all(o.status == "ok" for o in outcomes), [o.reason for o in outcomes]
    assert {o.node for o in outcomes} == set(cluster.values())
    for o in outcomes:
        saved = json.loads((tmp_path / "ray" / "cells" / o.cell.id / "r0" / "outcome.json")
                           .read_text())
        assert saved["node"] == o.node
    if len(group) > 1:
        grouped = [o for o in outcomes if o.cell in group]
        assert len({o.node for o in grouped}) == 1
        assert {o.timing for o in grouped} == {"turns"}
        assert grouped[0].partners == [c.id for c in group]
    assert (tmp_path / "ray" / "cells" / cells[0].id / "r0" / "benchmark.json").exists()
    overhead = [ended[c.id] - started[c.id] - o.wall_s for c in cells[:2]
                for o in outcomes if o.cell == c]
    print(f"\nRay per unit: start {min(started.values()) - t0:.2f} s after the call; "
          f"after start, overhead beyond the cell's wall: median "
          f"{statistics.median(overhead):.2f} s {[round(x, 2) for x in overhead]}")

    local = runner.run_cells(cells, tmp_path / "local", timeout_s=120, command=fake)
    assert all(o.status == "ok" for o in local), [o.reason for o in local]
    ray_table, local_table = table(tmp_path / "ray"), table(tmp_path / "local")
    assert list(ray_table.columns) == list(local_table.columns)
    same = ["cell_id", "repeat", "status", "timing", "reason", "scenario", "workload",
            "framework", "tier", "mode", "device", "batch_size", "replicas", "precision",
            "size", "dataset"]
    assert ray_table[same].astype(str).equals(local_table[same].astype(str)), \
        (ray_table[same], local_table[same])


def replace_fw(cell: Cell, framework: str) -> Cell:
    mode = {"torch": "eager", "tensorflow": "graph", "jax": "compiled"}[framework]
    return replace(cell, framework=framework, mode=mode)


def test_a_cuda_unit_is_pinned_to_a_gpu_and_cpu_cells_keep_the_node_environment(
        cluster: dict[str, str], tmp_path: Path) -> None:
    """A CUDA unit gets the GPU node and Ray's CUDA_VISIBLE_DEVICES, which its process sees; a
    CPU cell sees none, nor Ray's OMP_NUM_THREADS; two GPUs are more than any node has."""
    cuda = faked("env", tmp_path, device="cuda")
    cpu = faked("env", tmp_path, workload="cnn")
    two = faked("env", tmp_path, workload="resnet", device="cuda", replicas=2)
    outcomes = {o.cell: o for o in launch.run_cells([cuda, cpu, two], tmp_path / "run",
                                                    timeout_s=60, command=fake)}
    assert outcomes[cuda].status == "ok", outcomes[cuda].reason
    assert outcomes[cuda].node == cluster["gpu"] and outcomes[cuda].devices == "0"
    env = json.loads((tmp_path / "run" / "cells" / cuda.id / "r0" / "env.json").read_text())
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    env = json.loads((tmp_path / "run" / "cells" / cpu.id / "r0" / "env.json").read_text())
    assert env == {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": os.environ.get(
        "OMP_NUM_THREADS")}
    assert outcomes[two].status == "failed" and "no node of the Ray cluster" in \
        outcomes[two].reason and "'GPU': 2" in outcomes[two].reason


def test_failures_are_recorded_and_the_run_goes_on(cluster: dict[str, str],
                                                   tmp_path: Path) -> None:
    """A crashing cell, a command that raises on the node and a cell that kills its Ray
    worker are failed with their reasons, never retried; the cell after them runs."""
    crash, raises = faked("crash", tmp_path), faked("raise", tmp_path, workload="cnn")
    killer, fine = faked("kill-worker", tmp_path, "resnet"), faked("ok", tmp_path, "lstm")
    outcomes = {o.cell: o for o in launch.run_cells([crash, raises, killer, fine],
                                                    tmp_path / "run", timeout_s=60,
                                                    command=fake)}
    assert outcomes[crash].status == "failed" and "SIGABRT" in outcomes[crash].reason
    assert "about to crash" in outcomes[crash].reason and outcomes[crash].node
    assert outcomes[raises].status == "failed"
    assert "raised RuntimeError" in outcomes[raises].reason
    assert "no command for this cell" in outcomes[raises].reason
    assert outcomes[killer].status == "failed" and "worker" in outcomes[killer].reason
    assert (tmp_path / "kill-worker" / "runs").read_text() == "run\n"  # not retried
    assert outcomes[fine].status == "ok", outcomes[fine].reason
    saved = json.loads((tmp_path / "run" / "cells" / killer.id / "r0" / "outcome.json")
                       .read_text())
    assert saved["status"] == "failed" and saved["node"] == outcomes[killer].node


def test_a_unit_past_its_time_is_cancelled_and_leaves_no_process(cluster: dict[str, str],
                                                                 tmp_path: Path) -> None:
    hang, fine = faked("hang", tmp_path), faked("ok", tmp_path, "cnn")
    outcomes = {o.cell: o for o in launch.run_cells([hang, fine], tmp_path / "run",
                                                    timeout_s=60, command=fake,
                                                    unit_timeout_s=3)}
    assert outcomes[hang].status == "failed"
    assert outcomes[hang].reason.startswith("timed out after 3 s"), outcomes[hang].reason
    assert outcomes[fine].status == "ok"
    pid = int((tmp_path / "hang" / f"pid-{hang.id}").read_text())
    assert gone(pid), f"cell process {pid} outlived its cancelled task"


def test_ctrl_c_cancels_every_task_and_leaves_no_process(cluster: dict[str, str],
                                                         tmp_path: Path) -> None:
    """Ctrl-C while two units hang (one per node) and a third waits for a slot: the two are
    interrupted, their processes killed on the nodes, the third never runs."""
    hangs = [faked("hang", tmp_path, w) for w in ("mlp", "cnn")]
    later = faked("ok", tmp_path, "lstm")
    pids = [tmp_path / "hang" / f"pid-{c.id}" for c in hangs]
    started: set[str] = set()

    def interrupt() -> None:  # once both run, and the driver knows they started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                all(p.exists() for p in pids) and started >= {c.id for c in hangs}):
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    outcomes = launch.run_cells([*hangs, later], tmp_path / "run", timeout_s=60, command=fake,
                                on_start=lambda c: started.add(c.id))
    assert sorted(o.cell.id for o in outcomes) == sorted(c.id for c in hangs)
    assert {(o.status, o.reason, o.timing) for o in outcomes} == {
        ("interrupted", "interrupted (SIGINT)", "interrupted")}
    for p in pids:
        assert gone(int(p.read_text())), f"cell process {p.read_text()} outlived Ctrl-C"
    assert not (tmp_path / "run" / "cells" / later.id).exists()
    kept = launch.node_folder(launch.run_key(tmp_path / "run"))
    assert (kept / "cache").is_dir()  # kept for --resume, as locally
    shutil.rmtree(kept)


def test_later_repeats_run_warm_on_the_node_of_the_first(cluster: dict[str, str],
                                                          tmp_path: Path) -> None:
    """A cell's second process runs where its first did and finds the compile cache the first
    left there; the run's caches are removed from the nodes at the end."""
    first = faked("cache", tmp_path)
    second, other = faked("cache", tmp_path, repeat=1), faked("ok", tmp_path, "cnn")
    run_dir = tmp_path / "run"
    outcomes = {o.cell: o for o in launch.run_cells([first, other, second], run_dir,
                                                    timeout_s=60, command=fake)}
    assert all(o.status == "ok" for o in outcomes.values())
    assert outcomes[second].node == outcomes[first].node
    warm = [json.loads((run_dir / "cells" / first.id / f"r{r}" / "cache.json").read_text())
            ["warm"] for r in (0, 1)]
    assert warm == [False, True]
    assert not launch.node_folder(launch.run_key(run_dir)).exists()


def test_node_facts_describe_every_node(cluster: dict[str, str]) -> None:
    facts = launch.node_facts()
    assert set(facts) == set(cluster.values())
    for name, f in facts.items():
        assert f["host"]["hostname"] in name and f["host"]["cpu_count"] >= 1
        assert f["machine_probe_s"] and all(t > 0 for t in f["machine_probe_s"].values())
        assert f["ray_resources"][launch.SLOT] == 1
    assert facts[cluster["gpu"]]["ray_resources"]["GPU"] == 1


def test_units_and_their_ray_options() -> None:
    """Units as the local runner forms them (a comparison group whole, a cell alone, a
    search), later repeats after the first; a slot, or the cells' CPUs, and GPUs."""
    group = [Cell(fw, "mlp", mode) for fw, mode in (("torch", "eager"), ("jax", "compiled"))]
    search = Cell("torch", "cnn", "eager", scenario="largest")
    alone = Cell("tensorflow", "lstm", "graph")  # no partner
    again = [Cell(c.framework, c.workload, c.mode, repeat=1) for c in group]
    units = launch.plan_units([group[0], search, alone, group[1], *again], {}, {})
    assert [u.cells for u in units] == [group, [search], [alone], again]
    assert [u.search for u in units] == [False, True, False, False]
    assert units[3].after is units[0] and units[0].after is None
    assert [u.cells for u in launch.plan_units(group, {c.id: "--timing alone"
                                                       for c in group}, {})] == [[group[0]],
                                                                                 [group[1]]]
    done = {(c.id, 0): OutcomeFile("ok", node="host:0123abcd") for c in group}
    [resumed] = launch.plan_units(again, {}, done)
    assert resumed.after is None and resumed.pin == "host:0123abcd"
    tries = {(replace(search, batch_size=b).id, 0): OutcomeFile("ok") for b in (64, 512)}
    assert launch._tries(search, {**done, **tries}) == tries
    cuda = [Cell("torch", "mlp", "eager", device="cuda", replicas=r, threads=4) for r in (1, 2)]
    assert launch.unit_options(cuda, slot=True, accelerator_type="A100") == {
        "max_retries": 0, "retry_exceptions": False, "num_gpus": 2, "num_cpus": 0,
        "resources": {launch.SLOT: 1}, "accelerator_type": "A100"}
    assert launch.unit_options([Cell("torch", "mlp", "eager")], slot=False, node_cpus=8) == {
        "max_retries": 0, "retry_exceptions": False, "num_gpus": 0, "num_cpus": 8}
    assert launch.unit_options(cuda, slot=False)["num_cpus"] == 4


def test_the_driver_imports_no_framework() -> None:
    probe = ("import sys, harness.launch.ray; "
             "print(sorted({'torch', 'tensorflow', 'jax'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd=runner.ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
