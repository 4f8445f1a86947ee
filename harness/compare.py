"""``framebench compare RUN_A RUN_B``: did anything get slower between two runs?

For every cell that finished in both runs: the step-time ratio B / A (median step time of B over
A; above 1 = B slower) with a bootstrap CI that resamples each run's processes and samples
independently (two runs cannot be paired), Bonferroni-corrected over the cells compared, and the
three-outcome verdict of ``harness.stats``: REGRESSION (the CI lies above 1 + 3%), IMPROVEMENT
(below 1 - 3%), unchanged (inside 1 +- 3%) or inconclusive (with about how many repeats would
settle it). Memory, the cold first step and test quality are shown beside it, not gated. The
environment (host, framework versions, threads, precision, commit, tuned variants) is listed
where it differs. Partial runs compare what they have; cells of one run only are listed.

Output: a table in the terminal and ``REPORTS_DIR/compare-<A>-vs-<B>.md`` and ``.html`` (one
self-contained file, everything escaped). Imports no framework.
"""

from __future__ import annotations

import argparse
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.markup import escape
from rich.table import Table

from harness import results, stats
from harness.backends import SELF_CHECK
from harness.record import NewerFile, RunManifest, atomic
from harness.report.fmt import is_missing, or_empty

PROG = "framebench compare"
OUTCOMES = {"slower": "REGRESSION", "faster": "IMPROVEMENT", "equivalent": "unchanged",
            "inconclusive": "inconclusive"}
ORDER = ("REGRESSION", "IMPROVEMENT", "inconclusive", "unchanged")
STYLE = {"REGRESSION": "bold red", "IMPROVEMENT": "bold green", "inconclusive": "yellow",
         "unchanged": ""}
ACCURACY_POINTS = 0.01   # an accuracy change beyond 1 point is flagged
MEMORY_NOTE = 0.10       # a peak-memory change beyond 10% is noted
GEMM_NOTE = 0.10         # a GEMM peak change beyond 10% is listed with the environment
HOST_KEYS = ("hostname", "cpu_model", "cpu_count", "gpus")  # any of these: different hosts


@dataclass
class Run:
    """One run as the comparison reads it."""

    label: str                       # "A" or "B"
    dir: Path
    manifest: RunManifest
    summary: pd.DataFrame            # one row per cell (the self-check left out)
    table: pd.DataFrame              # one row per process
    groups: dict[str, list[np.ndarray]]
    planned: list[str]               # cell ids run.json lists (a partial run ran fewer)

    @property
    def id(self) -> str:
        return self.manifest.run_id

    def status(self, cell_id: str) -> str:
        rows = self.summary[self.summary["cell_id"] == cell_id]
        if len(rows):
            return str(rows.iloc[0]["status"])
        return "not run" if cell_id in self.planned else "absent"

    def reason(self, cell_id: str) -> str:
        rows = self.summary[self.summary["cell_id"] == cell_id]
        if len(rows) and not is_missing(rows.iloc[0]["reason"]):
            return str(rows.iloc[0]["reason"])
        if not len(rows) and cell_id in self.planned:
            return "planned but never started (the run stopped before it)"
        return ""

    def timed(self, cell_id: str) -> bool:
        """Finished with timing samples and a positive median."""
        rows = self.summary[self.summary["cell_id"] == cell_id]
        return (len(rows) == 1 and rows.iloc[0]["status"] == "ok"
                and cell_id in self.groups and float(np.median(
                    np.concatenate(self.groups[cell_id]))) > 0)


@dataclass
class CellChange:
    """One cell that finished in both runs."""

    cell_id: str
    a_s: float
    b_s: float
    ratio: float
    lo: float
    hi: float
    verdict: str                     # stats.verdict of B / A
    repeats: tuple[int, int]
    settle: int | None = None        # inconclusive: repeats per run that would likely settle it
    memory: str = ""                 # "A → B (change)", for the files
    device_memory: str = ""
    first_step: str = ""
    quality: str = ""
    short: dict[str, str] = field(default_factory=dict)  # the changes alone, for the terminal
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return OUTCOMES[self.verdict]

    @property
    def ratio_text(self) -> str:
        return f"{self.ratio:.3f} ({self.lo:.3f}–{self.hi:.3f})"

    @property
    def outcome_text(self) -> str:
        if self.outcome == "unchanged":
            return f"unchanged (±{stats.EQUIVALENCE_MARGIN:.0%})"
        return self.outcome

    def all_notes(self, short: bool = False) -> list[str]:
        out = list(self.notes)
        if self.verdict == "inconclusive":
            if short:
                out.append(f"settle: ~{self.settle} repeats/run" if self.settle else
                           f"settle: >{stats.MAX_SETTLE_REPEATS} repeats/run")
            else:
                out.append(f"about {self.settle} repeats per run would likely settle it"
                           if self.settle else f"more than {stats.MAX_SETTLE_REPEATS} repeats "
                           "per run would be needed (or the estimate sits on the band's edge)")
        return out


