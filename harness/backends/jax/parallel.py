"""Data-parallel training (``replicas`` devices) on the identical tier's algorithm: the same
model, loss and optax update as ``identical.py``, one jax.jit step over a one-axis device mesh
("data").

Parameters, optimiser state and batch-norm running statistics are replicated
(``NamedSharding(mesh, P())``); the global batch is sharded on its first axis (``P("data")``),
replica i holding rows [i*b, (i+1)*b). The per-replica part of the step is a ``jax.shard_map``:
each replica takes its own shard's mean loss and batch-norm statistics, then ``lax.pmean``
averages the gradients, the loss and the updated running statistics over the mesh (XLA
all-reduces), and every replica applies the identical optax update to its copy. The state is
donated as in the identical tier's compiled step.

Devices: on CPU the mesh's devices exist only when the process started JAX with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (N >= replicas) in its environment
before jax was imported; on CUDA, the first ``replicas`` GPUs JAX sees. Several hosts would go
through ``jax.distributed.initialize`` before anything else, a mesh over ``jax.devices()``
(every process's devices) and each process placing its own rows with
``jax.make_array_from_process_local_data``: not implemented here (one process).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from harness.backends import Spec, Unavailable
from harness.backends.jax.identical import JaxTrainer, Tree, _loss, phase_peak
from harness.model import graph

AXIS = "data"
MODES = ("compiled",)  # eager (op-by-op) is the identical tier's debugging mode only
CPU_FLAG = "--xla_force_host_platform_device_count"


def mesh_devices(device: str, replicas: int) -> list[Any]:
    """The first ``replicas`` devices of the platform, or Unavailable saying how to get them."""
    platform = "gpu" if device == "cuda" else "cpu"
    try:
        found = jax.devices(platform)
    except RuntimeError as exc:
        raise Unavailable(f"JAX sees no {device} device ({exc})") from exc
    if len(found) >= replicas:
        return found[:replicas]
    if device == "cuda":
        raise Unavailable(f"{replicas} replicas need {replicas} GPUs; JAX sees {len(found)}")
    raise Unavailable(f"{replicas} replicas need {replicas} CPU devices; JAX sees {len(found)}: "
                      f"start the process with XLA_FLAGS={CPU_FLAG}={replicas} (set before "
                      "jax is imported)")


def _replica_step(forward: Any, optimizer: optax.GradientTransformation, params: Tree,
                  opt_state: Any, state: Tree, x: jax.Array,
                  y: jax.Array) -> tuple[Tree, Any, Tree, jax.Array]:
    """One replica's step inside shard_map: its shard's loss, gradients and batch-norm update,
    averaged over the replicas, then the identical optimiser update."""
    # Differentiate a per-replica ("varying") copy of the replicated parameters: differentiated
    # directly, JAX would sum their gradients over the replicas itself (the transpose of the
    # implicit broadcast), and the pmean below would leave that sum.
    local, state = lax.pcast((params, state), AXIS, to="varying")
    (loss, state), grads = jax.value_and_grad(partial(_loss, forward), has_aux=True)(
        local, state, x, y)
    grads, state, loss = lax.pmean((grads, state, loss), AXIS)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, state, loss


class ParallelTrainer(JaxTrainer):
    """The identical trainer's model and optimiser, its step run data-parallel over a mesh."""

    def __init__(self, spec: Spec, mode: str, device: str, precision: str,
                 replicas: int) -> None:
        if mode not in MODES:
            raise ValueError(f"jax has no data-parallel mode {mode!r}; valid modes: "
                             f"{', '.join(MODES)}")
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, not {replicas}")
        devices = mesh_devices(device, replicas)
        self.replicas = replicas
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self._replicated = NamedSharding(self.mesh, P())
        self._sharded = NamedSharding(self.mesh, P(AXIS))
        super().__init__(spec, mode, device, precision)
        self.devices = devices
        self.opt_state = jax.device_put(self.opt_state, self._replicated)
        step = jax.shard_map(partial(_replica_step, self._forward, self.optimizer),
                             mesh=self.mesh, in_specs=(P(), P(), P(), P(AXIS), P(AXIS)),
                             out_specs=(P(), P(), P(), P()))
        self._step = jax.jit(step, donate_argnums=(0, 1, 2))
        self.manifest["api"] += (f"; jax.shard_map over a {replicas}-device mesh ('{AXIS}'), "
                                 "jax.lax.pmean of gradients, loss and batch-norm statistics")
        self.manifest["compile"]["shardings"] = {"params, optimiser and batch-norm state":
                                                 "P() (replicated)", "batch": f"P('{AXIS}')"}
        self.manifest["parallel"] = {
            "mechanism": "jax.jit of jax.shard_map over jax.sharding.Mesh (axis "
                         f"'{AXIS}', {replicas} {devices[0].platform} devices), NamedSharding: "
                         "state replicated, batch sharded on its first axis",
            "replicas": replicas,
            "all_reduce": f"jax.lax.pmean over '{AXIS}' (XLA all-reduce) of gradients, loss "
                          "and updated running statistics",
            "batch_norm": "per-replica statistics; running statistics averaged over replicas",
        }

    _in_flight: jax.Array | None = None

    def step(self, batch: Any) -> jax.Array:
        """One step. On CPU devices, the previous step must have finished before the next is
        dispatched: XLA:CPU runs each device's program on the process's thread pool, and with
        several steps queued the replicas' all-reduce waited for ever (its rendezvous aborts
        the process after 40 s) when the pool's threads were all busy with later steps."""
        if self._in_flight is not None and self.device.platform == "cpu":
            self._in_flight.block_until_ready()
        self._in_flight = loss = super().step(batch)
        return loss

    def _load(self, flat: dict[str, np.ndarray]) -> Tree:
        # Own copies (donated by the step), one on every device of the mesh.
        return jax.device_put(graph.group({k: np.array(v, np.float32) for k, v in flat.items()}),
                              self._replicated)

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        """A training batch (the global batch) sharded by rows over the replicas; an input
        alone (for predict) on the first device, whatever its length."""
        if y is None:
            return super().put(x)
        if len(x) % self.replicas:
            raise ValueError(f"a batch of {len(x)} rows does not split over {self.replicas} "
                             "replicas: the global batch must be a multiple of replicas")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.int32)
        return jax.device_put((x, y.astype(np.int32)), self._sharded)

    def _on_first(self, tree: Tree) -> Tree:
        """The first device's copy of a replicated tree (no transfer)."""
        return jax.tree.map(lambda a: next(s.data for s in a.addressable_shards
                                           if s.device == self.device), tree)

    def predict(self, x: Any) -> jax.Array:
        """Evaluation on the first device alone: the replicas would only repeat it."""
        x = jax.device_put(x, self.device)
        return self._forward(self._on_first(self.params), self._on_first(self.buffers), x,
                             False)[0]

    # The peak is per device: each replica's allocator, the largest of their phase peaks.
    _peaks_at_reset: list[int | None] | None = None

    def _lifetime_peaks(self) -> list[int | None]:
        return [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in self.devices]

    def reset_device_peak(self) -> None:
        if self.device.platform != "cpu":
            self._peaks_at_reset = self._lifetime_peaks()

    def device_peak_bytes(self) -> int | None:
        """The largest per-device phase peak (see OnDevice); None on CPU or where unknown."""
        if self.device.platform == "cpu":
            return None
        start = self._peaks_at_reset or [None] * self.replicas
        peaks = [phase_peak(a, b) for a, b in zip(start, self._lifetime_peaks(), strict=True)]
        known = [p for p in peaks if p is not None]
        return max(known) if known else None


def build(spec: Spec, mode: str, device: str, precision: str, replicas: int) -> ParallelTrainer:
    return ParallelTrainer(spec, mode, device, precision, replicas)
