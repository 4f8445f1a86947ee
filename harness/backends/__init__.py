"""Backend registry. Names are framework import names; modules are imported lazily.

Each backend package (``harness/backends/<fw>/``) provides ``info() -> dict`` (versions),
``configure(device, precision, threads) -> dict`` (applies thread and precision settings before
anything runs and returns them as read back) and ``build(spec, mode, device, precision, tier,
variant) -> Trainer`` (see ``Spec`` and ``Trainer`` below). Its ``translate.py`` holds the one
table from layer type to that framework's operations (the tree walk is
``harness.model.graph.apply``); ``identical.py``, ``idiomatic.py`` and ``tuned.py`` build the
trainer of each tier (``TIERS``).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from harness.model import graph
from harness.model.layers import Arrays, Shape
from harness.model.workload import Adam, WarmupCosine

TIERS = ("identical", "idiomatic", "tuned")
TIER_DESCRIPTIONS = {
    "identical": "the same algorithm op for op in every framework: the equivalence certificate",
    "idiomatic": "the framework as its users write it, from its own tutorials",
    "tuned": "the fastest correct variant an expert would pick, found by a paired search",
}


@dataclass(frozen=True)
class Variant:
    """A named configuration of the tuned tier's search (``harness.tune``): built by the
    backend's ``tuned.py``, checked against the identical tier's trajectory, timed in turns
    with the others. The identical step of each mode is always a candidate too."""

    name: str
    mode: str
    description: str
    devices: tuple[str, ...] = ("cpu", "cuda")


@dataclass(frozen=True)
class BackendInfo:
    module: str
    modes: tuple[str, ...]               # modes of the identical tier
    import_name: str
    install_hint: str
    idiomatic: tuple[str, ...] = ()      # modes of the idiomatic tier
    idiomatic_default: tuple[tuple[str, str], ...] = ()  # (device, mode) its tutorials use
    debug_modes: tuple[str, ...] = ()    # nobody trains this way: kept out of verdicts and tuning
    variants: tuple[Variant, ...] = ()   # the tuned tier's search space
    # optional packages the framework's import would pull in for features no cell uses, and
    # that framebench installs for its own reasons: hidden from that import (``load``)
    import_hides: tuple[str, ...] = ()
    # the data-parallel trainer (``<module>.parallel``, cells with replicas > 1): the
    # identical tier's step on each replica through the framework's own mechanism
    parallel: str = ""
    parallel_modes: tuple[str, ...] = ()
    process_per_replica: bool = False  # the cell runs one process per replica (its launcher's)

    def tier_modes(self, tier: str) -> tuple[str, ...]:
        if tier == "idiomatic":
            return self.idiomatic
        if tier == "tuned":
            return tuple(m for m in self.modes if m not in self.debug_modes)
        return self.modes

    def default_idiomatic(self, device: str) -> str:
        return dict(self.idiomatic_default).get(device, self.idiomatic[0])

    def search_space(self, device: str, modes: tuple[str, ...] | None = None) -> list[Variant]:
        """The tuned tier's candidates on a device: the identical step of every real mode,
        the idiomatic code of each of its modes, then the named variants (restricted to
        ``modes`` when given). An expert may keep the identical or the idiomatic code."""
        real = self.tier_modes("tuned")
        out = [Variant("identical", m, f"the identical tier's {m} step") for m in real]
        out += [Variant("idiomatic", m, f"the idiomatic tier's {m} code")
                for m in self.idiomatic if m in real]
        out += [v for v in self.variants if device in v.devices]
        return [v for v in out if modes is None or v.mode in modes]


BACKENDS: dict[str, BackendInfo] = {
    "torch": BackendInfo(
        "harness.backends.torch", ("eager", "compiled"), "torch",
        "pip install 'framebench[torch]' (or let `nox -s bench` make its venv)",
        idiomatic=("eager", "compiled"),
        idiomatic_default=(("cpu", "eager"), ("cuda", "eager")),
        parallel="DistributedDataParallel, one process per replica started by torchrun "
                 "(gloo on CPU, NCCL on CUDA)",
        parallel_modes=("eager", "compiled"),
        process_per_replica=True,
        variants=(
            Variant("foreach-adamw", "eager", "torch.optim.AdamW(foreach=True): one multi-"
                    "tensor kernel per update op instead of a Python loop over parameters"),
            Variant("fused-adamw", "eager", "torch.optim.AdamW(fused=True): the whole update "
                    "in one fused kernel"),
            Variant("functional-fullgraph", "compiled", "torch.func.grad_and_value of a "
                    "functional loss and the AdamW update in one torch.compile(fullgraph=True) "
                    "graph (no graph break at backward)"),
            Variant("compiled-autograd", "compiled", "the identical step under "
                    "torch.compile with compiled autograd (backward captured by Dynamo)"),
            Variant("reduce-overhead", "compiled", "functional-fullgraph with "
                    "mode='reduce-overhead' (CUDA graphs)", devices=("cuda",)),
            Variant("max-autotune", "compiled", "functional-fullgraph with "
                    "mode='max-autotune' (autotuned GEMM/conv kernels, CUDA graphs)",
                    devices=("cuda",)),
        ),
    ),
    "tensorflow": BackendInfo(
        "harness.backends.tensorflow", ("eager", "graph", "compiled"), "tensorflow",
        "pip install 'framebench[tensorflow]' (or let `nox -s bench` make its venv)",
        idiomatic=("graph", "compiled"),
        # Keras's jit_compile="auto" turns XLA off on a machine without an accelerator
        idiomatic_default=(("cpu", "graph"), ("cuda", "compiled")),
        # `import tensorflow` imports Keras, whose scikit-learn wrapper imports scikit-learn
        # (and SciPy) when installed: 1.2 s of a 5.5 s import here; its array adapters import
        # pandas (0.6 s). framebench installs scikit-learn only for the digits file, read
        # without importing it, and pandas for its tables, which no cell process builds; the
        # import is timed as a TensorFlow user without either pays it.
        import_hides=("sklearn", "pandas"),
        parallel="tf.distribute.MirroredStrategy (MultiWorkerMirroredStrategy where TF_CONFIG "
                 "names several workers); on CPU, logical CPU devices",
        parallel_modes=("graph", "compiled"),
        variants=(
            Variant("eager-fused-adam", "eager", "the identical step with the fused "
                    "ResourceApplyAdam kernel (epsilon scaled per step to the torch/optax "
                    "form)"),
            Variant("graph-fused-adam", "graph", "tf.function step with the fused "
                    "ResourceApplyAdam kernel"),
            Variant("xla-fused-adam", "compiled", "tf.function(jit_compile=True) step with "
                    "the fused ResourceApplyAdam kernel"),
        ),
    ),
    "jax": BackendInfo(
        "harness.backends.jax", ("eager", "compiled"), "jax",
        "pip install 'framebench[jax]' (or let `nox -s bench` make its venv)",
        idiomatic=("compiled",),
        debug_modes=("eager",),
        parallel="jax.jit over a device mesh, NamedSharding of the batch, shard_map per "
                 "replica with pmean of the gradients; on CPU, host-platform devices",
        parallel_modes=("compiled",),
        variants=(
            Variant("jit-no-donation", "compiled", "jax.jit without buffer donation (new "
                    "parameter and optimiser buffers every step)"),
            Variant("jit-flat-adam", "compiled", "jax.jit with donation, optax.adam under "
                    "optax.flatten (one concatenated vector instead of one per parameter; "
                    "AdamW: the moments only)"),
            Variant("nnx-functional", "compiled", "the idiomatic Flax NNX model and step as "
                    "Flax's performance guide advises: nnx.split once, jax.jit of a pure step "
                    "that merges and splits inside (no per-call graph traversal), state "
                    "donated"),
        ),
    ),
}
FRAMEWORKS = dict(BACKENDS)  # what users choose from; BACKENDS adds the self-check below
SELF_CHECK = "noop"          # a framework that does nothing: the harness's own cost
BACKENDS[SELF_CHECK] = BackendInfo("harness.backends.noop", ("eager",), "numpy", "")

MODE_DESCRIPTIONS = {
    ("torch", "eager"): "torch eager (torch.nn.functional ops, torch.optim.AdamW)",
    ("torch", "compiled"): "torch.compile of the whole step at its defaults (Dynamo splits it "
                           "at zero_grad, backward() and the optimiser step)",
    ("tensorflow", "eager"): "TF eager (tf ops on tf.Variables, GradientTape)",
    ("tensorflow", "graph"): "tf.function of the whole step, no XLA",
    ("tensorflow", "compiled"): "tf.function(jit_compile=True): the whole step through XLA",
    ("jax", "eager"): "JAX op-by-op dispatch, no jit (a debugging mode: nobody trains this way)",
    ("jax", "compiled"): "jax.jit of the whole step, params and Adam state donated",
    (SELF_CHECK, "eager"): "self-check: a step that does nothing (the harness's own cost)",
}

IDIOMATIC_DESCRIPTIONS = {
    ("torch", "eager"): "a plain PyTorch loop: nn.Module, nn.CrossEntropyLoss, torch.optim.Adam "
                        "(AdamW where the workload decays), defaults, LambdaLR",
    ("torch", "compiled"): "the plain loop with model = torch.compile(model)",
    ("tensorflow", "graph"): "Keras compile/fit/evaluate, jit_compile=False",
    ("tensorflow", "compiled"): "Keras compile/fit/evaluate, jit_compile=True (XLA)",
    ("jax", "compiled"): "Flax NNX modules, nnx.Optimizer over optax, nnx.jit train step",
}

# The infer scenario's paths (harness.spec.INFER_PATHS) in each framework: harness.infer runs
# them through harness/backends/<fw>/infer.py
INFER_DESCRIPTIONS = {
    ("torch", "eager"): "module.eval() called under torch.inference_mode()",
    ("torch", "compiled"): "torch.compile(module) at its defaults, under torch.inference_mode()",
    ("torch", "export"): "torch.export.export per batch shape, torch.export.save to bytes, "
                         "torch.export.load, ExportedProgram.module() under inference_mode",
    ("tensorflow", "eager"): "the forward called eagerly (op by op), training=False",
    ("tensorflow", "compiled"): "tf.function(forward, jit_compile=True): XLA, one trace per "
                                "batch shape",
    ("tensorflow", "export"): "a SavedModel (Keras: model.export; identical: "
                              "tf.saved_model.save of a tf.Module), reloaded with "
                              "tf.saved_model.load and called through its serving function "
                              "(graph, no XLA: as TF Serving runs it)",
    ("jax", "eager"): "the forward without jit: op-by-op dispatch (nnx: the module called "
                      "directly)",
    ("jax", "compiled"): "jax.jit of the forward (idiomatic: nnx.jit), one compilation per "
                         "batch shape",
    ("jax", "export"): "jax.export.export(jax.jit(forward)) per batch shape to StableHLO, "
                       "Exported.serialize(), jax.export.deserialize, called as "
                       "jax.jit(exported.call)(params, x)",
}

ALL_MODES = tuple(dict.fromkeys(m for b in FRAMEWORKS.values() for m in b.modes))


@dataclass(frozen=True)
class Spec:
    """Everything a backend needs to build one trainer, framework-neutral: the model tree, the
    per-example input shape, the canonical initial arrays, and the optimiser with its schedule
    over a budget of ``total_steps``."""

    model: graph.Sequential
    input_shape: Shape
    params: Arrays
    state: Arrays
    optimizer: Adam
    schedule: WarmupCosine | None = None
    total_steps: int = 1

    @property
    def decay(self) -> dict[str, bool]:
        """Weight-decay mask over the parameters (all False without weight decay)."""
        mask = graph.decay_mask(self.model, self.input_shape)
        return {k: v and self.optimizer.weight_decay > 0 for k, v in mask.items()}

    @property
    def tokens(self) -> bool:
        return len(self.input_shape) == 1

    def lr(self, step: int) -> float:
        """Learning rate of training step ``step`` (1-based)."""
        factor = 1.0 if self.schedule is None else self.schedule.factor(step, self.total_steps)
        return float(self.optimizer.lr * factor)


class Unavailable(RuntimeError):
    """The cell cannot run here (no such device, framework missing): recorded as skipped."""


class Trainer(Protocol):
    """What a backend builds for one cell. Work may be asynchronous until ``sync``.

    Optional, where a tier's idiom needs them (``harness.cell`` falls back otherwise):
    ``fit(batches) -> list[float]`` trains on host batches in order the framework's own way
    (Keras ``model.fit``) and returns the loss of every step; ``steps(placed, k)`` runs k steps
    cycling over placed batches without a sync (one timing sample); ``min_sample_s``, a floor on
    a timing sample's length where a sample carries a fixed cost (one ``fit`` call's setup);
    ``compile_stats() -> dict`` of ints: the framework's compile counters, with at least
    ``compiles`` (compilations or traces of the step so far; 0 when nothing compiles; above 1
    it recompiled) and, for torch.compile, ``graph_breaks``.
    """

    implementation: dict[str, str]  # which path the framework took where it has several
    # The exact configuration, stored with the results: api (what the step is written with),
    # optimizer (implementation), compile (options, or None), flags (settings it changed),
    # differences (from the identical tier's algorithm, stated; empty when there are none).
    manifest: dict[str, Any]

    def put(self, x: np.ndarray, y: np.ndarray | None = None) -> Any:
        """Place a batch on the cell's device in the framework's own layout."""

    def step(self, batch: Any) -> Any:
        """One training step (forward, loss, backward, optimiser update, learning rate of the
        step's place in the schedule); returns the loss handle."""

    def predict(self, x: Any) -> Any:
        """Logits for a placed input, in evaluation behaviour (batch norm on running
        statistics, no gradient)."""

    def sync(self) -> None:
        """Block until every step issued so far has finished, parameter updates included."""

    def numpy(self, value: Any) -> np.ndarray:
        """Copy a framework value (loss, logits) to a numpy array."""

    def weights(self) -> Arrays:
        """Current parameters by path, in the canonical layout and order (harness.model)."""

    def state(self) -> Arrays:
        """Current non-trainable state (batch-norm statistics) by path, canonical layout."""

    def reset_device_peak(self) -> None:
        """Start a new allocator peak on the GPU (no-op on CPU)."""

    def device_peak_bytes(self) -> int | None:
        """The framework allocator's peak on the GPU since the last reset; None on CPU."""


def load(framework: str) -> ModuleType:
    """Import a backend module (and with it its framework), its ``import_hides`` made
    unimportable meanwhile (an optional import then takes its ImportError path)."""
    b = BACKENDS[framework]
    hidden = [name for name in b.import_hides if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))  # None: "import name" raises ImportError
    try:
        return importlib.import_module(b.module)
    finally:
        for name in hidden:
            del sys.modules[name]


def load_parallel(framework: str) -> ModuleType:
    """The framework's data-parallel trainers (``<module>.parallel``), after ``load``."""
    load(framework)
    return importlib.import_module(f"{BACKENDS[framework].module}.parallel")


def check_build(framework: str, tier: str, mode: str, variant: str = "",
                device: str = "cpu") -> None:
    """Refuse a tier, mode or variant the framework does not have, naming the valid ones."""
    b = BACKENDS[framework]
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; valid tiers: {', '.join(TIERS)}")
    if tier == "tuned":
        space = [(v.name, v.mode) for v in b.search_space(device)]
        names = list(dict.fromkeys(n for n, _ in space))
        if variant not in names:
            raise ValueError(f"unknown {framework} variant {variant!r} on {device}; valid "
                             f"variants: {', '.join(names)}")
        if (variant, mode) not in space:
            raise ValueError(f"{framework} variant {variant!r} does not run in mode {mode!r}; "
                             f"it runs in {', '.join(m for n, m in space if n == variant)}")
        return
    modes = b.tier_modes(tier)
    if mode not in modes:
        raise ValueError(f"{framework} has no mode {mode!r} in the {tier} tier; valid modes: "
                         f"{', '.join(modes)}")
