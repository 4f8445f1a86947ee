"""The neutral model core: layer shapes, canonical initial arrays, composition, sizes, cells."""

from __future__ import annotations

import numpy as np
import pytest

from harness.model import graph
from harness.model.layers import Dense, LayerNorm, ReLU
from harness.model.workload import WarmupCosine
from harness.spec import WORKLOADS, Cell, check_choice

TEXT = (16,)


def test_mlp_is_the_seed_network() -> None:
    mlp = WORKLOADS["mlp"].model("small", (28, 28, 1), 10)
    # flatten -> 128 -> ReLU -> 64 -> ReLU -> 10 on 28x28 MNIST, as in the seed article
    assert list(graph.param_shapes(mlp, (28, 28, 1)).items()) == [
        ("1.kernel", (784, 128)), ("1.bias", (128,)), ("3.kernel", (128, 64)), ("3.bias", (64,)),
        ("5.kernel", (64, 10)), ("5.bias", (10,))]
    assert graph.param_count(mlp, (8, 8, 1)) == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    opt = WORKLOADS["mlp"].optimizer
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0)


@pytest.mark.parametrize("shape, flat", [((8, 8, 1), 2 * 2 * 16), ((28, 28, 1), 7 * 7 * 16)])
def test_cnn_shapes_follow_the_dataset(shape: tuple[int, ...], flat: int) -> None:
    nodes = graph.nodes(WORKLOADS["cnn"].model("small", shape, 10), shape)
    assert nodes[0].out_shape == (shape[0], shape[1], 6)
    assert nodes[6].out_shape == (flat,)
    assert nodes[-1].out_shape == (10,)


def test_dense_on_an_image_is_refused() -> None:
    with pytest.raises(ValueError, match="Flatten"):
        graph.nodes(graph.Sequential((Dense(10),)), (8, 8, 1))


def test_residual_branches_must_agree() -> None:
    bad = graph.Residual(graph.Sequential((Dense(8),)))
    with pytest.raises(ValueError, match="residual branches disagree"):
        graph.nodes(graph.Sequential((bad,)), (4,))


def test_resnet_layout() -> None:
    """ResNet-20: 6n+2 weighted layers, three stages halving the resolution, a projection
    shortcut exactly where the shape changes, batch-norm state beside its parameters."""
    model = WORKLOADS["resnet"].model("resnet20", (32, 32, 3), 10)
    nodes = graph.nodes(model, (32, 32, 3))
    convs = [n for n in nodes if type(n.layer).__name__ == "Conv2D"]
    shortcuts = [n for n in convs if ".shortcut." in n.path]
    assert len(convs) - len(shortcuts) + 1 == 20  # 19 convolutions + the Dense layer
    assert [n.layer.kernel for n in shortcuts] == [1, 1]
    assert [n.out_shape for n in shortcuts] == [(16, 16, 32), (8, 8, 64)]
    assert nodes[-1].out_shape == (10,)
    state = graph.state_shapes(model, (32, 32, 3))
    assert len(state) == 2 * sum(type(n.layer).__name__ == "BatchNorm" for n in nodes)
    assert graph.param_count(model, (32, 32, 3)) == 272_474


def test_transformer_ties_its_output_to_the_embedding() -> None:
    model = WORKLOADS["transformer"].model("small", TEXT, 256)
    shapes = graph.param_shapes(model, TEXT)
    assert shapes["0.table"] == (256, 128)
    assert not any(k.startswith(str(len(model.layers) - 1) + ".") for k in shapes)  # no own
    # 12 d^2 + 13 d per block (qkv, proj, 4x MLP, two norms), embeddings, final norm
    d, layers = 128, 2
    assert graph.param_count(model, TEXT) == (
        layers * (12 * d * d + 13 * d) + 256 * d + 64 * d + 2 * d)


