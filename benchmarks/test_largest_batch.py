"""One try of the largest-batch search (``harness.largest``): the cell's model trains at its
batch size, a few steps timed by pytest-benchmark, each one step and a sync.

The runner starts ``pytest benchmarks/test_largest_batch.py --benchmark-json=...`` in a fresh
process per try, with the cell in $FRAMEBENCH_CELL (and, on a CPU, in a memory cgroup at the
cap); run without it (or with a cell of another scenario), nothing is collected.
"""

from __future__ import annotations

import os

import pytest

from harness.backends import Unavailable
from harness.cell import CELL_ENV
from harness.largest import TRY_STEPS, FitRun
from harness.spec import Cell

CELLS = [c for c in [Cell.from_json(os.environ[CELL_ENV])] if c.scenario == "largest"] \
    if CELL_ENV in os.environ else []


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_largest_batch_try(benchmark, cell: Cell) -> None:
    run = FitRun.from_env()
    try:
        run.prepare()
        benchmark.group = f"largest-{cell.workload}-{cell.size_name}-{cell.device}"
        benchmark.extra_info.update(cell=cell.id, batch=cell.batch_size)
        benchmark.pedantic(run.timed_sample, args=(1,), rounds=TRY_STEPS, iterations=1,
                           warmup_rounds=0)
        run.finish(list(benchmark.stats.stats.data))
    except Unavailable as exc:
        run.crashed(exc)
        pytest.skip(str(exc))
    except BaseException as exc:
        run.crashed(exc)
        raise
