"""Shared formatting: missing values, numbers with units, one-line manifest values and how a
cell is named and described. Used by every other module of the report; imports none of them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from harness.backends import BACKENDS, IDIOMATIC_DESCRIPTIONS, MODE_DESCRIPTIONS


def is_missing(value: Any) -> bool:
    """Whether a table cell is empty (None, NaN or pd.NA; lists and dicts never are)."""
    return value is None or (not isinstance(value, (list, dict)) and pd.isna(value))


def flag(value: Any) -> bool:
    """A nullable boolean cell as a plain bool (missing is False)."""
    return not is_missing(value) and bool(value)


def or_empty(value: Any) -> str:
    return "" if is_missing(value) else str(value)


def fmt_s(seconds: float | None) -> str:
    if is_missing(seconds):
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs" if seconds >= 1e-5 else f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float | None) -> str:
    return "–" if is_missing(n) else f"{n / 2**20:.0f} MiB"


def fmt_level(level: float) -> str:
    """0.95 -> '95%', 0.998333 -> '99.83%'."""
    return f"{100 * level:.2f}".rstrip("0").rstrip(".") + "%"


def fmt_times(factor: float) -> str:
    """A factor with the digits that matter: 1.04×, 2.4×, 14×."""
    if not np.isfinite(factor):
        return "∞×"
    return f"{factor:.2f}×" if factor < 2 else f"{factor:.1f}×" if factor < 10 \
        else f"{factor:.0f}×"


def show(value: Any, limit: int = 240) -> str:
    """A manifest value in one line."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={show(v)}" for k, v in sorted(value.items())) or "none"
    elif isinstance(value, (list, tuple)):
        text = json.dumps(value)
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = "–" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def label(row: Any) -> str:
    if row["tier"] == "tuned":
        if is_missing(row["variant"]) or not row["variant"]:
            return f"{row['framework']} tuned (no variant: its search failed)"
        return f"{row['framework']} tuned: {row['variant']} ({row['mode']})"
    return f"{row['framework']} {row['tier']} {row['mode']}"


def short_label(row: Any) -> str:
    return f"{row['framework']} {row['tier']}" + ("" if row["tier"] == "tuned"
                                                  else f" {row['mode']}")


def describe(row: Any) -> str:
    """What a cell runs, in words."""
    fw, mode = row["framework"], row["mode"]
    if row["tier"] == "idiomatic":
        return IDIOMATIC_DESCRIPTIONS.get((fw, mode), "")
    variant = "" if is_missing(row["variant"]) else row["variant"]
    if row["tier"] == "tuned" and variant not in ("identical", "idiomatic"):
        info = BACKENDS.get(fw)
        found = [v.description for v in info.variants if v.name == variant] if info \
            else []
        return found[0] if found else ""
    table = IDIOMATIC_DESCRIPTIONS if variant == "idiomatic" else MODE_DESCRIPTIONS
    text = table.get((fw, mode), "")
    return f"{text} (debugging mode)" if flag(row["debug_mode"]) and "debug" not in text \
        else text

