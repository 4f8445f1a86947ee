"""Minimal hand-written training loops, one per framework, for the harness's overhead check.

The same configuration as the harness's `mlp` compiled cell (UCI digits, batch 32, flatten ->
128 -> ReLU -> 64 -> ReLU -> 10, softmax cross-entropy from logits, Adam 1e-3 / 0.9 / 0.999 /
1e-8, whole step compiled), written the way a user would write it, without importing harness.
The compare script runs it with the same environment variables as a harness cell.
Timing: warm-up, then samples of K steps with one sync each; prints the median step time as JSON.

    python benchmarks/handwritten.py torch|tensorflow|jax [--samples 60] [--k 20]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.datasets import load_digits


def batches(n_batches: int, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # NHWC
    y = digits.target.astype(np.int32)
    idx = np.random.default_rng(0).permutation(len(x))[: n_batches * batch]
    return x[idx].reshape(n_batches, batch, 8, 8, 1), y[idx].reshape(n_batches, batch)


def torch_loop(xs: np.ndarray, ys: np.ndarray):  # noqa: ANN201
    import torch
    import torch.nn.functional as F
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64),
                          nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    @torch.compile
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    data = [(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y).long())
            for x, y in zip(xs, ys)]
    return lambda i: step(*data[i % len(data)]), lambda: None  # CPU torch is synchronous


def tensorflow_loop(xs: np.ndarray, ys: np.ndarray):  # noqa: ANN201
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # keras.optimizers.Adam adds epsilon to the uncorrected sqrt(v); torch and optax add it to
    # the bias-corrected one. Same configuration means the same update, so it is written out.
    params = model.trainable_variables
    moments = [(tf.Variable(tf.zeros_like(p)), tf.Variable(tf.zeros_like(p))) for p in params]
    t = tf.Variable(0.0)

    @tf.function(jit_compile=True)
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, params)
        t.assign_add(1.0)
        for p, g, (m, v) in zip(params, grads, moments):
            m.assign(0.9 * m + 0.1 * g)
            v.assign(0.999 * v + 0.001 * g * g)
            p.assign_sub(1e-3 * (m / (1 - 0.9**t)) / (tf.sqrt(v / (1 - 0.999**t)) + 1e-8))
        return loss

    data = [(tf.constant(x), tf.constant(y)) for x, y in zip(xs, ys)]
    last: dict[str, tf.Tensor] = {}

    def run(i: int) -> None:
        last["loss"] = step(*data[i % len(data)])

    return run, lambda: last["loss"].numpy()


def jax_loop(xs: np.ndarray, ys: np.ndarray):  # noqa: ANN201
    import jax
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(0)
    sizes = [64, 128, 64, 10]
    params = [(jnp.asarray(rng.normal(0, 0.1, (a, b)), jnp.float32), jnp.zeros(b, jnp.float32))
              for a, b in zip(sizes, sizes[1:])]
    opt = optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-8)

    def loss_fn(params, x, y):  # noqa: ANN001, ANN202
        h = x.reshape(x.shape[0], -1)
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()

    @jax.jit
    def _step(params, state, x, y):  # noqa: ANN001, ANN202
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    step_fn = jax.jit(_step, donate_argnums=(0, 1))
    data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in zip(xs, ys)]
    box = {"params": params, "state": opt.init(params)}

    def step(i: int) -> None:
        box["params"], box["state"], _ = step_fn(box["params"], box["state"], *data[i % 8])

    return step, lambda: jax.block_until_ready(box["params"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("framework", choices=["torch", "tensorflow", "jax"])
    p.add_argument("--samples", type=int, default=60)
    p.add_argument("--k", type=int, default=0, help="steps per sample (default: ~25 ms worth)")
    args = p.parse_args()
    xs, ys = batches(8)
    step, sync = globals()[f"{args.framework}_loop"](xs, ys)
    for i in range(50):
        step(i)
    sync()
    k = args.k
    if not k:
        t0 = time.perf_counter()
        for i in range(20):
            step(i)
        sync()
        k = max(1, int(np.ceil(0.025 / ((time.perf_counter() - t0) / 20))))
    samples = []
    for _ in range(args.samples):
        t0 = time.perf_counter()
        for i in range(k):
            step(i)
        sync()
        samples.append((time.perf_counter() - t0) / k)
    print(json.dumps({"framework": args.framework, "k": k, "step_median_s":
                      float(np.median(samples)), "samples": len(samples)}))


if __name__ == "__main__":
    main()
