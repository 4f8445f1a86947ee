"""The idiomatic tier: Keras 3 as its users write it. The model tree becomes a functional
keras.Model of standard layers, compiled with Keras's own Adam or AdamW, a LearningRateSchedule
and SparseCategoricalCrossentropy(from_logits=True), and trained with train_on_batch, fit and
predict_on_batch. Modes: graph (jit_compile=False, what jit_compile="auto" picks on a CPU) and
compiled (jit_compile=True, XLA).

The canonical initial arrays are loaded into the Keras variables, so training starts where the
identical tier starts; where Keras's algorithm differs from the identical tier's, the difference
is kept (it is the idiom) and stated in ``manifest["differences"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from harness.backends import Spec
from harness.backends.tensorflow.identical import DevicePeak, device_name
from harness.model import graph
from harness.model import layers as L

Array = np.ndarray

DIFFERENCES = [
    "Adam: Keras adds epsilon to the uncorrected sqrt(v), lr * sqrt(1 - beta2^t) / "
    "(1 - beta1^t) * m / (sqrt(v) + eps), so the effective epsilon is eps / sqrt(1 - "
    "beta2^t) (torch and optax: m_hat / (sqrt(v_hat) + eps))",
]
BATCH_NORM = ("BatchNormalization's running variance is updated with the biased batch "
              "variance (the identical tier: unbiased, as torch); training steps are unaffected, "
              "evaluation uses slightly different statistics")
ATTENTION = ("attention: MultiHeadAttention's separate query, key and value projections "
             "(EinsumDense) hold the fused Dense(3D) projection's slices: the same arithmetic, "
             "other rounding")
LSTM_BIAS = ("LSTM: keras.layers.LSTM has one bias, loaded as bias + recurrent_bias; Adam moves "
             "the sum once per step where the identical tier moves each of the two biases, and "
             "the trained bias reads back as 'bias' with a zero 'recurrent_bias'")


class ReversibleEmbedding(keras.layers.Embedding):
    """An Embedding that also maps features back onto the vocabulary through its transposed
    table, ``layer(x, reverse=True)``: the tied output head (as keras_hub's
    ReversibleEmbedding)."""

    def call(self, inputs: Any, reverse: bool = False) -> Any:
        if reverse:
            return ops.matmul(inputs, ops.transpose(self.embeddings))
        return super().call(inputs)

    def compute_output_spec(self, inputs: Any, reverse: bool = False) -> Any:
        if reverse:
            return keras.KerasTensor((*inputs.shape[:-1], self.input_dim),
                                     dtype=self.compute_dtype)
        return super().compute_output_spec(inputs)


class PositionEmbedding(keras.layers.Layer):
    """Learned absolute positions added to a (T, D) sequence: x + table[:T] (keras_hub's
    PositionEmbedding returns the table; this adds it)."""

    def __init__(self, context: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.embeddings = self.add_weight(shape=(self.context, input_shape[-1]),
                                          initializer="zeros", name="embeddings")

    def call(self, x: Any) -> Any:
        return x + self.embeddings[: x.shape[1]]


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """The workload's WarmupCosine schedule of the peak rate. Keras evaluates it at the
    optimizer's iteration count, 0 at the first step; the schedule counts steps from 1."""

    def __init__(self, spec: Spec) -> None:
        self.lr, self.schedule, self.total = spec.optimizer.lr, spec.schedule, spec.total_steps

    def __call__(self, iteration: Any) -> Any:
        step = ops.cast(iteration, "float64") + 1.0
        return ops.cast(self.lr * self.schedule.factor(step, self.total, ops), "float32")

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "warmup": self.schedule.warmup,
                "end_factor": self.schedule.end_factor, "total": self.total}


class CountingModel(keras.Model):
    """A functional keras.Model that counts the traces of its train step (its Python body runs
    once per trace of Keras's train function)."""

    traces = 0

    def train_step(self, data: Any) -> Any:
        self.traces += 1
        return super().train_step(data)


