"""The idiomatic tier: PyTorch as its own tutorials write it. An nn.Module tree of standard
modules built from the model, nn.CrossEntropyLoss, torch.optim.Adam (AdamW with decay and no-
decay parameter groups when the workload decays weights) at its defaults, LambdaLR for the
schedule, and the plain loop: zero_grad, forward, loss, backward, step, scheduler step. Mode
"compiled" is the same loop with ``model = torch.compile(model)``; the optimizer stays eager.

The modules start from the canonical weights, so the trajectory is the identical tier's. Module
names are the canonical paths ("3.body.1"), except attention, which nanoGPT's way holds its
projections: the canonical Dense, CausalSelfAttention, Dense triple becomes one module at the
first Dense's path, with ``c_attn`` and ``c_proj``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.backends import Spec
from harness.backends.torch.identical import OnDevice
from harness.backends.torch.translate import TABLE
from harness.model import graph
from harness.model import layers as L
from harness.model.layers import Shape


class Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class CausalSelfAttention(nn.Module):
    """nanoGPT's: one Linear for queries, keys and values, causal scaled dot-product attention
    over the heads, an output Linear."""

    def __init__(self, dim: int, heads: int, bias: bool, proj_bias: bool) -> None:
        super().__init__()
        self.c_attn = nn.Linear(dim, 3 * dim, bias=bias)
        self.c_proj = nn.Linear(dim, dim, bias=proj_bias)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.size()
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (a.view(n, t, self.heads, d // self.heads).transpose(1, 2) for a in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(n, t, d))


class PositionEmbedding(nn.Embedding):
    """Learned absolute positions added to the token vectors (GPT-2's ``wpe``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(torch.arange(x.size(1), device=x.device))


class LSTM(nn.LSTM):
    """nn.LSTM(batch_first=True) from a zero state, returning the output sequence only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)[0]


# canonical array name -> the module's parameter or buffer name, per layer type
NAMES: dict[type, dict[str, str]] = {
    L.Dense: {"kernel": "weight", "bias": "bias"},
    L.Conv2D: {"kernel": "weight", "bias": "bias"},
    L.BatchNorm: {"scale": "weight", "offset": "bias", "mean": "running_mean",
                  "var": "running_var"},
    L.LayerNorm: {"scale": "weight", "offset": "bias"},
    L.Embedding: {"table": "weight"},
    L.AddPositions: {"table": "weight"},
    L.LSTM: {"kernel": "weight_ih_l0", "recurrent": "weight_hh_l0", "bias": "bias_ih_l0",
             "recurrent_bias": "bias_hh_l0"},
}


IMPLEMENTATION = {
    L.CausalSelfAttention: "F.scaled_dot_product_attention(is_causal=True)",
    L.LSTM: "nn.LSTM: ATen's fused LSTM (cuDNN on GPU)",
}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_attention(layers: tuple[Any, ...], shape: Shape) -> bool:
    """Dense(3D), CausalSelfAttention, Dense(D) on (T, D): nanoGPT's attention module."""
    return (len(layers) >= 3 and isinstance(layers[0], L.Dense)
            and isinstance(layers[1], L.CausalSelfAttention) and isinstance(layers[2], L.Dense)
            and layers[0].units == 3 * shape[-1] and layers[2].units == shape[-1])


class Builder:
    """The module tree of a model, and where each canonical layer's arrays live in it."""

    def __init__(self) -> None:
        self.modules: dict[str, nn.Module] = {}  # canonical leaf path -> its module
        self.where: dict[str, str] = {}          # canonical leaf path -> module path

    def build(self, model: Any, shape: Shape, path: str = "") -> nn.Module:
        if isinstance(model, graph.Residual):
            body = self.build(model.body, shape, _join(path, "body"))
            if model.shortcut is None:
                return Residual(body)
            return Residual(body, self.build(model.shortcut, shape, _join(path, "shortcut")))
        if not isinstance(model, graph.Sequential):
            self.where[path] = path
            self.modules[path] = self.leaf(model, shape)
            return self.modules[path]
        children: OrderedDict[str, nn.Module] = OrderedDict()
        layers, i = model.layers, 0
        while i < len(layers):
            name = str(i)
            if _is_attention(layers[i:], shape):
                qkv, attention, proj = layers[i : i + 3]
                children[name] = CausalSelfAttention(shape[-1], attention.heads, qkv.bias,
                                                     proj.bias)
                self.where[_join(path, name)] = _join(path, f"{name}.c_attn")
                self.where[_join(path, str(i + 2))] = _join(path, f"{name}.c_proj")
                shape, i = graph.output_shape(graph.Sequential(layers[i : i + 3]), shape), i + 3
                continue
            children[name] = self.build(layers[i], shape, _join(path, name))
            shape, i = graph.output_shape(layers[i], shape), i + 1
        return nn.Sequential(children)

    def leaf(self, layer: Any, shape: Shape) -> nn.Module:
        match layer:
            case L.Dense():
                return nn.Linear(shape[-1], layer.units, bias=layer.bias)
            case L.Conv2D():
                return nn.Conv2d(shape[-1], layer.filters, layer.kernel, layer.stride,
                                 padding=layer.padding, bias=layer.bias)
            case L.MaxPool2D():
                return nn.MaxPool2d(layer.size)
            case L.GlobalAvgPool():
                return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            case L.ReLU():
                return nn.ReLU()
            case L.GELU():
                return nn.GELU()
            case L.Flatten():
                return nn.Flatten()  # C, H, W order: the next Linear's columns are permuted
            case L.BatchNorm() if len(shape) in (1, 3):
                norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
                return norm(shape[-1], eps=layer.eps, momentum=layer.momentum)
            case L.LayerNorm():
                return nn.LayerNorm(shape[-1], eps=layer.eps)
            case L.Embedding():
                return nn.Embedding(layer.vocab, layer.dim)
            case L.AddPositions():
                return PositionEmbedding(layer.context, shape[-1])
            case L.TiedDense():
                head = nn.Linear(shape[-1], layer.vocab, bias=False)
                head.weight = self.modules[layer.source.rpartition(".")[0]].weight
                return head
            case L.LSTM():
                return LSTM(shape[-1], layer.hidden, batch_first=True)
        raise NotImplementedError(f"no idiomatic torch module for {layer} on input {shape}")


def _hwc_rows(kernel: np.ndarray, hwc: Shape, inverse: bool = False) -> np.ndarray:
    """A Dense kernel after Flatten: rows in canonical H, W, C order <-> torch's C, H, W."""
    h, w, c = hwc
    if inverse:
        return kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
    return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)


