"""Datasets as numpy arrays, and the one batch order every framework sees.

Images are float32 NHWC scaled to [0, 1] with int32 class labels; text is int32 byte tokens in
windows (x, and y = x shifted by one). Downloads are cached in a data directory and checked
against their published SHA-256 (see download.py); everything else works offline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from harness.data.base import NUM_CLASSES, Dataset
from harness.data.download import default_data_dir, sha256
from harness.data.images import (
    _IDX_FILES,
    IDX_SOURCES,
    SYNTHETIC_SHAPE,
    cifar10,
    digits,
    digits32,
    fetch,
    from_idx_arrays,
    idx_dataset,
    read_idx,
    synthetic,
)
from harness.data.text import pydoc, tinyshakespeare, windows

__all__ = [
    "DATASETS", "DOWNLOADED", "IDX_SOURCES", "NUM_CLASSES", "SYNTHETIC_SHAPE", "_IDX_FILES",
    "Dataset", "batches", "cifar10", "data_shape", "default_data_dir", "digits", "digits32",
    "fetch", "from_idx_arrays", "idx_dataset", "kind_of", "load", "pydoc", "read_idx", "sha256",
    "synthetic", "tinyshakespeare", "windows",
]

DATASETS: dict[str, str] = {
    "digits": "image", "digits32": "image", "mnist": "image", "fashion-mnist": "image",
    "cifar10": "image", "synthetic": "image", "pydoc": "text", "tinyshakespeare": "text",
}

DOWNLOADED = ("mnist", "fashion-mnist", "cifar10", "tinyshakespeare")  # the others are bundled

IMAGE_SHAPES: dict[str, tuple[int, ...]] = {
    "digits": (8, 8, 1), "digits32": (32, 32, 3), "mnist": (28, 28, 1),
    "fashion-mnist": (28, 28, 1), "cifar10": (32, 32, 3),
}


def data_shape(name: str, seq_len: int | None = None,
               synthetic_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The per-example input shape a dataset will have, without loading it."""
    if kind_of(name) == "text":
        if seq_len is None:
            raise ValueError(f"dataset {name!r} is text: it needs a sequence length (seq_len)")
        return (seq_len,)
    if name == "synthetic":
        return tuple(synthetic_shape or SYNTHETIC_SHAPE)
    return IMAGE_SHAPES[name]


def kind_of(name: str) -> str:
    """"image" or "text"; an unknown name raises ValueError listing the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def load(name: str, data_dir: str | os.PathLike | None = None, seed: int = 0, *,
         input_shape: tuple[int, ...] | None = None, seq_len: int | None = None) -> Dataset:
    """Dataset by name; data_dir holds (or receives) its files, input_shape shapes synthetic
    images and seq_len (required for text) is the window length."""
    kind = kind_of(name)
    directory = Path(data_dir) if data_dir else default_data_dir() / name
    if kind == "text" and seq_len is None:
        raise ValueError(f"dataset {name!r} is text: it needs a sequence length (seq_len)")
    if name == "digits":
        return digits()
    if name == "digits32":
        return digits32()
    if name in IDX_SOURCES:
        return idx_dataset(name, directory)
    if name == "cifar10":
        return cifar10(directory)
    if name == "synthetic":
        return synthetic(tuple(input_shape or SYNTHETIC_SHAPE), seed=seed)
    if name == "pydoc":
        return pydoc(seq_len)
    return tinyshakespeare(directory, seq_len)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, epoch: int,
            seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of shuffled batches; the order depends only on (seed, epoch), so every framework
    sees the same batches in the same order. The last partial batch is dropped (static shapes)."""
    if batch_size > len(x):
        raise ValueError(f"batch size {batch_size} exceeds the {len(x)} training examples")
    order = np.random.default_rng([seed, epoch]).permutation(len(x))
    for start in range(0, len(x) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]