@dataclass
class Comparison:
    a: Run
    b: Run
    level: float
    cells: list[CellChange]
    not_compared: list[tuple[str, str, str, str]]   # cell, status A, status B, reason
    only_a: list[tuple[str, str]]                    # cell, status
    only_b: list[tuple[str, str]]
    environment: list[tuple[str, str, str]]          # what, A, B
    hosts_differ: bool
    drift: float = 1.0   # the run-wide B / A (median over the cells), divided out of each ratio

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.cells)

    @property
    def regressions(self) -> list[CellChange]:
        return [c for c in self.cells if c.outcome == "REGRESSION"]

    def headline(self) -> str:
        n = len(self.cells)
        parts = [f"{self.count('REGRESSION')} regression{'s' * (self.count('REGRESSION') != 1)}",
                 f"{self.count('IMPROVEMENT')} improvement"
                 f"{'s' * (self.count('IMPROVEMENT') != 1)}",
                 f"{self.count('unchanged')} unchanged (±{stats.EQUIVALENCE_MARGIN:.0%})",
                 f"{self.count('inconclusive')} inconclusive"]
        text = f"{', '.join(parts)} among {n} cell{'s' * (n != 1)} compared"
        if n:
            text += f" (each CI at {self.level:.3%}, Bonferroni over {n})"
        if self.drift != 1.0:
            text += (f"; the machine's run-wide drift B / A = {self.drift:.3f} (the median over "
                     "the cells) is divided out of every ratio")
        return (f"{text}; {len(self.only_a)} only in A, {len(self.only_b)} only in B, "
                f"{len(self.not_compared)} not compared (failed, skipped or not run)")


# --- reading runs -------------------------------------------------------------------------

def resolve(name: str, results_dir: Path) -> Path:
    """A run directory, or a run id under results_dir; else SystemExit naming it and the runs
    that exist."""
    for candidate in (Path(name), results_dir / name):
        if candidate.is_dir() and RunManifest.exists(candidate):
            return candidate
    runs = sorted(d.name for d in results_dir.glob("*/") if RunManifest.exists(d)) \
        if results_dir.is_dir() else []
    where = next((c for c in (Path(name), results_dir / name) if c.is_dir()), None)
    what = f"{where} is a directory but not a run (no run.json)" if where else \
        f"no run {name!r}: neither a run directory nor a run id under {results_dir}"
    raise SystemExit(f"{PROG}: {what}; runs in {results_dir}: {', '.join(runs) or 'none'}")


NEEDED = ("summary", "results", "samples")  # the tables a comparison reads


def tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """The run's summary, results and samples tables. Written tables are read leniently (columns
    a newer schema added are empty), so comparing never rewrites a finished run; a run
    interrupted before it wrote them has them collected now from its raw files."""
    if all((run_dir / f"{name}.parquet").exists() for name in NEEDED):
        try:
            return {name: table for name, table in results.load(run_dir, lenient=True).items()
                    if name in NEEDED}
        except NewerFile:
            raise  # rewriting it would lose what the newer version wrote
        except (OSError, ValueError, TypeError):
            pass  # corrupt or unreadable: collected again below from the cells' records
    if not any((run_dir / "cells").glob("*/r*/outcome.json")):
        return {name: results.empty(name) for name in NEEDED}
    try:
        return results.write(run_dir)
    except Exception as exc:  # noqa: BLE001 - any failure here is bad input, said plainly
        raise SystemExit(f"{PROG}: cannot collect the tables of {run_dir} from its raw files: "
                         f"{type(exc).__name__}: {exc}") from exc


