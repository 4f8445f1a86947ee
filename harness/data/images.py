"""Image datasets: float32 NHWC in [0, 1], int32 labels; real data offline or checked downloads."""

from __future__ import annotations

import gzip
import importlib.util
import os
import tarfile
from pathlib import Path

import numpy as np

from harness.data.base import NUM_CLASSES, Dataset
from harness.data.download import cached, download, verify

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

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = ("test_batch.bin",)
SYNTHETIC_SHAPE = (28, 28, 1)


def digits_file() -> Path:
    """scikit-learn's bundled copy of UCI digits, found without importing scikit-learn (which
    takes a second of every cell process's start)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the digits dataset is scikit-learn's bundled copy: "
                                  "pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def digits(test_fraction: float = 0.2) -> Dataset:
    """UCI digits (1,797 images, 8x8), a fixed stratified split (seeded, same on every machine)."""
    with gzip.open(digits_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",")  # as load_digits parses it
    x = (table[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float32)[..., None]
    y = table[:, -1].astype(np.int32)
    rng = np.random.default_rng(1797)
    test_idx = []
    for cls in range(NUM_CLASSES):
        members = np.flatnonzero(y == cls)
        test_idx.extend(rng.permutation(members)[: round(len(members) * test_fraction)])
    test_mask = np.zeros(len(y), dtype=bool)
    test_mask[test_idx] = True
    return Dataset("digits", x[~test_mask], y[~test_mask], x[test_mask], y[test_mask],
                   source="scikit-learn's bundled UCI digits, 8x8, offline")


def digits32() -> Dataset:
    """digits() with its split, 4x nearest-neighbour upsampled to 32x32x3 (CIFAR's shape)."""
    d = digits()

    def upsample(x: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(np.repeat(x, 4, axis=1), 4, axis=2), 3, axis=3)

    return Dataset("digits32", upsample(d.x_train), d.y_train, upsample(d.x_test), d.y_test,
                   source="scikit-learn's bundled UCI digits, 8x8 upsampled to 32x32x3 "
                          "(nearest), offline")


def synthetic(shape: tuple[int, ...], n_train: int = 4096, n_test: int = 512,
              seed: int = 0) -> Dataset:
    """Uniform random images and labels of any shape: throughput only, accuracy means nothing."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> np.ndarray:
        return rng.random((n, *shape), dtype=np.float32)

    x_train, x_test = images(n_train), images(n_test)
    y_train = rng.integers(0, NUM_CLASSES, n_train).astype(np.int32)
    y_test = rng.integers(0, NUM_CLASSES, n_test).astype(np.int32)
    return Dataset("synthetic", x_train, y_train, x_test, y_test,
                   source=f"uniform random {'x'.join(map(str, shape))} images and labels "
                          f"(seed {seed}), throughput only")


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


def fetch(name: str, directory: Path) -> None:
    """Download the missing gzipped IDX files of ``name`` into directory, checking SHA-256."""
    base, files = IDX_SOURCES[name]
    for filename, expected in files.items():
        if (directory / filename).exists() or (directory / filename.removesuffix(".gz")).exists():
            continue
        download(base + filename, directory / filename, expected, name,
                 "Put the IDX files there by hand")


def idx_dataset(name: str, directory: Path) -> Dataset:
    """Load a four-file IDX dataset (gzipped or not) from directory, downloading what is missing."""
    fetch(name, directory)
    base, files = IDX_SOURCES[name]
    arrays = []
    for stem in _IDX_FILES:
        gz = directory / f"{stem}.gz"
        if gz.exists():
            verify(gz, files[gz.name], name)
            arrays.append(read_idx(gz))
        else:
            arrays.append(read_idx(directory / stem))
    return from_idx_arrays(name, *arrays, source=f"{name} IDX files from {base}, in {directory}")


def from_idx_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, source: str = "") -> Dataset:
    """Bytes (N, H, W) and labels to a Dataset: images /255 with a channel axis, int32 labels."""
    def images(a: np.ndarray) -> np.ndarray:
        return (a.astype(np.float32) / 255.0)[..., None]
    return Dataset(name, images(x_train), y_train.astype(np.int32),
                   images(x_test), y_test.astype(np.int32), source=source)


def cifar10(directory: Path) -> Dataset:
    """CIFAR-10 from its official binary batches: an extracted folder, else the checked archive."""
    folder = directory / CIFAR10_FOLDER
    if folder.is_dir():
        blobs = {f: (folder / f).read_bytes() for f in CIFAR10_TRAIN + CIFAR10_TEST}
        origin = str(folder)
    else:
        archive = cached(CIFAR10_URL, directory, "cifar10",
                         f"Put {CIFAR10_URL.rsplit('/', 1)[-1]} (or its extracted "
                         f"{CIFAR10_FOLDER}/) there by hand")
        blobs = _tar_members(archive, CIFAR10_TRAIN + CIFAR10_TEST)
        origin = f"{archive} (SHA-256 checked)"
    x_train, y_train = _cifar_records(b"".join(blobs[f] for f in CIFAR10_TRAIN))
    x_test, y_test = _cifar_records(b"".join(blobs[f] for f in CIFAR10_TEST))
    return Dataset("cifar10", x_train, y_train, x_test, y_test,
                   source=f"CIFAR-10 binary batches from {CIFAR10_URL}, read from {origin}")


def _tar_members(archive: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of the members of a tar archive whose base names are in names."""
    blobs: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if member.isfile() and base in names:
                blobs[base] = tar.extractfile(member).read()
    missing = [n for n in names if n not in blobs]
    if missing:
        raise RuntimeError(f"cifar10: {archive} lacks {', '.join(missing)}")
    return blobs


def _cifar_records(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Records of 1 label byte + 3,072 image bytes (C, H, W) to NHWC float32 /255 and int32."""
    record = 1 + 3 * 32 * 32
    if len(raw) % record:
        raise ValueError(f"cifar10: {len(raw)} bytes is not a whole number of "
                         f"{record}-byte records")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    images = rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32, order="C")
    images /= 255.0
    return images, rows[:, 0].astype(np.int32)
