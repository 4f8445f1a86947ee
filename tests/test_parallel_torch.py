"""PyTorch data-parallel training (harness/backends/torch/parallel.py): two DDP replicas, each
a process under torchrun, equal one device at twice the batch; batch norm's running statistics
are the replica mean; bad input is refused clearly.

The replicas run in tests/torch_ddp_run.py, launched by torchrun in a subprocess; the test
process compares what its rank 0 wrote with the identical tier run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from harness.backends import load
from tests.test_backends import DATA, batches, dataset, spec_for

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
STEPS = 5          # tests/torch_ddp_run.py's
TIMEOUT_S = 120    # a hung collective fails the test instead of blocking the run (eager)
# Two replicas at b and one device at 2b compute the same sums in another order. Measured
# largest differences (mlp / transformer): first-step gradients, relative to the parameter's
# largest, 1.7e-7 / 3.3e-7; after 5 steps losses 2.4e-7 / 4.8e-7, logits 1.2e-7 / 7.2e-7,
# weights 1.4e-7 / 1.5e-5. The tolerances are about ten times those. The gradients are checked
# because Adam's update hardly changes when all gradients are scaled: a sum over replicas in
# place of the mean would barely move the weights, but doubles the gradients. The transformer's
# weights differ most where the gradient is rounding noise (the key projection's bias: it
# shifts all of a query's scores, which softmax ignores), which Adam's normalised step turns
# into steps of the learning rate's size; its other weights stay within 6e-7.
ATOL = {"grads": 3e-6, "losses": 5e-6, "logits": 1e-5}
WEIGHT_ATOL = {"mlp": 2e-6, "transformer": 2e-4}


def torchrun(out: Path, mode: str, workloads: str, *extra: str,
             timeout: float = TIMEOUT_S) -> tuple[dict, dict]:
    """Two replicas under torchrun (--standalone: a rendezvous on a free port of its own);
    rank 0's arrays and record."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "tests.torch_ddp_run", str(out), mode, workloads, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    with np.load(out / "result.npz") as f:
        arrays = dict(f)
    return arrays, json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    return torchrun(tmp_path_factory.mktemp("ddp"), "eager", "mlp,transformer,resnet",
                    "--checks")


@cache
def one_device(workload: str) -> tuple[np.ndarray, dict, dict, np.ndarray]:
    """The identical tier (torch eager) at the global batch: losses, first-step gradients (torch
    layout), weights and logits after ``STEPS`` steps."""
    trainer = load("torch").build(spec_for(workload), "eager", "cpu", "fp32", "identical")
    losses, grads = [], {}
    for x, y in batches(workload)[:STEPS]:
        losses.append(float(trainer.numpy(trainer.step(trainer.put(x, y)))))
        grads = grads or {f"{path}/{k}": p.grad.numpy().copy()
                          for path, ps in trainer.params.items() for k, p in ps.items()}
    logits = trainer.numpy(trainer.predict(trainer.put(dataset(workload).x_test[:8])))
    return np.array(losses), grads, trainer.weights(), logits


def compare(arrays: dict, workload: str, slack: float = 1) -> None:
    """The replicas' record against one device's (eager), within the tolerances above times
    ``slack``."""
    losses, grads, weights, logits = one_device(workload)
    diff = {"grads": max(np.abs(arrays[f"{workload}/grad1/{k}"] - g).max() / np.abs(g).max()
                         for k, g in grads.items()),
            "losses": np.abs(arrays[f"{workload}/mean_losses"] - losses).max(),
            "weights": max(np.abs(arrays[f"{workload}/w/{k}"] - v).max()
                           for k, v in weights.items()),
            "logits": np.abs(arrays[f"{workload}/logits"] - logits).max()}
    print(workload, {k: f"{v:.1e}" for k, v in diff.items()})
    atol = {**ATOL, "weights": WEIGHT_ATOL[workload]}
    for k, v in diff.items():
        assert v <= slack * atol[k], (k, v)


