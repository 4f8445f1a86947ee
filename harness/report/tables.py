"""The run's tables as the report reads them: old runs brought up to the current contract
(missing columns empty, verdicts worked out from the CIs), and links to the table files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import results, stats
from harness.report.fmt import is_missing


def load_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """The run's tables. A run written before a column existed gets it empty, and its ratios and
    speed-ups the columns of the current contract, so old runs still render."""
    tables = results.load(run_dir, lenient=True)
    tables["ratios"] = _with_verdicts(tables["ratios"], tables["summary"])
    tables["speedups"] = _with_verdicts(tables["speedups"], tables["summary"])
    return tables


def _with_verdicts(df: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Fill what an older table lacks: the CI's level (0.95, uncorrected), a verdict from the CI
    (stats.verdict), settle_repeats, and how the cells were timed."""
    df = df.copy()
    if "level" not in df.columns:
        df["level"] = pd.Series(np.nan, index=df.index, dtype="Float64")
    df["level"] = df["level"].astype("Float64").fillna(stats.LEVEL)
    if "verdict" not in df.columns:
        df["verdict"] = pd.Series(pd.NA, index=df.index, dtype="string")
    known = df["verdict"].isin(stats.VERDICTS).fillna(False).astype(bool)
    for idx in df.index[~known]:
        df.loc[idx, "verdict"] = stats.verdict(df.loc[idx, "ci_low"], df.loc[idx, "ci_high"]) \
            if not is_missing(df.loc[idx, "ci_low"]) else "inconclusive"
    if "settle_repeats" not in df.columns:
        processes = dict(zip(summary["cell_id"], summary["n_processes"]))
        settle: list[Any] = []
        for _, r in df.iterrows():
            ratio = r["ratio"] if "ratio" in df.columns else r.get("speedup")
            cells = [r[k] for k in ("a", "b", "idiomatic", "tuned") if k in df.columns]
            n = min((int(processes[c]) for c in cells if not is_missing(processes.get(c))),
                    default=1)
            unsettled = r["verdict"] == "inconclusive" and not is_missing(r["ci_low"])
            settle.append(stats.settle_repeats(ratio, r["ci_low"], r["ci_high"], n)
                          if unsettled else None)
        df["settle_repeats"] = pd.Series(settle, index=df.index, dtype="Int64")
    if "timing" not in df.columns:
        df["timing"] = "sequential: this run predates paired timing"
    for col, fill in (("paired", False), ("n_pairs", None)):
        if col not in df.columns:
            df[col] = fill
    return df


def table_links(run_dir: Path, out_dir: Path) -> list[dict[str, str]]:
    """Links from out_dir to the run's tables (relative: --results-dir and --reports-dir are
    independent, so the path is worked out, not assumed)."""
    links = []
    for name in results.TABLES:
        files = []
        for ext in ("csv", "parquet"):
            path = run_dir / f"{name}.{ext}"
            if path.exists():
                try:
                    href = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
                except ValueError:  # another drive
                    href = path.resolve().as_uri()
                files.append({"ext": ext.upper() if ext == "csv" else "Parquet", "href": href})
        if files:
            links.append({"name": name, "files": files})
    return links

