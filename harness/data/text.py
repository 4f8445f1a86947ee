"""Byte-level text corpora in next-token windows: x = tokens[t : t+T], y = tokens[t+1 : t+T+1].

Tokens are the corpus bytes (vocabulary 256); the first 90% of the stream trains, the rest tests.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import numpy as np

from harness.data.base import Dataset
from harness.data.download import cached

VOCAB = 256
TRAIN_FRACTION = 0.9
TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")


def pydoc_corpus() -> bytes:
    """CPython's bundled documentation topics, sorted by topic and joined by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")


def pydoc(seq_len: int) -> Dataset:
    """This interpreter's pydoc text; its bytes (and hash) differ between Python versions."""
    corpus = pydoc_corpus()
    return corpus_dataset("pydoc", corpus, seq_len,
                          f"CPython {platform.python_version()} documentation text "
                          f"(pydoc_data.topics), {len(corpus):,} bytes, byte-level")


def tinyshakespeare(directory: Path, seq_len: int) -> Dataset:
    """karpathy's char-rnn tinyshakespeare input.txt, downloaded once and checked by SHA-256."""
    corpus = cached(TINYSHAKESPEARE_URL, directory, "tinyshakespeare").read_bytes()
    return corpus_dataset("tinyshakespeare", corpus, seq_len,
                          f"tinyshakespeare (karpathy/char-rnn input.txt), {len(corpus):,} bytes, "
                          "byte-level")


def corpus_dataset(name: str, corpus: bytes, seq_len: int, source: str) -> Dataset:
    """Split the corpus bytes 90/10 and cut each part into windows of seq_len tokens."""
    tokens = np.frombuffer(corpus, dtype=np.uint8).astype(np.int32)
    cut = int(len(tokens) * TRAIN_FRACTION)
    parts = {}
    for split, stream in (("train", tokens[:cut]), ("test", tokens[cut:])):
        if seq_len < 1 or len(stream) < seq_len + 1:
            raise ValueError(f"{name}: the {split} split of the {len(corpus):,}-byte corpus holds "
                             f"{len(stream):,} tokens, too few for one window of seq_len "
                             f"{seq_len} (+1 target)")
        parts[split] = windows(stream, seq_len)
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes=VOCAB, kind="text",
                   source=source, sha256=hashlib.sha256(corpus).hexdigest())


def windows(tokens: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from windows of seq_len + 1 tokens at stride seq_len; the incomplete tail drops."""
    n = (len(tokens) - 1) // seq_len
    rows = tokens[np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)]
    return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])
