"""JAX backend. Three tiers (``harness.backends.TIERS``): ``identical.py``, the model as pure
jax.numpy functions (one table in translate.py) with optax, op-by-op eager or jax.jit of the
whole step; ``idiomatic.py``, Flax NNX as its tutorials write it; ``tuned.py``, the variants of
the tuned tier's search."""

from __future__ import annotations

import os
from typing import Any

import jax
import optax

from harness.backends import Spec, check_build
from harness.backends.jax.identical import JaxTrainer


def info() -> dict[str, Any]:
    import flax
    import jaxlib

    device = jax.devices()[0]
    return {
        "framework_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "optax_version": optax.__version__,
        "flax_version": flax.__version__,
        "platform": device.platform,
        "platform_version": getattr(device.client, "platform_version", None),
        "model_api": "jax.numpy functions + optax (identical, tuned); flax.nnx (idiomatic)",
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


def build(spec: Spec, mode: str, device: str, precision: str = "fp32",
          tier: str = "identical", variant: str = "") -> Any:
    check_build("jax", tier, mode, variant, device)
    # idiomatic.py and tuned.py import Flax (a second's import): only when asked for
    if tier == "idiomatic":
        from harness.backends.jax.idiomatic import NnxTrainer

        return NnxTrainer(spec, device, precision)
    if tier == "tuned":
        from harness.backends.jax import tuned

        return tuned.build(spec, mode, device, precision, variant)
    return JaxTrainer(spec, mode, device, precision)