def read_run(run_dir: Path, label: str) -> Run:
    t = tables(run_dir)
    summary = t["summary"][t["summary"]["framework"] != SELF_CHECK].reset_index(drop=True)
    manifest = RunManifest.read(run_dir)
    planned = [c for c in manifest.cells if f"-{SELF_CHECK}-" not in c]
    return Run(label, run_dir, manifest, summary, t["results"],
               results.sample_groups(t["samples"]), planned)


# --- comparing ----------------------------------------------------------------------------

DRIFT_MIN_CELLS = 5  # fewer cells than this: no run-wide drift is estimated


def compare(a: Run, b: Run, absolute: bool = False) -> Comparison:
    """Every cell of both runs. Unless ``absolute`` (or fewer than DRIFT_MIN_CELLS cells were
    timed in both), each ratio is taken relative to the run-wide drift: on a machine whose
    speed moves between runs (this project's VM: 5-20% from one run to the next, every cell
    alike), a regression is a cell that slowed against the others, not the machine."""
    known_a = set(a.summary["cell_id"]) | set(a.planned)
    known_b = set(b.summary["cell_id"]) | set(b.planned)
    both = [c for c in _ordered(a, b) if c in known_a and c in known_b]
    timed = [c for c in both if a.timed(c) and b.timed(c)]
    level = stats.corrected_level(len(timed))
    drift = 1.0
    if not absolute and len(timed) >= DRIFT_MIN_CELLS:
        drift = float(np.median([np.median(np.concatenate(b.groups[c]))
                                 / np.median(np.concatenate(a.groups[c])) for c in timed]))
    cells = sorted((_change(a, b, c, level, drift) for c in timed),
                   key=lambda c: (ORDER.index(c.outcome), -c.ratio, c.cell_id))
    not_compared = []
    for c in both:
        if c not in timed:
            sa, sb = a.status(c), b.status(c)
            sa = sa if sa != "ok" or a.timed(c) else "ok (no timing samples)"
            sb = sb if sb != "ok" or b.timed(c) else "ok (no timing samples)"
            reason = "; ".join(f"{r.label}: {_first_line(r.reason(c))}" for r in (a, b)
                               if r.reason(c))
            not_compared.append((c, sa, sb, reason))
    only_a = [(c, a.status(c)) for c in _ordered(a, b) if c in known_a and c not in known_b]
    only_b = [(c, b.status(c)) for c in _ordered(a, b) if c in known_b and c not in known_a]
    env, hosts_differ = environment(a, b, both)
    return Comparison(a, b, level, cells, not_compared, only_a, only_b, env, hosts_differ,
                      drift)


def _ordered(a: Run, b: Run) -> list[str]:
    ids = list(a.summary["cell_id"]) + a.planned + list(b.summary["cell_id"]) + b.planned
    return sorted(dict.fromkeys(ids))


def _change(a: Run, b: Run, cell_id: str, level: float, drift: float = 1.0) -> CellChange:
    ga, gb = a.groups[cell_id], b.groups[cell_id]
    ratio, lo, hi = (v / drift for v in stats.ratio_ci(gb, ga, level=level))
    verdict = stats.verdict(lo, hi)
    ra, rb = _row(a, cell_id), _row(b, cell_id)
    change = CellChange(cell_id, float(np.median(np.concatenate(ga))),
                        float(np.median(np.concatenate(gb))), ratio, lo, hi, verdict,
                        (len(ga), len(gb)))
    if verdict == "inconclusive":
        change.settle = stats.settle_repeats(ratio, lo, hi, min(len(ga), len(gb)))
    notes = change.notes
    va, vb = or_empty(ra["variant"]), or_empty(rb["variant"])
    if va != vb:
        notes.append(f"tuned variant {va or '–'} → {vb or '–'}")
    change.memory, rel = _bytes_change(ra["peak_rss_bytes"], rb["peak_rss_bytes"])
    change.short["memory"] = _rel(rel)
    if rel is not None and abs(rel) > MEMORY_NOTE:
        notes.append(f"peak RSS {rel:+.0%}")
    change.device_memory, rel = _bytes_change(ra["device_peak_bytes"], rb["device_peak_bytes"])
    change.short["device_memory"] = _rel(rel)
    if rel is not None and abs(rel) > MEMORY_NOTE:
        notes.append(f"device peak {rel:+.0%}")
    fa, fb = _num(ra["first_step_cold_s"]), _num(rb["first_step_cold_s"])
    change.first_step = _pair(fa, fb, ".3g", relative=True)
    change.short["first_step"] = _rel(fb / fa - 1 if fa and fb is not None else None)
    change.quality, quality_short, quality_notes = _quality(ra, rb)
    change.short.update(quality_short)
    notes += quality_notes
    return change


