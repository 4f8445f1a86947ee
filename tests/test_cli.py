from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cell import MIN_ROUNDS
from tests.conftest import run_cli


def test_help_lists_the_options(tmp_path: Path) -> None:
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for option in ("--workloads", "--frameworks", "--modes", "--devices", "--batch-sizes",
                   "--dataset", "--epochs", "--quick", "--timeout", "--python", "--size",
                   "--tiers", "--full", "--timing"):
        assert option in proc.stdout
    assert "mlp, cnn, resnet, transformer, lstm" in proc.stdout
    assert "torch, tensorflow, jax" in proc.stdout and "gpt2-small" in proc.stdout


def test_unknown_names_stop_before_anything_runs(tmp_path: Path) -> None:
    for args, message in [
        (["--workloads", "mlp,vgg"], "unknown workload 'vgg'; valid workloads: mlp, cnn, resnet, "
                                     "transformer, lstm"),
        (["--frameworks", "mxnet"], "valid frameworks: torch, tensorflow, jax"),
        (["--modes", "turbo"], "valid modes: eager, compiled, graph"),
        (["--tiers", "fastest"], "valid tiers: identical, idiomatic, tuned"),
        (["--devices", "tpu"], "valid devices: cpu, cuda"),
        (["--dataset", "cifar"], "valid datasets: digits, digits32, mnist, fashion-mnist, "
                                 "cifar10, synthetic, pydoc, tinyshakespeare"),
        (["--size", "huge"], "unknown size 'huge' of workload 'mlp'; valid sizes: small"),
        (["--size", "gpt2-small"], "write transformer=gpt2-small"),
        (["--workloads", "lstm", "--size", "lstm=xl"], "valid sizes: small, medium, large"),
        (["--workloads", "transformer", "--size", "transformer=gpt2-small", "--batch-sizes",
          "4096"], "needs at least"),
        (["--workloads", "mlp", "--dataset", "pydoc"], "none of the workloads mlp takes"),
        (["--dataset", "mnist,cifar10"], "takes one image dataset"),
        (["--epochs", "0"], "--epochs must be a number above 0 and at most 1000, got '0'"),
        (["--precision", "fp8"], "valid precisions: fp32, tf32, bf16"),
        (["--threads", "999"], "--threads must be a whole number from 0 to"),
        (["--memory-cap", "lots"], "a memory size must be a positive number"),
        (["--memory-cap", "0G"], "a memory size must be a positive number"),
        (["--scenarios", "serve"], "valid scenarios: train, infer, largest"),
        (["--infer-paths", "onnx"], "valid inference paths: eager, compiled, export"),
        (["--seeds", "0"], "--seeds must be a whole number from 1 to 100, got '0'"),
        (["--scenarios", "infer", "--tiers", "tuned"], "the infer and largest scenarios run"),
        (["--modes", "graph", "--frameworks", "torch"], "tensorflow: eager, graph, compiled"),
    ]:
        proc = run_cli(*args, "--results-dir", "r", cwd=tmp_path)
        assert proc.returncode != 0
        assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--epochs", "-1"], "--epochs must be a number above 0 and at most 1000, got '-1'"),
    (["--epochs", "nan"], "--epochs must be a number above 0"),
    (["--epochs", "1e9"], "--epochs must be a number above 0 and at most 1000, got '1e9'"),
    (["--timeout", "0"], "--timeout must be a number above 0 and at most 604800, got '0'"),
    (["--timeout", "soon"], "--timeout must be a number above 0"),
    (["--steady-seconds", "inf"], "--steady-seconds must be a number above 0"),
    (["--repeats", "two"], "--repeats must be a whole number from 1 to 100, got 'two'"),
    (["--repeats", "1.5"], "--repeats must be a whole number from 1 to 100"),
    (["--seeds", "1000000"], "--seeds must be a whole number from 1 to 100, got '1000000'"),
    (["--seed", "-1"], "--seed must be a whole number from 0 to 4294967295"),
    (["--batch-sizes", ","], "no batch size given"),
    (["--batch-sizes", "32,64,32"], "batch sizes must differ, got '32,64,32'"),
    (["--batch-sizes", "0"], "a batch size must be a whole number from 1 to 16777216, got '0'"),
    (["--batch-sizes", "32,1e12"], "a batch size must be a whole number from 1 to 16777216"),
    (["--batch-sizes", "99999999999"], "a batch size must be a whole number from 1 to"),
    (["--workloads", ""], "no workload given; valid workloads: mlp, cnn"),
    (["--workloads", "mpl"], "unknown workload 'mpl' (did you mean 'mlp'?); valid workloads:"),
    (["--frameworks", "pytorch"], "did you mean 'torch'?"),
    (["--frameworks", "Jax"], "unknown framework 'Jax' (did you mean 'jax'?)"),
    (["--scenarios", "inference"], "did you mean 'infer'?"),
    (["--workloads", "mlp,cnn,mlp"], "workload mlp given twice in 'mlp,cnn,mlp'"),
    (["--frameworks", "torch,,jax"], None),  # empty entries are skipped, not an error
    (["--python", "pytorch=/usr/bin/python3"], "FRAMEWORK one of torch, tensorflow, jax"),
])
def test_bad_numbers_and_lists_name_the_valid_choices(args: list[str], message: str | None,
                                                      capsys: pytest.CaptureFixture) -> None:
    """Through the Python API (the parser the CLI uses): one clear message, exit status 2."""
    from harness.__main__ import run_parser

    if message is None:
        assert run_parser().parse_args(args).frameworks == ["torch", "jax"]
        return
    with pytest.raises(SystemExit) as stop:
        run_parser().parse_args(args)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_bad_paths_stop_before_anything_runs(tmp_path: Path) -> None:
    """An interpreter that is missing, not a Python or lacks the framework, a corrupt dataset
    and a results path that is a file: one message each, checked before the no-op cell or the
    GEMM peaks run (nothing is written)."""
    import subprocess
    import sys

    bare = tmp_path / "bare"  # a Python without the frameworks
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    corrupt = tmp_path / "mnist"
    corrupt.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (corrupt / name).write_bytes(b"not an idx file")
    (tmp_path / "taken").write_text("a file")
    for args, message in [
        (["--python", "torch=/nonexistent/python"], "--python torch=/nonexistent/python: no "
                                                    "executable file there"),
        (["--python", "jax=/bin/false"], "--python jax=/bin/false: not a Python interpreter"),
        (["--python", f"tensorflow={bare}/bin/python"], "tensorflow is not installed for that "
                                                       "interpreter; pip install"),
        (["--workloads", "mlp", "--dataset", "mnist", "--data-dir", str(corrupt)],
         "dataset mnist (--data-dir"),
        (["--workloads", "mlp", "--dataset", "mnist", "--data-dir", "/proc/framebench"],
         "dataset mnist (--data-dir /proc/framebench)"),  # missing, and cannot be made
        (["--results-dir", "taken"], "--results-dir taken is a file, not a folder"),
    ]:
        proc = run_cli(*args, "--frameworks", "torch,tensorflow,jax", cwd=tmp_path)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()
    proc = run_cli("report", "nope", cwd=tmp_path)  # a report of a run that does not exist
    assert proc.returncode != 0 and "results/nope is not a run directory" in proc.stderr


