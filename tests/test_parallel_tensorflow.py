"""TensorFlow data-parallel training (harness/backends/tensorflow/parallel.py): 2 replicas on 2
logical CPU devices follow the one-device identical trajectory at twice the per-replica batch.

The parallel side needs its logical devices before TensorFlow's runtime starts, so everything
runs once in a fresh process (SCRIPT), which writes its results for the tests to compare.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import reference
from tests.test_backends import batches, spec_for

if importlib.util.find_spec("tensorflow") is None:  # importorskip without importing it here
    pytest.skip("tensorflow is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
K = 5  # steps compared
# 2 replicas at b against one device at 2b differ only in float reduction order (the gradient
# all-reduce averages two half-batch means where one device reduces the whole batch). Measured,
# max over the K steps, graph and compiled modes: losses 4.8e-7 (mlp), 9.5e-7 (transformer);
# weights 3.7e-8 (mlp), 4.6e-5 (transformer); Adam's m and v, as a fraction of each parameter's
# largest moment, 3e-7 (mlp), 9e-5 (transformer). Tolerances: 10x that, except the
# transformer's weights (4x): Adam divides each gradient by its running scale, so a parameter
# whose gradient sits at rounding level (a bias whose batch contributions cancel) moves by up
# to the learning rate (3e-4 to 1.7e-3 in these steps) either way on a rounding difference.
LOSS_ATOL = {"mlp": 5e-6, "transformer": 1e-5}
WEIGHT_ATOL = {"mlp": 4e-7, "transformer": 2e-4}
MOMENT_TOL = {"mlp": 3e-6, "transformer": 1e-3}

SCRIPT = """
import json, sys
import numpy as np
from harness.backends import load
tf_backend = load("tensorflow")
from harness.backends.tensorflow import parallel
from tests.test_backends import batches, spec_for

K, out_dir = int(sys.argv[1]), sys.argv[2]
arrays, info = {}, {"modes": {}}
for mode in parallel.MODES:
    for workload in ("mlp", "transformer"):
        spec, data = spec_for(workload), batches(workload)[:K]
        par = parallel.build(spec, mode, "cpu", "fp32", 2)
        one = tf_backend.build(spec, mode, "cpu", "fp32", "identical")
        lp = [float(par.numpy(par.step(par.put(x, y)))) for x, y in data]
        lo = [float(one.numpy(one.step(one.put(x, y)))) for x, y in data]
        par.sync()
        key = f"{mode}-{workload}"
        arrays[f"{key}-loss-par"], arrays[f"{key}-loss-one"] = np.array(lp), np.array(lo)
        for name, t in (("par", par), ("one", one)):
            for (k, w), m, v in zip(t.weights().items(), t.m, t.v):  # m, v: Adam's moments
                arrays[f"{key}-w-{name}-{k}"] = w
                arrays[f"{key}-m-{name}-{k}"], arrays[f"{key}-v-{name}-{k}"] = m.numpy(), v.numpy()
        copies = par.replica_weights()
        graph = par._step.get_concrete_function(*par.put(*data[0])).graph
        info["modes"][key] = {
            "replicas_in_sync": max(float(np.abs(copies[0][k] - copies[1][k]).max())
                                    for k in copies[0]),
            "compile_stats": par.compile_stats(), "manifest": par.manifest,
            "replicas": par.replicas,
            "op_devices": sorted({op.device for op in graph.get_operations()} - {""})}
        x = data[0][0]
        arrays[f"{key}-predict-host"] = par.numpy(par.predict(x))
        arrays[f"{key}-predict-placed"] = par.numpy(par.predict(par.put(x)))
        arrays[f"{key}-predict-one"] = one.numpy(one.predict(one.put(x)))

x, y = batches("mlp")[0]
xs, ys = par.put(x, y)
for i, (cx, cy) in enumerate(zip(par.strategy.experimental_local_results(xs),
                                 par.strategy.experimental_local_results(ys))):
    arrays[f"shard-x{i}"], arrays[f"shard-y{i}"] = cx.numpy(), cy.numpy()
    info[f"shard-device{i}"] = [cx.device, cy.device]
arrays["shard-x"], arrays["shard-y"] = x, y
info["devices"] = par.devices

spec = spec_for("resnet")
x, y = batches("resnet")[0]
par = parallel.build(spec, "graph", "cpu", "fp32", 2)
arrays["resnet-loss"] = par.numpy(par.step(par.put(x, y)))
for k, v in par.state().items():
    arrays[f"resnet-state-{k}"] = v
info["resnet-state"] = list(par.state())

errors = {}
def attempt(name, f):
    try:
        f()
        errors[name] = None
    except Exception as e:
        errors[name] = [type(e).__name__, str(e)]
attempt("indivisible", lambda: par.put(x[:7], y[:7]))
attempt("eager", lambda: parallel.build(spec, "eager", "cpu", "fp32", 2))
attempt("too-many-cpus", lambda: parallel.build(spec, "graph", "cpu", "fp32", 3))
attempt("too-many-gpus", lambda: parallel.build(spec, "graph", "cuda", "fp32", 64))
info["errors"] = errors
np.savez(f"{out_dir}/arrays.npz", **arrays)
with open(f"{out_dir}/info.json", "w") as f:
    json.dump(info, f, default=str)
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("parallel_tensorflow")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(K), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(out / "arrays.npz") as f:
        arrays = dict(f)
    return arrays, json.loads((out / "info.json").read_text())


