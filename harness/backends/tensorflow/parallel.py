"""Data-parallel training in TensorFlow: the identical tier's step (identical.py) on N replicas
under ``tf.distribute.MirroredStrategy`` (one host; ``MultiWorkerMirroredStrategy`` where
``TF_CONFIG`` names a cluster).

Every variable (parameters, Adam's m, v and t, batch-norm statistics) is created under the
strategy's scope: a MirroredVariable with one copy per device. The step is ``strategy.run`` of
the replica step inside one ``tf.function``: each replica computes the mean loss of its shard
and its gradients (the embedding's IndexedSlices made dense first, as the identical update
does anyway), ``ReplicaContext.all_reduce("mean")`` averages the gradients and each replica's
new batch-norm running statistics, and every replica applies the identical Adam/AdamW update
(``TensorFlowTrainer._update`` and ``_lr``) to its own copy. The variables keep TensorFlow's
default aggregation (NONE), under which an assignment in a replica writes that replica's copy
only; the copies stay equal because every replica applies the same update to the same
averaged values. The returned loss is ``strategy.reduce("MEAN")`` of the shard losses, the
global batch's mean loss (the shards are equal).

Modes: graph (the whole step one tf.function) and compiled. XLA cannot compile strategy.run
over several CPU devices: ``tf.function(jit_compile=True)`` around it places the whole program
on the first device, whose kernels cannot reach the other replicas' variables ("Trying to
access resource ... located in device CPU:1 from device CPU:0"); a jit-compiled replica
function is lifted to the same thing unless every device is a GPU. So compiled mode compiles
each replica's two halves, the shard's forward and backward and then the update, as XLA
programs on its own device, with the all-reduces between them in the graph: the same split on
GPUs (TensorFlow's collectives inside XLA, its GPU-only path, are not used). Eager
strategy.run is not offered (TensorFlow warns it is slow, and nobody trains that way).

On the CPU the N devices are logical CPU devices ("/cpu:0".."/cpu:N-1") of the one physical
CPU, made by ``tf.config.set_logical_device_configuration``, which TensorFlow accepts only
before its runtime initialises (the first op, variable or device listing). ``build`` makes them
when needed, so call it before anything else in the process touches TensorFlow's runtime (or
configure at least N logical CPU devices first); a runtime already initialised with fewer
raises a RuntimeError saying so. The logical devices share the process's thread pools
(``configure``'s intra- and inter-op threads): the replicas' ops interleave on them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

from harness.backends import Spec, Unavailable
from harness.backends.tensorflow.identical import TensorFlowTrainer
from harness.model import graph

MODES = ("graph", "compiled")  # strategy.run inside tf.function; eager strategy.run is refused
MEAN = tf.distribute.ReduceOp.MEAN


def build(spec: Spec, mode: str, device: str, precision: str, replicas: int) -> MirroredTrainer:
    """The identical tier's trainer on ``replicas`` devices of kind ``device`` (cpu, cuda)."""
    if mode not in MODES:
        raise ValueError(f"tensorflow data-parallel training has no mode {mode!r}; valid modes: "
                         f"{', '.join(MODES)} (eager strategy.run is not supported)")
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; valid devices: cpu, cuda")
    return MirroredTrainer(spec, mode, device, precision, replicas)


