from __future__ import annotations

import numpy as np

from harness import reference
from harness.spec import Conv2D, MaxPool2D, Workload


def test_conv_matches_a_direct_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4, 3))
    k = rng.normal(size=(3, 3, 3, 2))
    got = reference._conv_same(x, k)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((2, 5, 4, 2))
    for n in range(2):
        for i in range(5):
            for j in range(4):
                for o in range(2):
                    want[n, i, j, o] = (xp[n, i:i + 3, j:j + 3, :] * k[..., o]).sum()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_maxpool_and_bias() -> None:
    w = Workload("t", "", (Conv2D(1, 1), MaxPool2D(2)))
    x = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    out = reference.forward(w, [np.ones((1, 1, 1, 1)), np.array([0.5])], x)
    np.testing.assert_array_equal(out[0, :, :, 0], [[5.5, 7.5], [13.5, 15.5]])


def test_cross_entropy_from_logits() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    p0 = np.exp(2) / (np.exp(2) + 1 + np.exp(-1))
    want = -(np.log(p0) + np.log(1 / 3)) / 2
    assert abs(reference.cross_entropy(logits, labels) - want) < 1e-12
    # stable for huge logits
    assert np.isfinite(reference.cross_entropy(logits * 1e4, labels))
