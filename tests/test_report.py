from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness import report, results, runner
from harness.spec import Cell


class Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k == "id" and v:
                self.ids.add(v)
            if k == "class" and v:
                self.classes += v.split()


def test_report_renders_every_section(small_run: Path) -> None:
    html = (small_run / "reports" / "small" / "index.html").read_text()
    parsed = Ids()
    parsed.feed(html)
    assert {"summary", "workload-mlp-small", "workload-transformer-small", "trust", "failures",
            "environment", "method", "configurations", "manifest-compare"} <= parsed.ids
    assert "untrustworthy" not in parsed.ids
    for cls in ("choice", "search", "phases", "ratios", "throughput", "losses", "certificate"):
        assert parsed.classes.count(cls) == 2, cls
    assert "Fastest steady-state training (tuned tier)" in html and "Every cell finished." in html
    assert "Tuned against idiomatic" in html and "As users write it" in html
    assert 'id="machine-noise"' in html and "the machine's own speed moved by" in html
    for fw in ("torch", "tensorflow", "jax"):
        assert f"{fw} identical" in html and f"{fw} idiomatic" in html and f"{fw} tuned: " in html
    assert "Keras compile/fit/evaluate" in html  # what each cell runs, in words
    assert "tokens/s" in html and "test perplexity" in html
    assert "pydoc_data.topics" in html and "scikit-learn" in html  # where the data came from
    assert "Implementation paths taken" in html
    assert "cdn" not in html.split("<body>")[1].lower()  # plotly.js inlined: opens offline


def test_failed_cells_are_shown(tmp_path: Path) -> None:
    crash = Cell("jax", "mlp", "eager", size="small", dataset="digits")
    runner.run_cells([crash], tmp_path,
                     command=lambda c, o, p: [p, "-c", "import os; os.abort()"])
    (tmp_path / "run.json").write_text(json.dumps({"run_id": tmp_path.name}))
    results.write(tmp_path)
    html = report.render(tmp_path, tmp_path / "reports").read_text()
    assert "SIGABRT" in html and "did not finish" in html and crash.id in html


@pytest.mark.browser
def test_report_in_a_real_browser(small_run: Path, tmp_path: Path) -> None:
    """Headless Chromium opens the report offline, runs plotly without errors, draws charts."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    page_errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on("console", lambda m: page_errors.append(m.text) if m.type == "error" else None)
        page.goto((small_run / "reports" / "latest.html").as_uri())
        page.wait_for_selector(".js-plotly-plot .main-svg")
        plots = page.locator(".js-plotly-plot").count()
        traces = page.locator(".losses .scatterlayer .trace").count()
        # Two cells' configurations side by side: their differences are marked.
        options = page.locator("#manifest-a option").all_inner_texts()
        keras = next(o for o in options if "tensorflow-idiomatic" in o)
        torch = next(o for o in options if "torch-identical" in o)
        page.select_option("#manifest-a", keras)
        page.select_option("#manifest-b", torch)
        differing = page.locator("#manifest-compare tr.diff").all_inner_texts()
        page.select_option("#manifest-b", keras)
        same = page.locator("#manifest-compare tr.diff").count()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert page_errors == []
    assert plots == 6  # throughput, memory, losses for each of two workloads
    assert traces == 18  # every cell's loss curve (9 per workload)
    assert any(row.startswith("api") for row in differing) and same == 0


def test_a_failed_sync_check_marks_the_run_untrustworthy(small_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(small_run / "results" / "small", run_dir)
    record_path = next(run_dir.glob("cells/mlp-small-jax-identical-compiled-*/r0/cell.json"))
    record = json.loads(record_path.read_text())
    record["sync_check"]["ok"] = False
    record_path.write_text(json.dumps(record))
    results.write(run_dir)
    html = report.render(run_dir, tmp_path / "reports").read_text()
    assert 'id="untrustworthy"' in html and "mlp-small-jax-identical-compiled-cpu-b32" in html
