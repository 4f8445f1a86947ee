"""The timed steady-state scenario of one benchmark cell, as a pytest-benchmark test.

The runner starts ``pytest benchmarks/test_train_step.py --benchmark-json=...`` in a fresh
process per cell, with the cell in $FRAMEBENCH_CELL; run without it, the test is not collected.
Each sample is K training steps on device-resident batches followed by one sync. In a run
that times the frameworks in turns (``harness.turns``), each sample waits for this cell's turn
and runs untimed steps for a moment (pytest-benchmark's untimed ``setup``: a process that waited
runs slower until its threads wake), and hands the turn back after it (``teardown``).
"""

from __future__ import annotations

import os

import pytest

from harness.backends import Unavailable
from harness.cell import CELL_ENV, CellRun
from harness.spec import Cell
from harness.turns import Turns

CELLS = [c for c in [Cell.from_json(os.environ[CELL_ENV])] if c.scenario == "train"] \
    if CELL_ENV in os.environ else []


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_train_step(benchmark, cell: Cell) -> None:
    run = CellRun.from_env()
    try:
        run.prepare()
        turns = Turns.from_env()
        # includes the warm-up, until the step time is stable
        k, rounds = run.calibrate(in_turns=turns.channel is not None)
        rounds = turns.agree(rounds)  # the same number of samples for every cell of a group
        benchmark.group = (f"{cell.workload}-{cell.size_name}-{cell.device}-b{cell.batch_size}"
                           f"-{cell.precision}")
        benchmark.extra_info.update(steps_per_sample=k, cell=cell.id, repeat=cell.repeat)
        benchmark.pedantic(run.timed_sample, args=(k,), rounds=rounds,
                           warmup_rounds=turns.warmup_rounds, iterations=1,
                           setup=turns.wait_then(run.rewarm), teardown=turns.done)
        turns.finish()
        run.finish(list(benchmark.stats.stats.data))
    except Unavailable as exc:
        run.crashed(exc)
        pytest.skip(str(exc))
    except BaseException as exc:
        run.crashed(exc)
        raise
