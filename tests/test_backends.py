"""Each backend translates the same workload: same forward as numpy, same training trajectory."""

from __future__ import annotations

import numpy as np
import pytest

from harness import data, reference
from harness.backends import BACKENDS, load
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
@pytest.mark.parametrize("framework", list(BACKENDS))
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
         for fw, b in BACKENDS.items() for mode in b.modes]


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
