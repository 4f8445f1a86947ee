from __future__ import annotations

import gzip
import io
import struct
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from harness import data


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def small_idx_set(directory: Path) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12),
              rng.integers(0, 256, (4, 28, 28)), rng.integers(0, 10, 4))
    for stem, a in zip(data._IDX_FILES, arrays):
        write_idx(directory / stem, a)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", a, compress)
    np.testing.assert_array_equal(data.read_idx(path), a)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(ValueError, match="header says"):
        data.read_idx(short)


def test_idx_dataset_from_a_directory(tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = small_idx_set(tmp_path)
    ds = data.load("mnist", tmp_path)
    assert ds.input_shape == (28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_allclose(ds.x_train[..., 0], x_train / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, y_test)


def test_gzipped_file_with_wrong_checksum_is_refused(tmp_path: Path) -> None:
    small_idx_set(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 28, 28)), compress=True)
    with pytest.raises(RuntimeError, match="SHA-256"):
        data.load("fashion-mnist", tmp_path)


def test_download_is_checked_and_failures_explained(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(url: str, timeout: float) -> io.BytesIO:
        return io.BytesIO(b"not mnist")

    monkeypatch.setattr(urllib.request, "urlopen", fake_download)
    with pytest.raises(RuntimeError, match="expected 440fcabf"):
        data.fetch("mnist", tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-downloaded is left behind

    def offline(url: str, timeout: float) -> io.BytesIO:
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match="--data-dir"):
        data.fetch("mnist", tmp_path)


def test_digits_split_is_fixed_and_stratified() -> None:
    a, b = data.digits(), data.digits()
    assert a.input_shape == (8, 8, 1)
    assert len(a.x_train) + len(a.x_test) == 1797
    np.testing.assert_array_equal(a.y_test, b.y_test)
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0


def test_batches_are_the_same_for_everyone_and_static() -> None:
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.arange(100, dtype=np.int32)
    e0 = [yb for _, yb in data.batches(x, y, 32, epoch=0, seed=1)]
    assert [len(b) for b in e0] == [32, 32, 32]  # last partial batch dropped
    again = [yb for _, yb in data.batches(x, y, 32, epoch=0, seed=1)]
    assert all(np.array_equal(p, q) for p, q in zip(e0, again))
    e1 = [yb for _, yb in data.batches(x, y, 32, epoch=1, seed=1)]
    assert not np.array_equal(e0[0], e1[0])
    with pytest.raises(ValueError, match="exceeds"):
        next(data.batches(x, y, 101, 0))


def test_synthetic_and_unknown() -> None:
    ds = data.synthetic((16, 16, 3), n_train=64, n_test=8)
    assert ds.input_shape == (16, 16, 3) and ds.y_train.max() < 10
    with pytest.raises(ValueError, match="valid datasets: digits, mnist"):
        data.load("cifar")
