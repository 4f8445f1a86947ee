"""Inference paths of a JAX model in evaluation behaviour: eager (op-by-op dispatch), ``jax.jit``
(the idiomatic tier: ``nnx.jit``), and ``jax.export``: the jitted forward exported to StableHLO,
serialised to bytes, deserialised and called under ``jax.jit`` (the deployment artefact).
Parameters are arguments of the exported function, as in a server that loads a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from harness.backends import INFER_DESCRIPTIONS


class Predictor:
    def __init__(self, trainer: Any, tier: str, path: str) -> None:
        self.path = path
        if tier == "idiomatic":
            from flax import nnx  # the idiomatic tier's model is Flax NNX; imported only then

            trainer.model.eval()
            graphdef, state = nnx.split(trainer.model)
            # the state's arrays as a flat list: jax.export serialises plain containers only
            leaves, treedef = jax.tree.flatten(state)
            self.pure = lambda leaves, x: nnx.merge(
                graphdef, jax.tree.unflatten(treedef, leaves))(x).astype(jnp.float32)
            self.args: tuple[Any, ...] = (leaves,)
            model, eval_step = trainer.model, trainer._eval_step
            self.eager = lambda x: model(x).astype(jnp.float32)
            self.jitted = lambda x: eval_step(model, x)
            model_name = "flax.nnx module"
        else:
            self.pure = lambda params, buffers, x: trainer._forward(params, buffers, x, False)[0]
            self.args = (trainer.params, trainer.buffers)
            jitted = jax.jit(self.pure)
            self.eager = lambda x: self.pure(*self.args, x)
            self.jitted = lambda x: jitted(*self.args, x)
            model_name = "jax.numpy functions of the model tree (translate.py)"
        self.manifest = {"path": path, "api": INFER_DESCRIPTIONS["jax", path], "model": model_name}

    def for_batch(self, x: jax.Array) -> Callable[[jax.Array], jax.Array]:
        if self.path == "eager":
            return self.eager
        if self.path == "compiled":
            return self.jitted
        shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                              (*self.args, x))
        blob = jax.export.export(jax.jit(self.pure))(*shapes).serialize()
        call = jax.jit(jax.export.deserialize(blob).call)
        args = self.args
        return lambda x: call(*args, x)

    def compile_stats(self) -> dict[str, int]:
        return {}


def predictor(trainer: Any, tier: str, path: str) -> Predictor:
    return Predictor(trainer, tier, path)
