"""The test-set evaluation runs in the training precision in every framework and tier: a bf16
cell's predict computes in bfloat16 (torch: under autocast; TF and JAX: bfloat16 casts, Keras's
mixed_bfloat16 policy, Flax's dtype), so its logits differ from the float32 ones by bf16
rounding, no more."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_backends import dataset, spec_for, trainer_for

CASES = [
    ("torch", "identical", "eager", ""), ("torch", "idiomatic", "eager", ""),
    ("torch", "tuned", "eager", "foreach-adamw"),
    ("torch", "tuned", "compiled", "functional-fullgraph"),  # predict is eager: nothing compiles
    ("tensorflow", "identical", "eager", ""), ("tensorflow", "idiomatic", "graph", ""),
    ("tensorflow", "tuned", "graph", "graph-fused-adam"),
    ("jax", "identical", "compiled", ""), ("jax", "idiomatic", "compiled", ""),
    ("jax", "tuned", "compiled", "nnx-functional"),
]


@pytest.mark.parametrize("workload", ["mlp", "transformer"])
@pytest.mark.parametrize("framework, tier, mode, variant", [
    pytest.param(*c, id="-".join(filter(None, c[:2] + c[3:]))) for c in CASES])
def test_bf16_cells_evaluate_in_bf16(framework: str, tier: str, mode: str, variant: str,
                                     workload: str) -> None:
    spec = spec_for(workload)
    x = dataset(workload).x_test[:8]
    logits = {}
    for precision in ("fp32", "bf16"):
        trainer = trainer_for(framework, workload, mode, precision, spec=spec, tier=tier,
                              variant=variant)
        logits[precision] = np.asarray(trainer.numpy(trainer.predict(trainer.put(x))),
                                       np.float64)
    fp32, bf16 = logits["fp32"], logits["bf16"]
    scale = float(np.abs(fp32).max())
    diff = float(np.abs(bf16 - fp32).max())
    assert diff > 1e-5 * scale, "bf16 predict computed in float32"
    assert diff < 3e-2 * max(scale, 1.0), (diff, scale)
