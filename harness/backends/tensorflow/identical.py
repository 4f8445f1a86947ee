"""The identical tier: the model as tf ops on a dict of tf.Variables (one table in
translate.py), tf.GradientTape, Adam/AdamW written out (torch/optax epsilon form).

Modes: eager; graph = tf.function of the whole step; compiled = tf.function(jit_compile=True).
The learning rate is computed inside the step from its counter, so no mode retraces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from harness.backends import Spec, Unavailable
from harness.backends.tensorflow.translate import IMPLEMENTATION, leaf
from harness.model import graph

Tree = dict[str, dict[str, Any]]


def device_name(device: str) -> str:
    if device == "cuda":
        if not tf.config.list_physical_devices("GPU"):
            raise Unavailable("TensorFlow sees no GPU (tensorflow-cpu, or no CUDA device)")
        return "/GPU:0"
    return "/CPU:0"


def compile_options(mode: str) -> dict[str, Any] | None:
    """How a mode's step is compiled, for the manifest."""
    return None if mode == "eager" else {"tf.function": True, "jit_compile": mode == "compiled"}


def implementation(spec: Spec) -> dict[str, str]:
    kinds = {type(n.layer) for n in graph.nodes(spec.model, spec.input_shape)}
    return {t.__name__: IMPLEMENTATION[t] for t in kinds if t in IMPLEMENTATION}


class DevicePeak:
    """The GPU allocator's peak, shared by every TensorFlow trainer (``self.device``)."""

    device: str

    def reset_device_peak(self) -> None:
        if self.device != "/CPU:0":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def device_peak_bytes(self) -> int | None:
        if self.device == "/CPU:0":
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