def logical_cpus(n: int) -> list[str]:
    """The names of n logical CPU devices, made if the runtime has not started yet."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if n > 1 and len(configured) < n:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError as e:
            raise RuntimeError(
                f"{n} CPU replicas need {n} logical CPU devices, which TensorFlow makes only "
                "before its runtime initialises; this process initialised it with "
                f"{max(len(configured), 1)}: build the parallel trainer before any other "
                "TensorFlow op in the process") from e
    return [d.name for d in tf.config.list_logical_devices("CPU")[:n]]


def make_strategy(device: str, replicas: int) -> tuple[tf.distribute.Strategy, list[str]]:
    """The strategy over ``replicas`` devices and this worker's devices, in replica order."""
    if os.environ.get("TF_CONFIG"):
        # Several workers, each running this same program and putting the same global batch
        # (each keeps its replicas' rows): NCCL between GPUs, rings between CPUs (one CPU
        # device per worker). Created before anything else in the process touches TensorFlow.
        # Untested here: no cluster.
        implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL
                          if device == "cuda"
                          else tf.distribute.experimental.CommunicationImplementation.RING)
        if device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise Unavailable("TensorFlow sees no GPU (tensorflow-cpu, or no CUDA device)")
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=implementation))
        if strategy.num_replicas_in_sync != replicas:
            workers = len(json.loads(os.environ["TF_CONFIG"])["cluster"].get("worker", []))
            raise ValueError(f"TF_CONFIG's {workers} workers give "
                             f"{strategy.num_replicas_in_sync} replicas, not {replicas}")
        return strategy, list(strategy.extended.worker_devices)
    if device == "cuda":
        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) < replicas:
            raise Unavailable(f"{replicas} replicas need {replicas} GPUs; TensorFlow sees "
                              f"{len(gpus)}")
        devices = [f"/gpu:{i}" for i in range(replicas)]
    else:
        devices = logical_cpus(replicas)
    # Explicit, not TensorFlow's default CollectiveAllReduce: its collective keys start at the
    # same numbers in every strategy, so a second trainer in the process (the tuned search,
    # the tests) finds the first one's collective instances and fails on their shapes.
    ops = (tf.distribute.NcclAllReduce() if device == "cuda"
           else tf.distribute.ReductionToOneDevice())
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)
    return strategy, list(strategy.extended.worker_devices)


