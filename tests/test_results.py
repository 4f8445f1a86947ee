from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness import results


def test_round_trip_through_parquet_keeps_the_schema(small_run: Path) -> None:
    run_dir = small_run / "results" / "small"
    tables = results.load(run_dir)
    for name, schema in results.TABLES.items():
        df = tables[name]
        assert list(df.columns) == list(schema), name
        for column, spec in schema.items():
            dtype = spec[0] if isinstance(spec, tuple) else spec
            assert str(df[column].dtype) == dtype, (name, column)
    table, losses, samples, _, _ = results.collect(run_dir)
    pd.testing.assert_frame_equal(tables["results"], table)
    csv = pd.read_csv(run_dir / "results.csv")
    assert list(csv.columns) == list(results.SCHEMA) and len(csv) == len(table)
    assert losses.groupby("cell_id").size().min() >= 1
    assert (samples.groupby("cell_id").size() == table.set_index("cell_id")["n_samples"]).all()
    slowdown = tables["summary"]["machine_slowdown"]  # one process per cell (--quick)
    assert slowdown.notna().all() and slowdown.min() == 1.0 and (slowdown >= 1.0).all()
    ratios = tables["ratios"]
    # training: per workload and tier, the 3 pairs of frameworks; inference: per workload, the
    # 3 pairs of the frameworks' best paths on latency and on time per request
    assert ratios["metric"].value_counts().to_dict() == {"step": 2 * 3 * 3, "latency": 2 * 3,
                                                         "request": 2 * 3}
    steps = ratios[ratios["metric"] == "step"]  # infer: raw medians, CIs from request blocks
    assert ((steps["ci_low"] <= steps["ratio"]) & (steps["ratio"] <= steps["ci_high"])).all()
    tuning = tables["tuning"]
    assert tuning.groupby(["workload", "framework"])["chosen"].sum().eq(1).all()
    assert tuning[tuning["chosen"]]["correct"].all()
    assert (tuning["variant"] == "identical").groupby(
        [tuning["workload"], tuning["framework"]]).sum().eq(1).all()


def test_a_table_missing_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        results.conform(pd.DataFrame({"run_id": ["x"]}))
