"""The identical tier: the model as pure jax.numpy functions on grouped pytrees (one table in
translate.py), optax.adam / optax.adamw, op-by-op eager or jax.jit of the whole step."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from harness.backends import Spec, Unavailable
from harness.backends.jax.translate import IMPLEMENTATION, leaf
from harness.model import graph

Tree = dict[str, dict[str, Any]]


def device_of(device: str) -> Any:
    if device == "cuda":
        try:
            return jax.devices("gpu")[0]
        except RuntimeError as exc:
            raise Unavailable(f"JAX sees no GPU ({exc})") from exc
    return jax.devices("cpu")[0]


def learning_rate(spec: Spec) -> float | optax.Schedule:
    """The peak rate, or an optax schedule: optax's count (0-based) -> peak *
    WarmupCosine.factor(count + 1, total), in jnp."""
    peak, schedule = spec.optimizer.lr, spec.schedule
    if schedule is None:
        return peak

    def rate(count: jax.Array) -> jax.Array:
        return peak * schedule.factor((count + 1).astype(jnp.float32), spec.total_steps, jnp)

    return rate


def optimizer(spec: Spec) -> optax.GradientTransformation:
    o = spec.optimizer
    if not o.weight_decay:
        return optax.adam(learning_rate(spec), b1=o.beta1, b2=o.beta2, eps=o.eps, eps_root=0.0)
    return optax.adamw(learning_rate(spec), b1=o.beta1, b2=o.beta2, eps=o.eps, eps_root=0.0,
                       weight_decay=o.weight_decay, mask=graph.group(spec.decay))


def optimizer_name(spec: Spec) -> str:
    o = spec.optimizer
    name = "optax.adamw (decay mask from the model)" if o.weight_decay else "optax.adam"
    return name + (", warm-up cosine schedule" if spec.schedule else "")


def _forward(model: Any, dtype: Any, params: Tree, state: Tree, x: jax.Array,
             train: bool) -> tuple[jax.Array, Tree]:
    """Float32 logits and the new state; computed in `dtype` (bf16: params and float inputs
    cast, token ids kept integer, master weights and state float32)."""
    if dtype != jnp.float32:
        params = jax.tree.map(lambda a: a.astype(dtype), params)
        if jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(dtype)
    logits, state = graph.apply(model, params, state, x, train, leaf)
    return logits.astype(jnp.float32), state


def _loss(forward: Any, params: Tree, state: Tree, x: jax.Array,
          y: jax.Array) -> tuple[jax.Array, Tree]:
    """Mean softmax cross-entropy over every leading position (examples or tokens)."""
    logits, state = forward(params, state, x, True)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).mean()
    return loss, state


def _step(forward: Any, optimizer: optax.GradientTransformation, params: Tree, opt_state: Any,
          state: Tree, x: jax.Array, y: jax.Array) -> tuple[Tree, Any, Tree, jax.Array]:
    (loss, state), grads = jax.value_and_grad(partial(_loss, forward), has_aux=True)(
        params, state, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, state, loss


def phase_peak(at_start: int | None, at_end: int | None) -> int | None:
    """A phase's peak from a lifetime peak counter read at its start and end: the end's
    reading if the phase raised it (or nothing was read before), else None (unknown: no more
    than the earlier peak)."""
    if at_end is None or (at_start is not None and at_end <= at_start):
        return None
    return at_end


class OnDevice:
    """What every JAX trainer shares: batches placed on its device, host copies, the
    allocator's peak."""

    device: Any

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.int32)
        if y is None:
            return jax.device_put(x, self.device)
        return jax.device_put((x, y.astype(np.int32)), self.device)

    def numpy(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    # JAX keeps a process-lifetime peak only: Device.memory_stats()["peak_bytes_in_use"] has no
    # reset (none up to jax 0.10; torch and TF reset theirs per phase). So a phase's peak is
    # reported only where the phase raised the lifetime peak: then the new peak was reached
    # in it. Otherwise the phase stayed at or below an earlier phase's peak and its own is
    # unknown: None (not the earlier phase's figure, which would, e.g., charge the steady
    # state with the evaluation's memory).
    _peak_at_reset: int | None = None

    def _lifetime_peak(self) -> int | None:
        stats = self.device.memory_stats() or {}
        return stats.get("peak_bytes_in_use")

    def reset_device_peak(self) -> None:
        if self.device.platform != "cpu":
            self._peak_at_reset = self._lifetime_peak()

    def device_peak_bytes(self) -> int | None:
        """The phase's allocator peak, where the phase raised the process's peak (see above);
        before any reset, the peak since the process started. None on CPU."""
        if self.device.platform == "cpu":
            return None
        return phase_peak(self._peak_at_reset, self._lifetime_peak())


class JaxTrainer(OnDevice):
    """Params, Adam state and batch-norm state as grouped pytrees, replaced by every step.
    The tuned tier builds it with another optimizer or without donation."""

    def __init__(self, spec: Spec, mode: str, device: str, precision: str, *,
                 tx: optax.GradientTransformation | None = None, donate: bool = True) -> None:
        self.spec = spec
        self.device = device_of(device)
        kinds = dict.fromkeys(type(n.layer) for n in graph.nodes(spec.model, spec.input_shape))
        self.implementation = {t.__name__: IMPLEMENTATION[t] for t in kinds
                               if t in IMPLEMENTATION}
        self.params = self._load(spec.params)
        self.buffers = self._load(spec.state)
        self.optimizer = optimizer(spec) if tx is None else tx
        self.opt_state = jax.device_put(self.optimizer.init(self.params), self.device)
        dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
        self._forward = partial(_forward, spec.model, dtype)
        step = partial(_step, self._forward, self.optimizer)
        self._jitted = mode == "compiled"
        # Donation is the functional counterpart of an in-place update.
        donated = (0, 1, 2) if donate else ()
        self._step = jax.jit(step, donate_argnums=donated) if self._jitted else step
        eager = "op-by-op dispatch, no jit (a debugging mode: nobody trains this way)"
        self.manifest: dict[str, Any] = {
            "tier": "identical", "mode": mode, "variant": "",
            "api": "jax.numpy functions of the model tree (translate.py) on grouped pytrees, "
                   "jax.value_and_grad" + ("" if self._jitted else f"; {eager}"),
            "optimizer": optimizer_name(spec),
            "compile": ({"transform": "jax.jit", "donate_argnums": list(donated)}
                        if self._jitted else None),
            "flags": {},
            "differences": [],
        }

    def _load(self, flat: dict[str, np.ndarray]) -> Tree:
        # Own copies: donation may reuse these buffers, and must not touch the spec's arrays.
        return jax.device_put(graph.group({k: np.array(v, np.float32) for k, v in flat.items()}),
                              self.device)

    def step(self, batch: Any) -> jax.Array:
        self.params, self.opt_state, self.buffers, loss = self._step(
            self.params, self.opt_state, self.buffers, *batch)
        return loss

    def predict(self, x: Any) -> jax.Array:
        return self._forward(self.params, self.buffers, x, False)[0]  # not timed: eager always

    def sync(self) -> None:
        # Dispatch is asynchronous on every platform, CPU included (jax >= 0.4.32).
        jax.block_until_ready((self.params, self.opt_state, self.buffers))

    def compile_stats(self) -> dict[str, int]:
        """Compilations of the jitted step so far (1 after the first step; more would be
        recompilations). 0 in eager mode."""
        return {"compiles": self._step._cache_size() if self._jitted else 0}

    def weights(self) -> dict[str, np.ndarray]:
        flat = graph.ungroup(jax.tree.map(np.array, self.params))
        return {k: flat[k] for k in self.spec.params}  # canonical order (pytrees sort keys)

    def state(self) -> dict[str, np.ndarray]:
        flat = graph.ungroup(jax.tree.map(np.array, self.buffers))
        return {k: flat[k] for k in self.spec.state}