def test_decay_mask_spares_biases_and_norms() -> None:
    model = WORKLOADS["transformer"].model("small", TEXT, 256)
    mask = graph.decay_mask(model, TEXT)
    nodes = {n.path: n.layer for n in graph.nodes(model, TEXT)}
    for key, decays in mask.items():
        path, _, name = key.rpartition(".")
        layer = nodes[path]
        assert decays == (name not in ("bias", "scale", "offset")), key
        if isinstance(layer, LayerNorm):
            assert not decays


def test_every_size_of_every_workload_builds() -> None:
    for w in WORKLOADS.values():
        for size in w.sizes:
            shape = (w.seq_len(size),) if w.input_kind == "text" else (32, 32, 3)
            model = w.model(size, shape, 256 if w.input_kind == "text" else 10)
            assert graph.param_count(model, shape) > 0
    gpt2 = WORKLOADS["transformer"].sizes["gpt2-small"].hp
    assert (gpt2["layers"], gpt2["dim"], gpt2["heads"], gpt2["context"]) == (12, 768, 12, 1024)
    with pytest.raises(ValueError, match="unknown size 'huge' of workload 'lstm'; valid sizes: "
                                         "small, medium, large"):
        WORKLOADS["lstm"].hp("huge")


def test_warmup_cosine() -> None:
    s = WarmupCosine(warmup=10, end_factor=0.1)
    assert s.factor(1, 100) == pytest.approx(0.1) and s.factor(10, 100) == pytest.approx(1.0)
    assert s.factor(55, 100) == pytest.approx(0.55)  # half way down the cosine
    assert s.factor(100, 100) == pytest.approx(0.1) and s.factor(500, 100) == pytest.approx(0.1)


def test_check_choice_names_the_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown workload 'vgg'; valid workloads: mlp, cnn, "
                                         r"resnet, transformer, lstm"):
        check_choice("workload", "vgg", tuple(WORKLOADS))


def test_cell_round_trips_through_json() -> None:
    cell = Cell("jax", "cnn", "compiled", batch_size=64)
    assert Cell.from_json(cell.to_json()) == cell
    assert cell.id == "cnn-small-jax-identical-compiled-cpu-b64"
    tuned = Cell("jax", "cnn", "", tier="tuned")  # named before its search chose a mode
    assert tuned.id == Cell("jax", "cnn", "compiled", tier="tuned", variant="x").id \
        == "cnn-small-jax-tuned-cpu-b32"
    assert Cell("torch", "transformer", "eager", size="gpt2-small").id.startswith(
        "transformer-gpt2-small-torch")


def test_initial_arrays_are_deterministic_and_canonical() -> None:
    cnn = WORKLOADS["cnn"].model("small", (8, 8, 1), 10)
    a, _ = graph.init(cnn, (8, 8, 1), seed=3)
    b, _ = graph.init(cnn, (8, 8, 1), seed=3)
    c, _ = graph.init(cnn, (8, 8, 1), seed=4)
    assert {k: v.shape for k, v in a.items()} == graph.param_shapes(cnn, (8, 8, 1))
    assert all(w.dtype == np.float32 for w in a.values())
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.kernel"], c["0.kernel"])
    assert all(np.abs(w).max() > 0 for w in a.values())  # biases are non-zero on purpose


def test_apply_groups_arrays_by_path() -> None:
    model = graph.Sequential((Dense(3), ReLU(), graph.Residual(graph.Sequential((Dense(3),)))))
    params, state = graph.init(model, (2,), 0)
    assert list(params) == ["0.kernel", "0.bias", "2.body.0.kernel", "2.body.0.bias"]
    assert graph.ungroup(graph.group(params)) == params
    seen = []

    def leaf(layer, p, s, x, train):  # noqa: ANN001, ANN202
        seen.append(sorted(p))
        return layer.ref(p, s, x, train)

    x = np.ones((1, 2))
    y, _ = graph.apply(model, graph.group(params), graph.group(state), x, False, leaf)
    h = np.maximum(x @ params["0.kernel"] + params["0.bias"], 0)
    np.testing.assert_allclose(y, h + h @ params["2.body.0.kernel"] + params["2.body.0.bias"])
    assert seen == [["bias", "kernel"], [], ["bias", "kernel"]]
