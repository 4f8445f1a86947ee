"""The tuned tier's variants (``BACKENDS["torch"].variants``), built on the identical tier's
functional model so that each computes the same algorithm:

- foreach-adamw, fused-adamw: the identical eager step with torch.optim.AdamW(foreach=True) or
  (fused=True);
- compiled-autograd: the identical compiled step with Dynamo's compiled autograd, which captures
  the backward pass as a graph of its own instead of running it in eager autograd;
- functional-fullgraph: gradients by torch.func.grad_and_value and the AdamW update written out,
  all in one torch.compile(fullgraph=True) function of the parameters and the optimiser state;
  the learning rate is a constant of the graph without a schedule, and with one a 0-d tensor
  argument filled each step (so the schedule never recompiles);
- reduce-overhead, max-autotune (CUDA): functional-fullgraph in those compile modes.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.backends import Spec
from harness.backends.torch.identical import FunctionalModel, TorchTrainer
from harness.model import graph
from harness.model.workload import Adam

ADAMW_OPTIONS = {"foreach-adamw": {"foreach": True}, "fused-adamw": {"fused": True}}
COMPILE_MODES = {"functional-fullgraph": "default", "reduce-overhead": "reduce-overhead",
                 "max-autotune": "max-autotune"}


def adamw_(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
           m: dict[str, torch.Tensor], v: dict[str, torch.Tensor], decay: dict[str, bool],
           step: torch.Tensor, lr: torch.Tensor | float, o: Adam) -> None:
    """torch.optim.AdamW's update (its single-tensor form), in place. ``step`` counts the updates
    (a 0-d tensor) and ``lr`` is the rate of this one (a 0-d tensor, or a float constant);
    decoupled decay only where ``decay``."""
    step.add_(1)
    bias_correction1 = 1 - o.beta1 ** step
    bias_correction2_sqrt = (1 - o.beta2 ** step).sqrt()
    for k, p in params.items():
        g = grads[k]
        if decay[k]:
            p.mul_(1 - lr * o.weight_decay)
        m[k].lerp_(g, 1 - o.beta1)
        v[k].mul_(o.beta2).addcmul_(g, g, value=1 - o.beta2)
        denom = (v[k].sqrt() / bias_correction2_sqrt).add_(o.eps)
        p.sub_(lr / bias_correction1 * (m[k] / denom))


class FullgraphTrainer(FunctionalModel):
    """One compiled graph per step: forward, backward (torch.func), AdamW."""

    def __init__(self, spec: Spec, device: str, precision: str, compile_mode: str) -> None:
        super().__init__(spec, device, precision, autograd=False)
        flat = graph.ungroup(self.params)
        self.decay = spec.decay
        self.m = {k: torch.zeros_like(p) for k, p in flat.items()}
        self.v = {k: torch.zeros_like(p) for k, p in flat.items()}
        self.adam_step = torch.zeros((), device=self.device)
        # A constant rate is a constant of the graph: a tensor argument would cost a fill and
        # Dynamo's guards on one more input every step, for nothing.
        self.lr = (torch.tensor(spec.optimizer.lr, device=self.device)
                   if spec.schedule is not None else None)
        # Updated in place every step: fixed addresses let CUDA graphs (reduce-overhead,
        # max-autotune) keep them instead of copying them in and skipping the graph.
        for t in (*flat.values(), *graph.ungroup(self.buffers).values(), *self.m.values(),
                  *self.v.values(), self.adam_step, *([] if self.lr is None else [self.lr])):
            torch._dynamo.mark_static_address(t)
        self._step = torch.compile(self._fused_step, fullgraph=True, mode=compile_mode)
        # a CUDA graph's output is overwritten by its next replay: keep the loss
        self.cudagraphs = compile_mode in ("reduce-overhead", "max-autotune")
        o = spec.optimizer
        self.manifest = {
            "api": "torch.func.grad_and_value of the functional loss (harness.model.graph.apply)",
            "optimizer": {"class": "adamw_ (torch.optim.AdamW's single-tensor update written "
                                   "out, inside the compiled step)", "lr": o.lr,
                          "lr_type": "float, a constant of the compiled graph" if self.lr is None
                          else "0-d float32 tensor input, filled per step",
                          "weight_decay": o.weight_decay, "param_groups": "decay / no decay",
                          "betas": [o.beta1, o.beta2], "eps": o.eps},
            "compile": {"fn": "torch.compile", "mode": compile_mode, "fullgraph": True},
            "flags": {},
            "differences": "",
        }

    def _fused_step(self, params: dict[str, dict], m: dict[str, torch.Tensor],
                    v: dict[str, torch.Tensor], adam_step: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor, lr: torch.Tensor | None) -> torch.Tensor:
        grads, loss = torch.func.grad_and_value(self._loss)(params, x, y)
        o = self.spec.optimizer
        adamw_(graph.ungroup(params), graph.ungroup(grads), m, v, self.decay, adam_step,
               o.lr if lr is None else lr, o)
        return loss

    def _train_step(self, batch: Any) -> torch.Tensor:
        if self.lr is not None:
            self.lr.fill_(self.spec.lr(self.step_count))
        loss = self._step(self.params, self.m, self.v, self.adam_step, *batch, self.lr)
        return loss.clone() if self.cudagraphs else loss


def build(spec: Spec, mode: str, device: str, precision: str, variant: str) -> FunctionalModel:
    if variant in ADAMW_OPTIONS:
        return TorchTrainer(spec, mode, device, precision, adamw=ADAMW_OPTIONS[variant])
    if variant == "compiled-autograd":
        return TorchTrainer(spec, mode, device, precision, compiled_autograd=True)
    return FullgraphTrainer(spec, device, precision, COMPILE_MODES[variant])