class MirroredTrainer(TensorFlowTrainer):
    """The identical trainer with its variables mirrored and its step run on every replica."""

    def __init__(self, spec: Spec, mode: str, device: str, precision: str,
                 replicas: int) -> None:
        self.replicas = replicas
        self.strategy, self.devices = make_strategy(device, replicas)
        with self.strategy.scope():  # every variable the identical trainer makes is mirrored
            super().__init__(spec, mode, device, precision)
        self.gpus = [f"GPU:{i}" for i in range(len(self.devices))] if device == "cuda" else []
        self.stats = [(path, k) for path, arrays in self.buffers.items() for k in arrays]
        xla = mode == "compiled"
        self._shard = tf.function(self._shard_grads, jit_compile=True) if xla else self._shard_grads
        self._apply = (tf.function(self._update_replica, jit_compile=True) if xla
                       else self._update_replica)
        self._step = tf.function(self._distributed_step)
        gpu = device == "cuda"
        if xla:
            self.manifest["compile"]["jit_compile"] = (
                "per replica: the shard's forward and backward, and the update, each one XLA "
                "program on the replica's device; the all-reduces between them in the graph")
        self.manifest["api"] += (f", under tf.distribute.{type(self.strategy).__name__}: "
                                 "strategy.run of the replica step inside one tf.function")
        self.manifest["parallel"] = {
            "mechanism": f"tf.distribute.{type(self.strategy).__name__} over "
                         f"{', '.join(self.devices)}"
                         + ("" if gpu else " (logical CPU devices of one physical CPU)"),
            "replicas": replicas,
            "all_reduce": "ReplicaContext.all_reduce('mean') of the gradients (dense: the "
                          "embedding's IndexedSlices converted first) and of the new batch-norm "
                          "statistics, through "
                          + ("tf.distribute.NcclAllReduce" if gpu else
                             "tf.distribute.ReductionToOneDevice (summed on the first device, "
                             "copied back)"),
            "batch_norm": "per-replica statistics; running statistics averaged over replicas",
        }

    def _replica_step(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """One replica's step on its shard: the identical step, with its gradients and new
        batch-norm statistics averaged over the replicas before the update."""
        ctx = tf.distribute.get_replica_context()
        loss, grads, stats = self._shard(x, y)
        grads = ctx.all_reduce(MEAN, grads)
        stats = ctx.all_reduce(MEAN, stats) if stats else stats
        self._apply(grads, stats)
        return loss

    def _shard_grads(self, x: tf.Tensor, y: tf.Tensor) -> tuple[Any, list[Any], list[Any]]:
        """The shard's mean loss, its dense gradients and its new batch-norm statistics (in
        the order of self.stats)."""
        with tf.GradientTape() as tape:
            logits, state = self._forward(x, True)  # float32 loss in every precision
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.reshape(y, [-1]), logits=tf.reshape(logits, [-1, logits.shape[-1]])))
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.flat)]
        return loss, grads, [tf.convert_to_tensor(state[p][k]) for p, k in self.stats]

    def _update_replica(self, grads: list[Any], stats: list[Any]) -> None:
        """The identical update on this replica's copies (aggregation NONE: a replica's
        assignment writes its own copy)."""
        for (path, k), value in zip(self.stats, stats):
            self.buffers[path][k].assign(value)
        self.t.assign_add(1.0)
        self._update(grads, self._lr())

    def _distributed_step(self, x: Any, y: Any) -> tf.Tensor:
        losses = self.strategy.run(self._replica_step, args=(x, y))
        return self.strategy.reduce(MEAN, losses, axis=None)

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        """The global batch, sharded: replica i gets rows [i*b, (i+1)*b) on its device. An
        input without labels (evaluation's, any number of rows) goes whole to the first
        device, for ``predict``."""
        x = x.astype(np.float32 if np.issubdtype(x.dtype, np.floating) else np.int32)
        if y is None:
            with tf.device(self.devices[0]):
                return tf.identity(tf.convert_to_tensor(x))
        rows = len(x)
        if rows % self.replicas:
            raise ValueError(f"a batch of {rows} rows does not split over {self.replicas} "
                             "replicas")
        b = rows // self.replicas

        def shard(a: np.ndarray) -> Any:
            def value(ctx: tf.distribute.experimental.ValueContext) -> tf.Tensor:
                i = ctx.replica_id_in_sync_group  # global: this worker's devices in order
                with tf.device(self.devices[i % len(self.devices)]):
                    return tf.identity(tf.convert_to_tensor(a[i * b:(i + 1) * b]))
            return self.strategy.experimental_distribute_values_from_function(value)

        return shard(x), shard(y.astype(np.int32))

    def step(self, batch: Any) -> tf.Tensor:
        self._last_loss = self._step(*batch)
        return self._last_loss

    def predict(self, x: Any) -> tf.Tensor:
        """Logits of the whole input on the first device (sharded input gathered there; with
        several workers, only this worker's rows: give them the host input)."""
        if isinstance(x, tf.distribute.DistributedValues):
            x = tf.concat(self.strategy.experimental_local_results(x), axis=0)
        elif isinstance(x, np.ndarray):
            x = x.astype(np.float32 if np.issubdtype(x.dtype, np.floating) else np.int32)
        with tf.device(self.devices[0]):
            return self._predict(tf.convert_to_tensor(x))

    def replica_weights(self) -> list[dict[str, np.ndarray]]:
        """Each replica's copy of the parameters (canonical paths): equal while in sync."""
        names = list(graph.ungroup(self.params))
        local = [self.strategy.experimental_local_results(p) for p in self.flat]
        return [{k: copies[i].numpy() for k, copies in zip(names, local)}
                for i in range(len(self.devices))]

    def reset_device_peak(self) -> None:
        for gpu in self.gpus:
            tf.config.experimental.reset_memory_stats(gpu)

    def device_peak_bytes(self) -> int | None:
        """The largest of the replicas' GPU allocator peaks (None on CPU)."""
        if not self.gpus:
            return None
        return max(int(tf.config.experimental.get_memory_info(g)["peak"]) for g in self.gpus)
