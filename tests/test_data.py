from __future__ import annotations

import gzip
import hashlib
import io
import re
import struct
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from harness import data
from harness.data import download, images, text


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


def test_digits_read_directly_equal_scikit_learns() -> None:
    """The bundled file is parsed without importing scikit-learn; the images are load_digits's."""
    from sklearn.datasets import load_digits

    bunch, d = load_digits(), data.digits()
    x = np.concatenate([d.x_train, d.x_test])[..., 0] * 16.0
    y = np.concatenate([d.y_train, d.y_test])
    order = np.lexsort(x.reshape(len(x), -1).T)
    ref_order = np.lexsort(bunch.images.reshape(len(x), -1).T)
    np.testing.assert_array_equal(x[order], bunch.images[ref_order])
    np.testing.assert_array_equal(y[order], bunch.target[ref_order])


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
    with pytest.raises(ValueError, match="valid datasets: digits, digits32, mnist, "):
        data.load("cifar")


def test_dataset_names_and_kinds() -> None:
    assert list(data.DATASETS) == ["digits", "digits32", "mnist", "fashion-mnist", "cifar10",
                                   "synthetic", "pydoc", "tinyshakespeare"]
    assert data.kind_of("cifar10") == "image" and data.kind_of("pydoc") == "text"
    with pytest.raises(ValueError, match="valid datasets: .*tinyshakespeare"):
        data.kind_of("imagenet")
    with pytest.raises(ValueError, match="seq_len"):
        data.load("pydoc")
    assert data.load("synthetic", input_shape=(32, 32, 3)).input_shape == (32, 32, 3)


def test_digits32_is_the_digits_upsampled() -> None:
    small, big = data.digits(), data.load("digits32")
    assert big.input_shape == (32, 32, 3) and big.x_train.dtype == np.float32
    np.testing.assert_array_equal(big.y_test, small.y_test)
    for b, s in ((big.x_train, small.x_train), (big.x_test, small.x_test)):
        np.testing.assert_array_equal(b[:, ::4, ::4, :], np.repeat(s, 3, axis=3))
        np.testing.assert_array_equal(b[:, 3::4, 1::4, 2], s[..., 0])


def test_pydoc_windows() -> None:
    a, b = data.load("pydoc", seq_len=64), data.load("pydoc", seq_len=64)
    corpus = text.pydoc_corpus()
    assert a.kind == "text" and a.num_classes == 256 and a.x_train.dtype == np.int32
    assert a.x_train.shape == a.y_train.shape and a.input_shape == (64,)
    assert len(a.x_train) == (int(len(corpus) * 0.9) - 1) // 64
    np.testing.assert_array_equal(a.x_train[:, 1:], a.y_train[:, :-1])  # y is x shifted by one
    np.testing.assert_array_equal(a.x_train[1:, 0], a.y_train[:-1, -1])  # windows continue
    assert bytes(a.x_train[0].astype(np.uint8)) == corpus[:64]
    assert a.sha256 == b.sha256 == hashlib.sha256(corpus).hexdigest()
    assert f"{len(corpus):,} bytes" in a.source
    with pytest.raises(ValueError, match="too few for one window"):
        text.corpus_dataset("tiny", b"0123456789", 4, "")


def fake_cifar_archive(path: Path, per_file: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A cifar-10-binary.tar.gz laid out like the real one, with a few random records a file."""
    rng = np.random.default_rng(0)
    records = rng.integers(0, 256, (6 * per_file, 3073), dtype=np.uint8)
    records[:, 0] %= 10
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate(images.CIFAR10_TRAIN + images.CIFAR10_TEST):
            blob = records[i * per_file : (i + 1) * per_file].tobytes()
            member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))
    return records[: 5 * per_file], records[5 * per_file :]


def test_cifar10_from_a_checked_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "cifar-10-binary.tar.gz"
    train, test = fake_cifar_archive(archive)
    monkeypatch.setitem(download.CHECKSUMS, images.CIFAR10_URL, data.sha256(archive))
    ds = data.load("cifar10", tmp_path)
    assert ds.input_shape == (32, 32, 3) and ds.x_train.shape[0] == 15 and len(ds.y_test) == 3
    np.testing.assert_array_equal(ds.y_train, train[:, 0])
    pixel = train[4, 1:].reshape(3, 32, 32)[:, 5, 7]  # channel-major on disk
    np.testing.assert_allclose(ds.x_train[4, 5, 7], pixel / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds.x_test[2, 31, 0, 1], test[2, 1 + 1024 + 31 * 32] / 255.0)

    monkeypatch.setitem(download.CHECKSUMS, images.CIFAR10_URL, "0" * 64)
    with pytest.raises(RuntimeError, match="delete it to download it again"):
        data.load("cifar10", tmp_path)


def test_tinyshakespeare_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    (tmp_path / "input.txt").write_bytes(corpus)
    monkeypatch.setitem(download.CHECKSUMS, text.TINYSHAKESPEARE_URL,
                        hashlib.sha256(corpus).hexdigest())
    ds = data.load("tinyshakespeare", tmp_path, seq_len=16)
    assert ds.sha256 == hashlib.sha256(corpus).hexdigest() and ds.input_shape == (16,)
    assert bytes(ds.y_test[0].astype(np.uint8)) == corpus[int(len(corpus) * 0.9) + 1 :][:16]

    monkeypatch.setitem(download.CHECKSUMS, text.TINYSHAKESPEARE_URL, "f" * 64)
    with pytest.raises(RuntimeError, match="SHA-256 .* expected f{64}; delete it"):
        data.load("tinyshakespeare", tmp_path, seq_len=16)


@pytest.mark.parametrize(("name", "kwargs"), [("cifar10", {}),
                                              ("tinyshakespeare", {"seq_len": 8})])
def test_offline_download_says_where_to_put_the_file(
        name: str, kwargs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> io.BytesIO:
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match=f"not in {re.escape(str(tmp_path))}.*--data-dir"):
        data.load(name, tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())
