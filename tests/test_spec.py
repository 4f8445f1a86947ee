from __future__ import annotations

import numpy as np
import pytest

from harness.init import init_weights
from harness.spec import WORKLOADS, Cell, check_choice, layer_shapes, param_count, param_shapes


def test_mlp_is_the_seed_network() -> None:
    mlp = WORKLOADS["mlp"]
    # flatten -> 128 -> ReLU -> 64 -> ReLU -> 10 on 28x28 MNIST, as in the seed article
    assert [s for s in param_shapes(mlp.layers, (28, 28, 1))] == [
        (784, 128), (128,), (128, 64), (64,), (64, 10), (10,)]
    assert param_count(mlp.layers, (8, 8, 1)) == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    opt = mlp.optimizer
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps) == (1e-3, 0.9, 0.999, 1e-8)


@pytest.mark.parametrize("shape, flat", [((8, 8, 1), 2 * 2 * 16), ((28, 28, 1), 7 * 7 * 16)])
def test_cnn_shapes_follow_the_dataset(shape: tuple[int, ...], flat: int) -> None:
    cnn = WORKLOADS["cnn"]
    shapes = layer_shapes(cnn.layers, shape)
    assert shapes[0] == (shape, (shape[0], shape[1], 6))
    flatten_out = shapes[6][1]
    assert flatten_out == (flat,)
    assert shapes[-1][1] == (10,)


def test_dense_on_an_image_is_refused() -> None:
    from harness.spec import Dense

    with pytest.raises(ValueError, match="Flatten"):
        layer_shapes((Dense(10),), (8, 8, 1))


def test_check_choice_names_the_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown workload 'resnet'; valid workloads: mlp, cnn"):
        check_choice("workload", "resnet", tuple(WORKLOADS))


def test_cell_round_trips_through_json() -> None:
    cell = Cell("jax", "cnn", "compiled", batch_size=64)
    assert Cell.from_json(cell.to_json()) == cell
    assert cell.id == "cnn-jax-compiled-cpu-b64"


def test_initial_weights_are_deterministic_and_canonical() -> None:
    cnn = WORKLOADS["cnn"]
    a, b = init_weights(cnn, (8, 8, 1), seed=3), init_weights(cnn, (8, 8, 1), seed=3)
    c = init_weights(cnn, (8, 8, 1), seed=4)
    assert [w.shape for w in a] == param_shapes(cnn.layers, (8, 8, 1))
    assert all(w.dtype == np.float32 for w in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert all(np.abs(w).max() > 0 for w in a)  # biases are non-zero on purpose
