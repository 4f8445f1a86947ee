"""JAX data-parallel training (harness/backends/jax/parallel.py) on 2 CPU devices: 2 replicas
at per-replica batch b follow one device at 2b (the identical tier) where there is no batch
norm; with batch norm each replica normalises with its own shard and the running statistics are
the replica mean. The parallel side runs in a fresh process: its 2 CPU devices exist only if
XLA_FLAGS asks for them before JAX initialises."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import reference
from harness.backends import Spec
from tests.test_backends import batches, spec_for, trainer_for

ROOT = Path(__file__).resolve().parents[1]
REPLICAS = 2
STEPS = 5
EQUAL = ("mlp", "transformer")  # no batch norm: N replicas equal one device at N× the batch
# Measured max |difference| from one device: losses 2.4e-7 (mlp) and 4.8e-7 (transformer),
# weights 1.5e-8 and 2.0e-5; the tolerances are about 10x those (float32 sums split over two
# shards add in another order). The transformer's weights differ most where the exact gradient
# is 0 (attention's key bias, which softmax ignores): Adam scales that rounding noise up to the
# learning rate, as in test_backends, which compares no transformer weights. Gradients summed
# over the replicas instead of averaged move the mlp's losses by 1.4e-2 and weights by 1.1e-3.
LOSS_ATOL = {"mlp": 2e-6, "transformer": 5e-6}
WEIGHT_ATOL = {"mlp": 2e-7, "transformer": 2e-4}
# resnet against the float64 reference: running statistics, first loss and logits measured
# 1.1e-7, 2.8e-8 and 5.8e-8 off
BN_ATOL = 1e-6

PARALLEL = """
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=2").strip()
import json

import jax
import numpy as np

from harness.backends.jax import parallel
from tests.test_parallel_jax import EQUAL, REPLICAS, STEPS, batches, spec

out = sys.argv[1]
info = {}
for workload in (*EQUAL, "resnet"):
    t = parallel.build(spec(workload), "compiled", "cpu", "fp32", REPLICAS)
    losses, first = [], {}
    for x, y in batches(workload)[:STEPS if workload in EQUAL else 2]:
        losses.append(float(t.numpy(t.step(t.put(x, y)))))
        first = first or t.state()
    t.sync()
    arrays = {"losses": np.array(losses), **{"w:" + k: v for k, v in t.weights().items()},
              **{"s:" + k: v for k, v in t.state().items()},
              **{"first:" + k: v for k, v in first.items()}}
    if workload == "resnet":
        x, y = batches(workload)[0]
        shards = t.put(x, y)[1].addressable_shards
        by_replica = sorted(shards, key=lambda s: t.devices.index(s.device))
        arrays.update({f"shard{i}": np.asarray(s.data) for i, s in enumerate(by_replica)})
        arrays["predict"] = t.numpy(t.predict(x[:3]))  # rows not a multiple of replicas
    np.savez(f"{out}/{workload}.npz", **arrays)
    info[workload] = {"compiles": t.compile_stats()["compiles"], "replicas": t.replicas,
                      "parallel": t.manifest["parallel"]}

def error(make):
    try:
        make()
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return None

# many steps dispatched without a sync (a timing sample; the sync check's "issue only"):
# without the trainer's one-step-in-flight rule the replicas' all-reduce deadlocked on CPU
m = parallel.build(spec("mlp"), "compiled", "cpu", "fp32", REPLICAS)
placed = m.put(*batches("mlp")[0])
for _ in range(100):
    m.step(placed)
m.sync()
info["unsynced_steps"] = 100

x, y = batches("resnet")[0]
info["gpus"] = 0 if error(lambda: jax.devices("gpu")) else len(jax.devices("gpu"))
info["errors"] = {
    "rows": error(lambda: t.put(x[:7], y[:7])),
    "mode": error(lambda: parallel.build(spec("mlp"), "eager", "cpu", "fp32", 2)),
    "replicas": error(lambda: parallel.build(spec("mlp"), "compiled", "cpu", "fp32", 3)),
    "cuda": error(lambda: parallel.build(spec("mlp"), "compiled", "cuda", "fp32", 2)),
}
with open(f"{out}/info.json", "w") as f:
    json.dump(info, f)
"""


def spec(workload: str) -> Spec:
    """The test's spec. mlp: Adam's epsilon raised to 1e-2, near its gradients' scale: at 1e-8
    Adam's update m / sqrt(v) ignores the gradients' scale, and gradients summed over the
    replicas instead of averaged would pass unseen."""
    s = spec_for(workload)
    if workload == "mlp":
        return dataclasses.replace(s, optimizer=dataclasses.replace(s.optimizer, eps=1e-2))
    return s


@pytest.fixture(scope="module")
def parallel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parallel runs' results, written by one fresh process with 2 CPU devices."""
    pytest.importorskip("jax")
    out = tmp_path_factory.mktemp("parallel_jax")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PARALLEL, str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def results(path: Path, workload: str) -> tuple[np.ndarray, dict, dict, dict]:
    """Losses, weights, running statistics, and the statistics after the first step."""
    with np.load(path / f"{workload}.npz") as z:
        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}

        return z["losses"], part("w:"), part("s:"), part("first:")


