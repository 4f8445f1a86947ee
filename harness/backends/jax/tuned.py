"""The tuned tier's JAX variants (``BACKENDS["jax"].variants``): the identical step with one
option changed, or the idiomatic Flax NNX step staged for speed. Each follows the identical
tier's trajectory (``harness.tune`` checks it) and names itself and its options in its
manifest."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import optax
from flax import nnx

from harness.backends import Spec
from harness.backends.jax.identical import JaxTrainer, learning_rate, optimizer_name
from harness.backends.jax.idiomatic import NnxTrainer, train_step
from harness.model import graph


def flat_adam(spec: Spec) -> optax.GradientTransformation:
    """optax.adam under optax.flatten: the whole update on a single concatenated vector instead
    of one per parameter. With weight decay (AdamW), only the moment estimation is flattened:
    the decay mask and the learning rate stay per parameter (optax.masked needs a tree)."""
    o = spec.optimizer
    if not o.weight_decay:
        return optax.flatten(optax.adam(learning_rate(spec), o.beta1, o.beta2, o.eps,
                                        eps_root=0.0))
    decay = optax.add_decayed_weights(o.weight_decay, graph.group(spec.decay))
    return optax.chain(optax.flatten(optax.scale_by_adam(o.beta1, o.beta2, o.eps)), decay,
                       optax.scale_by_learning_rate(learning_rate(spec)))


def _functional_step(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array,
                     y: jax.Array) -> tuple[jax.Array, nnx.State]:
    model, optimizer = nnx.merge(graphdef, state)
    loss = train_step(model, optimizer, x, y)
    return loss, nnx.state((model, optimizer))


class NnxFunctionalTrainer(NnxTrainer):
    """The idiomatic tier's model and step as Flax's performance guide advises: nnx.split once,
    then jax.jit of a pure step that merges and splits inside, so no Python graph traversal
    runs per call; the state is donated. The model's variables are brought up to date from
    the state before they are read."""

    def __init__(self, spec: Spec, device: str, precision: str) -> None:
        super().__init__(spec, device, precision)
        self.graphdef, self._state = nnx.split((self.model, self.optimizer))
        self._step = jax.jit(partial(_functional_step, self.graphdef), donate_argnums=0)

    def step(self, batch: Any) -> jax.Array:
        loss, self._state = self._step(self._state, *batch)
        return loss

    def _current(self) -> None:
        nnx.update((self.model, self.optimizer), self._state)

    def predict(self, x: Any) -> jax.Array:
        self._current()
        return super().predict(x)

    def sync(self) -> None:
        jax.block_until_ready(self._state)

    def compile_stats(self) -> dict[str, int]:
        return {"compiles": self._step._cache_size()}

    def weights(self) -> dict[str, Any]:
        self._current()
        return super().weights()

    def state(self) -> dict[str, Any]:
        self._current()
        return super().state()


def build(spec: Spec, mode: str, device: str, precision: str, variant: str) -> Any:
    if variant == "nnx-functional":
        trainer = NnxFunctionalTrainer(spec, device, precision)
        options = {"graph": "nnx.split once, nnx.merge inside the step", "donate": True}
        trainer.manifest["api"] += "; the step staged with nnx.split / nnx.merge"
        trainer.manifest["compile"] = {"transform": "jax.jit", "donate_argnums": [0]}
    elif variant == "jit-flat-adam":
        trainer = JaxTrainer(spec, mode, device, precision, tx=flat_adam(spec))
        options = {"donate": True, "flatten": "optax.scale_by_adam"}
        trainer.manifest["optimizer"] = (
            f"{optimizer_name(spec)} under optax.flatten" if not spec.optimizer.weight_decay
            else f"{optimizer_name(spec)}, moments under optax.flatten")
    elif variant == "jit-no-donation":
        trainer = JaxTrainer(spec, mode, device, precision, donate=False)
        options = {"donate": False}
    elif variant == "identical":
        trainer = JaxTrainer(spec, mode, device, precision)
        options = {}
    else:
        raise ValueError(f"no JAX variant {variant!r}")  # check_build names the valid ones
    trainer.manifest.update(tier="tuned", variant=variant, options=options)
    return trainer
