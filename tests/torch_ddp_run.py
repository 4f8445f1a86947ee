"""Run by tests/test_parallel_torch.py in every process of
``torchrun --nproc-per-node 2 -m tests.torch_ddp_run OUT MODE WORKLOADS``: two replicas of
``harness.backends.torch.parallel`` train on the tests' global batches; rank 0 writes what the
test compares to OUT/result.npz (arrays) and OUT/result.json (everything else).

Per workload in WORKLOADS (comma-separated; "resnet" is the batch-norm check, the others the
trajectory check): the losses of ``STEPS`` steps on each rank and their mean, the gradients
(torch layout) and running statistics after the first step, the weights and the logits of a
few test inputs after the last; whether both ranks end with the same weights and state. With
``--checks``: ``agree`` and the errors of bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch.distributed as dist

from harness.backends import Unavailable
from harness.backends.torch import parallel
from tests.test_backends import batches, dataset, spec_for

STEPS = 5
RESNET_STEPS = 2


def gather(value: object) -> list:
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def train(workload: str, mode: str, arrays: dict[str, np.ndarray],
          info: dict) -> parallel.ParallelTrainer:
    steps = RESNET_STEPS if workload == "resnet" else STEPS
    trainer = parallel.build(spec_for(workload), mode, "cpu", "fp32", replicas=2)
    losses = []
    for i, (x, y) in enumerate(batches(workload)[:steps]):
        losses.append(float(trainer.numpy(trainer.step(trainer.put(x, y)))))
        if i == 0:
            arrays.update({f"{workload}/state1/{k}": v for k, v in trainer.state().items()})
            arrays.update({f"{workload}/grad1/{path}/{k}": p.grad.numpy()
                           for path, ps in trainer.params.items() for k, p in ps.items()})
    trainer.sync()
    weights, state = trainer.weights(), trainer.state()
    ranks = gather((losses, weights, state))
    arrays[f"{workload}/losses"] = np.array(losses)
    arrays[f"{workload}/mean_losses"] = np.mean([r[0] for r in ranks], axis=0)
    arrays.update({f"{workload}/w/{k}": v for k, v in weights.items()})
    arrays.update({f"{workload}/state/{k}": v for k, v in state.items()})
    x = dataset(workload).x_test[:8]
    arrays[f"{workload}/logits"] = trainer.numpy(trainer.predict(trainer.put(x)))
    other_w, other_s = ranks[1][1], ranks[1][2]
    info[workload] = {
        "ranks_differ": max([float(np.abs(weights[k] - other_w[k]).max()) for k in weights]
                            + [float(np.abs(state[k] - other_s[k]).max()) for k in state]),
        "manifest": trainer.manifest, "compile_stats": trainer.compile_stats(),
        "replicas": trainer.replicas, "shard_rows": len(trainer.put(*batches(workload)[0])[0]),
    }
    return trainer


def errors(info: dict) -> parallel.ParallelTrainer:
    """Bad input, on every rank before any collective (so none waits for the other); then
    ``agree``, whose values differ by rank before it."""
    spec = spec_for("mlp")
    caught = {}
    for name, device, replicas in (("replicas", "cpu", 3), ("cuda", "cuda", 2)):
        try:
            parallel.build(spec, "eager", device, "fp32", replicas)
        except (ValueError, Unavailable) as e:
            caught[name] = f"{type(e).__name__}: {e}"
    trainer = parallel.build(spec, "eager", "cpu", "fp32", 2)
    x, y = batches("mlp")[0]
    try:
        trainer.put(x[:31], y[:31])
    except ValueError as e:
        caught["rows"] = f"{type(e).__name__}: {e}"
    info["errors"] = caught
    info["agreed"] = gather(trainer.agree(7 if trainer.is_leader else 3))
    info["ranks"] = gather([trainer.rank, trainer.is_leader])
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("mode")
    parser.add_argument("workloads")
    parser.add_argument("--checks", action="store_true")
    args = parser.parse_args()
    arrays: dict[str, np.ndarray] = {}
    info: dict = {}
    if args.checks:
        errors(info)
    for workload in args.workloads.split(","):
        trainer = train(workload, args.mode, arrays, info)
    if trainer.is_leader:
        np.savez(args.out / "result.npz", **arrays)
        (args.out / "result.json").write_text(json.dumps(info, default=str))
    trainer.close()


if __name__ == "__main__":
    main()
