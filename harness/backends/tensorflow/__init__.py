"""TensorFlow backend, in three tiers (``harness.backends.TIERS``):

- identical.py: the model as tf ops on tf.Variables (translate.py), tf.GradientTape, Adam
  written out; modes eager, graph (tf.function) and compiled (tf.function(jit_compile=True));
- idiomatic.py: Keras 3 as its users write it, compile/fit with Keras's own Adam(W); modes
  graph and compiled (jit_compile);
- tuned.py: the identical step with the fused ResourceApplyAdam kernel, in each mode.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from harness.backends import Spec, check_build


def info() -> dict[str, Any]:
    build = tf.sysconfig.get_build_info()
    return {
        "framework_version": tf.__version__,
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPUs)"),
        "model_api": "tf ops on tf.Variables + tf.GradientTape (identical, tuned); Keras 3 "
                     "(idiomatic)",
    }


def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
    """Thread pools, TF32 and GPU memory growth, read back. Must run before TF starts."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
    if device == "cuda":
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)  # no grab-everything
    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "matmul_tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
            "compute_dtype": "bfloat16 (params and inputs cast)" if precision == "bf16"
            else "float32"}


def build(spec: Spec, mode: str, device: str, precision: str = "fp32", tier: str = "identical",
          variant: str = "") -> Any:
    check_build("tensorflow", tier, mode, variant, device)
    if tier == "idiomatic":
        from harness.backends.tensorflow import idiomatic  # imports Keras: only when asked

        return idiomatic.KerasTrainer(spec, mode, device, precision)
    if tier == "tuned":
        from harness.backends.tensorflow import tuned

        return tuned.build(spec, mode, device, precision, variant)
    from harness.backends.tensorflow import identical

    return identical.TensorFlowTrainer(spec, mode, device, precision)