def _rel(value: float | None) -> str:
    return "" if value is None else f"{value:+.1%}"


def _quality(ra: Any, rb: Any) -> tuple[str, dict[str, str], list[str]]:
    """Test accuracy and perplexity A → B; their changes alone ({"acc": ..., "ppl": ...}); and
    notes on what to flag (accuracy beyond ACCURACY_POINTS, a flip of the quality target)."""
    parts, short, notes = [], {"acc": "", "ppl": ""}, []
    acc_a, acc_b = _num(ra["test_accuracy"]), _num(rb["test_accuracy"])
    if acc_a is not None or acc_b is not None:
        text = f"acc {_fmt(acc_a, '.3f')} → {_fmt(acc_b, '.3f')}"
        if acc_a is not None and acc_b is not None:
            points = (acc_b - acc_a) * 100
            text += f" ({points:+.1f} pt)"
            short["acc"] = f"{points:+.1f} pt"
            if abs(acc_b - acc_a) > ACCURACY_POINTS:
                notes.append(f"test accuracy {points:+.1f} points")
        parts.append(text)
    ppl_a, ppl_b = _num(ra["test_perplexity"]), _num(rb["test_perplexity"])
    if ppl_a is not None or ppl_b is not None:
        parts.append(f"ppl {_pair(ppl_a, ppl_b, '.3f', relative=True)}")
        if ppl_a and ppl_b is not None:
            short["ppl"] = f"{ppl_b / ppl_a - 1:+.1%}"
    ta, tb = ra["target_met"], rb["target_met"]
    if not is_missing(ta) and not is_missing(tb) and bool(ta) != bool(tb):
        notes.append(f"target {'met' if ta else 'missed'} → {'met' if tb else 'missed'}")
    return "; ".join(parts), short, notes


def environment(a: Run, b: Run, both: list[str]) -> tuple[list[tuple[str, str, str]], bool]:
    """What differs between the runs' environments, as (what, A, B); and whether the hosts
    differ."""
    out: list[tuple[str, str, str]] = []

    def add(what: str, va: Any, vb: Any) -> None:
        ta, tb = _env_text(va), _env_text(vb)
        if ta != tb:
            out.append((what, ta, tb))

    ha, hb = a.manifest.host, b.manifest.host
    hosts_differ = any(_env_text(ha.get(k)) != _env_text(hb.get(k)) for k in HOST_KEYS
                       if k in ha or k in hb)
    add("host name", ha.get("hostname"), hb.get("hostname"))
    add("CPU model", ha.get("cpu_model"), hb.get("cpu_model"))
    add("CPU cores", ha.get("cpu_count"), hb.get("cpu_count"))
    add("CPUs usable", _len(ha.get("cpu_affinity")), _len(hb.get("cpu_affinity")))
    add("GPUs", _gpus(ha), _gpus(hb))
    fa, fb = set(ha.get("cpu_flags") or []), set(hb.get("cpu_flags") or [])
    if fa != fb and fa and fb:
        out.append(("CPU flags", ", ".join(sorted(fa - fb)) or "–",
                    ", ".join(sorted(fb - fa)) or "–"))
    for key, what in (("os", "OS"), ("python", "Python"), ("numpy", "numpy")):
        add(what, ha.get(key), hb.get(key))
    add("git commit", _short(ha.get("git_commit")), _short(hb.get("git_commit")))
    add("git dirty", ha.get("git_dirty"), hb.get("git_dirty"))
    add("threads", _threads(a), _threads(b))
    add("precision", a.manifest.precision, b.manifest.precision)
    add("repeats", a.manifest.repeats, b.manifest.repeats)
    add("tiers", ", ".join(a.manifest.tiers) or None, ", ".join(b.manifest.tiers) or None)
    ea, eb = ha.get("env") or {}, hb.get("env") or {}
    for key in sorted(set(ea) | set(eb)):
        add(f"${key}", ea.get(key), eb.get(key))
    ia, ib = _framework_info(a), _framework_info(b)
    for fw in sorted(set(ia) | set(ib)):
        if fw == SELF_CHECK:
            continue
        if fw not in ia or fw not in ib:
            add(fw, "used" if fw in ia else "not used", "used" if fw in ib else "not used")
            continue
        for key in sorted(set(ia[fw]) | set(ib[fw])):
            add(f"{fw} {key}", ia[fw].get(key), ib[fw].get(key))
    add("command", _command(a.manifest.argv), _command(b.manifest.argv))
    pa, pb = _peaks(a.manifest), _peaks(b.manifest)
    for name in sorted(set(pa) & set(pb)):
        if pa[name] and pb[name] and abs(pb[name] / pa[name] - 1) > GEMM_NOTE:
            out.append((f"GEMM peak ({name})", f"{pa[name] / 1e9:.0f} GFLOP/s",
                        f"{pb[name] / 1e9:.0f} GFLOP/s"))
    for cell_id in both:
        if not (len(_rows(a, cell_id)) and len(_rows(b, cell_id))):
            continue
        ra, rb = _row(a, cell_id), _row(b, cell_id)
        if ra["tier"] == "tuned":
            add(f"tuned variant of {cell_id}", or_empty(ra["variant"]) or "(none chosen)",
                or_empty(rb["variant"]) or "(none chosen)")
        add(f"data of {cell_id}", or_empty(ra["data_source"]) or None,
            or_empty(rb["data_source"]) or None)
        if "timing" in ra.index and "timing" in rb.index:  # runs timed in turns, or alone
            add(f"timing of {cell_id}", or_empty(ra["timing"]) or None,
                or_empty(rb["timing"]) or None)
    return out, hosts_differ


