"""Hand-written training loops for the `mlp` workload: what an expert writes in each framework
when going for speed, without the harness. benchmarks/compare_handwritten.py times the
harness's tuned cell against every loop of its framework, in one process.

The configuration is the harness's mlp cell: UCI digits (8x8x1, pixels / 16), batch 32,
flatten -> Dense 128 -> ReLU -> Dense 64 -> ReLU -> Dense 10, softmax cross-entropy from logits,
Adam (lr 1e-3, betas 0.9 / 0.999, eps 1e-8 added to sqrt(v_hat), the torch/optax form), float32
on the CPU. Each loop is a function of the batches that returns ``(step, sync)``: ``step(i)``
runs one training step on batch ``i % len(batches)`` and returns its loss (not read back),
``sync()`` waits for every step issued so far (parameter updates included).

Run one loop on its own (warm-up, then samples of K steps and one sync; prints the median step
time as JSON):

    python benchmarks/handwritten.py torch compiled [--samples 60] [--k 0]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8
Loop = tuple[Callable[[int], Any], Callable[[], None]]


def batches(n_batches: int = 8, batch: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n_batches distinct batches of digits: images (n, batch, 8, 8, 1), labels (n, batch)."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    idx = np.random.default_rng(seed).permutation(len(x))[: n_batches * batch]
    return x[idx].reshape(n_batches, batch, 8, 8, 1), y[idx].reshape(n_batches, batch)


# --- PyTorch ------------------------------------------------------------------------------------

def _torch_model():  # noqa: ANN202
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64),
                         nn.ReLU(), nn.Linear(64, 10))


def _torch_data(xs: np.ndarray, ys: np.ndarray) -> list:
    import torch

    return [(torch.from_numpy(x), torch.from_numpy(y).long()) for x, y in zip(xs, ys)]


def torch_eager(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """nn.Sequential, F.cross_entropy, torch.optim.Adam(fused=True): eager."""
    import torch
    import torch.nn.functional as F

    model = _torch_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(B1, B2), eps=EPS, fused=True)
    data = _torch_data(xs, ys)

    def step(i: int) -> torch.Tensor:
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step, lambda: None  # CPU torch runs each op before returning


def _torch_compiled(xs: np.ndarray, ys: np.ndarray, loss_fn: Callable) -> Loop:
    """One torch.compile(fullgraph=True) graph per step: gradients of ``loss_fn(params, x, y)``
    by torch.func.grad_and_value, and Adam written out, updating the tensors in place."""
    import torch
    from torch.func import grad_and_value

    params = {k: p.detach() for k, p in _torch_model().named_parameters()}
    m = {k: torch.zeros_like(p) for k, p in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    t = torch.zeros(())

    @torch.compile(fullgraph=True)
    def train_step(params: dict, m: dict, v: dict, t: torch.Tensor, x: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
        grads, loss = grad_and_value(loss_fn)(params, x, y)
        t.add_(1)
        for k, p in params.items():
            m[k].lerp_(grads[k], 1 - B1)
            v[k].mul_(B2).addcmul_(grads[k], grads[k], value=1 - B2)
            m_hat, v_hat = m[k] / (1 - B1**t), v[k] / (1 - B2**t)
            p.sub_(LR * m_hat / (v_hat.sqrt() + EPS))
        return loss

    data = _torch_data(xs, ys)

    def step(i: int) -> torch.Tensor:
        return train_step(params, m, v, t, *data[i % len(data)])

    return step, lambda: None


def torch_compiled_module(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """The nn.Sequential through torch.func.functional_call, gradients and Adam in one
    torch.compile(fullgraph=True) graph."""
    import torch.nn.functional as F
    from torch.func import functional_call

    model = _torch_model()
    return _torch_compiled(
        xs, ys, lambda params, x, y: F.cross_entropy(functional_call(model, params, (x,)), y))


def torch_compiled(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """The forward as F.linear calls on the parameter dict, gradients and Adam in one
    torch.compile(fullgraph=True) graph: no module for Dynamo to guard on each call (faster
    than functional_call of the nn.Sequential on this model)."""
    import torch.nn.functional as F

    def loss_fn(p: dict, x: Any, y: Any) -> Any:
        h = F.relu(F.linear(x.flatten(1), p["1.weight"], p["1.bias"]))
        h = F.relu(F.linear(h, p["3.weight"], p["3.bias"]))
        return F.cross_entropy(F.linear(h, p["5.weight"], p["5.bias"]), y)

    return _torch_compiled(xs, ys, loss_fn)


# --- TensorFlow ---------------------------------------------------------------------------------

def _keras_model():  # noqa: ANN202
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])


def _tf_loop(xs: np.ndarray, ys: np.ndarray, train_step: Callable) -> Loop:
    import tensorflow as tf

    data = [(tf.constant(x), tf.constant(y)) for x, y in zip(xs, ys)]
    last = [None]

    def step(i: int) -> tf.Tensor:
        last[0] = train_step(*data[i % len(data)])
        return last[0]

    return step, lambda: last[0].numpy()  # the step's ops run in order: its loss comes last


def _tf_fused_adam(jit_compile: bool) -> Callable:
    """A Keras model's step with Adam as TensorFlow's fused ResourceApplyAdam kernel, one op per
    variable. The kernel adds epsilon to the uncorrected sqrt(v); eps * sqrt(1 - beta2^t) puts it
    on sqrt(v_hat), the torch/optax form."""
    import keras
    import tensorflow as tf

    model = _keras_model()
    params = [p.value for p in model.trainable_variables]  # the tf.Variables
    slots = [(tf.Variable(tf.zeros_like(p)), tf.Variable(tf.zeros_like(p))) for p in params]
    t = tf.Variable(0.0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit_compile)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, params)
        t.assign_add(1.0)
        b1_power, b2_power = B1**t, B2**t
        for p, g, (m, v) in zip(params, grads, slots):
            tf.raw_ops.ResourceApplyAdam(
                var=p.handle, m=m.handle, v=v.handle, beta1_power=b1_power,
                beta2_power=b2_power, lr=LR, beta1=B1, beta2=B2,
                epsilon=EPS * tf.sqrt(1 - b2_power), grad=g)
        return loss

    return train_step


def tensorflow_xla(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """Keras layers, fused ResourceApplyAdam, the step in tf.function(jit_compile=True)."""
    return _tf_loop(xs, ys, _tf_fused_adam(jit_compile=True))


def tensorflow_graph(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """Keras layers, fused ResourceApplyAdam, the step in tf.function without XLA."""
    return _tf_loop(xs, ys, _tf_fused_adam(jit_compile=False))


def tensorflow_xla_keras(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """Keras layers and keras.optimizers.Adam in tf.function(jit_compile=True). Keras adds
    epsilon to the uncorrected sqrt(v): the same work, an update that differs at the 1e-8
    level."""
    import keras
    import tensorflow as tf

    model = _keras_model()
    opt = keras.optimizers.Adam(LR, beta_1=B1, beta_2=B2, epsilon=EPS)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return _tf_loop(xs, ys, train_step)


# --- JAX ----------------------------------------------------------------------------------------

def _jax_loop(xs: np.ndarray, ys: np.ndarray, opt) -> Loop:  # noqa: ANN001
    """Parameters as a pytree of arrays; one jax.jit step, parameters and optimiser state
    donated (updated in place)."""
    import jax
    import jax.numpy as jnp
    import optax

    keys = jax.random.split(jax.random.key(0), 3)
    sizes = [64, 128, 64, 10]
    params = [(jax.random.normal(k, (a, b)) * np.sqrt(2 / a), jnp.zeros(b))
              for k, a, b in zip(keys, sizes, sizes[1:])]

    def loss_fn(params: list, x: jax.Array, y: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        return optax.softmax_cross_entropy_with_integer_labels(h @ w + b, y).mean()

    @jax.jit(donate_argnums=(0, 1))
    def train_step(params: list, state: optax.OptState, x: jax.Array, y: jax.Array):  # noqa: ANN202
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    data = [jax.device_put((x, y)) for x, y in zip(xs, ys)]
    carry = [params, opt.init(params)]

    def step(i: int) -> jax.Array:
        carry[0], carry[1], loss = train_step(*carry, *data[i % len(data)])
        return loss

    return step, lambda: jax.block_until_ready(carry)


def jax_jit(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """jax.jit with donation, optax.adam."""
    import optax

    return _jax_loop(xs, ys, optax.adam(LR, b1=B1, b2=B2, eps=EPS))


def jax_jit_flat(xs: np.ndarray, ys: np.ndarray) -> Loop:
    """jax.jit with donation, optax.flatten(optax.adam): Adam on one concatenated vector."""
    import optax

    return _jax_loop(xs, ys, optax.flatten(optax.adam(LR, b1=B1, b2=B2, eps=EPS)))


LOOPS: dict[str, dict[str, Callable[[np.ndarray, np.ndarray], Loop]]] = {
    "torch": {"eager": torch_eager, "compiled-module": torch_compiled_module,
              "compiled": torch_compiled},
    "tensorflow": {"xla": tensorflow_xla, "graph": tensorflow_graph,
                   "xla-keras": tensorflow_xla_keras},
    "jax": {"jit": jax_jit, "jit-flat": jax_jit_flat},
}


def main() -> None:
    p = argparse.ArgumentParser(description="Time one hand-written loop on its own.")
    p.add_argument("framework", choices=list(LOOPS))
    p.add_argument("loop", help="; ".join(f"{fw}: {', '.join(ls)}" for fw, ls in LOOPS.items()))
    p.add_argument("--samples", type=int, default=60)
    p.add_argument("--k", type=int, default=0, help="steps per sample (default: ~25 ms worth)")
    args = p.parse_args()
    if args.loop not in LOOPS[args.framework]:
        p.error(f"no {args.framework} loop {args.loop!r}; valid: "
                f"{', '.join(LOOPS[args.framework])}")
    step, sync = LOOPS[args.framework][args.loop](*batches())

    def sample(k: int) -> float:
        t0 = time.perf_counter()
        for i in range(k):
            step(i)
        sync()
        return time.perf_counter() - t0

    sample(50)  # compiles
    k = args.k or max(1, int(np.ceil(0.025 / (sample(20) / 20))))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:  # warm-up
        sample(k)
    step_s = [sample(k) / k for _ in range(args.samples)]
    print(json.dumps({"framework": args.framework, "loop": args.loop, "k": k,
                      "step_median_s": float(np.median(step_s)), "samples": len(step_s)}))


if __name__ == "__main__":
    main()
