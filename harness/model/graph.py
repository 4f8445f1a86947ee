"""Composition: a model is a tree of layers (``Sequential`` and ``Residual`` around the leaf
layers of ``layers.py``), and every walk over it is written here once.

Parameters and state are flat dicts keyed by path: a child of a ``Sequential`` is named by its
index, a ``Residual``'s by ``body`` / ``shortcut``, and an array by ``<path>.<name>``
(``"3.body.1.kernel"``). Dict order is the canonical order. ``apply`` runs the tree with a
per-leaf function, so the numpy reference and the functional backends share one traversal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.model.layers import Arrays, Layer, Shape


@dataclass(frozen=True)
class Sequential:
    """Layers (or containers) applied in order."""

    layers: tuple[Any, ...]


@dataclass(frozen=True)
class Residual:
    """body(x) + shortcut(x); the shortcut is the identity when None."""

    body: Sequential
    shortcut: Sequential | None = None


@dataclass(frozen=True)
class Node:
    """One leaf layer of a model at its place: path, layer, per-example input and output shape."""

    path: str
    layer: Layer
    in_shape: Shape
    out_shape: Shape

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _children(model: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(model, Sequential):
        for i, child in enumerate(model.layers):
            yield _join(prefix, str(i)), child
    elif isinstance(model, Residual):
        yield _join(prefix, "body"), model.body
        if model.shortcut is not None:
            yield _join(prefix, "shortcut"), model.shortcut


def nodes(model: Any, input_shape: Shape, prefix: str = "") -> list[Node]:
    """Every leaf in execution order with its shapes; raises ValueError on a shape mismatch."""
    out: list[Node] = []
    shape = tuple(input_shape)
    if isinstance(model, Sequential):
        for path, child in _children(model, prefix):
            sub = nodes(child, shape, path)
            out += sub
            shape = output_shape(child, shape)
    elif isinstance(model, Residual):
        for path, child in _children(model, prefix):
            out += nodes(child, shape, path)
        output_shape(model, shape)
    else:
        out.append(Node(prefix, model, shape, model.out_shape(shape)))
    return out


def output_shape(model: Any, input_shape: Shape) -> Shape:
    shape = tuple(input_shape)
    if isinstance(model, Sequential):
        for child in model.layers:
            shape = output_shape(child, shape)
        return shape
    if isinstance(model, Residual):
        body = output_shape(model.body, shape)
        short = shape if model.shortcut is None else output_shape(model.shortcut, shape)
        if body != short:
            raise ValueError(f"residual branches disagree: body {body}, shortcut {short}")
        return body
    return model.out_shape(shape)


def param_shapes(model: Any, input_shape: Shape) -> dict[str, Shape]:
    """Trainable arrays in canonical order (tied arrays appear once, at their owner)."""
    return {n.key(k): s for n in nodes(model, input_shape)
            for k, s in n.layer.params(n.in_shape).items()}


def state_shapes(model: Any, input_shape: Shape) -> dict[str, Shape]:
    return {n.key(k): s for n in nodes(model, input_shape)
            for k, s in n.layer.state(n.in_shape).items()}


def param_count(model: Any, input_shape: Shape) -> int:
    return sum(int(np.prod(s)) for s in param_shapes(model, input_shape).values())


def init(model: Any, input_shape: Shape, seed: int = 0) -> tuple[Arrays, Arrays]:
    """Canonical initial (params, state): one generator drawn leaf by leaf in execution order."""
    rng = np.random.default_rng(seed)
    params: Arrays = {}
    state: Arrays = {}
    for n in nodes(model, input_shape):
        p, s = n.layer.init(n.in_shape, rng)
        params.update({n.key(k): v for k, v in p.items()})
        state.update({n.key(k): v for k, v in s.items()})
    return params, state


def decay_mask(model: Any, input_shape: Shape) -> dict[str, bool]:
    """Which parameters take weight decay: all but each layer's ``no_decay`` (biases, norms)."""
    return {n.key(k): k not in n.layer.no_decay for n in nodes(model, input_shape)
            for k in n.layer.params(n.in_shape)}


def group(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"3.body.1.kernel": a} -> {"3.body.1": {"kernel": a}}: what ``apply`` takes, grouped
    once so that a step does no string work."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        path, _, name = key.rpartition(".")
        out.setdefault(path, {})[name] = value
    return out


def ungroup(grouped: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {f"{path}.{name}": v for path, arrays in grouped.items() for name, v in arrays.items()}


Leaf = Callable[[Layer, dict[str, Any], dict[str, Any], Any, bool], tuple[Any, dict[str, Any]]]
NONE: dict[str, Any] = {}


def apply(model: Any, params: dict[str, dict[str, Any]], state: dict[str, dict[str, Any]],
          x: Any, train: bool, leaf: Leaf) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Run the tree on a batch with ``leaf(layer, params, state, x, train) -> (y, state)`` for
    each leaf, given that leaf's own arrays by short name (tied ones included). Params and
    state are grouped by path (``group``); returns the output and the updated state (a new
    dict)."""
    new_state = dict(state)
    y = _apply(model, params, new_state, x, train, leaf, "")
    return y, new_state


def _apply(model: Any, params: dict[str, dict[str, Any]], state: dict[str, dict[str, Any]],
           x: Any, train: bool, leaf: Leaf, prefix: str) -> Any:
    if isinstance(model, Sequential):
        for path, child in _children(model, prefix):
            x = _apply(child, params, state, x, train, leaf, path)
        return x
    if isinstance(model, Residual):
        y = _apply(model.body, params, state, x, train, leaf, _join(prefix, "body"))
        if model.shortcut is not None:
            x = _apply(model.shortcut, params, state, x, train, leaf, _join(prefix, "shortcut"))
        return y + x
    own = params.get(prefix, NONE)
    if tied := model.tied():
        own = {**own, **{name: _lookup(params, path) for name, path in tied.items()}}
    y, st = leaf(model, own, state.get(prefix, NONE), x, train)
    if st:
        state[prefix] = st
    return y


def _lookup(params: dict[str, dict[str, Any]], key: str) -> Any:
    path, _, name = key.rpartition(".")
    return params[path][name]