def _framework_info(run: Run) -> dict[str, dict[str, Any]]:
    """run.json's framework info; else (a run that stopped before writing it) the framework
    versions its processes recorded."""
    if run.manifest.framework_info:
        return run.manifest.framework_info
    t = run.table.dropna(subset=["framework_version"])
    return {fw: {"framework_version": g["framework_version"].iloc[0]}
            for fw, g in t.groupby("framework")}


def _command(argv: list[str]) -> str | None:
    """The run's command line without its run id (which always differs)."""
    out, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--run-id="):
            skip = False
            continue
        if arg == "--run-id":
            skip = True
            continue
        out.append(arg)
    return " ".join(out) or None


def _peaks(m: RunManifest) -> dict[str, float]:
    """GEMM peaks by name: per device and precision (newer runs), else per framework."""
    peaks = {k: v.get("flops_per_s") for k, v in (getattr(m, "device_peaks", None) or {}).items()
             if isinstance(v, dict)}
    return peaks or dict(m.gemm_peak_flops_per_s)


def _threads(run: Run) -> Any:
    if run.manifest.threads is not None:
        return run.manifest.threads
    threads = run.table["threads"].dropna().unique()
    return ", ".join(str(t) for t in sorted(threads)) or None


# --- output -------------------------------------------------------------------------------

def _columns(c: Comparison) -> list[tuple[str, str]]:
    """(header, CellChange attribute) of the per-cell table."""
    cols = [("cell", "cell_id"), ("A ms", "a_ms"), ("B ms", "b_ms"), ("B / A (CI)", "ratio_text"),
            ("verdict", "outcome_text"), ("peak RSS MiB", "memory")]
    if any(x.device_memory for x in c.cells):
        cols.append(("device peak MiB", "device_memory"))
    return cols + [("cold first step s", "first_step"), ("quality", "quality"),
                   ("notes", "notes_text")]


def _value(x: CellChange, attr: str, short: bool = False) -> str:
    if attr == "a_ms":
        return f"{x.a_s * 1e3:.4g}"
    if attr == "b_ms":
        return f"{x.b_s * 1e3:.4g}"
    if attr == "notes_text":
        return "; ".join(x.all_notes(short))
    if short and attr in x.short:
        return x.short[attr]
    return str(getattr(x, attr))


def _run_line(r: Run) -> str:
    m, host = r.manifest, r.manifest.host
    state = "" if m.ended and not m.interrupted else \
        (" (interrupted)" if m.interrupted else " (did not finish)")
    gpus = _gpus(host)
    return (f"{r.label}: {r.id}{state} — {r.dir}, started {m.started or '?'}, "
            f"{host.get('cpu_model', '?')} ({host.get('cpu_count', '?')} cores"
            f"{', ' + gpus if gpus != 'none' else ''}), "
            f"commit {_short(host.get('git_commit')) or '?'}"
            f"{' (dirty)' if host.get('git_dirty') else ''}")


