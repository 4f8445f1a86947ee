"""Each backend translates the same workload: same forward as numpy, same training trajectory."""

from __future__ import annotations

import numpy as np
import pytest

from harness import data, reference
from harness.backends import BACKENDS, FRAMEWORKS, load
from harness.init import init_weights
from harness.spec import WORKLOADS

DIGITS = data.digits()
STEPS = 10


def trainer_for(framework: str, workload: str, mode: str = "eager"):  # noqa: ANN201
    pytest.importorskip(BACKENDS[framework].import_name)
    w = WORKLOADS[workload]
    return load(framework).build(w, init_weights(w, DIGITS.input_shape, 0), mode, "cpu",
                                 DIGITS.input_shape)


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_forward_equals_numpy_reference(framework: str, workload: str) -> None:
    trainer = trainer_for(framework, workload)
    w = WORKLOADS[workload]
    x = DIGITS.x_test[:64]
    want = reference.forward(w, init_weights(w, DIGITS.input_shape, 0), x)
    got = trainer.numpy(trainer.predict(trainer.put(x)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(trainer.weights(), init_weights(w, DIGITS.input_shape, 0)):
        np.testing.assert_array_equal(a, b)  # weights read back in canonical layout


def ten_steps(framework: str, workload: str, mode: str) -> tuple[np.ndarray, list[np.ndarray]]:
    trainer = trainer_for(framework, workload, mode)
    losses = []
    for x, y in data.batches(DIGITS.x_train, DIGITS.y_train, 32, epoch=0):
        losses.append(float(trainer.numpy(trainer.step(trainer.put(x, y)))))
        if len(losses) == STEPS:
            break
    trainer.sync()
    return np.array(losses), trainer.weights()


CASES = [pytest.param(fw, mode, id=f"{fw}-{mode}",
                      marks=[pytest.mark.slow] if (fw, mode) == ("torch", "compiled") else [])
         for fw, b in FRAMEWORKS.items() for mode in b.modes]


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework, mode", CASES)
def test_ten_training_steps_agree_across_frameworks(framework: str, mode: str,
                                                    workload: str) -> None:
    """From the same weights and batches, every framework and mode follows the same trajectory
    as torch eager: losses and parameters after 10 Adam steps agree to float32 rounding."""
    base_losses, base_weights = ten_steps("torch", workload, "eager")
    losses, weights = ten_steps(framework, workload, mode)
    assert losses[-1] < losses[0]  # it trains
    np.testing.assert_allclose(losses, base_losses, rtol=0, atol=2e-5)
    for a, b in zip(weights, base_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
    # A wrong step (e.g. softmax before the loss, wrong Adam epsilon) is far outside this:
    assert np.abs(losses - base_losses).max() < 1e-3 * losses[0]


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_sync_waits_and_a_missing_sync_is_caught(framework: str) -> None:
    """The sync check passes with each framework's real sync; with JAX (asynchronous even on
    CPU) a sync that returns at once is caught."""
    from harness.cell import sync_check

    pytest.importorskip(BACKENDS[framework].import_name)
    w = WORKLOADS["cnn"]
    mode = "eager" if framework == "torch" else "compiled"  # torch on CPU: same sync either way
    trainer = load(framework).build(w, init_weights(w, DIGITS.input_shape, 0), mode, "cpu",
                                    DIGITS.input_shape)
    x = np.repeat(DIGITS.x_train[:256], 4, axis=0)
    y = np.repeat(DIGITS.y_train[:256], 4, axis=0)
    batches = [trainer.put(x, y)]
    trainer.step(batches[0])
    trainer.sync()
    step_s = 0.02
    assert sync_check(trainer, batches, step_s)["ok"]
    if framework == "jax":
        trainer.sync = lambda: None  # deliberately missing sync
        result = sync_check(trainer, batches, step_s)
        assert not result["ok"], result


def test_threads_and_precision_are_read_back() -> None:
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
    assert got["tensorflow"]["matmul_tf32"] is True
    assert got["jax"]["matmul_precision"] == "tensorfloat32"


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_bf16_trains_close_to_fp32(framework: str) -> None:
    """bf16 (autocast / mixed_bfloat16 / bfloat16 compute) keeps float32 master weights and a
    float32 loss: its trajectory stays within bf16 rounding of the float32 one."""
    pytest.importorskip(BACKENDS[framework].import_name)
    w = WORKLOADS["mlp"]
    trainer = load(framework).build(w, init_weights(w, DIGITS.input_shape, 0), "eager", "cpu",
                                    DIGITS.input_shape, "bf16")
    losses = []
    for x, y in data.batches(DIGITS.x_train, DIGITS.y_train, 32, epoch=0):
        losses.append(float(trainer.numpy(trainer.step(trainer.put(x, y)))))
        if len(losses) == STEPS:
            break
    base, _ = ten_steps("torch", "mlp", "eager")
    np.testing.assert_allclose(losses, base, atol=0.05)
    assert not np.allclose(losses, base, atol=1e-6, rtol=0)  # it really ran in bfloat16
    assert all(wt.dtype == np.float32 for wt in trainer.weights())
    assert trainer.device_peak_bytes() is None  # CPU: no device allocator
