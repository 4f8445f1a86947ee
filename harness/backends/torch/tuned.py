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

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree
from torch.fx.experimental.proxy_tensor import make_fx

from harness.backends import Spec
from harness.backends.torch.identical import FunctionalModel, TorchTrainer
from harness.backends.torch.translate import leaf
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
    """One compiled graph per step: forward, backward (torch.func), AdamW.

    The step is traced once per batch shape by make_fx into a graph of tensor operations over
    a flat list of tensors, and that graph is compiled: Dynamo then guards only those tensors
    on each call, not the model tree and the translation table the trace walked."""

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
        # The step's state, in the order of the traced graph's inputs (the batch follows).
        # Updated in place every step: fixed addresses let CUDA graphs (reduce-overhead,
        # max-autotune) keep them instead of copying them in and skipping the graph.
        state = {"params": self.params, "buffers": self.buffers, "m": self.m, "v": self.v,
                 "adam_step": self.adam_step, **({} if self.lr is None else {"lr": self.lr})}
        self._inputs, self._spec = pytree.tree_flatten(state)
        for t in self._inputs:
            torch._dynamo.mark_static_address(t)
        self.compile_mode = compile_mode
        self._compiled: dict[tuple, Callable[..., torch.Tensor]] = {}  # by batch shape and dtype
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
            "compile": {"fn": "torch.compile of the step traced once (per batch shape) by "
                              "torch.fx.experimental.proxy_tensor.make_fx",
                        "mode": compile_mode, "fullgraph": True},
            "flags": {},
            "differences": "",
        }

    def _fused_step(self, *tensors: torch.Tensor) -> torch.Tensor:
        """The step on the flat tensors (the state's, then the batch's), updating the state in
        place; traced by make_fx."""
        *state, x, y = tensors
        s = pytree.tree_unflatten(state, self._spec)
        params, buffers, m, v = s["params"], s["buffers"], s["m"], s["v"]

        def loss(params: dict[str, dict]) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits, _ = graph.apply(self.spec.model, params, buffers, x, True, leaf)
            logits = logits.float()  # the loss in float32 in every precision, as in _loss
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

        grads, value = torch.func.grad_and_value(loss)(params)
        o = self.spec.optimizer
        adamw_(graph.ungroup(params), graph.ungroup(grads), m, v, self.decay, s["adam_step"],
               s.get("lr", o.lr), o)
        return value

    def _compile(self, x: torch.Tensor, y: torch.Tensor) -> Callable[..., torch.Tensor]:
        # on fake tensors: tracing records the step without running it on the real state
        traced = make_fx(self._fused_step, tracing_mode="fake")(*self._inputs, x, y)
        # its forward, not the module: Dynamo would also guard the module on every call
        return torch.compile(traced.forward, fullgraph=True, mode=self.compile_mode)

    def _train_step(self, batch: Any) -> torch.Tensor:
        x, y = batch
        if self.lr is not None:
            self.lr.fill_(self.spec.lr(self.step_count))
        key = (x.shape, x.dtype, y.shape)
        if key not in self._compiled:
            self._compiled[key] = self._compile(x, y)
        loss = self._compiled[key](*self._inputs, x, y)
        return loss.clone() if self.cudagraphs else loss


def build(spec: Spec, mode: str, device: str, precision: str, variant: str) -> FunctionalModel:
    if variant in ADAMW_OPTIONS:
        return TorchTrainer(spec, mode, device, precision, adamw=ADAMW_OPTIONS[variant])
    if variant == "compiled-autograd":
        return TorchTrainer(spec, mode, device, precision, compiled_autograd=True)
    return FullgraphTrainer(spec, device, precision, COMPILE_MODES[variant])