def _hosts_line(c: Comparison) -> str:
    if c.hosts_differ:
        return ("The runs were made on different hosts: the ratios compare the machines as well "
                "as the code.")
    return "Same host."


def print_comparison(c: Comparison) -> None:
    from harness.ui import console

    console.print(f"[bold]framebench compare[/] {escape(c.a.id)} → {escape(c.b.id)}")
    for r in (c.a, c.b):
        console.print(escape(_run_line(r)))
    console.print(("[yellow]" if c.hosts_differ else "") + _hosts_line(c)
                  + ("[/]" if c.hosts_differ else ""))
    if c.environment:
        console.print("[bold]environment[/] (A → B):")
        for what, va, vb in c.environment:
            console.print(f"  {escape(what)}: {escape(va)} → {escape(vb)}")
    else:
        console.print("environment: no recorded difference")
    if c.cells:
        t = Table(title="median step time, B / A (above 1: B slower)", box=box.SIMPLE_HEAD,
                  show_edge=False, collapse_padding=True)
        cols = [col for col in _columns(c) if col[0] not in ("notes", "quality")]
        cols += [("acc", "acc"), ("ppl", "ppl")]
        for head, _ in cols:
            t.add_column(TERMINAL_HEADS.get(head, head),
                         justify="left" if head in ("cell", "verdict") else "right",
                         no_wrap=True)
        for x in c.cells:
            style = STYLE[x.outcome]
            values = [escape(x.outcome if attr == "outcome_text" else _value(x, attr, short=True))
                      for _, attr in cols]
            verdict = cols.index(("verdict", "outcome_text"))
            if style:
                values[verdict] = f"[{style}]{values[verdict]}[/]"
            t.add_row(*values)
        console.print(t)
        console.print(f"unchanged: within ±{stats.EQUIVALENCE_MARGIN:.0%}; RSS (peak), 1st step "
                      "(cold), acc (test accuracy, points), ppl (test perplexity): the change "
                      "from A to B, not gated")
        noted = [x for x in c.cells if x.all_notes(short=True)]
        if noted:
            console.print("[bold]notes[/]:")
            for x in noted:
                console.print(f"  {escape(x.cell_id)}: {escape('; '.join(x.all_notes(True)))}")
    if c.not_compared:
        t = Table(title="not compared")
        for head in ("cell", "A", "B", "reason"):
            t.add_column(head)
        for cell_id, sa, sb, reason in c.not_compared:
            t.add_row(*(escape(v) for v in (cell_id, sa, sb, reason)))
        console.print(t)
    for name, only in (("A", c.only_a), ("B", c.only_b)):
        if only:
            console.print(f"only in {name}: " + ", ".join(f"{escape(i)} ({escape(s)})"
                                                          for i, s in only))
    style = "bold red" if c.regressions else "green"
    console.print(f"[{style}]{escape(c.headline())}[/]")


TERMINAL_HEADS = {"peak RSS MiB": "RSS", "device peak MiB": "device peak",
                  "cold first step s": "1st step"}


def markdown(c: Comparison) -> str:
    lines = [f"# framebench compare: {c.a.id} → {c.b.id}", ""]
    lines += [f"- {_run_line(r)}" for r in (c.a, c.b)]
    lines += ["", f"**{c.headline()}.**", "", _hosts_line(c), "", "## Environment (A → B)", ""]
    lines += [f"- {w}: {va} → {vb}" for w, va, vb in c.environment] or \
        ["No recorded difference."]
    lines += ["", "## Step time, B / A (above 1: B slower)", ""]
    if c.cells:
        cols = _columns(c)
        lines += ["| " + " | ".join(h for h, _ in cols) + " |",
                  "|" + "|".join("---" if h in ("cell", "verdict", "quality", "notes")
                                 else "---:" for h, _ in cols) + "|"]
        for x in c.cells:
            values = [_md(_value(x, attr)) for _, attr in cols]
            if x.outcome in ("REGRESSION", "IMPROVEMENT"):
                values[4] = f"**{values[4]}**"
            lines.append("| " + " | ".join(values) + " |")
    else:
        lines.append("No cell finished in both runs.")
    if c.not_compared:
        lines += ["", "## Not compared", "", "| cell | A | B | reason |", "|---|---|---|---|"]
        lines += [f"| {_md(i)} | {_md(sa)} | {_md(sb)} | {_md(r)} |"
                  for i, sa, sb, r in c.not_compared]
    for name, only in (("A", c.only_a), ("B", c.only_b)):
        if only:
            lines += ["", f"## Only in {name}", ""]
            lines += [f"- {_md(i)} ({_md(s)})" for i, s in only]
    lines += ["", "## Method", "", METHOD, ""]
    return "\n".join(lines)


