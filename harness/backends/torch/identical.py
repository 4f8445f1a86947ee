"""The identical tier: the model as torch.nn.functional operations on a dict of parameters (the
one table in translate.py), torch.optim.AdamW, eager or torch.compile of the whole step.

``OnDevice`` holds what every tier shares: device placement, sync, the allocator peak and the
Dynamo counters of ``compile_stats``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from harness.backends import Spec, Unavailable
from harness.backends.torch.translate import IMPLEMENTATION, TABLE, leaf
from harness.model import graph


def torch_device(device: str) -> torch.device:
    if device == "cuda":
        if not torch.cuda.is_available():
            raise Unavailable("torch sees no CUDA device (CPU build or no GPU)")
        return torch.device("cuda:0")
    return torch.device("cpu")


def dynamo_counts() -> dict[str, int]:
    """Dynamo's process-wide counters: graph breaks (one each time a compilation hit one),
    graphs compiled, and backward graphs captured by compiled autograd."""
    return {"graph_breaks": sum(counters["graph_break"].values()),
            "unique_graphs": counters["stats"]["unique_graphs"],
            "compiled_autograd_graphs": counters["compiled_autograd"]["captures"]}


class OnDevice:
    """Placement, sync and counters, the same in every tier. Subclasses set ``manifest`` and
    ``implementation`` and write ``_train_step``."""

    def __init__(self, spec: Spec, device: str, precision: str) -> None:
        self.spec = spec
        self.device = torch_device(device)
        self.bf16 = precision == "bf16"
        self.step_count = 0
        self._built = dynamo_counts()
        self._after_first_step: dict[str, int] = {}

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        xt = torch.from_numpy(np.ascontiguousarray(x))
        if xt.dim() == 4:
            xt = xt.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, once, outside the timing
        elif not xt.is_floating_point():
            xt = xt.long()
        xt = xt.to(self.device)
        if y is None:
            return xt
        return xt, torch.from_numpy(y.astype(np.int64)).to(self.device)

    def step(self, batch: Any) -> torch.Tensor:
        self.step_count += 1
        loss = self._train_step(batch)
        if self.step_count == 1:
            self._after_first_step = dynamo_counts()
        return loss

    def _train_step(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def sync(self) -> None:
        # CPU kernels (eager and Inductor's) run synchronously; CUDA work is queued on a stream.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def numpy(self, value: Any) -> np.ndarray:
        return value.detach().cpu().numpy()

    def reset_device_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def device_peak_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None

    def compile_stats(self) -> dict[str, int]:
        """Dynamo's counters since this trainer was built (process-wide: a cell process builds
        one trainer), and ``recompiles``: graphs compiled after the first step, which compiles
        the step's graphs (an evaluation graph of a compiled model counts as one)."""
        now, first = dynamo_counts(), self._after_first_step
        out = {k: now[k] - self._built[k] for k in now}
        out["recompiles"] = now["unique_graphs"] - first["unique_graphs"] if first else 0
        out["compiles"] = out["unique_graphs"]  # the name every backend reports
        return out


