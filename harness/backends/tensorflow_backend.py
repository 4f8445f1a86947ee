"""TensorFlow backend: Keras layers, GradientTape and Adam written out (torch/optax epsilon form).

Modes: eager; graph = tf.function of the whole step; compiled = tf.function(jit_compile=True).
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from harness.backends import Unavailable
from harness.spec import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Shape, Workload


def info() -> dict[str, Any]:
    build = tf.sysconfig.get_build_info()
    return {
        "framework_version": tf.__version__,
        "keras_version": keras.__version__,
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPUs)"),
        "model_api": "keras.Sequential (Keras 3) + tf.GradientTape",
    }


def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
    """Thread pools, TF32 and the Keras dtype policy, read back. Must run before TF starts."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16"
                                            else "float32")
    if device == "cuda":
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)  # no grab-everything
    return {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "matmul_tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
            "keras_dtype_policy": keras.mixed_precision.global_policy().name}


def _device(device: str) -> str:
    if device == "cuda":
        if not tf.config.list_physical_devices("GPU"):
            raise Unavailable("TensorFlow sees no GPU (tensorflow-cpu, or no CUDA device)")
        return "/GPU:0"
    return "/CPU:0"


def _translate(workload: Workload, input_shape: Shape) -> keras.Sequential:
    layers: list[Any] = [keras.Input(shape=input_shape)]
    for layer in workload.layers:
        if isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.units))
        elif isinstance(layer, Conv2D):
            layers.append(keras.layers.Conv2D(layer.filters, layer.kernel, padding="same"))
        elif isinstance(layer, MaxPool2D):
            layers.append(keras.layers.MaxPooling2D(layer.size))
        elif isinstance(layer, ReLU):
            layers.append(keras.layers.ReLU())
        elif isinstance(layer, Flatten):
            layers.append(keras.layers.Flatten())
        else:
            raise TypeError(f"tensorflow backend cannot translate {layer!r}")
    return keras.Sequential(layers)


class TensorFlowTrainer:
    def __init__(self, workload: Workload, weights: list[np.ndarray], mode: str, device: str,
                 input_shape: Shape, precision: str) -> None:
        self.device = _device(device)
        with tf.device(self.device):
            self.model = _translate(workload, input_shape)
            self.model.set_weights(weights)  # Keras layouts are the canonical ones
            self.params = [v.value for v in self.model.trainable_variables]
            self.m = [tf.Variable(tf.zeros_like(p)) for p in self.params]
            self.v = [tf.Variable(tf.zeros_like(p)) for p in self.params]
            self.t = tf.Variable(0.0, dtype=tf.float32)
        self.opt = workload.optimizer
        self._last_loss: tf.Tensor | None = None
        if mode == "eager":
            self._step = self._eager_step
        else:
            self._step = tf.function(self._eager_step, jit_compile=(mode == "compiled"))

    def _eager_step(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(x, training=True), tf.float32)  # float32 loss always
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, self.params)
        o = self.opt
        self.t.assign_add(1.0)
        bc1 = 1.0 - tf.pow(o.beta1, self.t)
        bc2 = 1.0 - tf.pow(o.beta2, self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.assign(o.beta1 * m + (1.0 - o.beta1) * g)
            v.assign(o.beta2 * v + (1.0 - o.beta2) * tf.square(g))
            p.assign_sub(o.lr * (m / bc1) / (tf.sqrt(v / bc2) + o.eps))
        return loss

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        with tf.device(self.device):
            xt = tf.identity(tf.convert_to_tensor(x))
            if y is None:
                return xt
            return xt, tf.identity(tf.convert_to_tensor(y))

    def step(self, batch: Any) -> tf.Tensor:
        with tf.device(self.device):
            self._last_loss = self._step(*batch)
        return self._last_loss

    def predict(self, x: Any) -> tf.Tensor:
        with tf.device(self.device):
            return self.model(x, training=False)

    def sync(self) -> None:
        # Reading the last loss to the host waits for the step that made it (the update ops run
        # before a tf.function returns); on GPU, also drain every queued kernel.
        if self._last_loss is not None:
            self._last_loss.numpy()
        if self.device != "/CPU:0":
            tf.test.experimental.sync_devices()

    def numpy(self, value: Any) -> np.ndarray:
        return value.numpy()

    def reset_device_peak(self) -> None:
        if self.device != "/CPU:0":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def device_peak_bytes(self) -> int | None:
        if self.device == "/CPU:0":
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def weights(self) -> list[np.ndarray]:
        return [p.numpy() for p in self.params]


def build(workload: Workload, weights: list[np.ndarray], mode: str, device: str,
          input_shape: Shape, precision: str = "fp32") -> TensorFlowTrainer:
    return TensorFlowTrainer(workload, weights, mode, device, input_shape, precision)
