"""The tuned tier's search: every candidate is checked and timed in turns; a candidate that
fails or goes wrong is recorded and never chosen; a kept search is reused only while it still
describes this machine, framework version and search space."""

from __future__ import annotations

import dataclasses

import pytest

from harness import tune
from harness.backends import BACKENDS, FRAMEWORKS, Variant
from harness.spec import Cell

CELL = Cell("jax", "mlp", "", tier="tuned", epochs=0.1, threads=1)


def test_a_wrong_trajectory_fails_the_check() -> None:
    good = [2.3, 2.2, 2.1, 2.0]
    assert tune.trajectory_check("mlp", good, good)["ok"]
    assert not tune.trajectory_check("mlp", [2.3, 2.2001, 2.1, 2.0], good)["ok"]
    assert not tune.trajectory_check("mlp", good[:3], good)["ok"]  # fewer steps
    assert not tune.trajectory_check("mlp", [2.3, float("nan"), 2.1, 2.0], good)["ok"]
    # resnet is chaotic from its second step: only its first loss is held to rounding
    assert tune.trajectory_check("resnet", [2.3, 2.2005, 2.1, 2.005], good)["ok"]
    assert not tune.trajectory_check("resnet", [2.3005, 2.2, 2.1, 2.0], good)["ok"]
    # a difference stated by design: the same first loss, training, within 5%
    assert tune.trajectory_check("mlp", [2.3, 2.25, 2.12, 2.05], good, by_design=True)["ok"]
    assert not tune.trajectory_check("mlp", [2.31, 2.2, 2.1, 2.0], good, by_design=True)["ok"]
    assert not tune.trajectory_check("mlp", [2.3, 2.0, 1.8, 1.6], good, by_design=True)["ok"]


def test_search_records_every_candidate_and_picks_a_correct_one(monkeypatch) -> None:
    pytest.importorskip("jax")
    broken = Variant("no-such-build", "compiled", "a variant its backend does not know")
    info = dataclasses.replace(BACKENDS["jax"], variants=(*BACKENDS["jax"].variants, broken))
    monkeypatch.setitem(BACKENDS, "jax", info)
    monkeypatch.setitem(FRAMEWORKS, "jax", info)
    record = tune.search(CELL, ("compiled",), rounds=3)
    names = [c["variant"] for c in record["candidates"]]
    assert names == [v.name for v in info.search_space("cpu", ("compiled",))]
    failed = record["candidates"][-1]
    assert "no-such-build" in failed["error"] and not failed["check"]["ok"]
    ok = [c for c in record["candidates"] if c["check"]["ok"]]
    assert len(ok) == len(names) - 1 and all(c["samples"] == 3 for c in ok)
    base = record["candidates"][0]
    assert base["variant"] == "identical" and base["vs_identical"] == 1.0
    chosen = record["chosen"]
    assert chosen["variant"] != "no-such-build"
    assert min(ok, key=lambda c: c["median_s"])["variant"] == chosen["variant"]
    assert len(record["reference_losses"]) == tune.CHECK_STEPS


def test_a_kept_search_is_reused_only_while_it_still_applies() -> None:
    space = [{"variant": v.name, "mode": v.mode} for v in
             FRAMEWORKS["jax"].search_space("cpu", ("compiled",))]
    record = {"chosen": {"variant": "identical", "mode": "compiled"}, "host": tune._host(),
              "framework_version": "0.10.2", "candidates": space,
              "source": tune.source_digest("jax")}
    assert tune.usable(record, CELL, ("compiled",), "0.10.2")
    assert not tune.usable(record, CELL, ("compiled",), "0.11.0")  # the framework changed
    assert not tune.usable({**record, "candidates": space[:-1]}, CELL, ("compiled",), "0.10.2")
    assert not tune.usable({**record, "host": {"cpu_model": "other"}}, CELL, ("compiled",),
                           "0.10.2")
    assert not tune.usable({**record, "chosen": None}, CELL, ("compiled",), "0.10.2")
    assert not tune.usable({**record, "source": "an older backend"}, CELL, ("compiled",),
                           "0.10.2")
    assert tune.group_key(CELL, ("compiled",)) != tune.group_key(CELL, None)
