"""Every tier of every workload passes its correctness check in every framework: the
idiomatic code and each tuned variant start from the same weights, see the same batches and
follow the identical tier's trajectory (torch eager's), checked as the tuned search checks it
(``harness.tune.trajectory_check``); each records the configuration it ran."""

from __future__ import annotations

import numpy as np
import pytest

from harness import reference
from harness.backends import FRAMEWORKS
from harness.spec import WORKLOADS
from harness.tune import trajectory_check
from tests.test_backends import batches, dataset, spec_for, ten_steps, trainer_for

MANIFEST_KEYS = {"api", "optimizer", "compile", "flags", "differences"}


def _slow(framework: str, mode: str) -> list:
    return [pytest.mark.slow] if (framework, mode) == ("torch", "compiled") else []


IDIOMATIC = [pytest.param(fw, mode, id=f"{fw}-{mode}", marks=_slow(fw, mode))
             for fw, b in FRAMEWORKS.items() for mode in b.idiomatic]
VARIANTS = [pytest.param(fw, v.name, v.mode, id=f"{fw}-{v.name}", marks=_slow(fw, v.mode))
            for fw, b in FRAMEWORKS.items() for v in b.variants if "cpu" in v.devices]


def _losses(trainer, workload: str) -> list[float]:  # noqa: ANN001
    out = [float(trainer.numpy(trainer.step(trainer.put(x, y)))) for x, y in batches(workload)]
    trainer.sync()
    return out


def _check(workload: str, losses: list[float], trainer, strict: bool = False) -> None:  # noqa: ANN001
    """The identical trajectory to rounding, or, where the code states how its algorithm
    differs by design (Keras's Adam epsilon, its one-bias LSTM) and ``strict`` is off, the same
    first loss and the trajectory within harness.tune.BY_DESIGN_RTOL."""
    base = ten_steps("torch", workload, "eager")[0]
    by_design = bool(trainer.manifest["differences"]) and not strict
    result = trajectory_check(workload, losses, base, by_design)
    assert result["ok"], (result, losses, list(base))
    assert set(trainer.manifest) >= MANIFEST_KEYS, trainer.manifest
    weights = trainer.weights()
    assert list(weights) == list(spec_for(workload).params)  # canonical names and order
    assert all(np.isfinite(w).all() for w in weights.values())


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework, mode", IDIOMATIC)
def test_idiomatic_tier_follows_the_identical_trajectory(framework: str, mode: str,
                                                         workload: str) -> None:
    spec = spec_for(workload)
    trainer = trainer_for(framework, workload, mode, spec=spec, tier="idiomatic")
    x = dataset(workload).x_test[:8]  # same weights: the forward is the numpy reference's
    want, _ = reference.forward(spec.model, spec.params, spec.state, x)
    np.testing.assert_allclose(trainer.numpy(trainer.predict(trainer.put(x))), want,
                               rtol=1e-4, atol=1e-4)
    _check(workload, _losses(trainer, workload), trainer)


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework, mode", IDIOMATIC)
def test_idiomatic_fit_trains_like_its_steps(framework: str, mode: str, workload: str) -> None:
    """Where the idiom trains through its own loop (Keras fit), that loop follows the same
    trajectory as the tier's single steps."""
    trainer = trainer_for(framework, workload, mode, tier="idiomatic")
    if not hasattr(trainer, "fit"):
        pytest.skip(f"{framework} {mode} idiomatic trains with the harness's loop of steps")
    _check(workload, trainer.fit(batches(workload)), trainer)


@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("framework, variant, mode", VARIANTS)
def test_tuned_variant_follows_the_identical_trajectory(framework: str, variant: str, mode: str,
                                                        workload: str) -> None:
    trainer = trainer_for(framework, workload, mode, tier="tuned", variant=variant)
    _check(workload, _losses(trainer, workload), trainer, strict=True)  # the tuned tier's rule
    assert trainer.manifest.get("variant") == variant


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_identical_tier_records_its_manifest(framework: str) -> None:
    trainer = trainer_for(framework, "mlp", FRAMEWORKS[framework].modes[-1])
    assert set(trainer.manifest) >= MANIFEST_KEYS
    trainer.step(trainer.put(*batches("mlp")[0]))
    trainer.sync()
    assert isinstance(trainer.compile_stats(), dict)


def test_an_unknown_tier_or_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="valid variants"):
        trainer_for("torch", "mlp", "eager", tier="tuned", variant="no-such-variant")
    with pytest.raises(ValueError, match="valid tiers"):
        trainer_for("torch", "mlp", "eager", tier="fastest")
    assert WORKLOADS  # the registry is populated
