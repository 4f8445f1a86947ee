from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness import results


def test_round_trip_through_parquet_keeps_the_schema(small_run: Path) -> None:
    run_dir = small_run / "results" / "small"
    table, losses, samples = results.load(run_dir)
    assert list(table.columns) == list(results.SCHEMA)
    for column, (dtype, _) in results.SCHEMA.items():
        assert str(table[column].dtype) == dtype, column
    again, _, _ = results.collect(run_dir)
    pd.testing.assert_frame_equal(table, again)
    csv = pd.read_csv(run_dir / "results.csv")
    assert list(csv.columns) == list(results.SCHEMA) and len(csv) == len(table)
    assert losses.groupby("cell_id").size().min() >= 1
    assert (samples.groupby("cell_id").size() == table.set_index("cell_id")["n_samples"]).all()


def test_a_table_missing_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        results.conform(pd.DataFrame({"run_id": ["x"]}))