@pytest.mark.parametrize("workload", EQUAL)
def test_two_replicas_equal_one_device_at_twice_the_batch(parallel: Path,
                                                          workload: str) -> None:
    """Same weights, same global batches: 2 replicas at b (each its shard's mean loss,
    gradients averaged) take the identical tier's steps at 2b, the embedding's gradient
    (transformer) included."""
    losses, weights, _, _ = results(parallel, workload)
    one = trainer_for("jax", workload, "compiled", spec=spec(workload))
    base = [float(one.numpy(one.step(one.put(x, y)))) for x, y in batches(workload)[:STEPS]]
    assert losses[-1] < losses[0]  # it trains
    np.testing.assert_allclose(losses, base, rtol=0, atol=LOSS_ATOL[workload])
    base_weights = one.weights()
    assert list(weights) == list(base_weights)
    for k, w in weights.items():
        np.testing.assert_allclose(w, base_weights[k], rtol=0, atol=WEIGHT_ATOL[workload],
                                   err_msg=k)
    info = json.loads((parallel / "info.json").read_text())[workload]
    assert info["compiles"] == 1 and info["replicas"] == REPLICAS
    assert info["parallel"]["replicas"] == REPLICAS and info["parallel"]["mechanism"]


def test_batch_norm_uses_each_shard_and_averages_running_statistics(parallel: Path) -> None:
    """resnet: the running statistics after one step are the mean of what each replica's
    shard gives alone (the float64 numpy reference's train forward, which the identical tier
    matches to 1e-6 in test_backends), not those of the whole batch; the first loss is the mean
    of the shards' losses (each normalised with its own statistics), not the whole batch's.
    Replica i holds rows [i*b, (i+1)*b); predict takes any number of rows and uses the running
    statistics."""
    _, weights, state, first = results(parallel, "resnet")
    s = spec("resnet")
    x, y = batches("resnet")[0]
    b = len(x) // REPLICAS
    shards = [slice(i * b, (i + 1) * b) for i in range(REPLICAS)]
    alone = [reference.forward(s.model, s.params, s.state, x[r], train=True) for r in shards]
    whole_logits, whole = reference.forward(s.model, s.params, s.state, x, train=True)
    for k in s.state:
        want = np.mean([st[k] for _, st in alone], axis=0)
        np.testing.assert_allclose(first[k], want, rtol=0, atol=BN_ATOL, err_msg=k)
    assert max(np.abs(first[k] - whole[k]).max() for k in s.state) > 100 * BN_ATOL
    with np.load(parallel / "resnet.npz") as z:
        losses, logits = z["losses"], z["predict"]
        placed = [z[f"shard{i}"] for i in range(REPLICAS)]
    want_loss = np.mean([reference.cross_entropy(lg, y[r])
                         for (lg, _), r in zip(alone, shards, strict=True)])
    assert abs(losses[0] - want_loss) < BN_ATOL
    assert abs(reference.cross_entropy(whole_logits, y) - want_loss) > 100 * BN_ATOL
    for i, r in enumerate(shards):
        np.testing.assert_array_equal(placed[i], y[r])
    want_logits, _ = reference.forward(s.model, weights, state, x[:3])
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=BN_ATOL)


def test_steps_dispatched_without_a_sync_finish(parallel: Path) -> None:
    """XLA:CPU's all-reduce deadlocked (and aborted the process) with several steps queued."""
    assert json.loads((parallel / "info.json").read_text())["unsynced_steps"] == 100


def test_bad_input_is_refused_clearly(parallel: Path) -> None:
    """A batch that does not split over the replicas, a mode without a parallel step, more
    replicas than devices (naming the flag that makes CPU devices), no GPUs."""
    errors = json.loads((parallel / "info.json").read_text())["errors"]
    kind, message = errors["rows"]
    assert kind == "ValueError" and "7 rows" in message and "2 replicas" in message
    kind, message = errors["mode"]
    assert kind == "ValueError" and "'eager'" in message and "compiled" in message
    kind, message = errors["replicas"]
    assert kind == "Unavailable" and "--xla_force_host_platform_device_count=3" in message
    if json.loads((parallel / "info.json").read_text())["gpus"] < 2:
        assert errors["cuda"][0] == "Unavailable"
