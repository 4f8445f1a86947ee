from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness import report, results, runner
from harness.spec import Cell

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"


class Page(HTMLParser):
    """Ids, classes, links and decision rows of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.classes: list[str] = []
        self.hrefs: list[str] = []
        self.decision_rows: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if a.get("class"):
            self.classes += (a["class"] or "").split()
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        if tag == "tr" and "decision" in (a.get("class") or "").split():
            self.decision_rows.append((a.get("data-workload") or "", a.get("data-device") or ""))


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def small_report(small_run: Path) -> Path:
    return small_run / "reports" / "small" / "index.html"


def test_report_renders_every_section(small_run: Path) -> None:
    html = small_report(small_run).read_text()
    page = parse(html)
    assert {"decision", "decision-table", "priority", "workload-mlp-small",
            "workload-transformer-small", "fairness", "trust", "failures", "environment",
            "method", "configurations", "manifest-compare", "tables"} <= page.ids
    assert "untrustworthy" not in page.ids
    for cls in ("choice", "search", "phases", "phase-breakdown", "ratios", "pareto", "steps",
                "losses", "certificate", "caveats"):
        assert page.classes.count(cls) == 2, cls
    assert page.classes.count("profile") == 1 and page.classes.count("not-measured") == 0
    # the accuracy scenario: every seed's held-out quality against time, and the table
    assert {"time-to-target", "accuracy-table"} <= page.ids
    assert "Held-out quality against training time" in html and "MLPerf mean" in html
    # the infer scenario: its table, chart and the decision's latency and inference columns
    assert {"inference", "infer-table"} <= page.ids
    assert "answers one request soonest" in html and "serves large batches fastest" in html
    assert "no verdict: timed apart, not paired" in html  # infer cells run one after another
    assert "Inference latency at batch 1" in html and "requests above" in html
    assert "Every cell finished." in html
    assert "trains fastest (tuned tier)" in html or "train equally fast (tuned tier)" in html
    assert "Tuned against idiomatic" in html and "As users write it" in html
    assert 'id="machine-noise"' in html and "the machine's own speed moved by" in html
    assert "Bonferroni-corrected for the m = " in html and "between-framework comparisons" in html
    assert "Precision in effect" in html and "The optimiser implementations differ" in html
    for fw in ("torch", "tensorflow", "jax"):
        assert f"{fw} identical" in html and f"{fw} idiomatic" in html and f"{fw} tuned: " in html
    assert "Keras compile/fit/evaluate" in html  # what each cell runs, in words
    assert "tokens/s" in html and "test perplexity" in html
    assert "pydoc_data.topics" in html and "scikit-learn" in html  # where the data came from
    assert "Implementation paths taken" in html
    # plotly.js inlined: opens offline (no script loaded from anywhere, no remote link; a bare
    # "cdn" can occur by chance inside plotly's base64-encoded data)
    body = html.split("<body>")[1].lower()
    assert not re.search(r"<script[^>]*\ssrc=", body)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", body)


def test_decision_table_has_one_row_per_workload_and_device(small_run: Path) -> None:
    page = parse(small_report(small_run).read_text())
    assert sorted(page.decision_rows) == [("mlp", "cpu"), ("transformer", "cpu")]


def _resolve_links(html_path: Path, hrefs: list[str]) -> list[Path]:
    tables = [h for h in hrefs if h.endswith((".csv", ".parquet"))]
    return [(html_path.parent / h).resolve() for h in tables]


def test_links_to_the_tables_resolve(small_run: Path) -> None:
    """reports/<run>/index.html (and latest.html, one folder up) link to the run's tables by
    relative paths that lead to the files."""
    run_dir = small_run / "results" / "small"
    for html_path in (small_report(small_run), small_run / "reports" / "latest.html"):
        page = parse(html_path.read_text())
        assert not any(h.startswith(("/", "file:")) for h in page.hrefs
                       if h.endswith((".csv", ".parquet")))
        linked = _resolve_links(html_path, page.hrefs)
        assert all(p.exists() for p in linked), linked
        names = {p.name for p in linked}
        assert {"results.csv", "results.parquet", "summary.csv", "ratios.parquet",
                "samples.parquet", "losses.parquet"} <= names
        assert all(p.parent == run_dir.resolve() for p in linked)
        summary_md = [h for h in page.hrefs if h.endswith("summary.md")]
        assert summary_md and all((html_path.parent / h).exists() for h in summary_md)


def test_summary_markdown_beside_the_report(small_run: Path) -> None:
    md_path = small_run / "reports" / "small" / "summary.md"
    md = md_path.read_text()
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| workload (device)"))
    assert "training throughput" in lines[header] and "peak memory" in lines[header]
    assert lines[header + 1].startswith("|---")
    rows = [line for line in lines[header + 2:] if line.startswith("|")]
    assert [r.split("|")[1].strip() for r in rows[:2]] == ["mlp (cpu)", "transformer (cpu)"]
    assert not any("not measured in this run" in r for r in rows)
    assert any("time to target" in h for h in lines[header].split("|"))
    assert any("inference latency" in h for h in lines[header].split("|"))
    assert "## mlp (cpu)" in md and "## transformer (cpu)" in md
    assert "trains fastest" in md or "train equally fast" in md
    assert "starts up" in md and "needs the least" in md
    links = re.findall(r"\]\(([^)]+\.(?:csv|parquet))\)", md)
    assert links and all((md_path.parent / h).exists() for h in links)


def test_failed_cells_are_shown(tmp_path: Path) -> None:
    crash = Cell("jax", "mlp", "eager", size="small", dataset="digits")
    runner.run_cells([crash], tmp_path,
                     command=lambda c, o, p: [p, "-c", "import os; os.abort()"])
    (tmp_path / "run.json").write_text(json.dumps({"run_id": tmp_path.name}))
    results.write(tmp_path)
    out = report.render(tmp_path, tmp_path / "reports")
    html = out.read_text()
    assert "SIGABRT" in html and "did not finish" in html and crash.id in html
    assert "no cell finished, so there is nothing to compare" in html
    assert len(parse(html).decision_rows) == 1
    assert (out.parent / "summary.md").exists()


def test_failed_cell_and_failed_sync_check(small_run: Path, tmp_path: Path) -> None:
    """One re-collected copy of the small run: a tuned cell that failed drops out of the
    decision (its framework is listed as not finished), and a failed sync check marks the run
    untrustworthy."""
    run_dir = tmp_path / "run"
    shutil.copytree(small_run / "results" / "small", run_dir)
    record_path = next(run_dir.glob("cells/mlp-small-jax-identical-compiled-*/r0/cell.json"))
    record = json.loads(record_path.read_text())
    record["sync_check"]["ok"] = False
    record_path.write_text(json.dumps(record))
    failed = next(run_dir.glob("cells/mlp-small-tensorflow-tuned-*"))
    for outcome_path in failed.glob("r*/outcome.json"):
        outcome = json.loads(outcome_path.read_text())
        outcome.update(status="failed", reason="RuntimeError: injected by the test")
        outcome_path.write_text(json.dumps(outcome))
    results.write(run_dir)
    html = report.render(run_dir, tmp_path / "reports").read_text()
    assert 'id="untrustworthy"' in html and "mlp-small-jax-identical-compiled-cpu-b32" in html
    assert "injected by the test" in html and failed.name in html
    assert "tensorflow has no finished tuned cell here (failed)" in html
    assert sorted(parse(html).decision_rows) == [("mlp", "cpu"), ("transformer", "cpu")]
    mlp_row = html.split('data-workload="mlp"')[1].split("</tr>")[0]
    assert "did not finish" in mlp_row


def test_a_run_from_before_the_verdict_columns_renders(small_run: Path, tmp_path: Path) -> None:
    """Tables written before ratios had level, settle_repeats and paired timing (and with the
    old verdict words) still render: verdicts come from the CI, at 95%."""
    run_dir = tmp_path / "old"
    shutil.copytree(small_run / "results" / "small", run_dir,
                    ignore=shutil.ignore_patterns("cells"))
    old = ["run_id", "tier", "workload", "size", "device", "batch_size", "precision", "a", "b",
           "ratio", "ci_low", "ci_high", "verdict"]
    ratios = pd.read_parquet(run_dir / "ratios.parquet")[old]
    ratios["verdict"] = "no significant difference"
    ratios.to_parquet(run_dir / "ratios.parquet", index=False)
    speedups = pd.read_parquet(run_dir / "speedups.parquet")
    speedups.drop(columns=[c for c in ("level", "verdict", "settle_repeats")
                           if c in speedups.columns]).to_parquet(run_dir / "speedups.parquet",
                                                                  index=False)
    out = report.render(run_dir, tmp_path / "reports")
    html = out.read_text()
    assert len(parse(html).decision_rows) == 2
    assert "95% CI" in html and "uncorrected" in html
    assert "no significant difference" not in html
    assert re.search(r"(is faster \(≥3%\)|equivalent within ±3%|inconclusive \(CI)", html)


def test_decision_falls_back_to_the_tiers_a_run_has(small_run: Path) -> None:
    """Without tuned cells the decision compares the idiomatic ones, without those the
    identical ones; a criterion nothing measured says so."""
    tables = report.load_tables(small_run / "results" / "small")
    summary, ratios = tables["summary"], tables["ratios"]
    mlp = summary[summary["workload"] == "mlp"]
    for dropped, expected in ((["tuned"], "idiomatic"), (["tuned", "idiomatic"], "identical")):
        d = report.decision(mlp[~mlp["tier"].isin(dropped)], ratios)
        assert d["tier"] == expected and set(d["heads"]["tier"]) == {expected}
        lead = d["leads"]["throughput"]
        assert lead["leader"] in {"torch", "tensorflow", "jax"} and "CI" in lead["ci"]
        assert d["sentences"][0].startswith("On mlp (cpu), ") and f"({expected} tier)" in \
            d["sentences"][0]
    unmeasured = mlp.assign(test_accuracy=pd.NA, test_perplexity=pd.NA)
    assert report.decision(unmeasured, ratios)["leads"]["accuracy"]["verdict"] == \
        "not measured in this run"


def test_pareto_front_and_performance_profile() -> None:
    #             memory, speed: 0 and 2 are on the front; 1 is beaten by 0; 3 by 2
    assert report.pareto_front([1.0, 2.0, 3.0, 4.0], [5.0, 4.0, 9.0, 9.0]) == [0, 2]
    profile = report.performance_profile(
        [{"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 3.0}, {"a": 1.0, "b": None}], ["a", "b"],
        higher_is_better=False)
    assert profile["a"] == [2.0, 1.0, 1.0]
    assert profile["b"][:2] == [1.0, 3.0] and profile["b"][2] == float("inf")


def test_verdict_words() -> None:
    assert report.verdict_words("faster", "jax", "torch", 0.5, 0.6, None) == \
        "jax is faster (≥3%)"
    assert report.verdict_words("slower", "jax", "torch", 1.5, 1.6, None) == \
        "torch is faster (≥3%)"
    assert report.verdict_words("equivalent", "a", "b", 0.99, 1.01, None) == \
        "equivalent within ±3%"
    assert report.verdict_words("inconclusive", "a", "b", 0.9, 1.1, 12) == \
        "inconclusive (CI 0.90–1.10; about 12 repeats would settle it)"
    assert "more than 100 repeats, or sits at the ±3% edge" in report.verdict_words(
        "inconclusive", "a", "b", 0.9, 1.1, None)


def test_caveats_turn_every_difference_into_a_sentence() -> None:
    heads = pd.DataFrame({"framework": ["x", "y"], "cell_id": ["cx", "cy"]})
    manifests = {
        "cx": {"tier": "tuned", "mode": "compiled", "optimizer": {"class": "A", "eps": 1e-8},
               "compile": {"jit": True}, "differences": [],
               "settings": {"compute_dtype": "float32", "intra_op_threads": 2},
               "threads": {"threads": 2}, "versions": {"framework_version": "1.0"}},
        "cy": {"tier": "tuned", "mode": "graph", "optimizer": {"class": "B", "eps": 1e-7},
               "differences": ["epsilon outside the square root"],
               "settings": {"compute_dtype": "bfloat16"}, "threads": {"threads": 4},
               "versions": {"framework_version": "2.0"}},
    }
    found = report.caveats(heads, manifests)
    text = " ".join(c["text"] for c in found)
    strong = " ".join(c["text"] for c in found if c["strong"])
    assert "The execution modes differ: x: compiled; y: graph." in text
    assert "The compile options differ: x: jit=true (y: none)." in text
    assert "Optimiser setting eps differs" in strong
    assert "y's cell differs from the identical algorithm by design" in strong
    assert "The compute dtypes differ" in strong and "pinned to different CPU counts" in strong
    assert "Versions: x 1.0, y 2.0." in text


@pytest.mark.browser
def test_report_in_a_real_browser(small_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Headless Chromium opens the report from disk with every network request blocked: no
    errors, every chart drawn, one decision row per workload, a priority control that re-ranks,
    manifests compared side by side; a full-page screenshot goes to tests/artifacts/."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    html_path = small_report(small_run)
    size = html_path.stat().st_size
    with capsys.disabled():
        print(f"\nreport {html_path}: {size:,} bytes; screenshot: {ARTIFACTS / 'report.png'}")
    assert size < 10 * 2**20
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")  # test output, never committed
    errors: list[str] = []
    attempted: list[str] = []
    failed: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(("file:", "data:", "blob:", "about:")):
            r.continue_()
        else:
            attempted.append(r.request.url)
            r.abort()

    summary = pd.read_parquet(small_run / "results" / "small" / "summary.parquet")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1300, "height": 900}, offline=True)
        page = context.new_page()
        page.route("**/*", route)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(html_path.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0 && "
                               "[...document.querySelectorAll('.js-plotly-plot')]"
                               ".every(d => d.querySelector('.main-svg'))")
        marks = page.evaluate("""[...document.querySelectorAll('.js-plotly-plot')].map(d =>
            [...d.querySelectorAll('.trace path, .trace .point')]
              .filter(p => (p.getAttribute('d') || '').length > 2).length)""")
        rows = page.locator("#decision-table tr.decision")
        n_rows = rows.count()

        def ranking() -> dict[str, list[str]]:
            return page.evaluate("""Object.fromEntries([...document.querySelectorAll(
                '#decision-table tr.decision')].map(tr => [tr.dataset.workload,
                [...tr.querySelectorAll('.ranking:not([hidden]) li')].map(li =>
                  li.firstChild.textContent.trim())]))""")

        by_throughput = ranking()
        page.select_option("#priority", "memory")
        by_memory = ranking()
        page.select_option("#priority", "startup")
        by_startup = ranking()
        highlighted = page.locator("#decision-table th.prio").all_inner_texts()
        page.select_option("#priority", "accuracy")
        by_accuracy = ranking()
        page.select_option("#priority", "throughput")
        # Two cells' configurations side by side: their differences are marked.
        options = page.locator("#manifest-a option").all_inner_texts()
        keras = next(o for o in options if "tensorflow-idiomatic" in o)
        torch = next(o for o in options if "torch-identical" in o)
        page.select_option("#manifest-a", keras)
        page.select_option("#manifest-b", torch)
        differing = page.locator("#manifest-compare tr.diff").all_inner_texts()
        page.select_option("#manifest-b", keras)
        same = page.locator("#manifest-compare tr.diff").count()
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True, timeout=120_000)
        # Printed, every priority's ranking shows (nothing interactive-only is lost) and
        # nothing runs off the page.
        page.emulate_media(media="print")
        page.set_viewport_size({"width": 1040, "height": 900})
        shown = page.locator("#decision-table .ranking:visible").count()
        widths = page.evaluate("[document.documentElement.scrollWidth, "
                               "document.documentElement.clientWidth]")
        browser.close()
    assert errors == [] and attempted == [] and failed == []
    # 4 per workload, the performance profile and the inference latency chart
    assert len(marks) == 11 and all(n > 0 for n in marks), marks  # 11: time to target
    assert n_rows == 2 and set(by_throughput) == {"mlp", "transformer"}
    for order in (by_throughput, by_memory, by_startup, by_accuracy):
        assert all(sorted(o) == ["jax", "tensorflow", "torch"] for o in order.values()), order
    # Each ranking orders the headline (tuned) cells by its figure...
    tuned = summary[(summary["tier"] == "tuned") & (summary["status"] == "ok")].assign(
        startup=lambda t: t["import_s"] + t["build_s"] + t["first_step_cold_s"])
    for workload, cells in tuned.groupby("workload"):
        order = {c: list(cells.sort_values(c, ascending=c != "items_per_s")["framework"])
                 for c in ("items_per_s", "peak_rss_bytes", "startup")}
        assert by_throughput[workload] == order["items_per_s"]
        assert by_memory[workload] == order["peak_rss_bytes"]
        assert by_startup[workload] == order["startup"]
    # ...and choosing a priority other than throughput re-ranks at least one workload.
    assert any(other != by_throughput for other in (by_memory, by_startup, by_accuracy))
    assert highlighted == ["start-up (import + build + cold first step)"]
    assert any(row.startswith("api") for row in differing) and same == 0
    assert shown == 2 * len(report.PRIORITIES) and widths[0] <= widths[1] + 1, widths


PAYLOAD = ('<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
           '</script><script>window.__pwned = 3</script>')


def test_hostile_strings_in_results_never_execute_in_the_browser(
        small_run: Path, tmp_path: Path) -> None:
    """A results folder from someone else: markup in an error tail, a framework version, a
    tuned variant, a configuration, the host name and an environment variable. The report
    shows each as text, and Chromium runs none of it."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    run_dir = tmp_path / "hostile"
    shutil.copytree(small_run / "results" / "small", run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["host"]["hostname"] = PAYLOAD
    meta["host"]["env"] = {"XLA_FLAGS": PAYLOAD}
    meta["workloads"] = {k: PAYLOAD for k in meta["workloads"]}
    (run_dir / "run.json").write_text(json.dumps(meta))
    procs = sorted((run_dir / "cells").glob("*/r0"))
    failed, versioned = procs[1], procs[2]
    outcome = json.loads((failed / "outcome.json").read_text())
    (failed / "outcome.json").write_text(json.dumps(
        {**outcome, "status": "failed", "reason": f"Traceback: {PAYLOAD}"}))
    record = json.loads((versioned / "cell.json").read_text())
    for info in record["framework_info"].values() if isinstance(
            record["framework_info"], dict) else []:
        if isinstance(info, dict):
            info["framework_version"] = PAYLOAD
    record["manifest"] = {**(record.get("manifest") or {}), "variant": PAYLOAD,
                          "optimizer": PAYLOAD}
    (versioned / "cell.json").write_text(json.dumps(record))
    results.write(run_dir)
    html_path = report.render(run_dir, tmp_path / "reports")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_context(offline=True).new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
            ("file:", "data:", "blob:", "about:")) else r.abort())
        page.goto(html_path.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length > 0")
        page.wait_for_timeout(500)  # an onerror handler would have fired by now
        pwned = page.evaluate("window.__pwned")
        text = page.inner_text("body")
        browser.close()
    assert pwned is None
    assert "window.__pwned = 1" in text  # shown, as text
