"""PyTorch backend: three tiers of the same training step.

identical.py: the model as torch.nn.functional operations on a dict of parameters (one table in
translate.py), torch.optim.AdamW, eager or torch.compile of the whole step. idiomatic.py: an
nn.Module tree, nn.CrossEntropyLoss, torch.optim and LambdaLR, as PyTorch's tutorials write it.
tuned.py: the variants of the tuned tier's search (``BACKENDS["torch"].variants``).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.backends import Spec, check_build
from harness.backends.torch import identical, idiomatic, tuned


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
        # cuDNN through its legacy flag (conv and RNN together): torch.export still reads it,
        # and refuses per-operator flags set through the new API as "a mix of the legacy and
        # new APIs"
        torch.backends.cudnn.allow_tf32 = fp32 == "tf32"
        read = {"cuda_matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    else:
        torch.backends.cuda.matmul.allow_tf32 = fp32 == "tf32"
        torch.backends.cudnn.allow_tf32 = fp32 == "tf32"
        read = {"cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    return {"intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(), **read,
            "flush_denormal": flush,
            "compute_dtype": "bfloat16 (autocast)" if precision == "bf16" else "float32"}


def build(spec: Spec, mode: str, device: str, precision: str = "fp32", tier: str = "identical",
          variant: str = "") -> Any:
    check_build("torch", tier, mode, variant, device)
    if tier == "idiomatic":
        trainer = idiomatic.build(spec, mode, device, precision)
    elif tier == "tuned" and variant != "identical":
        trainer = tuned.build(spec, mode, device, precision, variant)
    else:
        trainer = identical.build(spec, mode, device, precision)
    trainer.manifest.update(tier=tier, mode=mode, variant=variant)
    return trainer