def test_end_to_end_run(small_run: Path) -> None:
    run_dir = small_run / "results" / "small"
    everything = pd.read_parquet(run_dir / "results.parquet")
    # training: 2 workloads x 3 tiers x 3 frameworks + the no-op self-check; inference (--quick:
    # the idiomatic tier's compiled path): 2 workloads x 3 frameworks
    assert len(everything) == 25 and set(everything["status"]) == {"ok"}, \
        everything[["cell_id", "reason"]]
    assert everything["scenario"].value_counts().to_dict() == {"train": 19, "infer": 6}
    table = everything[everything["scenario"] == "train"]
    assert set(table["framework"]) == {"torch", "tensorflow", "jax", "noop"}
    real = table[table["framework"] != "noop"]
    assert real.groupby("tier").size().to_dict() == {"identical": 6, "idiomatic": 6, "tuned": 6}
    assert (real["step_median_s"] > 0).all() and (real["peak_rss_bytes"] > 50e6).all()
    assert real["sync_ok"].all() and (real["threads"] >= 1).all()
    for cell_id in table["cell_id"]:
        bench = json.loads((run_dir / "cells" / cell_id / "r0" / "benchmark.json").read_text())
        [entry] = bench["benchmarks"]
        assert len(entry["stats"]["data"]) >= MIN_ROUNDS  # every pytest-benchmark sample is kept
    stdout = (small_run / "stdout.txt").read_text()
    assert "report:" in stdout and "median step" in stdout and "searching" in stdout
    assert (small_run / "reports" / "latest.html").exists()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["framework_info"]["jax"] and run["peak_flops_per_s"] > 1e9
    assert set(run["gemm_peak_flops_per_s"]) == {"numpy", "torch", "tensorflow", "jax"}
    assert run["tiers"] == ["identical", "idiomatic", "tuned"]
    summary = pd.read_parquet(run_dir / "summary.parquet").set_index("cell_id")
    mlp = summary.loc["mlp-small-jax-identical-compiled-cpu-b32"]
    assert mlp["step_ci_low_s"] <= mlp["step_median_s"] <= mlp["step_ci_high_s"]
    assert 0 < mlp["mfu"] < 1 and mlp["overhead_fraction"] < 0.01
    assert mlp["unit"] == "images" and mlp["items_per_s"] == mlp["samples_per_s"]
    assert mlp["compiles"] >= 1  # the step compiled, and no more than it should have
    lm = summary.loc["transformer-small-jax-identical-compiled-cpu-b16"]
    assert lm["unit"] == "tokens" and lm["items_per_s"] == pytest.approx(64 * lm["samples_per_s"])
    assert 1 < lm["test_perplexity"] < 256 and "pydoc_data" in lm["data_source"]
    results_table = table.set_index("cell_id")
    assert len(results_table.loc["transformer-small-torch-identical-eager-cpu-b16",
                                 "data_sha256"]) == 64
    assert "softmax" in results_table.loc["transformer-small-jax-identical-compiled-cpu-b16",
                                          "implementation"]
    # Every tier records its configuration; the idiomatic Keras cell trained through fit.
    keras = json.loads(results_table.loc["mlp-small-tensorflow-idiomatic-graph-cpu-b32",
                                         "manifest"])
    assert keras["tier"] == "idiomatic" and "fit" in keras["api"] and keras["settings"]
    assert results_table.loc["mlp-small-tensorflow-idiomatic-graph-cpu-b32", "test_accuracy"] > 0.5
    # The tuned cells run the variant their search chose: searched in this run, kept for later.
    tuned = summary[summary["tier"] == "tuned"]
    assert tuned["variant"].notna().all() and tuned["mode"].notna().all()
    assert len(list((run_dir / "tuning").glob("*.json"))) == 6
    assert len(list((small_run / "results" / "tuning").glob("*.json"))) == 6
    speedups = pd.read_parquet(run_dir / "speedups.parquet")
    assert len(speedups) == 6 and (speedups["speedup"] > 0).all()
    # The cells compared were timed in turns: every between-framework ratio comes from pairs
    # of samples taken in the same rotations, and carries a corrected three-outcome verdict.
    assert set(real["timing"]) == {"turns"}
    assert table.set_index("framework").loc["noop", "timing"].startswith("alone")
    all_ratios = pd.read_parquet(run_dir / "ratios.parquet")
    ratios = all_ratios[all_ratios["metric"] == "step"]
    assert len(ratios) == 18 and ratios["paired"].all() and (ratios["n_pairs"] >= MIN_ROUNDS).all()
    # inference: the frameworks' best paths, per workload, on latency and on throughput
    assert all_ratios[all_ratios["metric"] != "step"].groupby("metric").size().to_dict() == {
        "latency": 6, "request": 6}
    m = len(all_ratios) + len(speedups)
    assert ratios["level"].eq(1 - 0.05 / m).all() and speedups["level"].eq(1 - 0.05 / m).all()
    assert set(ratios["verdict"]) <= {"faster", "slower", "equivalent", "inconclusive"}
    assert ((ratios["ci_low"] <= ratios["ratio"]) & (ratios["ratio"] <= ratios["ci_high"])).all()
    # time to target: two seeds per training cell, the first cold, each on the evaluation
    # schedule (a fifth of the budget may not reach the target: a miss is a row, not a gap)
    accuracy = pd.read_parquet(run_dir / "accuracy.parquet")
    by_cell = accuracy.sort_values("seed").groupby("cell_id")
    assert all(seeds == [0, 1] for seeds in by_cell["seed"].apply(list))
    assert set(accuracy["cell_id"]) == set(real["cell_id"])
    assert all(c == ["cold", "warm"] for c in by_cell["compile_cache"].apply(list))
    assert accuracy["error"].isna().all() and accuracy["evals"].notna().all()
    assert (accuracy["met"] == accuracy["time_to_target_s"].notna()).all()
    for evals in accuracy["evals"].map(json.loads):
        assert len(evals) >= 2 and evals[-1][1] >= evals[0][1] > 0


