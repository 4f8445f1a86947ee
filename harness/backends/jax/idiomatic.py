"""The idiomatic tier: JAX as its users write it, Flax NNX in the shape of Flax's own tutorials
(the MNIST tutorial): nnx.Module classes of Flax's layers, nnx.Optimizer over optax, an
nnx.jit train step with nnx.value_and_grad, model.train() and model.eval().

The model is built from the framework-neutral tree (harness.model.graph) with Flax's standard
layers and loaded with the canonical initial weights, so it follows the identical tier's
trajectory; weights() and state() read them back in the canonical layout. Where a Flax layer
keeps a canonical array in other pieces (nnx.MultiHeadAttention's per-head query, key, value
and output kernels), loading splits and reshapes it and reading back joins it: Adam and weight
decay are element-wise, so the update is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.backends import Spec
from harness.backends.jax.identical import OnDevice, device_of, learning_rate
from harness.model import graph
from harness.model import layers as L
from harness.model.layers import Shape

Vars = tuple[nnx.Variable, ...]  # the Flax variables holding one canonical array, in its order
NO_DECAY = ("bias", "scale")      # Flax parameter names: biases, norms' scales and offsets

IMPLEMENTATION = {
    L.LSTM: "nnx.RNN over nnx.OptimizedLSTMCell (with an input bias): nnx.scan over time",
    L.CausalSelfAttention: "nnx.MultiHeadAttention(is_causal=True): "
                           "jax.nn.dot_product_attention",
}


class Residual(nnx.Module):
    def __init__(self, body: nnx.Module, shortcut: nnx.Module | None) -> None:
        self.body = body
        self.shortcut = shortcut

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class Positions(nnx.Module):
    """Learned absolute position embeddings added to the token embeddings."""

    def __init__(self, context: int, dim: int, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(context, dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.embed(jnp.arange(x.shape[1]))


class CausalSelfAttention(nnx.Module):
    """nnx.MultiHeadAttention with the causal mask: the canonical tree's q|k|v projection,
    attention core and output projection as one Flax layer."""

    def __init__(self, dim: int, heads: int, qkv: int, out: int, use_bias: bool, *,
                 dtype: Any, rngs: nnx.Rngs) -> None:
        self.attention = nnx.MultiHeadAttention(heads, dim, qkv, out, use_bias=use_bias,
                                                decode=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.attention(x, is_causal=True)


class TiedOutput(nnx.Module):
    """The output projection tied to the token embedding: a shared reference to the nnx.Embed
    (NNX keeps one parameter and sums the gradients of both uses)."""

    def __init__(self, embed: nnx.Embed) -> None:
        self.embed = embed

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.embed.attend(x)


class LSTMCell(nnx.OptimizedLSTMCell):
    """Flax's fused-gate LSTM cell (gates i, f, g, o: the canonical order) with a bias on the
    input projection as well as the recurrent one: torch and cuDNN keep two biases, and so do
    the canonical weights (one summed bias would take half the Adam step)."""

    def __init__(self, in_features: int, hidden: int, *, dtype: Any, rngs: nnx.Rngs) -> None:
        super().__init__(in_features, hidden, dtype=dtype, rngs=rngs)
        self.dense_i = nnx.Linear(in_features, 4 * hidden, dtype=dtype, rngs=rngs)


def flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)  # NHWC: already the canonical H, W, C order


Leaf = Callable[[Any, Shape, dict[str, Any]], tuple[Any, dict[str, Any]]]

# Layer type -> (Flax layer or function, {canonical array name: Flax variable}); kw holds the
# compute dtype and the Rngs every Flax layer takes (built under nnx.eval_shape: nothing drawn).
LAYERS: dict[type, Leaf] = {
    L.Dense: lambda layer, s, kw: _arrays(
        nnx.Linear(s[-1], layer.units, use_bias=layer.bias, **kw), kernel="kernel",
        bias="bias"),
    L.Conv2D: lambda layer, s, kw: _arrays(
        nnx.Conv(s[-1], layer.filters, (layer.kernel, layer.kernel), strides=layer.stride,
                 padding=[(layer.padding, layer.padding)] * 2, use_bias=layer.bias, **kw),
        kernel="kernel", bias="bias"),
    L.MaxPool2D: lambda layer, s, kw: (
        partial(nnx.max_pool, window_shape=(layer.size,) * 2, strides=(layer.size,) * 2), {}),
    L.GlobalAvgPool: lambda layer, s, kw: (partial(jnp.mean, axis=(1, 2)), {}),
    L.ReLU: lambda layer, s, kw: (nnx.relu, {}),
    L.GELU: lambda layer, s, kw: (partial(nnx.gelu, approximate=False), {}),
    L.Flatten: lambda layer, s, kw: (flatten, {}),
    # torch's momentum 0.1 (the weight of the batch) is Flax's 0.9 (the weight of the past)
    L.BatchNorm: lambda layer, s, kw: _arrays(
        nnx.BatchNorm(s[-1], momentum=1 - layer.momentum, epsilon=layer.eps, **kw),
        scale="scale", offset="bias", mean="mean", var="var"),
    L.LayerNorm: lambda layer, s, kw: _arrays(
        nnx.LayerNorm(s[-1], epsilon=layer.eps, **kw), scale="scale", offset="bias"),
    L.Embedding: lambda layer, s, kw: _arrays(
        nnx.Embed(layer.vocab, layer.dim, **kw), table="embedding"),
    L.AddPositions: lambda layer, s, kw: _arrays(
        Positions(layer.context, s[-1], **kw), table=("embed", "embedding")),
    L.LSTM: lambda layer, s, kw: _arrays(
        nnx.RNN(LSTMCell(s[-1], layer.hidden, **kw)), kernel=("cell", "dense_i", "kernel"),
        bias=("cell", "dense_i", "bias"), recurrent=("cell", "dense_h", "kernel"),
        recurrent_bias=("cell", "dense_h", "bias")),
}


def _arrays(module: nnx.Module, **where: str | tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """The module and its variable for each canonical array name, found by attribute path."""
    out = {}
    for name, path in where.items():
        node = module
        for attr in (path,) if isinstance(path, str) else path:
            node = getattr(node, attr)
        out[name] = node
    return module, out


class Builder:
    """The tree as Flax layers, and which Flax variables hold each canonical array."""

    def __init__(self, dtype: Any, rngs: nnx.Rngs) -> None:
        self.kw = {"dtype": dtype, "rngs": rngs}
        self.params: dict[str, Vars] = {}
        self.state: dict[str, Vars] = {}
        self.embeddings: dict[str, nnx.Embed] = {}  # by path: what a tied layer refers to

    def build(self, model: Any, shape: Shape, path: str = "") -> Any:
        if isinstance(model, graph.Sequential):
            return self._sequential(model.layers, shape, path)
        if isinstance(model, graph.Residual):
            body = self.build(model.body, shape, _join(path, "body"))
            shortcut = (None if model.shortcut is None
                        else self.build(model.shortcut, shape, _join(path, "shortcut")))
            return Residual(body, shortcut)
        if isinstance(model, L.TiedDense):
            return TiedOutput(self.embeddings[model.source.rpartition(".")[0]])
        if type(model) not in LAYERS:
            raise NotImplementedError(f"no Flax layer for {type(model).__name__} at {path!r}")
        module, arrays = LAYERS[type(model)](model, shape, self.kw)
        self._bind(path, model.params(shape), model.state(shape), arrays)
        if isinstance(model, L.Embedding):
            self.embeddings[path] = module
        return module

    def _sequential(self, children: tuple[Any, ...], shape: Shape, path: str) -> nnx.Sequential:
        layers, i = [], 0
        while i < len(children):
            if _attention_at(children, i):  # Dense(3D), CausalSelfAttention, Dense: one layer
                layers.append(self._attention(children[i : i + 3], shape, path, i))
                taken = 3
            else:
                layers.append(self.build(children[i], shape, _join(path, str(i))))
                taken = 1
            for child in children[i : i + taken]:
                shape = graph.output_shape(child, shape)
            i += taken
        return nnx.Sequential(*layers)

    def _attention(self, triple: tuple[Any, ...], shape: Shape, path: str,
                   i: int) -> CausalSelfAttention:
        qkv, core, out = triple
        if qkv.bias != out.bias:
            raise NotImplementedError("nnx.MultiHeadAttention has one use_bias for both "
                                      "projections")
        module = CausalSelfAttention(shape[-1], core.heads, qkv.units // 3, out.units,
                                     qkv.bias, **self.kw)
        a = module.attention
        # The canonical (D, 3D) kernel's columns are [q | k | v], each split into heads
        # contiguous slices: exactly Flax's (D, heads, D / heads) query, key and value kernels.
        arrays = {"kernel": (a.query.kernel, a.key.kernel, a.value.kernel),
                  "bias": (a.query.bias, a.key.bias, a.value.bias)}
        self._bind(_join(path, str(i)), qkv.params(shape), {}, arrays)
        out_shape = graph.output_shape(core, graph.output_shape(qkv, shape))
        self._bind(_join(path, str(i + 2)), out.params(out_shape), {},
                   {"kernel": a.out.kernel, "bias": a.out.bias})
        return module

    def _bind(self, path: str, params: dict[str, Shape], state: dict[str, Shape],
              arrays: dict[str, Any]) -> None:
        for names, into in ((params, self.params), (state, self.state)):
            for name in names:
                found = arrays[name]
                into[f"{path}.{name}"] = found if isinstance(found, tuple) else (found,)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _attention_at(children: tuple[Any, ...], i: int) -> bool:
    kinds = tuple(type(c) for c in children[i : i + 3])
    return kinds == (L.Dense, L.CausalSelfAttention, L.Dense)


def load(variables: dict[str, Vars], arrays: dict[str, np.ndarray]) -> None:
    """Set each canonical array into its Flax variables (split along the last axis when there
    are several, each reshaped to its variable)."""
    for key, held in variables.items():
        parts = np.split(np.asarray(arrays[key], np.float32), len(held), axis=-1)
        for v, part in zip(held, parts):
            v.set_value(jnp.asarray(part.reshape(v.shape)))


def read(variables: dict[str, Vars], like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The canonical arrays back, in the order and shapes of ``like``."""
    out = {}
    for key, a in like.items():
        pieces = [np.asarray(v[...]).reshape(*a.shape[:-1], -1) for v in variables[key]]
        out[key] = np.concatenate(pieces, axis=-1)
    return out