class IdiomaticTrainer(OnDevice):
    def __init__(self, spec: Spec, mode: str, device: str, precision: str) -> None:
        super().__init__(spec, device, precision)
        nodes = graph.nodes(spec.model, spec.input_shape)
        self.layers = {n.path: n.layer for n in nodes}
        builder = Builder()
        self.module = builder.build(spec.model, spec.input_shape).to(self.device)
        self.where = builder.where
        # the Linear after nn.Flatten of an image reads C, H, W order
        self.flattened = {b.path: a.in_shape for a, b in zip(nodes, nodes[1:], strict=False)
                          if isinstance(a.layer, L.Flatten) and len(a.in_shape) == 3}
        if not all(isinstance(self.layers[p], L.Dense) for p in self.flattened):
            raise NotImplementedError("idiomatic torch needs a Dense layer after Flatten")
        self._load(spec.params, trainable=True)
        self._load(spec.state, trainable=False)
        self.module.train()
        self.model = torch.compile(self.module) if mode == "compiled" else self.module
        self.loss_fn = nn.CrossEntropyLoss()

        o = spec.optimizer
        params = {k: self._get(k, trainable=True) for k in spec.params}
        options = {"lr": o.lr, "betas": (o.beta1, o.beta2), "eps": o.eps}
        if o.weight_decay == 0:
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(self.module.parameters(),
                                                                     **options)
        else:
            decay = spec.decay
            groups = [{"params": [p for k, p in params.items() if decay[k]],
                       "weight_decay": o.weight_decay},
                      {"params": [p for k, p in params.items() if not decay[k]],
                       "weight_decay": 0.0}]
            self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], **options)
        self.scheduler = None
        if spec.schedule is not None:
            schedule, total = spec.schedule, spec.total_steps
            # LambdaLR counts from 0 at construction; the workload's steps count from 1
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda i: float(schedule.factor(i + 1, total)))

        self.implementation = {type(layer).__name__: IMPLEMENTATION[type(layer)]
                               for layer in self.layers.values() if type(layer) in IMPLEMENTATION}
        self.manifest = {
            "api": "nn.Module tree (nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.LayerNorm, "
                   "nn.Embedding, nn.LSTM, nanoGPT-style attention), nn.CrossEntropyLoss",
            "optimizer": {"class": f"torch.optim.{type(self.optimizer).__name__}",
                          "lr": o.lr, "lr_type": "float", "weight_decay": o.weight_decay,
                          "param_groups": "decay / no decay" if o.weight_decay else "one",
                          "betas": [o.beta1, o.beta2], "eps": o.eps,
                          "other options": "torch's defaults",
                          "scheduler": "LambdaLR" if self.scheduler else None},
            "compile": {"fn": "torch.compile(model)", "mode": "default", "fullgraph": False}
            if mode == "compiled" else None,
            "flags": {},
            "differences": "",
        }

    def _name(self, key: str) -> str:
        """The module path of a canonical array ("2.body.1.kernel" -> "2.body.1.c_attn.weight")."""
        path, _, name = key.rpartition(".")
        return f"{self.where[path]}.{NAMES[type(self.layers[path])][name]}"

    def _get(self, key: str, trainable: bool) -> torch.Tensor:
        get = self.module.get_parameter if trainable else self.module.get_buffer
        return get(self._name(key))

    def _load(self, flat: dict[str, np.ndarray], trainable: bool) -> None:
        with torch.no_grad():
            for path, arrays in graph.group(flat).items():
                if path in self.flattened:
                    arrays = {**arrays, "kernel": _hwc_rows(arrays["kernel"], self.flattened[path])}
                if trainable:
                    arrays = TABLE[type(self.layers[path])].to_torch(arrays)
                for name, a in arrays.items():
                    self._get(f"{path}.{name}", trainable).copy_(torch.from_numpy(np.asarray(a)))

    def _read(self, flat: dict[str, np.ndarray], trainable: bool) -> dict[str, np.ndarray]:
        out = {}
        for path, names in graph.group(flat).items():
            arrays = {name: self._get(f"{path}.{name}", trainable).detach().cpu().numpy().copy()
                      for name in names}
            if trainable:
                arrays = TABLE[type(self.layers[path])].from_torch(arrays)
            if path in self.flattened:
                arrays["kernel"] = _hwc_rows(arrays["kernel"], self.flattened[path], inverse=True)
            out[path] = arrays
        return graph.ungroup(out)

    def _train_step(self, batch: Any) -> torch.Tensor:
        x, y = batch
        self.optimizer.zero_grad()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x)
            loss = self.loss_fn(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()

    def predict(self, x: Any) -> torch.Tensor:
        self.model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                             enabled=self.bf16):
            logits = self.model(x)
        self.model.train()
        return logits.float()

    def weights(self) -> dict[str, np.ndarray]:
        return self._read(self.spec.params, trainable=True)

    def state(self) -> dict[str, np.ndarray]:
        return self._read(self.spec.state, trainable=False)


def build(spec: Spec, mode: str, device: str, precision: str = "fp32") -> IdiomaticTrainer:
    return IdiomaticTrainer(spec, mode, device, precision)
