"""A cell process (the runner's ``pytest benchmarks/test_*.py`` with $FRAMEBENCH_CELL set) ends
as soon as pytest is done, without the interpreter's teardown: the record, the pytest-benchmark
JSON and the output are written by then, and unloading TensorFlow took about 1 s of every
process (torch 0.4 s), in a suite of about 90 processes."""

from __future__ import annotations

import os
import sys

import pytest

from harness.cell import CELL_ENV, out_dir
from harness.spec import Cell

_exit_status: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A data-parallel cell's other ranks keep their pytest-benchmark JSON in their own folder
    (``harness.cell.out_dir``)."""
    if CELL_ENV in os.environ and config.getoption("benchmark_json", None):
        config.option.benchmark_json = out_dir(Cell.from_json(os.environ[CELL_ENV])) \
            / "benchmark.json"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if CELL_ENV in os.environ and _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
