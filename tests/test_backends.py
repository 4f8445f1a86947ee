"""Each backend translates the same model: the same forward as numpy, the same training
trajectory, in every workload, framework and mode."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from harness import data, reference
from harness.backends import BACKENDS, FRAMEWORKS, Spec, load
from harness.model import graph
from harness.spec import WORKLOADS
from harness.tune import FIRST_ATOL, FIRST_STEPS, LOSS_ATOL  # the tolerances, explained there

STEPS = 10
SEQ = 16       # tokens per example in these tests (the default size's context is 64)
# (dataset, batch size) per workload: the smallest shapes that still test the thing
DATA = {"mlp": ("digits", 32), "cnn": ("digits", 32), "resnet": ("digits32", 8),
        "transformer": ("pydoc", 4), "lstm": ("pydoc", 4)}


@cache
def dataset(workload: str) -> data.Dataset:
    name, _ = DATA[workload]
    return data.load(name, seq_len=SEQ if WORKLOADS[workload].input_kind == "text" else None)


def spec_for(workload: str, size: str = "small", shape: tuple[int, ...] | None = None) -> Spec:
    w = WORKLOADS[workload]
    ds = dataset(workload)
    shape = shape or ds.input_shape
    model = w.model(size, shape, ds.num_classes)
    params, state = graph.init(model, shape, 0)
    return Spec(model, shape, params, state, w.optimizer, w.schedule, total_steps=STEPS)


def trainer_for(framework: str, workload: str, mode: str = "eager", precision: str = "fp32",
                spec: Spec | None = None, tier: str = "identical",
                variant: str = ""):  # noqa: ANN201
    pytest.importorskip(BACKENDS[framework].import_name)
    return load(framework).build(spec or spec_for(workload), mode, "cpu", precision, tier,
                                 variant)


def batches(workload: str) -> list[tuple[np.ndarray, np.ndarray]]:
    ds = dataset(workload)
    out = []
    for x, y in data.batches(ds.x_train, ds.y_train, DATA[workload][1], epoch=0):
        out.append((x, y))
        if len(out) == STEPS:
            return out
    return out


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_forward_equals_numpy_reference(framework: str, workload: str) -> None:
    spec = spec_for(workload)
    trainer = trainer_for(framework, workload, spec=spec)
    x = dataset(workload).x_test[:16]
    want, _ = reference.forward(spec.model, spec.params, spec.state, x)
    got = trainer.numpy(trainer.predict(trainer.put(x)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got_w, got_s = trainer.weights(), trainer.state()
    assert list(got_w) == list(spec.params) and list(got_s) == list(spec.state)
    for k in spec.params:  # read back in the canonical layout
        np.testing.assert_array_equal(got_w[k], spec.params[k])


@cache
def ten_steps(framework: str, workload: str,
              mode: str) -> tuple[np.ndarray, dict, dict, dict]:
    """Losses, parameters and state after 10 steps, and the state after the first."""
    trainer = trainer_for(framework, workload, mode)
    losses, first_state = [], {}
    for x, y in batches(workload):
        losses.append(float(trainer.numpy(trainer.step(trainer.put(x, y)))))
        first_state = first_state or trainer.state()
    trainer.sync()
    return np.array(losses), trainer.weights(), trainer.state(), first_state


SLOW_COMPILES = {("torch", "compiled")}
CASES = [pytest.param(fw, mode, id=f"{fw}-{mode}",
                      marks=[pytest.mark.slow] if (fw, mode) in SLOW_COMPILES else [])
         for fw, b in FRAMEWORKS.items() for mode in b.modes]


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework, mode", CASES)
def test_ten_training_steps_agree_across_frameworks(framework: str, mode: str,
                                                    workload: str) -> None:
    """From the same weights and batches, every framework and mode follows the same trajectory
    as torch eager: the same losses (and, for the small models, parameters) after 10 steps
    of Adam or AdamW with its schedule; batch-norm running statistics move alike."""
    base_losses, base_weights, base_state, base_first = ten_steps("torch", workload, "eager")
    losses, weights, state, first = ten_steps(framework, workload, mode)
    assert losses[-1] < losses[0]  # it trains
    np.testing.assert_allclose(losses[:FIRST_STEPS], base_losses[:FIRST_STEPS], rtol=0,
                               atol=FIRST_ATOL)
    np.testing.assert_allclose(losses, base_losses, rtol=0, atol=LOSS_ATOL[workload])
    if workload in ("mlp", "cnn"):
        for k in weights:
            np.testing.assert_allclose(weights[k], base_weights[k], rtol=0, atol=2e-5)
    for k in state:  # the update rule exactly after one step; then as chaotic as the losses
        np.testing.assert_allclose(first[k], base_first[k], rtol=0, atol=1e-6)
        np.testing.assert_allclose(state[k], base_state[k], rtol=3e-2, atol=2e-2)


def test_a_wrong_step_would_be_caught() -> None:
    """The tolerances above separate rounding from a real difference: a larger Adam epsilon
    moves the transformer's early losses far outside them."""
    pytest.importorskip("torch")
    spec = spec_for("transformer")
    wrong = dataclasses.replace(spec, optimizer=dataclasses.replace(spec.optimizer, eps=1e-3))
    trainer = trainer_for("torch", "transformer", spec=wrong)
    losses = [float(trainer.numpy(trainer.step(trainer.put(x, y))))
              for x, y in batches("transformer")]
    base = ten_steps("torch", "transformer", "eager")[0]
    assert np.abs(np.array(losses) - base)[:FIRST_STEPS].max() > 10 * FIRST_ATOL


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_sync_waits_and_a_missing_sync_is_caught(framework: str) -> None:
    """The sync check passes with each framework's real sync; with JAX (asynchronous even on
    CPU) a sync that returns at once is caught."""
    from harness.cell import sync_check

    mode = "eager" if framework == "torch" else "compiled"  # torch on CPU: same sync either way
    trainer = trainer_for(framework, "cnn", mode)
    ds = dataset("cnn")
    x = np.repeat(ds.x_train[:256], 4, axis=0)
    y = np.repeat(ds.y_train[:256], 4, axis=0)
    placed = [trainer.put(x, y)]
    trainer.step(placed[0])
    trainer.sync()
    assert sync_check(trainer, placed, 0.02)["ok"]
    if framework == "jax":
        trainer.sync = lambda: None  # deliberately missing sync
        result = sync_check(trainer, placed, 0.02)
        assert not result["ok"], result


