"""The machine's measured float32 GEMM peak, for MFU: best of numpy and each framework.

Run as ``python -m harness.backends.peak FRAMEWORK`` in that framework's interpreter (numpy
needs none); prints {"framework", "n", "flops_per_s"} as JSON. Square n x n float32 matmuls,
synced, best of several, after a warm-up (which also compiles where the framework compiles).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import numpy as np

N = 2048
REPEATS = 5


def _numpy() -> Callable[[], object]:
    a = np.random.default_rng(0).random((N, N), dtype=np.float32)
    return lambda: a @ a


def _torch() -> Callable[[], object]:
    import torch

    a = torch.rand(N, N)
    return lambda: a @ a


def _tensorflow() -> Callable[[], object]:
    import tensorflow as tf

    a = tf.random.uniform((N, N))
    mm = tf.function(lambda: tf.linalg.matmul(a, a))
    return lambda: mm().numpy()


def _jax() -> Callable[[], object]:
    import jax
    import jax.numpy as jnp

    a = jax.random.uniform(jax.random.key(0), (N, N), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    return lambda: mm(a).block_until_ready()


def gemm_flops_per_s(framework: str) -> float:
    run = {"numpy": _numpy, "torch": _torch, "tensorflow": _tensorflow, "jax": _jax}[framework]()
    run()
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return 2 * N**3 / best


if __name__ == "__main__":
    fw = sys.argv[1] if len(sys.argv) > 1 else "numpy"
    print(json.dumps({"framework": fw, "n": N, "flops_per_s": gemm_flops_per_s(fw)}))