METHOD = (
    "Cells are matched by id (workload, size, framework, tier, mode, device, batch, precision). "
    "B / A is the median step time of all of B's samples over A's. Its CI is a percentile "
    "bootstrap that resamples each run independently and hierarchically (processes, then the "
    "samples within each); the two runs cannot be paired. The CIs are Bonferroni-corrected over "
    "the cells compared. With at least 5 cells the machine's run-wide drift (the median B / A "
    "over the cells) is divided out first, since a shared machine's speed moves between runs "
    "for every cell alike (--absolute keeps raw ratios). "
    "REGRESSION: the CI lies wholly above 1 + 3%; IMPROVEMENT: wholly below "
    "1 - 3%; unchanged: wholly inside 1 ± 3%; inconclusive: anything else (not evidence of "
    "sameness; more repeats settle it). Memory, the cold first step and test quality are "
    "informational: an accuracy change beyond 1 point, a flip of the quality target and a "
    "memory change beyond 10% are noted, not gated.")

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.REGRESSION td.verdict { color: #b00020; font-weight: bold; }
tr.IMPROVEMENT td.verdict { color: #0a7d2c; font-weight: bold; }
tr.inconclusive td.verdict { color: #a36a00; }
.headline { font-size: 1.1em; font-weight: bold; }
.warn { color: #a36a00; }
"""


def render_html(c: Comparison) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>framebench compare: {e(c.a.id)} → {e(c.b.id)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>framebench compare: {e(c.a.id)} → {e(c.b.id)}</h1>", '<ul id="runs">']
    parts += [f"<li>{e(_run_line(r))}</li>" for r in (c.a, c.b)]
    parts += ["</ul>", f'<p class="headline" id="headline">{e(c.headline())}.</p>',
              f'<p class="{"warn" if c.hosts_differ else ""}">{e(_hosts_line(c))}</p>',
              '<h2 id="environment">Environment (A → B)</h2>']
    if c.environment:
        parts.append("<table><tr><th>what</th><th>A</th><th>B</th></tr>")
        parts += [f"<tr><td>{e(w)}</td><td>{e(va)}</td><td>{e(vb)}</td></tr>"
                  for w, va, vb in c.environment]
        parts.append("</table>")
    else:
        parts.append("<p>No recorded difference.</p>")
    parts.append('<h2 id="cells">Step time, B / A (above 1: B slower)</h2>')
    if c.cells:
        cols = _columns(c)
        text_cols = ("cell", "verdict", "quality", "notes")
        parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h, _ in cols) + "</tr>")
        for x in c.cells:
            tds = "".join(
                ('<td class="verdict">' if h == "verdict" else "<td>" if h in text_cols
                 else '<td class="num">') + f"{e(_value(x, attr))}</td>" for h, attr in cols)
            parts.append(f'<tr class="{e(x.outcome)}">{tds}</tr>')
        parts.append("</table>")
    else:
        parts.append("<p>No cell finished in both runs.</p>")
    if c.not_compared:
        parts += ['<h2 id="not-compared">Not compared</h2>',
                  "<table><tr><th>cell</th><th>A</th><th>B</th><th>reason</th></tr>"]
        parts += [f"<tr><td>{e(i)}</td><td>{e(sa)}</td><td>{e(sb)}</td><td>{e(r)}</td></tr>"
                  for i, sa, sb, r in c.not_compared]
        parts.append("</table>")
    for name, only in (("A", c.only_a), ("B", c.only_b)):
        if only:
            parts += [f'<h2 id="only-in-{name.lower()}">Only in {name}</h2>', "<ul>"]
            parts += [f"<li>{e(i)} ({e(s)})</li>" for i, s in only]
            parts.append("</ul>")
    parts += ['<h2 id="method">Method</h2>', f"<p>{e(METHOD)}</p>", "</body></html>", ""]
    return "\n".join(parts)


def write_files(c: Comparison, reports_dir: Path) -> tuple[Path, Path]:
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"compare-{_safe(c.a.id)}-vs-{_safe(c.b.id)}"
    md, page = reports_dir / f"{stem}.md", reports_dir / f"{stem}.html"
    for path, text in ((md, markdown(c)), (page, render_html(c))):
        with atomic(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return md, page


# --- command line -------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compare two runs cell by cell: the step-time ratio B / A with a "
                    "Bonferroni-corrected bootstrap CI and a verdict (REGRESSION, IMPROVEMENT, "
                    f"unchanged within ±{stats.EQUIVALENCE_MARGIN:.0%}, inconclusive); memory, "
                    "cold first step and test quality beside it (not gated); the environment "
                    "where it differs. Writes REPORTS_DIR/compare-<A>-vs-<B>.md and .html.")
    p.add_argument("run_a", metavar="RUN_A",
                   help="the baseline: a run directory or a run id under --results-dir")
    p.add_argument("run_b", metavar="RUN_B",
                   help="the run to judge against it (B / A above 1: B is slower)")
    p.add_argument("--results-dir", type=Path, default=Path("results"),
                   help="where run ids are looked up (default: results)")
    p.add_argument("--reports-dir", type=Path, default=Path("reports"),
                   help="where the Markdown and HTML files go (default: reports)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit with status 1 when any cell regressed")
    p.add_argument("--absolute", action="store_true",
                   help="gate on raw step-time ratios (default: divide out the run-wide drift, "
                   "the median B / A over the cells, when at least 5 cells are compared)")
    p.add_argument("--no-files", action="store_true",
                   help="print only; write no Markdown or HTML file")
    return p


def main(argv: list[str]) -> int:
    from harness.ui import console

    args = parser().parse_args(argv)
    dir_a, dir_b = resolve(args.run_a, args.results_dir), resolve(args.run_b, args.results_dir)
    c = compare(read_run(dir_a, "A"), read_run(dir_b, "B"), absolute=args.absolute)
    print_comparison(c)
    if not args.no_files:
        md, page = write_files(c, args.reports_dir)
        console.print(f"markdown: {escape(str(md))}")
        console.print(f"html:     [bold]{escape(str(page))}[/]")
    if args.fail_on_regression and c.regressions:
        console.print("[bold red]regressed[/]: " + ", ".join(
            f"{escape(x.cell_id)} ({x.ratio_text})" for x in c.regressions))
        return 1
    return 0


# --- helpers ------------------------------------------------------------------------------

def _num(value: Any) -> float | None:
    return None if is_missing(value) else float(value)


def _fmt(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _pair(a: float | None, b: float | None, fmt: str, relative: bool = False) -> str:
    if a is None and b is None:
        return ""
    text = f"{_fmt(a, fmt)} → {_fmt(b, fmt)}"
    if relative and a and b is not None:
        text += f" ({b / a - 1:+.1%})"
    return text


def _bytes_change(a: Any, b: Any) -> tuple[str, float | None]:
    va, vb = _num(a), _num(b)
    if va is None and vb is None:
        return "", None
    text = _pair(None if va is None else va / 2**20, None if vb is None else vb / 2**20, ".0f",
                 relative=True)
    return text, (vb / va - 1) if va and vb is not None else None


def _rows(run: Run, cell_id: str) -> pd.DataFrame:
    return run.summary[run.summary["cell_id"] == cell_id]


def _row(run: Run, cell_id: str) -> pd.Series:
    return _rows(run, cell_id).iloc[0]


def _env_text(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "(not recorded)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _len(value: Any) -> int | None:
    return len(value) if value else None


def _gpus(host: dict[str, Any]) -> str:
    gpus = host.get("gpus")
    if not gpus:
        return "none"
    return ", ".join(str(g.get("name", "?")) if isinstance(g, dict) else str(g) for g in gpus)


def _short(commit: Any) -> str | None:
    return str(commit)[:12] if commit else None


def _first_line(text: str, limit: int = 200) -> str:
    line = next((s.strip() for s in text.strip().splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _md(text: str) -> str:
    """One Markdown table cell: pipes escaped, HTML made inert, one line."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "run"
