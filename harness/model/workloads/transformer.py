"""A decoder-only language model (GPT-2's layout): token and learned position embeddings,
pre-norm blocks of causal multi-head self-attention and an exact-GELU MLP (4x wide), a final
LayerNorm and an output projection tied to the token embedding. Byte-level tokens (vocabulary
256). Initialisation as GPT-2: N(0, 0.02), the residual projections scaled by 1/sqrt(2 layers).
Trained with AdamW (decay on matrices and embeddings, not on biases or norms), linear warm-up
then cosine decay.
"""

from __future__ import annotations

import math

from harness.model.graph import Residual, Sequential
from harness.model.layers import (
    GELU,
    AddPositions,
    CausalSelfAttention,
    Dense,
    Embedding,
    LayerNorm,
    Shape,
    TiedDense,
)
from harness.model.workload import Adam, Size, Target, WarmupCosine, Workload


def build(input_shape: Shape, classes: int, layers: int, dim: int, heads: int,
          context: int) -> Sequential:
    proj_std = 0.02 / math.sqrt(2 * layers)
    blocks = []
    for _ in range(layers):
        attention = Sequential((LayerNorm(), Dense(3 * dim, initializer="normal"),
                                CausalSelfAttention(heads),
                                Dense(dim, initializer="normal", std=proj_std)))
        mlp = Sequential((LayerNorm(), Dense(4 * dim, initializer="normal"), GELU(),
                          Dense(dim, initializer="normal", std=proj_std)))
        blocks += [Residual(attention), Residual(mlp)]
    return Sequential((Embedding(classes, dim), AddPositions(context), *blocks, LayerNorm(),
                       TiedDense("0.table", classes)))


WORKLOAD = Workload(
    name="transformer",
    description="decoder-only Transformer LM (GPT-2 layout): pre-norm causal self-attention and "
    "GELU MLP blocks, tied output projection, byte-level tokens, AdamW, warm-up + cosine",
    input_kind="text", builder=build, dataset="pydoc",
    sizes={
        "small": Size({"layers": 2, "dim": 128, "heads": 4, "context": 64},
                      "2 layers, d=128, 4 heads, context 64 (0.4M parameters): for a 2-core CPU"),
        "gpt2-small": Size({"layers": 12, "dim": 768, "heads": 12, "context": 1024},
                           "GPT-2 small's shape: 12 layers, d=768, 12 heads, context 1024 (85M "
                           "parameters with the byte vocabulary)"),
    },
    optimizer=Adam(lr=3e-3, beta1=0.9, beta2=0.95, weight_decay=0.1),
    schedule=WarmupCosine(warmup=20, end_factor=0.1),
    batch_size=16, infer_batch_size=64, epochs=0.5, metrics=("accuracy", "perplexity"),
    target=Target("perplexity", 16.0),  # seeds 0-2 end at 11.5, 12.2 and 14.1
)