MODES = ("graph", "compiled")


@pytest.mark.parametrize("workload", ["mlp", "transformer"])
@pytest.mark.parametrize("mode", MODES)
def test_two_replicas_equal_one_device_at_twice_the_batch(results: tuple[dict, dict], mode: str,
                                                          workload: str) -> None:
    """Losses, weights and Adam's moments after K steps; the replicas' copies identical; the
    step's graph on both devices; evaluation on the whole input."""
    arrays, info = results
    key = f"{mode}-{workload}"
    par, one = arrays[f"{key}-loss-par"], arrays[f"{key}-loss-one"]
    assert len(par) == K and par[-1] < par[0]  # it trains
    np.testing.assert_allclose(par, one, rtol=0, atol=LOSS_ATOL[workload])
    names = [k.removeprefix(f"{key}-w-one-") for k in arrays if k.startswith(f"{key}-w-one-")]
    assert names
    for k in names:
        np.testing.assert_allclose(arrays[f"{key}-w-par-{k}"], arrays[f"{key}-w-one-{k}"],
                                   rtol=0, atol=WEIGHT_ATOL[workload], err_msg=k)
        # Adam's update is nearly blind to the gradient's scale, its moments are not: a sum
        # over the replicas instead of the mean would double m and quadruple v
        for moment in ("m", "v"):
            got, want = arrays[f"{key}-{moment}-par-{k}"], arrays[f"{key}-{moment}-one-{k}"]
            assert np.abs(got - want).max() <= MOMENT_TOL[workload] * np.abs(want).max(), \
                (moment, k)
    got = info["modes"][key]
    assert got["replicas_in_sync"] == 0.0  # every copy took the same update
    assert got["op_devices"] == info["devices"]  # the step runs on both devices
    assert got["compile_stats"]["compiles"] == 1  # traced once, no retrace
    assert got["replicas"] == 2 and got["manifest"]["parallel"]["replicas"] == 2
    assert got["manifest"]["mode"] == mode
    # evaluation: the whole input, host or sharded, as the one-device trainer
    np.testing.assert_array_equal(arrays[f"{key}-predict-host"], arrays[f"{key}-predict-placed"])
    np.testing.assert_allclose(arrays[f"{key}-predict-host"], arrays[f"{key}-predict-one"],
                               rtol=0, atol=1e-4)


def test_put_gives_replica_i_rows_i_b_to_i_plus_1_b_on_device_i(
        results: tuple[dict, dict]) -> None:
    arrays, info = results
    x, y = arrays["shard-x"], arrays["shard-y"]
    b = len(x) // 2
    assert info["devices"] == [f"/job:localhost/replica:0/task:0/device:CPU:{i}"
                               for i in range(2)]
    for i in range(2):
        np.testing.assert_array_equal(arrays[f"shard-x{i}"], x[i * b:(i + 1) * b])
        np.testing.assert_array_equal(arrays[f"shard-y{i}"], y[i * b:(i + 1) * b])
        assert info[f"shard-device{i}"] == [info["devices"][i]] * 2


def test_batch_norm_running_statistics_are_the_replica_mean(results: tuple[dict, dict]) -> None:
    """After one step from the initial weights, each replica normalised with its own shard's
    statistics: the loss is the mean of the two shards' losses and the running statistics the
    mean of the two shards' updates, each shard's by the numpy reference (float64) in
    training behaviour, as one device at b would compute it."""
    arrays, info = results
    spec = spec_for("resnet")
    x, y = batches("resnet")[0]
    b = len(x) // 2
    shards = []
    for i in range(2):
        logits, state = reference.forward(spec.model, spec.params, spec.state,
                                          x[i * b:(i + 1) * b], train=True)
        shards.append((reference.cross_entropy(logits, y[i * b:(i + 1) * b]), state))
    np.testing.assert_allclose(arrays["resnet-loss"], (shards[0][0] + shards[1][0]) / 2,
                               rtol=0, atol=1e-5)
    logits, _ = reference.forward(spec.model, spec.params, spec.state, x, train=True)
    whole = reference.cross_entropy(logits, y)  # the whole batch's statistics (SyncBatchNorm)
    assert abs(arrays["resnet-loss"] - whole) > 1e-2  # 0.056 measured
    assert info["resnet-state"] == list(spec.state)
    for k in spec.state:
        got, one = arrays[f"resnet-state-{k}"], shards[0][1][k]
        np.testing.assert_allclose(got, (one + shards[1][1][k]) / 2, rtol=0, atol=1e-6,
                                   err_msg=k)
        assert np.abs(got - one).max() > 1e-4  # not one shard's statistics


def test_bad_input_raises_a_clear_error(results: tuple[dict, dict]) -> None:
    errors = results[1]["errors"]
    kind, message = errors["indivisible"]
    assert kind == "ValueError" and "7 rows" in message and "2 replicas" in message
    kind, message = errors["eager"]
    assert kind == "ValueError" and "'eager'" in message and "graph, compiled" in message
    kind, message = errors["too-many-cpus"]
    assert kind == "RuntimeError" and "3 logical CPU devices" in message
    kind, message = errors["too-many-gpus"]
    assert kind == "Unavailable" and "64 GPUs" in message
