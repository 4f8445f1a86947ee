"""The infer scenario of one benchmark cell (``harness.infer``), as two pytest-benchmark tests:
latency at batch 1 and throughput at the cell's batch size, each sample one request (a call
and the copy of its logits to the host).

The runner starts ``pytest benchmarks/test_infer.py --benchmark-json=...`` in a fresh process
per infer cell, with the cell in $FRAMEBENCH_CELL; run without it (or with a training cell),
nothing is collected. Both tests share one prepared model (a module-scoped fixture).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.backends import Unavailable
from harness.cell import CELL_ENV
from harness.infer import LATENCY_BATCH, InferRun
from harness.spec import Cell

CELLS = [c for c in [Cell.from_json(os.environ[CELL_ENV])] if c.scenario == "infer"] \
    if CELL_ENV in os.environ else []


@pytest.fixture(scope="module")
def run() -> Iterator[InferRun]:
    run = InferRun.from_env()
    try:
        run.prepare()
    except Unavailable as exc:
        run.crashed(exc)
        pytest.skip(str(exc))
    except BaseException as exc:
        run.crashed(exc)
        raise
    yield run
    run.finish()


def measure(benchmark, run: InferRun, batch: int, what: str) -> None:
    cell = run.cell
    try:
        request, count = run.calibrate_requests(batch)
        benchmark.group = (f"infer-{what}-{cell.workload}-{cell.size_name}-{cell.device}"
                           f"-b{batch}-{cell.precision}")
        benchmark.extra_info.update(cell=cell.id, repeat=cell.repeat, batch=batch,
                                    path=cell.mode)
        benchmark.pedantic(request, rounds=count, iterations=1, warmup_rounds=0)
        run.keep(batch, list(benchmark.stats.stats.data))
    except BaseException as exc:
        run.crashed(exc)
        raise


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_latency(benchmark, run: InferRun, cell: Cell) -> None:
    measure(benchmark, run, LATENCY_BATCH, "latency")


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_throughput(benchmark, run: InferRun, cell: Cell) -> None:
    measure(benchmark, run, cell.batch_size, "throughput")
