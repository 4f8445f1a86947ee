"""PyTorch backend: the model as torch.nn.functional operations on a dict of parameters (one
table in translate.py), torch.optim.AdamW, eager or torch.compile of the whole step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.backends import Spec, Unavailable
from harness.backends.torch.translate import IMPLEMENTATION, TABLE, leaf
from harness.model import graph


def info() -> dict[str, Any]:
    return {
        "framework_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "model_api": "torch.nn.functional on a dict of parameters + torch.optim.AdamW",
    }


def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
    """Thread count and float32 precision (TF32 on or off, cuBLAS and cuDNN), read back."""
    if threads:
        torch.set_num_threads(threads)
    # TensorFlow and XLA flush subnormal floats to zero on CPU; torch does not by default, and
    # subnormals (saturated gates, tiny gradients) can make a CPU step many times slower.
    flush = torch.set_flush_denormal(True)
    fp32 = "tf32" if precision == "tf32" else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9 API
        torch.backends.cuda.matmul.fp32_precision = fp32
        torch.backends.cudnn.conv.fp32_precision = fp32
        torch.backends.cudnn.rnn.fp32_precision = fp32
        read = {"cuda_matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
                "cudnn_conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision}
    else:
        torch.backends.cuda.matmul.allow_tf32 = fp32 == "tf32"
        torch.backends.cudnn.allow_tf32 = fp32 == "tf32"
        read = {"cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    return {"intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(), **read,
            "flush_denormal": flush,
            "compute_dtype": "bfloat16 (autocast)" if precision == "bf16" else "float32"}


def _device(device: str) -> torch.device:
    if device == "cuda":
        if not torch.cuda.is_available():
            raise Unavailable("torch sees no CUDA device (CPU build or no GPU)")
        return torch.device("cuda:0")
    return torch.device("cpu")


class TorchTrainer:
    def __init__(self, spec: Spec, mode: str, device: str, precision: str) -> None:
        self.spec = spec
        self.device = _device(device)
        self.bf16 = precision == "bf16"
        self.layers = {n.path: n.layer for n in graph.nodes(spec.model, spec.input_shape)}
        self.params = self._load(spec.params, requires_grad=True)
        self.buffers = self._load(spec.state, requires_grad=False)
        self.implementation = {type(layer).__name__: IMPLEMENTATION[type(layer)]
                               for layer in self.layers.values() if type(layer) in IMPLEMENTATION}
        decay = spec.decay
        flat = graph.ungroup(self.params)
        groups = [{"params": [p for k, p in flat.items() if decay[k] == wd],
                   "weight_decay": spec.optimizer.weight_decay if wd else 0.0}
                  for wd in (True, False)]
        o = spec.optimizer
        # A schedule changes the rate every step: as a tensor (filled in place) it does not
        # retrace the compiled step; torch's CUDA (foreach) path then needs capturable=True,
        # which its CPU path refuses.
        scheduled = spec.schedule is not None
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]],
            lr=torch.tensor(o.lr, device=self.device) if scheduled else o.lr,
            betas=(o.beta1, o.beta2), eps=o.eps, amsgrad=False,
            capturable=scheduled and self.device.type == "cuda")
        self.steps = 0
        self._step = torch.compile(self._eager_step) if mode == "compiled" else self._eager_step

    def _load(self, flat: dict[str, np.ndarray], requires_grad: bool) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for path, arrays in graph.group(flat).items():
            native = TABLE[type(self.layers[path])].to_torch(arrays) if requires_grad else arrays
            out[path] = {k: torch.tensor(np.asarray(v), device=self.device,
                                         requires_grad=requires_grad)
                         for k, v in native.items()}
        return out

    def _forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits, _ = graph.apply(self.spec.model, self.params, self.buffers, x, train, leaf)
        return logits

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._forward(x, True).float()  # the loss in float32 in every precision
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        self.optimizer.step()
        return loss.detach()

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
        self.steps += 1
        if self.spec.schedule is not None:
            lr = self.spec.lr(self.steps)
            for group in self.optimizer.param_groups:
                group["lr"].fill_(lr)
        return self._step(*batch)

    def predict(self, x: Any) -> torch.Tensor:
        with torch.no_grad():
            return self._forward(x, False).float()  # evaluation is not timed: eager in every mode

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

    def weights(self) -> dict[str, np.ndarray]:
        return graph.ungroup({
            path: TABLE[type(self.layers[path])].from_torch(
                {k: v.detach().cpu().numpy().copy() for k, v in arrays.items()})
            for path, arrays in self.params.items()})

    def state(self) -> dict[str, np.ndarray]:
        return graph.ungroup({path: {k: v.cpu().numpy().copy() for k, v in arrays.items()}
                              for path, arrays in self.buffers.items()})


def build(spec: Spec, mode: str, device: str, precision: str = "fp32") -> TorchTrainer:
    return TorchTrainer(spec, mode, device, precision)