def test_end_to_end_inference(small_run: Path) -> None:
    """Every framework's infer cell: latency percentiles at batch 1 from pytest-benchmark's
    per-request samples, throughput at the large batch, first requests timed apart, logits
    checked against the numpy reference; the tables carry them."""
    run_dir = small_run / "results" / "small"
    summary = pd.read_parquet(run_dir / "summary.parquet")
    infer = summary[summary["scenario"] == "infer"].set_index("cell_id")
    assert sorted(infer.index) == sorted(
        f"{w}-small-{fw}-idiomatic-compiled-cpu-b{b}-infer"
        for w, b in (("mlp", 256), ("transformer", 64)) for fw in ("torch", "tensorflow", "jax"))
    assert (infer["status"] == "ok").all() and (infer["latency_batch"] == 1).all()
    assert (infer["latency_requests"] >= 200).all() and (infer["latency_above_p99"] >= 1).all()
    assert (infer["latency_p50_s"] <= infer["latency_p90_s"]).all()
    assert (infer["latency_p90_s"] <= infer["latency_p99_s"]).all()
    assert (infer["reference_error"] < 1e-3).all()
    assert (infer["first_request_s"] > infer["latency_p50_s"]).all()  # it compiled
    assert (infer["items_per_s"] > 0).all() and infer["train_step_flops"].isna().all()
    lm = infer.loc["transformer-small-jax-idiomatic-compiled-cpu-b64-infer"]
    assert lm["items_per_s"] == pytest.approx(64 * 64 / lm["step_median_s"])  # tokens
    latencies = pd.read_parquet(run_dir / "latencies.parquet")
    for cell_id, r in infer.iterrows():
        bench = json.loads((run_dir / "cells" / cell_id / "r0" / "benchmark.json").read_text())
        latency, throughput = bench["benchmarks"]  # pytest-benchmark's own JSON, both tests
        assert latency["name"].startswith("test_latency") and throughput["name"].startswith(
            "test_throughput")
        mine = latencies[latencies["cell_id"] == cell_id]["latency_s"].to_numpy()
        assert mine.tolist() == latency["stats"]["data"] and len(mine) == r["latency_requests"]
        assert len(throughput["stats"]["data"]) == r["n_samples"] >= MIN_ROUNDS
        manifest = json.loads(pd.read_parquet(run_dir / "results.parquet").set_index(
            "cell_id").loc[cell_id, "manifest"])
        assert manifest["path"] == "compiled" and manifest["scenario"] == "infer"
    assert set(pd.read_parquet(run_dir / "results.parquet").query("scenario == 'infer'")[
        "timing"].str[:6]) == {"alone:"}


