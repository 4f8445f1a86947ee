"""The Dataset record every loader returns (kept apart so the loaders import it without a cycle)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    """Train/test arrays with a leading example axis, plus what the report says about them."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = NUM_CLASSES  # for text: the vocabulary size (256, byte level)
    kind: str = "image"  # "image" | "text"
    source: str = ""  # one line for the report: where the numbers came from
    sha256: str | None = None  # text corpora: SHA-256 of the exact corpus bytes used

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])
