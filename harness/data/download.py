"""The one way a dataset file gets onto disk: downloaded once, kept only if its SHA-256 matches."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

# SHA-256 of single-file downloads as published (both as listed in tensorflow_datasets'
# url_checksums); MNIST's four files keep their own table, images.IDX_SOURCES.
CHECKSUMS: dict[str, str] = {
    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz":
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt":
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
}


def default_data_dir() -> Path:
    """$FRAMEBENCH_DATA, else the user cache (~/.cache/framebench)."""
    env = os.environ.get("FRAMEBENCH_DATA")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "framebench"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str, name: str) -> None:
    """Refuse a local file whose SHA-256 is not the published one."""
    got = sha256(path)
    if got != expected:
        raise RuntimeError(f"{name}: {path} has SHA-256 {got}, expected {expected}; "
                           "delete it to download it again")


def download(url: str, target: Path, expected: str, name: str, by_hand: str) -> None:
    """Download url to target through a .part file, kept only if its SHA-256 is expected.

    by_hand completes "... failed. {by_hand} or pass --data-dir." for the offline case."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"{name}: {target.name} is not in {target.parent} and downloading it from {url} "
            f"failed ({exc}). {by_hand} or pass --data-dir.") from exc
    got = sha256(partial)
    if got != expected:
        partial.unlink()
        raise RuntimeError(f"{name}: {target.name} has SHA-256 {got}, expected {expected}")
    partial.rename(target)


def cached(url: str, directory: Path, name: str, by_hand: str = "") -> Path:
    """The checked copy of url in directory (named as in the url), downloaded when missing."""
    target = directory / url.rsplit("/", 1)[-1]
    expected = CHECKSUMS[url]
    if target.exists():
        verify(target, expected, name)
    else:
        download(url, target, expected, name, by_hand or f"Put {target.name} there by hand")
    return target