@pytest.mark.parametrize("workload", ["mlp", "transformer"])
def test_two_replicas_equal_one_device_at_twice_the_batch(eager: tuple[dict, dict],
                                                           workload: str) -> None:
    """Each replica trains on its half of the global batch and DDP averages the gradients: the
    first step's gradients, and after 5 steps the mean of the replicas' losses, the weights and
    the logits, are one device's on the whole batch (the transformer: an embedding table
    whose rows each replica's tokens pick, tied to the output projection)."""
    arrays, info = eager
    assert info[workload]["shard_rows"] == DATA[workload][1] // 2
    assert info[workload]["ranks_differ"] == 0  # same gradients, same update: same weights
    compare(arrays, workload)
    # the loss handle is rank 0's own shard's, not the global batch's
    assert np.abs(arrays[f"{workload}/losses"] - arrays[f"{workload}/mean_losses"]).max() > 1e-4
    parallel = info[workload]["manifest"]["parallel"]
    assert parallel["replicas"] == info[workload]["replicas"] == 2
    assert parallel["process_group"] == "gloo" and parallel["threads_per_replica"] == 1


def test_batch_norm_running_statistics_are_the_replica_mean(eager: tuple[dict, dict]) -> None:
    """resnet: each replica normalises with its own shard, and after a step the running
    statistics are the mean of what one device would hold after that step on each shard
    alone; both replicas hold the same statistics and weights."""
    arrays, info = eager
    x, y = batches("resnet")[0]
    b = len(x) // 2
    states = []
    for shard in (slice(0, b), slice(b, 2 * b)):
        trainer = load("torch").build(spec_for("resnet"), "eager", "cpu", "fp32", "identical")
        trainer.step(trainer.put(x[shard], y[shard]))
        states.append(trainer.state())
    assert states[0]
    moved = 0.0
    for k in states[0]:
        want = (states[0][k] + states[1][k]) / 2
        np.testing.assert_allclose(arrays[f"resnet/state1/{k}"], want, rtol=0, atol=1e-6)
        moved = max(moved, float(np.abs(states[0][k] - states[1][k]).max()))
    assert moved > 1e-3  # the two shards' statistics differ: the mean is a real check
    assert info["resnet"]["ranks_differ"] == 0
    assert np.isfinite(arrays["resnet/losses"]).all()


def test_bad_input_is_refused_and_agree_hands_out_rank_0s_value(
        eager: tuple[dict, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backends.torch import parallel

    spec = spec_for("mlp")
    with pytest.raises(ValueError, match="no mode 'graph'.*eager, compiled"):
        parallel.build(spec, "graph", "cpu", "fp32", 2)
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun --nproc-per-node 2"):
        parallel.build(spec, "eager", "cpu", "fp32", 2)
    _, info = eager
    errors = info["errors"]
    assert errors["replicas"].startswith("ValueError: 3 replicas") and "WORLD_SIZE=2" in (
        errors["replicas"])
    assert errors["rows"] == ("ValueError: a global batch of 31 rows does not split evenly "
                              "over 2 replicas")
    assert errors["cuda"].startswith("Unavailable")
    assert info["agreed"] == [7, 7]
    assert info["ranks"] == [[0, True], [1, False]]


@pytest.mark.slow
def test_compiled_replicas_equal_one_device(tmp_path: Path) -> None:
    """torch.compile of the step around the DDP module (Dynamo's DDPOptimizer splits the graph
    at the gradient buckets) trains as one eager device does, within ten times the tolerances:
    Inductor also fuses and reorders the forward (measured: logits 2.5e-6, losses 8.3e-7).
    About 45 s with a cold Inductor cache, most of it compiling."""
    arrays, info = torchrun(tmp_path, "compiled", "mlp", timeout=3 * TIMEOUT_S)
    assert info["mlp"]["ranks_differ"] == 0
    compare(arrays, "mlp", slack=10)
    assert info["mlp"]["compile_stats"]["compiles"] >= 1
    assert info["mlp"]["manifest"]["compile"]["fn"] == "torch.compile"