def decay_mask(model: nnx.Module) -> Any:
    """Weight decay on kernels and embeddings, not on biases or norms: by parameter name."""
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key not in NO_DECAY,
                                            params)


def tx(spec: Spec, model: nnx.Module) -> optax.GradientTransformation:
    o = spec.optimizer
    if not o.weight_decay:
        return optax.adam(learning_rate(spec), b1=o.beta1, b2=o.beta2, eps=o.eps)
    return optax.adamw(learning_rate(spec), b1=o.beta1, b2=o.beta2, eps=o.eps,
                       weight_decay=o.weight_decay, mask=decay_mask(model))


def loss_fn(model: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = model(x).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array,
               y: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


def eval_step(model: nnx.Module, x: jax.Array) -> jax.Array:
    return model(x).astype(jnp.float32)


class NnxTrainer(OnDevice):
    """A Flax NNX model and nnx.Optimizer, updated in place by an nnx.jit train step."""

    def __init__(self, spec: Spec, device: str, precision: str) -> None:
        self.spec = spec
        self.device = device_of(device)
        dtype = jnp.bfloat16 if precision == "bf16" else None

        def abstract() -> tuple[nnx.Module, dict[str, Vars], dict[str, Vars]]:
            builder = Builder(dtype, nnx.Rngs(0))
            return builder.build(spec.model, spec.input_shape), builder.params, builder.state

        # Built abstract (Flax's initial values are neither drawn nor compiled, one XLA
        # compilation per shape), then the canonical arrays loaded, as restoring a checkpoint
        self.model, self.params, self.buffers = nnx.eval_shape(abstract)
        load(self.params, spec.params)
        load(self.buffers, spec.state)
        nnx.reseed(self.model, carry=0)  # nnx.RNN's stream for its (zero) initial carry
        self.optimizer = nnx.Optimizer(self.model, tx(spec, self.model), wrt=nnx.Param)
        # Everything committed to the device, as the placed batches are: otherwise the first
        # step's outputs (committed) differ in placement from its inputs and it compiles twice.
        both = (self.model, self.optimizer)
        nnx.update(both, jax.device_put(nnx.state(both), self.device))
        self.model.train()
        # nnx.jit per trainer (not a decorator) so that compile_stats counts this model's
        # compilations only
        self._train_step = nnx.jit(train_step)
        self._eval_step = nnx.jit(eval_step)
        kinds = {type(n.layer) for n in graph.nodes(spec.model, spec.input_shape)}
        self.implementation = {t.__name__: IMPLEMENTATION[t] for t in kinds
                               if t in IMPLEMENTATION}
        self.manifest: dict[str, Any] = {
            "tier": "idiomatic", "mode": "compiled", "variant": "",
            "api": "flax.nnx: " + ", ".join(sorted(_flax_layers(self.model))) + "; "
                   "nnx.value_and_grad, nnx.Optimizer(model, tx, wrt=nnx.Param)",
            "optimizer": ("optax.adamw, decay mask by parameter name (not biases, norms)"
                          if spec.optimizer.weight_decay else "optax.adam")
                         + (", warm-up cosine schedule" if spec.schedule else ""),
            "compile": {"transform": "nnx.jit", "donate_argnums": []},
            "flags": {},
            "differences": _differences(kinds),
        }

    def step(self, batch: Any) -> jax.Array:
        return self._train_step(self.model, self.optimizer, *batch)

    def predict(self, x: Any) -> jax.Array:
        self.model.eval()
        logits = self._eval_step(self.model, x)
        self.model.train()
        return logits

    def sync(self) -> None:
        jax.block_until_ready(nnx.state((self.model, self.optimizer)))

    def compile_stats(self) -> dict[str, int]:
        return {"compiles": self._train_step.jitted_fn._cache_size()}

    def weights(self) -> dict[str, np.ndarray]:
        return read(self.params, self.spec.params)

    def state(self) -> dict[str, np.ndarray]:
        return read(self.buffers, self.spec.state)


def _flax_layers(model: nnx.Module) -> set[str]:
    return {f"nnx.{type(m).__name__}" for _, m in nnx.iter_modules(model)
            if type(m).__module__.startswith("flax.") and not isinstance(m, nnx.List)}


def _differences(kinds: set[type]) -> list[str]:
    out = []
    if L.BatchNorm in kinds:
        out.append("nnx.BatchNorm updates the running variance with the biased batch variance "
                   "(torch, and the identical tier, use the unbiased one): the running "
                   "statistics, and so evaluation, differ slightly; training does not")
    if kinds & {L.BatchNorm, L.LayerNorm}:
        out.append("Flax's norms compute the variance as E[x^2] - E[x]^2 (use_fast_variance, "
                   "the default): rounding-level differences")
    return out
