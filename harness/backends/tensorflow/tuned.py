"""The tuned tier's variants: the identical step (identical.py) with the Adam update through
TensorFlow's fused ResourceApplyAdam kernel, one op per parameter instead of ~5.

The kernel computes var -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps'), with
epsilon on the uncorrected sqrt(v). Passing eps' = eps * sqrt(1 - beta2^t) makes that exactly
lr * m_hat / (sqrt(v_hat) + eps), the torch/optax form the identical tier computes. AdamW's
decoupled decay is applied before it, on the pre-update weights, as the identical step does.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from harness.backends import Spec
from harness.backends.tensorflow.identical import TensorFlowTrainer


class FusedAdamTrainer(TensorFlowTrainer):
    def __init__(self, spec: Spec, mode: str, device: str, precision: str, variant: str) -> None:
        super().__init__(spec, mode, device, precision, tier="tuned", variant=variant)
        self.manifest["optimizer"] = (
            f"{spec.optimizer.name}: tf.raw_ops.ResourceApplyAdam per parameter, epsilon scaled "
            "per step to eps * sqrt(1 - beta2^t) (the torch/optax form)"
            + (", decoupled decay as one assign_sub" if spec.optimizer.weight_decay else ""))

    def _update(self, grads: list[Any], lr: Any) -> None:
        o = self.spec.optimizer
        beta1_power = tf.pow(o.beta1, self.t)
        beta2_power = tf.pow(o.beta2, self.t)
        eps = o.eps * tf.sqrt(1.0 - beta2_power)
        for p, g, m, v, decay in zip(self.flat, grads, self.m, self.v, self.decay):
            if decay:
                p.assign_sub(lr * o.weight_decay * p)
            tf.raw_ops.ResourceApplyAdam(
                var=p.handle, m=m.handle, v=v.handle, beta1_power=beta1_power,
                beta2_power=beta2_power, lr=lr, beta1=o.beta1, beta2=o.beta2, epsilon=eps,
                grad=tf.convert_to_tensor(g))  # the embedding's gradient may be IndexedSlices


def build(spec: Spec, mode: str, device: str, precision: str, variant: str) -> TensorFlowTrainer:
    """The identical step of a mode, or a fused-adam variant (check_build has paired each
    variant with its mode: eager-, graph- and xla-fused-adam with eager, graph, compiled)."""
    if variant == "identical":
        return TensorFlowTrainer(spec, mode, device, precision, tier="tuned", variant=variant)
    return FusedAdamTrainer(spec, mode, device, precision, variant)
