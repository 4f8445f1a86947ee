"""The infer scenario: every inference path of every framework (eager, compiled, exported and
loaded back), in the identical and idiomatic tiers, returns the numpy reference's logits at
batch 1 and at a larger batch, in evaluation behaviour; and the check that guards it fails on
logits that differ."""

from __future__ import annotations

import numpy as np
import pytest

from harness import reference
from harness.backends import BACKENDS, FRAMEWORKS
from harness.cell import MIN_ROUNDS
from harness.infer import REFERENCE_ROWS, TOLERANCE, load_paths, reference_error, rows
from harness.spec import INFER_PATHS, INFER_TIERS, WORKLOADS
from tests.test_backends import dataset, spec_for, trainer_for

BATCHES = (1, 3)  # latency's batch and a larger one: each shape compiled or exported apart


@pytest.mark.parametrize("path", INFER_PATHS)
@pytest.mark.parametrize("tier", INFER_TIERS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_every_path_matches_the_numpy_reference(framework: str, workload: str, tier: str,
                                                path: str) -> None:
    pytest.importorskip(BACKENDS[framework].import_name)
    spec = spec_for(workload)
    # the tier's model as the infer scenario builds it (no step runs)
    trainer = trainer_for(framework, workload, BACKENDS[framework].tier_modes(tier)[0],
                          spec=spec, tier=tier)
    predictor = load_paths(framework).predictor(trainer, tier, path)
    assert predictor.manifest["path"] == path and predictor.manifest["api"]
    x_all = dataset(workload).x_test
    for batch in BATCHES:
        x = rows(x_all, batch)
        placed = trainer.put(x)
        request = predictor.for_batch(placed)
        want, _ = reference.forward(spec.model, spec.params, spec.state, x)
        for _ in range(2):  # the first call compiles or traces; the second runs what it built
            got = trainer.numpy(request(placed))
            error = reference_error(got, want)
            assert error <= TOLERANCE["fp32"], (framework, tier, path, batch, error)


@pytest.mark.parametrize("path", INFER_PATHS)
@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_bf16_paths_match_the_reference_to_bf16_precision(framework: str, path: str) -> None:
    """bf16 end to end: each framework's idiomatic model computing in bfloat16 (autocast,
    Keras mixed_bfloat16, NNX dtype) serves float32 logits within the bf16 tolerance."""
    pytest.importorskip(BACKENDS[framework].import_name)
    spec = spec_for("mlp")
    trainer = trainer_for(framework, "mlp", BACKENDS[framework].tier_modes("idiomatic")[0],
                          "bf16", spec=spec, tier="idiomatic")
    predictor = load_paths(framework).predictor(trainer, "idiomatic", path)
    x = rows(dataset("mlp").x_test, 3)
    placed = trainer.put(x)
    got = trainer.numpy(predictor.for_batch(placed)(placed))
    want, _ = reference.forward(spec.model, spec.params, spec.state, x)
    assert got.dtype == np.float32
    error = reference_error(got, want)
    assert 1e-4 < error <= TOLERANCE["bf16"], error  # bf16 rounding shows, within bounds


def test_the_reference_check_fails_on_different_logits() -> None:
    want = np.random.default_rng(0).normal(size=(REFERENCE_ROWS, 10))
    assert reference_error(want.astype(np.float32), want) < 1e-6
    assert reference_error(want + 0.01, want) > TOLERANCE["fp32"]
    assert reference_error(want[:, :5], want) == float("inf")  # a wrong shape never passes


def test_rows_cycles_a_short_split() -> None:
    x = np.arange(5)
    assert rows(x, 3).tolist() == [0, 1, 2] and rows(x, 7).tolist() == [0, 1, 2, 3, 4, 0, 1]



def test_infer_cells_run_as_the_runner_starts_them(tmp_path) -> None:  # noqa: ANN001
    """Each framework's exported path in a real cell process, configured as every cell is
    (threads, precision flags: torch.export reads cuDNN's legacy TF32 flag), through both
    pytest-benchmark tests."""
    from harness import runner
    from harness.spec import Cell

    cells = [Cell(fw, "mlp", "export", tier="idiomatic", scenario="infer", batch_size=16,
                  steady_seconds=0.05, train=False) for fw in FRAMEWORKS]
    for outcome in runner.run_cells(cells, tmp_path, timeout_s=300):
        if outcome.status == "skipped":
            continue
        r = outcome.record
        assert outcome.status == "ok", outcome.reason
        assert set(r.reference_check) == {"1", "16"} and len(r.latency_samples_s) >= 200
        assert len(r.step_samples_s) >= MIN_ROUNDS and r.first_request_s["16"] > 0