def test_threads_precision_and_denormals_are_read_back() -> None:
    import json
    import subprocess
    import sys

    code = """
import json
from harness.backends import load
out = {}
for fw in ("torch", "tensorflow", "jax"):
    out[fw] = load(fw).configure("cpu", "tf32", 1)
print(json.dumps(out))
"""
    for fw in ("torch", "tensorflow", "jax"):
        pytest.importorskip(BACKENDS[fw].import_name)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["torch"]["intra_op_threads"] == 1
    assert got["tensorflow"]["intra_op_threads"] == 1
    assert got["torch"].get("cuda_matmul_fp32_precision", "tf32") == "tf32"
    assert got["torch"]["flush_denormal"] is True  # as TensorFlow and XLA do on CPU
    assert got["tensorflow"]["matmul_tf32"] is True
    assert got["jax"]["matmul_precision"] == "tensorfloat32"


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_bf16_trains_close_to_fp32(framework: str) -> None:
    """bf16 (autocast / bfloat16 compute) keeps float32 master weights and a float32 loss: its
    trajectory stays within bf16 rounding of the float32 one."""
    trainer = trainer_for(framework, "mlp", precision="bf16")
    losses = [float(trainer.numpy(trainer.step(trainer.put(x, y)))) for x, y in batches("mlp")]
    base = ten_steps("torch", "mlp", "eager")[0]
    np.testing.assert_allclose(losses, base, atol=0.05)
    assert not np.allclose(losses, base, atol=1e-6, rtol=0)  # it really ran in bfloat16
    assert all(wt.dtype == np.float32 for wt in trainer.weights().values())
    assert trainer.device_peak_bytes() is None  # CPU: no device allocator


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_each_framework_records_its_lstm_path(framework: str) -> None:
    trainer = trainer_for(framework, "lstm")
    assert trainer.implementation["LSTM"]


LARGE = [("resnet", "resnet56", (32, 32, 3), 2), ("lstm", "large", (4,), 1),
         pytest.param("transformer", "gpt2-small", (8,), 1, marks=pytest.mark.slow)]


@pytest.mark.parametrize("workload, size, shape, batch", LARGE)
@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_large_sizes_build_and_step(framework: str, workload: str, size: str,
                                    shape: tuple[int, ...], batch: int) -> None:
    """The GPU sizes at a tiny shape-compatible scale: every parameter at its real shape (GPT-2
    small: 12 layers, d=768, 12 heads, the 1024-position table), a few examples or tokens; the
    first step's loss is the numpy reference's."""
    w = WORKLOADS[workload]
    classes = 256 if w.input_kind == "text" else 10
    model = w.model(size, shape, classes)
    params, state = graph.init(model, shape, 0)
    spec = Spec(model, shape, params, state, w.optimizer, w.schedule, total_steps=STEPS)
    rng = np.random.default_rng(0)
    if w.input_kind == "text":
        x = rng.integers(0, classes, (batch, *shape)).astype(np.int32)
        y = rng.integers(0, classes, (batch, *shape)).astype(np.int32)
    else:
        x = rng.random((batch, *shape), dtype=np.float32)
        y = rng.integers(0, classes, batch).astype(np.int32)
    logits, _ = reference.forward(model, params, state, x, train=True)
    want = reference.cross_entropy(logits, y)
    trainer = trainer_for(framework, workload, spec=spec)
    got = float(trainer.numpy(trainer.step(trainer.put(x, y))))
    assert abs(got - want) < 1e-4 * want


def test_tensorflow_is_imported_without_scikit_learn_or_pandas_which_stay_installed() -> None:
    """Keras imports scikit-learn (and SciPy) for a wrapper no cell uses, and pandas for its
    array adapters; framebench installs them for the digits file and its tables. The
    backend's import hides them, and afterwards they are importable again and the digits
    still load."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    pytest.importorskip("sklearn")
    code = """
import sys
from harness.backends import load
from harness import data
load("tensorflow")
hidden = not {"sklearn", "scipy.stats", "pandas"} & set(sys.modules)
assert len(data.load("digits", None, seed=0).x_train) > 1000
import sklearn, pandas
print(hidden, sklearn.__name__, pandas.__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "sklearn", "pandas"]
