"""`framebench compare`: synthetic runs written the way a real run leaves them (run.json, each
cell process's cell_spec.json, cell.json and outcome.json), tables collected by results.write."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from harness import compare, results
from harness.__main__ import main
from harness.record import CellRecord, Outcome, RunManifest
from harness.spec import Cell

REPEATS = 3
SAMPLES = 40
# One framework per comparison group, as a small real run has several.
CELLS = {
    Cell("torch", "mlp", "eager", size="small", dataset="digits"): 0.0010,
    Cell("torch", "mlp", "compiled", size="small", dataset="digits"): 0.0006,
    Cell("torch", "cnn", "eager", size="small", dataset="digits"): 0.0020,
    Cell("jax", "lstm", "compiled", size="small", dataset="pydoc", tier="idiomatic"): 0.0300,
}
MLP_EAGER, MLP_COMPILED, CNN, LSTM = (c.id for c in CELLS)
HOST = {"hostname": "vm", "cpu_model": "Intel(R) Xeon(R) Processor", "cpu_count": 2,
        "cpu_affinity": [0, 1], "gpus": [], "git_commit": "953f38beaac981ea", "git_dirty": False}
VERSIONS = {"torch": {"framework_version": "2.13.0+cpu"}, "jax": {"framework_version": "0.10.2"}}


def make_run(root: Path, run_id: str, seed: int, slower: dict[str, float] | None = None,
             host: dict | None = None, versions: dict | None = None, drop: tuple[str, ...] = (),
             fail: dict[str, str] | None = None, extra: tuple[Cell, ...] = (),
             write: bool = True) -> Path:
    """A run of CELLS (plus extra): REPEATS processes each of SAMPLES step times around the
    cell's base time (process-to-process offsets of 0.5%, sample noise of 2%), scaled by
    slower[cell id]; cells in drop never started, cells in fail failed with that reason."""
    rng = np.random.default_rng(seed)
    slower, fail = slower or {}, fail or {}
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    cells = {**CELLS, **{c: 0.004 for c in extra}}
    fw_info = versions or VERSIONS
    RunManifest(run_id=run_id, started="2026-11-29T11:46:11+00:00",
                ended="2026-11-29T12:00:15+00:00", argv=["framebench", "--run-id", run_id],
                host=host or HOST, cells=[c.id for c in cells], repeats=REPEATS, threads=2,
                tiers=["identical", "idiomatic"], framework_info=fw_info).save(run_dir)
    for cell, base in cells.items():
        if cell.id in drop:
            continue
        for r in range(REPEATS):
            proc = run_dir / "cells" / cell.id / f"r{r}"
            proc.mkdir(parents=True)
            (proc / "cell_spec.json").write_text(Cell(**{**cell.__dict__, "repeat": r}).to_json())
            if cell.id in fail:
                CellRecord(cell_id=cell.id, repeat=r, status="failed").save(proc / "cell.json")
                Outcome("failed", fail[cell.id], 3.0).save(proc / "outcome.json")
                continue
            scale = base * slower.get(cell.id, 1.0) * (1 + rng.normal(0, 0.005))
            samples = scale * rng.lognormal(0, 0.02, SAMPLES)
            CellRecord(
                cell_id=cell.id, repeat=r, status="ok", threads={"threads": 2},
                framework_info=fw_info[cell.framework], step_samples_s=samples.tolist(),
                steps_per_sample=1, items_per_step=32, first_step_s=0.5 + 0.1 * r,
                test_accuracy=0.97 if r == 0 else None, target_met=True if r == 0 else None,
                peak_rss_bytes=int(480e6 * (1 + rng.normal(0, 0.01))),
                sync_check={"ok": True}, losses=[2.3, 1.0],
            ).save(proc / "cell.json")
            Outcome("ok", None, 5.0).save(proc / "outcome.json")
    if write:
        results.write(run_dir)
    return run_dir


def run_compare(a: Path, b: Path, tmp_path: Path, *extra: str) -> int:
    return main(["compare", str(a), str(b), "--reports-dir", str(tmp_path / "reports"), *extra])


def outcomes(a: Path, b: Path) -> dict[str, str]:
    c = compare.compare(compare.read_run(a, "A"), compare.read_run(b, "B"))
    return {x.cell_id: x.outcome for x in c.cells}


def test_two_runs_of_the_same_distribution_flag_nothing(tmp_path: Path, capsys) -> None:
    a, b = make_run(tmp_path, "a", seed=1), make_run(tmp_path, "b", seed=2)
    assert set(outcomes(a, b)) == set(c.id for c in CELLS)
    assert set(outcomes(a, b).values()) <= {"unchanged", "inconclusive"}
    assert run_compare(a, b, tmp_path, "--fail-on-regression") == 0
    out = capsys.readouterr().out
    assert "0 regressions, 0 improvements" in out and "Same host." in out
    assert "compare-a-vs-b.md" in out and "compare-a-vs-b.html" in out
    md = (tmp_path / "reports" / "compare-a-vs-b.md").read_text()
    assert "| cell | A ms | B ms | B / A (CI) | verdict |" in md and MLP_EAGER in md
    assert "No recorded difference." in md


def test_a_slower_cell_is_the_only_regression_and_fails_the_gate(tmp_path: Path,
                                                                 capsys) -> None:
    a = make_run(tmp_path, "a", seed=1)
    b = make_run(tmp_path, "b", seed=2, slower={MLP_EAGER: 1.2})
    found = outcomes(a, b)
    assert found[MLP_EAGER] == "REGRESSION"
    assert [cid for cid, o in found.items() if o == "REGRESSION"] == [MLP_EAGER]
    assert run_compare(a, b, tmp_path) == 0  # without the flag, only reported
    assert run_compare(a, b, tmp_path, "--fail-on-regression") == 1
    out = capsys.readouterr().out
    assert "regressed" in out and MLP_EAGER in out.split("regressed")[-1]
    c = compare.compare(compare.read_run(a, "A"), compare.read_run(b, "B"))
    slow = c.regressions[0]
    assert 1.15 < slow.ratio < 1.25 and slow.lo > 1.03
    assert c.level == pytest.approx(1 - 0.05 / len(CELLS))  # Bonferroni over the cells compared
    html = (tmp_path / "reports" / "compare-a-vs-b.html").read_text()
    assert 'class="REGRESSION"' in html


def test_a_faster_cell_is_an_improvement(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", seed=1)
    b = make_run(tmp_path, "b", seed=2, slower={CNN: 0.8})
    found = outcomes(a, b)
    assert found[CNN] == "IMPROVEMENT"
    assert "REGRESSION" not in found.values()
    assert run_compare(a, b, tmp_path, "--fail-on-regression") == 0


def test_a_partial_run_compares_what_it_has(tmp_path: Path, capsys) -> None:
    gpu = Cell("torch", "mlp", "eager", device="cuda", size="small", dataset="digits")
    a = make_run(tmp_path, "a", seed=1)
    # B: interrupted before its tables were written; one cell never started, one failed, and
    # one cell A does not have
    b = make_run(tmp_path, "b", seed=2, drop=(CNN,), fail={LSTM: "timed out after 900 s"},
                 extra=(gpu,), write=False)
    assert not (b / "results.parquet").exists()
    c = compare.compare(compare.read_run(a, "A"), compare.read_run(b, "B"))
    assert {x.cell_id for x in c.cells} == {MLP_EAGER, MLP_COMPILED}
    assert c.level == pytest.approx(1 - 0.05 / 2)
    assert {(i, sa, sb) for i, sa, sb, _ in c.not_compared} == {(CNN, "ok", "not run"),
                                                                 (LSTM, "ok", "failed")}
    assert "timed out after 900 s" in dict((i, r) for i, _, _, r in c.not_compared)[LSTM]
    assert c.only_b == [(gpu.id, "ok")] and c.only_a == []
    assert run_compare(a, b, tmp_path) == 0
    out = capsys.readouterr().out
    assert "not compared" in out and "only in B" in out and gpu.id in out
    md = (tmp_path / "reports" / "compare-a-vs-b.md").read_text()
    assert "## Not compared" in md and "## Only in B" in md and "not run" in md
    assert "1 only in B" in md and "2 not compared" in md


def test_the_environment_difference_is_shown(tmp_path: Path, capsys) -> None:
    a = make_run(tmp_path, "a", seed=1)
    other = {**HOST, "hostname": "gpu-box", "cpu_model": "AMD EPYC 9654", "cpu_count": 16,
             "gpus": [{"name": "NVIDIA H200"}], "git_commit": "0123456789abcdef",
             "git_dirty": True}
    b = make_run(tmp_path, "b", seed=2, host=other,
                 versions={**VERSIONS, "torch": {"framework_version": "2.14.0+cu128"}})
    c = compare.compare(compare.read_run(a, "A"), compare.read_run(b, "B"))
    env = {what: (va, vb) for what, va, vb in c.environment}
    assert c.hosts_differ
    assert env["CPU model"] == ("Intel(R) Xeon(R) Processor", "AMD EPYC 9654")
    assert env["CPU cores"] == ("2", "16") and env["GPUs"] == ("none", "NVIDIA H200")
    assert env["torch framework_version"] == ("2.13.0+cpu", "2.14.0+cu128")
    assert env["git commit"] == ("953f38beaac9", "0123456789ab") and env["git dirty"] == ("no",
                                                                                         "yes")
    assert "jax framework_version" not in env and "threads" not in env
    assert run_compare(a, b, tmp_path) == 0
    out = capsys.readouterr().out
    assert "different hosts" in out
    assert "CPU model: Intel(R) Xeon(R) Processor → AMD EPYC 9654" in out
    assert "torch framework_version: 2.13.0+cpu → 2.14.0+cu128" in out
    md = (tmp_path / "reports" / "compare-a-vs-b.md").read_text()
    assert "- CPU model: Intel(R) Xeon(R) Processor → AMD EPYC 9654" in md


def test_an_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    make_run(tmp_path, "known", seed=1)
    with pytest.raises(SystemExit) as exc:
        main(["compare", "known", "nosuchrun", "--results-dir", str(tmp_path)])
    message = str(exc.value.code)
    assert "nosuchrun" in message and "runs in" in message and "known" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="not a run"):
        main(["compare", "known", str(tmp_path / "empty"), "--results-dir", str(tmp_path)])


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)


def test_the_html_escapes_what_the_runs_hold(tmp_path: Path) -> None:
    hostile = "<script>alert('x')</script> & | boom"
    a = make_run(tmp_path, "a", seed=1)
    b = make_run(tmp_path, "b", seed=2, fail={CNN: hostile},
                 versions={**VERSIONS, "jax": {"framework_version": "<b>0.11</b>"}})
    assert run_compare(a, b, tmp_path) == 0
    html = (tmp_path / "reports" / "compare-a-vs-b.html").read_text()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; | boom" in html
    assert "&lt;b&gt;0.11&lt;/b&gt;" in html
    parsed = Tags()
    parsed.feed(html)
    assert "script" not in parsed.tags and "b" not in parsed.tags  # no JS, nothing injected
    assert "http" not in html  # needs no network
    md = (tmp_path / "reports" / "compare-a-vs-b.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\| boom" in md


def test_a_run_against_itself_regresses_nothing(tmp_path: Path, capsys) -> None:
    a = make_run(tmp_path / "results", "same", seed=1)
    assert main(["compare", "same", "same", "--results-dir", str(tmp_path / "results"),
                 "--no-files", "--fail-on-regression"]) == 0
    assert "0 regressions" in capsys.readouterr().out
    assert not (tmp_path / "reports").exists()
    c = compare.compare(compare.read_run(a, "A"), compare.read_run(a, "B"))
    assert all(x.ratio == 1.0 and x.lo <= 1.0 <= x.hi for x in c.cells)


def test_the_machines_run_wide_drift_is_divided_out(tmp_path: Path) -> None:
    """The machine 10% slower for the whole of run B, and one cell 25% slower on top: only
    that cell regressed; gating on raw ratios (--absolute) flags every cell."""
    extra = tuple(Cell("jax", w, "compiled", size="small", dataset="digits")
                  for w in ("mlp", "cnn"))
    ids = [c.id for c in CELLS] + [c.id for c in extra]
    a = make_run(tmp_path, "a", seed=1, extra=extra)
    b = make_run(tmp_path, "b", seed=2, extra=extra,
                 slower={i: 1.1 * (1.25 if i == CNN else 1.0) for i in ids})
    run_a, run_b = compare.read_run(a, "A"), compare.read_run(b, "B")
    c = compare.compare(run_a, run_b)
    assert c.drift == pytest.approx(1.1, rel=0.02)
    assert [x.cell_id for x in c.regressions] == [CNN]
    assert 1.2 < c.regressions[0].ratio < 1.3
    raw = compare.compare(run_a, run_b, absolute=True)
    assert raw.drift == 1.0 and len(raw.regressions) == len(ids)
