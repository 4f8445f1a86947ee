"""Inference paths of a TensorFlow model in evaluation behaviour (``training=False``): eager,
``tf.function(jit_compile=True)`` (XLA), and a SavedModel written and loaded back, as TF
Serving runs it (graph, no XLA). The idiomatic tier exports its Keras model the Keras way
(``model.export``); the identical tier's functional forward is saved from a ``tf.Module``
holding its variables.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from harness.backends import INFER_DESCRIPTIONS


class Predictor:
    def __init__(self, trainer: Any, tier: str, path: str) -> None:
        self.trainer, self.tier, self.path = trainer, tier, path
        if tier == "idiomatic":
            model = trainer.model
            self.forward = lambda x: tf.cast(model(x, training=False), tf.float32)
        else:
            self.forward = lambda x: trainer._forward(x, False)[0]
        self.compiled = tf.function(self.forward, jit_compile=True)
        self.loaded: Any = None
        self.manifest = {"path": path, "api": INFER_DESCRIPTIONS["tensorflow", path],
                         "model": "keras.Model" if tier == "idiomatic"
                         else "tf ops on tf.Variables (translate.py)"}

    def _export(self, x: tf.Tensor) -> Callable[[tf.Tensor], tf.Tensor]:
        """Write the SavedModel (batch dimension open), load it back, return its server."""
        if self.loaded is None:
            folder = tempfile.mkdtemp(prefix="framebench-savedmodel-")
            try:
                signature = tf.TensorSpec([None, *x.shape[1:]], x.dtype)
                if self.tier == "idiomatic":
                    self.trainer.model.export(folder, format="tf_saved_model",
                                              input_signature=[signature], verbose=False)
                else:
                    module = tf.Module()
                    module.params, module.buffers = self.trainer.params, self.trainer.buffers
                    module.serve = tf.function(self.forward, input_signature=[signature])
                    tf.saved_model.save(module, folder)
                self.loaded = tf.saved_model.load(folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        serve = self.loaded.serve
        return lambda x: tf.cast(serve(x), tf.float32)

    def for_batch(self, x: tf.Tensor) -> Callable[[tf.Tensor], tf.Tensor]:
        fn = {"eager": self.forward, "compiled": self.compiled}.get(self.path) \
            or self._export(x)
        device = self.trainer.device

        def request(x: tf.Tensor) -> tf.Tensor:
            with tf.device(device):
                return fn(x)
        return request

    def compile_stats(self) -> dict[str, int]:
        if self.path != "compiled":
            return {}
        return {"compiles": int(self.compiled.experimental_get_tracing_count())}


def predictor(trainer: Any, tier: str, path: str) -> Predictor:
    return Predictor(trainer, tier, path)
