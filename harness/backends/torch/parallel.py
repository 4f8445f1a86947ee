"""Data-parallel training in PyTorch: the identical tier's step under
torch.nn.parallel.DistributedDataParallel, one process per replica, started by torchrun
(``python -m torch.distributed.run --nproc-per-node N ...``).

Each process builds the identical tier's functional model and torch.optim.AdamW; its parameters
are registered in a small ``nn.Module`` whose forward is the identical loss, so that DDP hooks
their gradients and all-reduces them in buckets during backward (a sum divided by the world
size: the mean over replicas). Every replica then applies the same AdamW update to the same
weights. Batch norm normalises with each replica's own shard (no SyncBatchNorm); after each step
one more all-reduce replaces every replica's running statistics by their mean over replicas.

CPU: process group gloo; each process keeps the threads it was given (``configure``, or
torchrun's OMP_NUM_THREADS=1 by default: a replica is then one core). CUDA: NCCL, the process of
local rank r on ``cuda:r``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.backends import BACKENDS, Spec, Unavailable
from harness.backends.torch.identical import TorchTrainer
from harness.model import graph

MODES = BACKENDS["torch"].modes


class _LossModule(nn.Module):
    """The identical tier's loss as a module: DDP needs the parameters registered in a module to
    hook their gradients. They are the trainer's own tensors (the ones its AdamW updates), and
    the forward is the trainer's functional loss, so the algorithm is the identical tier's."""

    def __init__(self, trainer: ParallelTrainer) -> None:
        super().__init__()
        for i, p in enumerate(graph.ungroup(trainer.params).values()):
            self.register_parameter(f"p{i}", p)
        self._loss = trainer._loss
        self._params = trainer.params

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(self._params, x, y)


class ParallelTrainer(TorchTrainer):
    """The identical step on this process's shard of the global batch, gradients averaged by DDP.

    ``step`` returns this replica's own shard loss: the global batch's loss would need one more
    all-reduce per step, communication in the timed step that only logging wants. With equal
    shards, the global loss is the mean of the replicas' losses.

    ``rank``, ``is_leader`` (rank 0) and ``agree`` serve the loop that drives every process:
    a decision taken by the clock (how many warm-up samples, how many steps per sample) must be
    the same on every rank, or the ranks wait for each other's collectives forever; ``agree``
    hands every rank rank 0's value. ``close`` ends the process group (every trainer of the
    process with it).
    """

    def __init__(self, spec: Spec, mode: str, device: str, precision: str, replicas: int,
                 rank: int, local_rank: int) -> None:
        self.replicas, self.rank, self._local_rank = replicas, rank, local_rank
        self.is_leader = rank == 0
        super().__init__(spec, mode, device, precision)
        cuda = self.device.type == "cuda"
        # The module has no buffers, so DDP broadcasts none from rank 0 before a forward (as
        # broadcast_buffers=False would): the running statistics live in ``self.buffers``,
        # each replica's own, averaged after each step (``_average_state``).
        self.ddp = DistributedDataParallel(
            _LossModule(self), device_ids=[self.device.index] if cuda else None)
        self._state = [t for arrays in self.buffers.values() for t in arrays.values()]
        if mode == "compiled":
            self.manifest["compile"]["optimize_ddp"] = torch._dynamo.config.optimize_ddp
        self.manifest["parallel"] = {
            "mechanism": "torch.nn.parallel.DistributedDataParallel, one process per replica "
                         "(torchrun)",
            "replicas": replicas,
            "process_group": dist.get_backend(),
            "all_reduce": "gradients: DDP's bucketed all-reduce during backward (sum divided "
                          f"by the world size, buckets of {self.ddp.bucket_bytes_cap} bytes); "
                          "running statistics: one all-reduce (sum / replicas) after each step",
            "batch_norm": "per-replica statistics; running statistics averaged over replicas",
            "loss": "the replica's own shard (no all-reduce for the loss)",
            "threads_per_replica": None if cuda else torch.get_num_threads(),
        }

    @property
    def device(self) -> torch.device:
        return self._device

    @device.setter
    def device(self, value: torch.device) -> None:
        # The identical tier places everything on cuda:0; a replica owns cuda:LOCAL_RANK.
        self._device = torch.device("cuda", self._local_rank) if value.type == "cuda" else value

    def _load(self, flat: dict[str, np.ndarray], trainable: bool,
              requires_grad: bool = False) -> dict[str, dict]:
        out = super()._load(flat, trainable, requires_grad)
        if not trainable:
            return out
        return {path: {k: nn.Parameter(v.detach()) for k, v in arrays.items()}
                for path, arrays in out.items()}

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        """With labels: this replica's rows [rank*b, (rank+1)*b) of the global batch. Without
        (an input to ``predict``): the whole input, as evaluation is not parallel."""
        if y is None:
            return super().put(x)
        rows = len(x)
        if rows % self.replicas:
            raise ValueError(f"a global batch of {rows} rows does not split evenly over "
                             f"{self.replicas} replicas")
        b = rows // self.replicas
        shard = slice(self.rank * b, (self.rank + 1) * b)
        return super().put(x[shard], y[shard])

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.ddp(x, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _train_step(self, batch: Any) -> torch.Tensor:
        loss = super()._train_step(batch)
        self._average_state()
        return loss

    def _average_state(self) -> None:
        """Every replica's running statistics become their mean over replicas: one all-reduce
        of all of them, concatenated."""
        if not self._state:
            return
        flat = torch.cat([t.reshape(-1) for t in self._state])
        dist.all_reduce(flat)
        flat.div_(self.replicas)
        for t, new in zip(self._state, flat.split([t.numel() for t in self._state]),
                          strict=True):
            t.copy_(new.view_as(t))

    def agree(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (a broadcast of one integer)."""
        t = torch.tensor([int(value)], dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def build(spec: Spec, mode: str, device: str, precision: str,
          replicas: int) -> ParallelTrainer:
    """This process's replica of a ``replicas``-way data-parallel trainer. Call it in every
    process torchrun started (``--nproc-per-node replicas``), with the same arguments; it
    initialises the process group from torchrun's environment unless one exists."""
    if mode not in MODES:
        raise ValueError(f"torch data-parallel training has no mode {mode!r}; valid modes: "
                         f"{', '.join(MODES)}")
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, not {replicas}")
    if dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    else:
        raise ValueError("torch data-parallel training runs one process per replica: start "
                         f"it with torchrun --nproc-per-node {replicas} (no RANK and "
                         "WORLD_SIZE in the environment)")
    if replicas != world:
        raise ValueError(f"{replicas} replicas asked for, but torchrun started {world} "
                         f"processes (WORLD_SIZE={world}); one process runs one replica")
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if device == "cuda":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus < local:
            raise Unavailable(f"{local} replicas on this machine need {local} GPUs; torch sees "
                              f"{gpus}")
        torch.cuda.set_device(local_rank)
    elif (os.cpu_count() or 1) < local:
        raise Unavailable(f"{local} CPU replicas on this machine need a CPU each; it has "
                          f"{os.cpu_count()}")
    if not dist.is_initialized():
        if device == "cuda":  # NCCL bound to this replica's GPU
            dist.init_process_group("nccl", init_method="env://",
                                    device_id=torch.device("cuda", local_rank))
        else:
            dist.init_process_group("gloo", init_method="env://")
    return ParallelTrainer(spec, mode, device, precision, replicas, rank, local_rank)