def test_tune_searches_and_a_run_keeps_the_search(tmp_path: Path) -> None:
    """`framebench tune` searches now and prints the search; a run after it reuses it."""
    args = ["--quick", "--workloads", "mlp", "--frameworks", "jax", "--results-dir", "r"]
    tuned = run_cli("tune", *args, cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    assert "searching" in tuned.stdout and "jit-flat-adam" in tuned.stdout
    [kept] = (tmp_path / "r" / "tuning").glob("*.json")
    run = run_cli(*args, "--tiers", "tuned", "--steady-seconds", "0.2", "--run-id", "again",
                  cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kept from" in run.stdout and "searching" not in run.stdout
    assert json.loads((tmp_path / "r" / "again" / "tuning" / kept.name).read_text()) == \
        json.loads(kept.read_text())


def test_repeats_interleave_frameworks() -> None:
    from harness.__main__ import make_cells, run_parser

    cells = make_cells(run_parser().parse_args(
        ["--workloads", "mlp", "--modes", "compiled", "--repeats", "2", "--tiers",
         "identical", "--scenarios", "train"]))
    assert {c.size for c in cells} == {"small"} and {c.dataset for c in cells} == {"digits"}
    assert cells[0].framework == "noop"
    order = [(c.framework, c.repeat) for c in cells[1:]]
    assert order == [("torch", 0), ("tensorflow", 0), ("jax", 0),
                     ("jax", 1), ("tensorflow", 1), ("torch", 1)]
    assert [c.train for c in cells[1:]] == [True] * 3 + [False] * 3
    assert len({c.threads for c in cells}) == 1 and cells[0].threads >= 1


def test_tiers_and_modes_by_default_quick_and_full() -> None:
    from harness.__main__ import make_cells, run_parser

    def cells(*argv: str) -> list[tuple[str, str, str]]:
        made = make_cells(run_parser().parse_args(["--workloads", "mlp", "--repeats", "1",
                                                   *argv]))
        return [(c.framework, c.tier, c.mode) for c in made[1:] if c.scenario == "train"]

    default = cells()
    assert ("tensorflow", "idiomatic", "graph") in default  # Keras's jit_compile="auto" on CPU
    assert ("torch", "idiomatic", "eager") in default and ("jax", "tuned", "") in default
    assert {t for _, t, _ in default} == {"idiomatic", "tuned"}
    full = cells("--full")
    assert ("jax", "identical", "eager") in full  # the debugging mode only when asked for
    assert ("jax", "identical", "eager") not in cells("--tiers", "identical")
    assert len(full) == 7 + 5 + 3  # identical modes, idiomatic modes, one tuned per framework


def test_scenarios_by_default_quick_and_full() -> None:
    """Default: training, the idiomatic tier's export path (one process each unless --repeats
    is given) and the largest-batch search for mlp and cnn; --quick: training and the idiomatic
    compiled path; --full: every path of both inference tiers and a search for every workload,
    once per framework (its tries are fresh processes)."""
    from harness.__main__ import make_cells, run_parser

    def cells(*argv: str) -> list:
        return make_cells(run_parser().parse_args(list(argv)))[1:]

    default = cells()
    assert {c.scenario for c in default} == {"train", "infer", "largest"}
    infer = [c for c in default if c.scenario == "infer"]
    assert len(infer) == 5 * 3 and {c.tier for c in infer} == {"idiomatic"}
    assert {c.mode for c in infer} == {"export"}
    assert {(c.workload, c.batch_size) for c in infer} == {
        ("mlp", 256), ("cnn", 256), ("resnet", 128), ("transformer", 64), ("lstm", 64)}
    assert not any(c.train for c in infer) and {c.repeat for c in infer} == {0}
    assert len([c for c in cells("--repeats", "2") if c.scenario == "infer"]) == 2 * 15
    paths = cells("--infer-paths", "eager,compiled", "--scenarios", "infer")
    assert {c.mode for c in paths} == {"eager", "compiled"} and len(paths) == 2 * 15
    searches = [c for c in default if c.scenario == "largest"]
    assert {(c.workload, c.tier) for c in searches} == {("mlp", "idiomatic"),
                                                         ("cnn", "idiomatic")}
    assert len(searches) == 2 * 3 and {c.memory_cap for c in searches} == {2**30}
    quick = cells("--quick")
    assert {c.scenario for c in quick} == {"train", "infer"}
    assert {(c.tier, c.mode) for c in quick if c.scenario == "infer"} == {
        ("idiomatic", "compiled")}
    full = cells("--full", "--workloads", "resnet")
    assert {c.tier for c in full if c.scenario == "infer"} == {"identical", "idiomatic"}
    assert {c.mode for c in full if c.scenario == "infer"} == {"eager", "compiled", "export"}
    searches = [c for c in full if c.scenario == "largest"]
    assert len(searches) == 2 * 3 and {c.repeat for c in searches} == {0}
    assert ("tensorflow", "idiomatic", "graph") in {(c.framework, c.tier, c.mode)
                                                    for c in searches}
    capped = cells("--scenarios", "largest", "--memory-cap", "1G", "--workloads", "lstm")
    assert {(c.workload, c.tier, c.memory_cap) for c in capped} == {("lstm", "idiomatic", 2**30)}


def test_the_default_suite_spends_its_seeds_on_the_tuned_tier() -> None:
    """By default one process per cell, and three seeds for the tuned tier (the decision's),
    no training budget for the idiomatic (timed only) unless --tiers names it; --seeds or
    --full give every tier the same, --full a second (warm) process; --quick one of each."""
    from harness.__main__ import make_cells, run_parser

    def train(*argv: str) -> dict[tuple[str, int], int]:
        made = make_cells(run_parser().parse_args(["--workloads", "mlp", "--scenarios",
                                                   "train", *argv]))[1:]
        counts: dict[tuple[str, int], int] = {}
        for c in made:  # (tier, repeat): seeds (0: no budget), the same for every framework
            counts[(c.tier, c.repeat)] = c.seeds if c.train else 0
        return counts

    assert train() == {("idiomatic", 0): 0, ("tuned", 0): 3}
    assert train("--tiers", "identical,idiomatic") == {("identical", 0): 1, ("idiomatic", 0): 1}
    assert train("--seeds", "5", "--repeats", "2") == {
        ("idiomatic", 0): 5, ("tuned", 0): 5, ("idiomatic", 1): 0, ("tuned", 1): 0}
    assert train("--quick") == {("idiomatic", 0): 1, ("tuned", 0): 1}
    assert train("--full")[("identical", 1)] == 0 and train("--full")[("idiomatic", 0)] == 3


def test_readme_documents_the_schema_and_test_command() -> None:
    from harness.results import SUMMARY_SCHEMA, schema_markdown
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    assert schema_markdown() in readme and schema_markdown(SUMMARY_SCHEMA) in readme
    assert "nox -s tests" in readme and "nox -s tests" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_reduced_precision_beside_fp32(tmp_path: Path) -> None:
    """--precision fp32,bf16: every cell at both, the two precisions of a comparison timed in
    the same turns, so each framework's bf16 cell has a paired ratio against its fp32 cell;
    the report sets the speed-up beside the quality (test metric, time to target, inference
    logits against the reference)."""
    proc = run_cli("--quick", "--workloads", "mlp", "--tiers", "idiomatic", "--precision",
                   "fp32,bf16", "--steady-seconds", "0.2", "--run-id", "bf", "--results-dir",
                   "r", "--reports-dir", "p", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "r" / "bf"
    table = pd.read_parquet(run_dir / "results.parquet")
    real = table[table["framework"] != "noop"]
    assert (real["status"] == "ok").all(), real[["cell_id", "reason"]]
    assert real.groupby(["scenario", "precision"]).size().to_dict() == {
        ("infer", "bf16"): 3, ("infer", "fp32"): 3, ("train", "bf16"): 3, ("train", "fp32"): 3}
    train = real[real["scenario"] == "train"]
    assert set(train["timing"]) == {"turns"}  # one rotation: three frameworks, two precisions
    partners = json.loads(next((run_dir / "cells").glob("*-bf16/r0/outcome.json")).read_text())
    assert len(partners["partners"]) == 6
    ratios = pd.read_parquet(run_dir / "ratios.parquet")
    mixed = ratios[ratios["precision"] == "bf16/fp32"]
    assert len(mixed) == 3 and mixed["paired"].all() and (mixed["n_pairs"] >= MIN_ROUNDS).all()
    assert all(a.endswith("-bf16") and not b.endswith("-bf16")
               for a, b in zip(mixed["a"], mixed["b"]))
    frameworks = ratios[ratios["precision"].isin(["fp32", "bf16"]) & (ratios["metric"] == "step")]
    assert len(frameworks) == 2 * 3  # between frameworks, within each precision
    accuracy = pd.read_parquet(run_dir / "accuracy.parquet")
    assert set(accuracy["precision"]) == {"fp32", "bf16"}
    html = (tmp_path / "p" / "bf" / "index.html").read_text()
    assert 'id="precision-table"' in html and "Reduced precision: speed against quality" in html
    assert html.count("bf16/fp32") >= 6 and "accuracy 0." in html and "of the float64" in html
