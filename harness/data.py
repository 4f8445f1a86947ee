"""Datasets as numpy arrays, and the one batch order every framework sees.

Images are float32 NHWC scaled to [0, 1]; labels are int32 class indices.
- ``digits``: scikit-learn's bundled UCI handwritten digits (8x8, real data, works offline).
- ``mnist`` / ``fashion-mnist``: IDX files from a data directory, downloaded into it on demand
  and checked against their SHA-256.
- ``synthetic``: random images of any shape, for pure throughput (accuracy means nothing).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("digits", "mnist", "fashion-mnist", "synthetic")

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# SHA-256 of the gzipped files as distributed (MNIST: the mirror TensorFlow and torchvision use).
IDX_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    }),
}

SYNTHETIC_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = NUM_CLASSES

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def default_data_dir() -> Path:
    """$FRAMEBENCH_DATA, else the user cache (~/.cache/framebench)."""
    env = os.environ.get("FRAMEBENCH_DATA")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "framebench"


def load(name: str, data_dir: str | os.PathLike | None = None, seed: int = 0) -> Dataset:
    if name == "digits":
        return digits()
    if name in IDX_SOURCES:
        return idx_dataset(name, Path(data_dir) if data_dir else default_data_dir() / name)
    if name == "synthetic":
        return synthetic(SYNTHETIC_SHAPE, seed=seed)
    raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")


def digits(test_fraction: float = 0.2) -> Dataset:
    """UCI digits (1,797 images, 8x8), a fixed stratified split (seeded, same on every machine)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    y = bunch.target.astype(np.int32)
    rng = np.random.default_rng(1797)
    test_idx = []
    for cls in range(NUM_CLASSES):
        members = np.flatnonzero(y == cls)
        test_idx.extend(rng.permutation(members)[: round(len(members) * test_fraction)])
    test_mask = np.zeros(len(y), dtype=bool)
    test_mask[test_idx] = True
    return Dataset("digits", x[~test_mask], y[~test_mask], x[test_mask], y[test_mask])


def synthetic(shape: tuple[int, ...], n_train: int = 4096, n_test: int = 512,
              seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    def images(n: int) -> np.ndarray:
        return rng.random((n, *shape), dtype=np.float32)
    x_train, x_test = images(n_train), images(n_test)
    y_train = rng.integers(0, NUM_CLASSES, n_train).astype(np.int32)
    y_test = rng.integers(0, NUM_CLASSES, n_test).astype(np.int32)
    return Dataset("synthetic", x_train, y_train, x_test, y_test)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then unsigned bytes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported "
                         f"(type 0x{raw[2]:02x})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} ({int(np.prod(dims))} bytes), "
                         f"file holds {data.size}")
    return data.reshape(dims)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, directory: Path) -> None:
    """Download the missing gzipped IDX files of ``name`` into directory, checking SHA-256."""
    base, files = IDX_SOURCES[name]
    directory.mkdir(parents=True, exist_ok=True)
    for filename, expected in files.items():
        target = directory / filename
        if target.exists() or (directory / filename.removesuffix(".gz")).exists():
            continue
        partial = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(base + filename, timeout=60) as response, \
                    open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise RuntimeError(
                f"{name}: {filename} is not in {directory} and downloading it from {base} "
                f"failed ({exc}). Put the IDX files there by hand or pass --data-dir.") from exc
        got = sha256(partial)
        if got != expected:
            partial.unlink()
            raise RuntimeError(f"{name}: {filename} has SHA-256 {got}, expected {expected}")
        partial.rename(target)


def idx_dataset(name: str, directory: Path) -> Dataset:
    """Load a four-file IDX dataset (gzipped or not) from directory, downloading what is missing."""
    fetch(name, directory)
    _, files = IDX_SOURCES[name]
    arrays = []
    for stem in _IDX_FILES:
        gz = directory / f"{stem}.gz"
        if gz.exists():
            got = sha256(gz)
            if got != files[gz.name]:
                raise RuntimeError(f"{name}: {gz} has SHA-256 {got}, expected {files[gz.name]}; "
                                   "delete it to download it again")
            arrays.append(read_idx(gz))
        else:
            arrays.append(read_idx(directory / stem))
    return from_idx_arrays(name, *arrays)


def from_idx_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray) -> Dataset:
    def images(a: np.ndarray) -> np.ndarray:
        return (a.astype(np.float32) / 255.0)[..., None]
    return Dataset(name, images(x_train), y_train.astype(np.int32),
                   images(x_test), y_test.astype(np.int32))


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
