"""PyTorch backend: nn.Sequential + torch.optim.Adam, eager or torch.compile of the whole step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.backends import Unavailable
from harness.spec import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Shape, Workload, layer_shapes


def info() -> dict[str, Any]:
    return {
        "framework_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "model_api": "torch.nn.Sequential",
    }


def configure(device: str, precision: str, threads: int) -> dict[str, Any]:
    """Thread count and float32 precision (TF32 on or off, cuBLAS and cuDNN), read back."""
    if threads:
        torch.set_num_threads(threads)
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
            "compute_dtype": "bfloat16 (autocast)" if precision == "bf16" else "float32"}


def _device(device: str) -> torch.device:
    if device == "cuda":
        if not torch.cuda.is_available():
            raise Unavailable("torch sees no CUDA device (CPU build or no GPU)")
        return torch.device("cuda:0")
    return torch.device("cpu")


def _translate(workload: Workload, weights: list[np.ndarray],
               input_shape: Shape) -> tuple[nn.Sequential, dict[int, Shape]]:
    """Build the module and load canonical weights (Linear is out x in, conv OIHW, data NCHW).

    Also returns {index of a Linear fed by a flattened image: that image's (H, W, C)}.
    """
    modules: list[nn.Module] = []
    image_fed: dict[int, Shape] = {}
    params = iter(weights)
    flattened_chw: Shape | None = None  # (H, W, C) of the last Flatten of an image
    for layer, (shape_in, _) in zip(workload.layers, layer_shapes(workload.layers, input_shape)):
        if isinstance(layer, Dense):
            m = nn.Linear(shape_in[0], layer.units)
            kernel, bias = next(params), next(params)
            if flattened_chw is not None:
                # Canonical flatten order is H, W, C; torch flattens C, H, W: permute the rows.
                kernel = _hwc_rows_to_chw(kernel, flattened_chw)
                image_fed[len(modules)] = flattened_chw
                flattened_chw = None
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
                m.bias.copy_(torch.from_numpy(bias))
        elif isinstance(layer, Conv2D):
            m = nn.Conv2d(shape_in[2], layer.filters, layer.kernel, padding=layer.kernel // 2)
            kernel, bias = next(params), next(params)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
                m.bias.copy_(torch.from_numpy(bias))
        elif isinstance(layer, MaxPool2D):
            m = nn.MaxPool2d(layer.size)
        elif isinstance(layer, ReLU):
            m = nn.ReLU()
        elif isinstance(layer, Flatten):
            m = nn.Flatten()
            flattened_chw = shape_in if len(shape_in) == 3 else None
        else:
            raise TypeError(f"torch backend cannot translate {layer!r}")
        modules.append(m)
    return nn.Sequential(*modules), image_fed


def _hwc_rows_to_chw(kernel: np.ndarray, hwc: Shape) -> np.ndarray:
    h, w, c = hwc
    return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)


def _chw_rows_to_hwc(kernel: np.ndarray, hwc: Shape) -> np.ndarray:
    h, w, c = hwc
    return kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)


class TorchTrainer:
    def __init__(self, workload: Workload, weights: list[np.ndarray], mode: str, device: str,
                 input_shape: Shape, precision: str) -> None:
        self.device = _device(device)
        self.bf16 = precision == "bf16"
        model, self._image_fed = _translate(workload, weights, input_shape)
        self.model = model.to(self.device)
        opt = workload.optimizer
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps,
            weight_decay=0.0, amsgrad=False)
        self._step = torch.compile(self._eager_step) if mode == "compiled" else self._eager_step

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y)  # the loss in float32 in every precision
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        xt = torch.from_numpy(np.ascontiguousarray(x))
        if xt.dim() == 4:
            xt = xt.permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, once, outside the timing
        xt = xt.to(self.device)
        if y is None:
            return xt
        return xt, torch.from_numpy(y.astype(np.int64)).to(self.device)

    def step(self, batch: Any) -> torch.Tensor:
        return self._step(*batch)

    def predict(self, x: Any) -> torch.Tensor:
        with torch.no_grad():
            self.model.eval()
            out = self.model(x)  # evaluation is not timed: eager in every mode
            self.model.train()
            return out

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

    def weights(self) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for i, m in enumerate(self.model):
            if isinstance(m, nn.Linear):
                kernel = m.weight.detach().cpu().numpy().T
                if i in self._image_fed:
                    kernel = _chw_rows_to_hwc(kernel, self._image_fed[i])
                out += [kernel, m.bias.detach().cpu().numpy()]
            elif isinstance(m, nn.Conv2d):
                out += [m.weight.detach().cpu().numpy().transpose(2, 3, 1, 0),
                        m.bias.detach().cpu().numpy()]
        return out


def build(workload: Workload, weights: list[np.ndarray], mode: str, device: str,
          input_shape: Shape, precision: str = "fp32") -> TorchTrainer:
    return TorchTrainer(workload, weights, mode, device, input_shape, precision)
