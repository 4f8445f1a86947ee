"""JAX backend: pure jax.numpy functions + optax.adam; eager op-by-op or jax.jit of the step."""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from harness.backends import Unavailable
from harness.spec import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Shape, Workload


def info() -> dict[str, Any]:
    import jaxlib

    device = jax.devices()[0]
    return {
        "framework_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "optax_version": optax.__version__,
        "platform": device.platform,
        "platform_version": getattr(device.client, "platform_version", None),
        "model_api": "jax.numpy functions + optax",
    }


def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
    """Matmul precision (TF32 or full float32), read back. XLA's CPU thread pool has no knob:
    it sizes itself from the affinity mask, which the cell sets before JAX loads."""
    jax.config.update("jax_default_matmul_precision",
                      "tensorfloat32" if precision == "tf32" else "highest")
    return {"matmul_precision": str(jax.config.jax_default_matmul_precision),
            "cpu_threads_from_affinity": len(os.sched_getaffinity(0)),
            "compute_dtype": "bfloat16" if precision == "bf16" else "float32",
            "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "default")}


def _device(device: str) -> Any:
    if device == "cuda":
        try:
            return jax.devices("gpu")[0]
        except RuntimeError as exc:
            raise Unavailable(f"JAX sees no GPU ({exc})") from exc
    return jax.devices("cpu")[0]


def forward(workload: Workload, params: list[Any], x: jax.Array,
            dtype: Any = jnp.float32) -> jax.Array:
    """Logits; computed in `dtype` (bfloat16 for bf16: params and inputs cast, float32 out)."""
    if dtype != jnp.float32:
        params = [p.astype(dtype) for p in params]
        x = x.astype(dtype)
    it = iter(params)
    for layer in workload.layers:
        if isinstance(layer, Dense):
            kernel, bias = next(it), next(it)
            x = x @ kernel + bias
        elif isinstance(layer, Conv2D):
            kernel, bias = next(it), next(it)
            x = jax.lax.conv_general_dilated(
                x, kernel, window_strides=(1, 1), padding="SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
        elif isinstance(layer, MaxPool2D):
            s = layer.size
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, s, s, 1), (1, s, s, 1),
                                      "VALID")
        elif isinstance(layer, ReLU):
            x = jax.nn.relu(x)
        elif isinstance(layer, Flatten):
            x = x.reshape(x.shape[0], -1)
        else:
            raise TypeError(f"jax backend cannot translate {layer!r}")
    return x.astype(jnp.float32)


def _loss(workload: Workload, dtype: Any, params: list[Any], x: jax.Array,
          y: jax.Array) -> jax.Array:
    logits = forward(workload, params, x, dtype)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class JaxTrainer:
    def __init__(self, workload: Workload, weights: list[np.ndarray], mode: str, device: str,
                 input_shape: Shape, precision: str) -> None:
        self.device = _device(device)
        dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
        o = workload.optimizer
        self.optimizer = optax.adam(o.lr, b1=o.beta1, b2=o.beta2, eps=o.eps, eps_root=0.0)
        self.params = jax.device_put([jnp.asarray(w) for w in weights], self.device)
        self.opt_state = jax.device_put(self.optimizer.init(self.params), self.device)
        step = partial(self._pure_step, partial(_loss, workload, dtype), self.optimizer)
        self._forward = partial(forward, workload, dtype=dtype)
        # Donation is the functional counterpart of an in-place update.
        self._step = jax.jit(step, donate_argnums=(0, 1)) if mode == "compiled" else step

    @staticmethod
    def _pure_step(loss_fn: Any, optimizer: optax.GradientTransformation, params: Any,
                   opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        if y is None:
            return jax.device_put(x, self.device)
        return jax.device_put((x, y), self.device)

    def step(self, batch: Any) -> jax.Array:
        self.params, self.opt_state, loss = self._step(self.params, self.opt_state, *batch)
        return loss

    def predict(self, x: Any) -> jax.Array:
        return self._forward(self.params, x)

    def sync(self) -> None:
        # Dispatch is asynchronous on every platform, CPU included (jax >= 0.4.32).
        jax.block_until_ready((self.params, self.opt_state))

    def numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def reset_device_peak(self) -> None:
        pass  # JAX keeps a process-lifetime peak only; a cell is one process, so that is fine

    def device_peak_bytes(self) -> int | None:
        if self.device.platform == "cpu":
            return None
        stats = self.device.memory_stats() or {}
        return stats.get("peak_bytes_in_use")

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(p) for p in self.params]


def build(workload: Workload, weights: list[np.ndarray], mode: str, device: str,
          input_shape: Shape, precision: str = "fp32") -> JaxTrainer:
    return JaxTrainer(workload, weights, mode, device, input_shape, precision)