class TensorFlowTrainer(DevicePeak):
    def __init__(self, spec: Spec, mode: str, device: str, precision: str,
                 tier: str = "identical", variant: str = "") -> None:
        self.spec = spec
        self.device = device_name(device)
        self.dtype = tf.bfloat16 if precision == "bf16" else tf.float32
        self.implementation = implementation(spec)
        self.manifest: dict[str, Any] = {
            "tier": tier, "mode": mode, "variant": variant,
            "api": "tf ops on tf.Variables (translate.py), tf.GradientTape",
            "optimizer": f"{spec.optimizer.name} written out in tf ops, ~5 ops per parameter "
                         "(epsilon on the bias-corrected sqrt(v), as torch and optax)",
            "compile": compile_options(mode),
            "flags": {},
            "differences": [],
        }
        decay = spec.decay
        with tf.device(self.device):
            self.params = self._load(spec.params, trainable=True)
            self.buffers = self._load(spec.state, trainable=False)
            flat = graph.ungroup(self.params)
            self.flat = list(flat.values())
            self.decay = [decay[k] for k in flat]
            self.m = [tf.Variable(tf.zeros_like(p), trainable=False) for p in self.flat]
            self.v = [tf.Variable(tf.zeros_like(p), trainable=False) for p in self.flat]
            self.t = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self._last_loss: tf.Tensor | None = None
        # Where TensorFlow sees no GPU every op runs on the CPU, and entering the device scope
        # around each step would only cost Python time (10-16 us, a few % of an XLA mlp step).
        self._scoped = bool(tf.config.list_logical_devices("GPU"))
        # Evaluation runs as the step does: eager, or a tf.function (XLA in compiled mode).
        # It is not timed, but eager evaluation cost the language models about 1.5 s each.
        if mode == "eager":
            self._step, self._predict = self._eager_step, self._logits
        else:
            self._step = tf.function(self._eager_step, jit_compile=(mode == "compiled"))
            self._predict = tf.function(self._logits, jit_compile=(mode == "compiled"))

    @staticmethod
    def _load(flat: dict[str, np.ndarray], trainable: bool) -> Tree:
        return {path: {k: tf.Variable(np.asarray(v, np.float32), trainable=trainable)
                       for k, v in arrays.items()}
                for path, arrays in graph.group(flat).items()}

    def _forward(self, x: tf.Tensor, train: bool) -> tuple[tf.Tensor, Tree]:
        """Float32 logits and the new state; computed in self.dtype (bf16: params and float
        inputs cast, token ids kept integer, weights and state float32)."""
        params: Tree = self.params
        if self.dtype != tf.float32:
            params = {path: {k: tf.cast(v, self.dtype) for k, v in arrays.items()}
                      for path, arrays in params.items()}
            if x.dtype.is_floating:
                x = tf.cast(x, self.dtype)
        logits, state = graph.apply(self.spec.model, params, self.buffers, x, train, leaf)
        return tf.cast(logits, tf.float32), state

    def _lr(self) -> Any:
        """The step's learning rate from the counter t (already incremented): the
        WarmupCosine formula in tf ops (float64, as the host computes it), or the constant."""
        o, schedule, total = self.spec.optimizer, self.spec.schedule, self.spec.total_steps
        if schedule is None:
            return o.lr
        factor = schedule.factor(tf.cast(self.t, tf.float64), total, tf.experimental.numpy)
        return tf.cast(o.lr * factor, tf.float32)

    def _eager_step(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits, state = self._forward(x, True)  # float32 loss in every precision
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.reshape(y, [-1]), logits=tf.reshape(logits, [-1, logits.shape[-1]])))
        grads = tape.gradient(loss, self.flat)
        for path, arrays in state.items():
            for k, value in arrays.items():
                self.buffers[path][k].assign(value)
        self.t.assign_add(1.0)
        self._update(grads, self._lr())
        return loss

    def _update(self, grads: list[Any], lr: Any) -> None:
        """Adam, or AdamW's decoupled decay then Adam, on every parameter (t incremented)."""
        o = self.spec.optimizer
        bc1 = 1.0 - tf.pow(o.beta1, self.t)
        bc2 = 1.0 - tf.pow(o.beta2, self.t)
        for p, g, m, v, decay in zip(self.flat, grads, self.m, self.v, self.decay):
            g = tf.convert_to_tensor(g)  # the embedding's gradient may be IndexedSlices
            m.assign(o.beta1 * m + (1.0 - o.beta1) * g)
            v.assign(o.beta2 * v + (1.0 - o.beta2) * tf.square(g))
            if decay:  # AdamW: decoupled, on the pre-update weights, as torch applies it
                p.assign_sub(lr * o.weight_decay * p)
            p.assign_sub(lr * (m / bc1) / (tf.sqrt(v / bc2) + o.eps))

    def compile_stats(self) -> dict[str, int]:
        """Traces of the step's tf.function so far (1 unless it retraced; 0 in eager)."""
        if isinstance(self._step, tf.types.experimental.PolymorphicFunction):
            return {"compiles": int(self._step.experimental_get_tracing_count())}
        return {"compiles": 0}

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        x = x.astype(np.float32 if np.issubdtype(x.dtype, np.floating) else np.int32)
        with tf.device(self.device):
            xt = tf.identity(tf.convert_to_tensor(x))
            if y is None:
                return xt
            return xt, tf.identity(tf.convert_to_tensor(y.astype(np.int32)))

    def step(self, batch: Any) -> tf.Tensor:
        if self._scoped:
            with tf.device(self.device):
                self._last_loss = self._step(*batch)
        else:
            self._last_loss = self._step(*batch)
        return self._last_loss

    def _logits(self, x: tf.Tensor) -> tf.Tensor:
        return self._forward(x, False)[0]

    def predict(self, x: Any) -> tf.Tensor:
        with tf.device(self.device):
            return self._predict(x)

    def sync(self) -> None:
        # Reading the last loss to the host waits for the step that made it (the update ops run
        # before a tf.function returns); on GPU, also drain every queued kernel.
        if self._last_loss is not None:
            self._last_loss.numpy()
        if self.device != "/CPU:0":
            tf.test.experimental.sync_devices()

    def numpy(self, value: Any) -> np.ndarray:
        return value.numpy()

    def weights(self) -> dict[str, np.ndarray]:
        return graph.ungroup({path: {k: v.numpy() for k, v in arrays.items()}
                              for path, arrays in self.params.items()})

    def state(self) -> dict[str, np.ndarray]:
        return graph.ungroup({path: {k: v.numpy() for k, v in arrays.items()}
                              for path, arrays in self.buffers.items()})