@dataclass
class Binding:
    """Canonical arrays (by key, in canonical order) <-> one Keras layer's variables.
    ``sources`` names, per variable, the canonical array whose weight-decay rule it takes."""

    keys: list[str]
    variables: list[Any]
    sources: list[str]
    to_keras: Callable[[list[Array]], list[Array]] = list
    from_keras: Callable[[list[Array]], list[Array]] = list


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class ModelBuilder:
    """The model tree as Keras functional-API calls; records each layer's Binding."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype  # a Keras dtype policy name: "float32" or "mixed_bfloat16"
        self.bindings: list[Binding] = []
        self.layers: dict[str, keras.layers.Layer] = {}
        self.differences: list[str] = []

    def __call__(self, model: Any, x: Any, prefix: str = "") -> Any:
        if isinstance(model, graph.Sequential):
            children = [(_join(prefix, str(i)), c) for i, c in enumerate(model.layers)]
            while children:
                x, children = self._attention(children, x) or (
                    self(children[0][1], x, children[0][0]), children[1:])
            return x
        if isinstance(model, graph.Residual):
            y = self(model.body, x, _join(prefix, "body"))
            if model.shortcut is not None:
                x = self(model.shortcut, x, _join(prefix, "shortcut"))
            return keras.layers.Add(dtype=self.dtype)([y, x])
        return self._leaf(model, prefix, x)

    def _differ(self, text: str) -> None:
        if text not in self.differences:
            self.differences.append(text)

    def _bind(self, path: str, names: list[str], variables: list[Any]) -> None:
        keys = [f"{path}.{n}" for n in names]
        self.bindings.append(Binding(keys, variables, keys))

    def _leaf(self, layer: Any, path: str, x: Any) -> Any:
        d = self.dtype
        if isinstance(layer, L.Dense):
            k = keras.layers.Dense(layer.units, use_bias=layer.bias, dtype=d)
            y = k(x)
            self._bind(path, ["kernel", "bias"][: 1 + layer.bias],
                       [k.kernel, k.bias][: 1 + layer.bias])
            return y
        if isinstance(layer, L.Conv2D):
            if layer.stride == 1:  # 'same' pads k // 2 on each side
                k = keras.layers.Conv2D(layer.filters, layer.kernel, padding="same",
                                        use_bias=layer.bias, dtype=d)
            else:  # 'same' would pad an even input on one side only: pad as torch does
                if layer.padding:
                    x = keras.layers.ZeroPadding2D(layer.padding, dtype=d)(x)
                k = keras.layers.Conv2D(layer.filters, layer.kernel, layer.stride,
                                        padding="valid", use_bias=layer.bias, dtype=d)
            y = k(x)
            self._bind(path, ["kernel", "bias"][: 1 + layer.bias],
                       [k.kernel, k.bias][: 1 + layer.bias])
            return y
        if isinstance(layer, L.BatchNorm):
            k = keras.layers.BatchNormalization(momentum=1 - layer.momentum,
                                                epsilon=layer.eps, dtype=d)
            y = k(x)
            self._bind(path, ["scale", "offset", "mean", "var"],
                       [k.gamma, k.beta, k.moving_mean, k.moving_variance])
            self._differ(BATCH_NORM)
            return y
        if isinstance(layer, L.LayerNorm):
            k = keras.layers.LayerNormalization(epsilon=layer.eps, dtype=d)
            y = k(x)
            self._bind(path, ["scale", "offset"], [k.gamma, k.beta])
            return y
        if isinstance(layer, L.Embedding):
            k = self.layers[path] = ReversibleEmbedding(layer.vocab, layer.dim, dtype=d)
            y = k(x)
            self._bind(path, ["table"], [k.embeddings])
            return y
        if isinstance(layer, L.TiedDense):
            return self.layers[layer.source.rpartition(".")[0]](x, reverse=True)
        if isinstance(layer, L.AddPositions):
            k = PositionEmbedding(layer.context, dtype=d)
            y = k(x)
            self._bind(path, ["table"], [k.embeddings])
            return y
        if isinstance(layer, L.LSTM):
            return self._lstm(layer, path, x)
        if isinstance(layer, L.CausalSelfAttention):
            raise ValueError("the Keras model needs attention between its Dense projections "
                             "(Dense(3D), CausalSelfAttention, Dense(D)), as the transformer "
                             "workload builds it")
        simple = {L.ReLU: keras.layers.ReLU, L.Flatten: keras.layers.Flatten,
                  L.GlobalAvgPool: keras.layers.GlobalAveragePooling2D,
                  L.GELU: lambda dtype: keras.layers.Activation("gelu", dtype=dtype),  # exact
                  L.MaxPool2D: lambda dtype: keras.layers.MaxPooling2D(layer.size, dtype=dtype)}
        return simple[type(layer)](dtype=d)(x)

    def _lstm(self, layer: L.LSTM, path: str, x: Any) -> Any:
        k = keras.layers.LSTM(layer.hidden, return_sequences=True, dtype=self.dtype)
        y = k(x)
        keys = [f"{path}.{n}" for n in ("kernel", "recurrent", "bias", "recurrent_bias")]
        self.bindings.append(Binding(
            keys, [k.cell.kernel, k.cell.recurrent_kernel, k.cell.bias], keys[:3],
            to_keras=lambda a: [a[0], a[1], a[2] + a[3]],  # gate order i, f, g(c), o as Keras
            from_keras=lambda a: [a[0], a[1], a[2], np.zeros_like(a[2])]))
        self._differ(LSTM_BIAS)
        return y

    def _attention(self, children: list[tuple[str, Any]], x: Any) -> tuple[Any, list] | None:
        """Dense(3D), CausalSelfAttention, Dense(D) -> MultiHeadAttention(use_causal_mask):
        its query/key/value kernels (D, heads, D/heads) are the slices of the fused projection
        (q | k | v, each heads contiguous slices), its output kernel (heads, D/heads, D) the
        last Dense's kernel."""
        if len(children) < 3 or not isinstance(children[1][1], L.CausalSelfAttention):
            return None
        (p_in, qkv), (_, attn), (p_out, out) = children[:3]
        if not (isinstance(qkv, L.Dense) and isinstance(out, L.Dense) and qkv.bias
                and out.bias):
            return None
        d, h = out.units, attn.heads
        k = keras.layers.MultiHeadAttention(h, d // h, dtype=self.dtype)
        y = k(x, x, use_causal_mask=True)
        projections = [k.query_dense, k.key_dense, k.value_dense]
        variables = [v for p in projections for v in (p.kernel, p.bias)]
        variables += [k.output_dense.kernel, k.output_dense.bias]
        keys = [f"{p_in}.kernel", f"{p_in}.bias", f"{p_out}.kernel", f"{p_out}.bias"]

        def to_keras(a: list[Array]) -> list[Array]:
            kernels = np.split(a[0], 3, axis=1)
            biases = np.split(a[1], 3)
            split = [[kk.reshape(d, h, d // h), b.reshape(h, d // h)]
                     for kk, b in zip(kernels, biases)]
            return [*sum(split, []), a[2].reshape(h, d // h, d), a[3]]

        def from_keras(a: list[Array]) -> list[Array]:
            kernel = np.concatenate([kk.reshape(d, d) for kk in a[0:6:2]], axis=1)
            bias = np.concatenate([b.reshape(d) for b in a[1:6:2]])
            return [kernel, bias, a[6].reshape(d, d), a[7]]

        self.bindings.append(Binding(keys, variables, keys[:2] * 3 + keys[2:], to_keras,
                                     from_keras))
        self._differ(ATTENTION)
        return y, children[3:]


class KerasTrainer(DevicePeak):
    min_sample_s = 0.1  # one fit call has a fixed setup of a few ms

    def __init__(self, spec: Spec, mode: str, device: str, precision: str) -> None:
        self.spec = spec
        self.device = device_name(device)
        policy = "mixed_bfloat16" if precision == "bf16" else "float32"
        o = spec.optimizer
        with tf.device(self.device):
            inputs = keras.Input(spec.input_shape, dtype="int32" if spec.tokens else "float32")
            builder = ModelBuilder(policy)
            self.model = CountingModel(inputs, builder(spec.model, inputs))
            self.bindings = builder.bindings
            self._load({**spec.params, **spec.state})
            lr = o.lr if spec.schedule is None else Schedule(spec)
            if o.weight_decay:
                optimizer = keras.optimizers.AdamW(lr, o.weight_decay, o.beta1, o.beta2, o.eps)
                decay = spec.decay
                optimizer.exclude_from_weight_decay(var_list=[
                    v for b in self.bindings for v, key in zip(b.variables, b.sources)
                    if key in decay and not decay[key]])
            else:
                optimizer = keras.optimizers.Adam(lr, o.beta1, o.beta2, o.eps)
            self.model.compile(optimizer=optimizer,
                               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                               jit_compile=mode == "compiled")
        self.implementation = self._implementation()
        self.manifest: dict[str, Any] = {
            "tier": "idiomatic", "mode": mode, "variant": "",
            "api": f"Keras {keras.__version__} functional keras.Model of keras.layers; "
                   "compile, train_on_batch / fit, predict_on_batch",
            "optimizer": f"keras.optimizers.{type(optimizer).__name__}"
                         + (" (exclude_from_weight_decay: biases, norms)" if o.weight_decay
                            else "")
                         + (", a LearningRateSchedule" if spec.schedule else ""),
            "compile": {"jit_compile": mode == "compiled", "steps_per_execution": 1},
            "flags": {"dtype_policy": policy},
            "differences": DIFFERENCES + builder.differences,
        }
        self._datasets: dict[int, tf.data.Dataset] = {}

    def _implementation(self) -> dict[str, str]:
        kinds = {type(n.layer) for n in graph.nodes(self.spec.model, self.spec.input_shape)}
        out = {}
        if L.LSTM in kinds:
            out["LSTM"] = "keras.layers.LSTM (cuDNN kernel on a GPU, a while_loop otherwise)"
        if L.CausalSelfAttention in kinds:
            out["CausalSelfAttention"] = ("keras.layers.MultiHeadAttention(use_causal_mask=True)"
                                          " -> keras.ops.dot_product_attention")
        return out

    def _load(self, arrays: dict[str, Array]) -> None:
        for b in self.bindings:
            for variable, value in zip(b.variables, b.to_keras([arrays[k] for k in b.keys])):
                variable.assign(value)

    def _read(self, keys: Iterable[str]) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for b in self.bindings:
            out.update(zip(b.keys, b.from_keras([np.asarray(v) for v in b.variables])))
        return {k: out[k] for k in keys}

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        x = x.astype(np.float32 if np.issubdtype(x.dtype, np.floating) else np.int32)
        with tf.device(self.device):
            xt = tf.identity(tf.convert_to_tensor(x))
            if y is None:
                return xt
            return xt, tf.identity(tf.convert_to_tensor(y.astype(np.int32)))

    def step(self, batch: Any) -> float:
        """One step through Keras's own API: that batch's loss."""
        with tf.device(self.device):
            return self.model.train_on_batch(*batch)

    def fit(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        """The host batches in order through one model.fit epoch; every step's loss."""
        xs, ys = zip(*batches)
        losses: list[float] = []
        with tf.device(self.device):
            self.model.fit(np.concatenate(xs), np.concatenate(ys), batch_size=len(xs[0]),
                           epochs=1, shuffle=False, verbose=0, callbacks=[BatchLosses(losses)])
        return losses

    def steps(self, placed: list[Any], k: int) -> None:
        """One timing sample as Keras users pay it: one fit call over k batches (a tf.data
        Dataset cycling through the placed batches, built once per k)."""
        if k not in self._datasets:
            xs, ys = (tf.stack([b[i] for b in placed]) for i in (0, 1))
            self._datasets[k] = (tf.data.Dataset.from_tensor_slices((xs, ys)).repeat().take(k)
                                 .prefetch(tf.data.AUTOTUNE))
        with tf.device(self.device):
            self.model.fit(self._datasets[k], epochs=1, shuffle=False, verbose=0)

    def predict(self, x: Any) -> Array:
        with tf.device(self.device):
            return self.model.predict_on_batch(x)

    def sync(self) -> None:
        # train_on_batch and fit return host values, read after the step's updates; reading
        # the optimizer's step counter also waits for the last update on any device.
        self.model.optimizer.iterations.numpy()
        if self.device != "/CPU:0":
            tf.test.experimental.sync_devices()

    def numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value, np.float32)

    def compile_stats(self) -> dict[str, int]:
        return {"compiles": self.model.traces}

    def weights(self) -> dict[str, Array]:
        return self._read(self.spec.params)

    def state(self) -> dict[str, Array]:
        return self._read(self.spec.state)


class BatchLosses(keras.callbacks.Callback):
    """Each training batch's own loss: Keras's logs carry the running mean over the epoch, so
    the mean is reset before every batch."""

    def __init__(self, out: list[float]) -> None:
        super().__init__()
        self.out = out

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.model.reset_metrics()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.out.append(float(logs["loss"]))