class FunctionalModel(OnDevice):
    """The model as torch.nn.functional operations on dicts of parameters and buffers, grouped
    by layer path and in torch's layout (the one table in translate.py). Parameters require
    gradients for autograd (``loss.backward()``), not for torch.func."""

    def __init__(self, spec: Spec, device: str, precision: str, autograd: bool = True) -> None:
        super().__init__(spec, device, precision)
        self.layers = {n.path: n.layer for n in graph.nodes(spec.model, spec.input_shape)}
        self.params = self._load(spec.params, trainable=True, requires_grad=autograd)
        self.buffers = self._load(spec.state, trainable=False)
        self.implementation = {type(layer).__name__: IMPLEMENTATION[type(layer)]
                               for layer in self.layers.values() if type(layer) in IMPLEMENTATION}

    def _load(self, flat: dict[str, np.ndarray], trainable: bool,
              requires_grad: bool = False) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for path, arrays in graph.group(flat).items():
            native = TABLE[type(self.layers[path])].to_torch(arrays) if trainable else arrays
            out[path] = {k: torch.tensor(np.asarray(v), device=self.device,
                                         requires_grad=requires_grad)
                         for k, v in native.items()}
        return out

    def _forward(self, params: dict[str, dict], x: torch.Tensor, train: bool) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits, _ = graph.apply(self.spec.model, params, self.buffers, x, train, leaf)
        return logits

    def _loss(self, params: dict[str, dict], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self._forward(params, x, True).float()  # the loss in float32 in every precision
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def predict(self, x: Any) -> torch.Tensor:
        with torch.no_grad():  # evaluation is not timed: eager in every mode
            return self._forward(self.params, x, False).float()

    def weights(self) -> dict[str, np.ndarray]:
        return graph.ungroup({
            path: TABLE[type(self.layers[path])].from_torch(
                {k: v.detach().cpu().numpy().copy() for k, v in arrays.items()})
            for path, arrays in self.params.items()})

    def state(self) -> dict[str, np.ndarray]:
        return graph.ungroup({path: {k: v.cpu().numpy().copy() for k, v in arrays.items()}
                              for path, arrays in self.buffers.items()})


class TorchTrainer(FunctionalModel):
    """The identical step: the functional model, torch.optim.AdamW with its defaults, eager or
    torch.compile of the whole step.

    The tuned tier's variants of this step pass ``adamw`` (further AdamW options, with a float
    learning rate) or ``compiled_autograd``."""

    def __init__(self, spec: Spec, mode: str, device: str, precision: str,
                 adamw: dict[str, Any] | None = None, compiled_autograd: bool = False) -> None:
        super().__init__(spec, device, precision)
        decay = spec.decay
        flat = graph.ungroup(self.params)
        groups = [{"params": [p for k, p in flat.items() if decay[k] == wd],
                   "weight_decay": spec.optimizer.weight_decay if wd else 0.0}
                  for wd in (True, False)]
        o = spec.optimizer
        # A schedule changes the rate every step: as a tensor (filled in place) it does not
        # retrace the compiled step; torch's CUDA (foreach) path then needs capturable=True,
        # which its CPU path refuses. The eager variants' foreach and fused paths take a float.
        scheduled = spec.schedule is not None
        tensor_lr = scheduled and not adamw
        options = {"betas": (o.beta1, o.beta2), "eps": o.eps, "amsgrad": False,
                   "capturable": tensor_lr and self.device.type == "cuda", **(adamw or {})}
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]],
            lr=torch.tensor(o.lr, device=self.device) if tensor_lr else o.lr, **options)
        compile_options = None
        self._step = self._eager_step
        if mode == "compiled":
            # Dynamo reads the compiled-autograd flag when torch.compile wraps the function
            with torch._dynamo.config.patch(compiled_autograd=compiled_autograd):
                self._step = torch.compile(self._eager_step)
            compile_options = {"fn": "torch.compile", "mode": "default", "fullgraph": False}
        self.manifest = {
            "api": "torch.nn.functional on a dict of parameters (harness.model.graph.apply)",
            "optimizer": {"class": "torch.optim.AdamW", "lr": o.lr,
                          "lr_type": "float32 tensor, filled per step" if tensor_lr else "float",
                          "weight_decay": o.weight_decay, "param_groups": "decay / no decay",
                          **{k: list(v) if isinstance(v, tuple) else v
                             for k, v in options.items()}},
            "compile": compile_options,
            "flags": {"torch._dynamo.config.compiled_autograd": True} if compiled_autograd
            else {},
            "differences": "",
        }

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.params, x, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _train_step(self, batch: Any) -> torch.Tensor:
        if self.spec.schedule is not None:
            lr = self.spec.lr(self.step_count)
            for group in self.optimizer.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr
        return self._step(*batch)


def build(spec: Spec, mode: str, device: str, precision: str = "fp32") -> TorchTrainer:
    return TorchTrainer(spec, mode, device, precision)
