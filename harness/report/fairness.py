"""Whether the comparison is fair and the measurement sound: the certificates that the models
are identical (loss agreement), every difference between the compared cells' configurations
(caveats), the precision in effect, and the harness's own checks (sync, overhead, noise, the
machine's peak)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.backends import SELF_CHECK
from harness.measure import NOISE_LIMIT
from harness.record import read_json
from harness.report.fmt import flatten, fmt_s, is_missing, or_empty, show

OVERHEAD_LIMIT = 0.01
PRECISION_KEYS = re.compile(r"precision|dtype|tf32|bf16|fp16|denormal|amp", re.I)
THREAD_KEYS = re.compile(r"thread", re.I)
CAVEAT_KEYS = {  # manifest key: how a difference in it reads (in this order)
    "variant": "The configurations chosen differ",
    "mode": "The execution modes differ",
    "api": "The model and gradient APIs differ",
    "optimizer": "The optimiser implementations differ",
    "compile": "The compile options differ",
    "options": "The variants' options differ",
    "flags": "Flags differ",
}
SILENT_KEYS = {"tier", "settings", "threads", "differences", "versions"}


def loss_agreement(cells: pd.DataFrame, losses: pd.DataFrame, first: int = 10) -> float | None:
    """Largest difference between any two cells' losses over the first steps (the models are
    identical, so this should be float32 rounding)."""
    curves = [losses[losses["cell_id"] == c]["loss"].to_numpy()[:first] for c in cells["cell_id"]]
    curves = [c for c in curves if len(c) == first]
    if len(curves) < 2:
        return None
    stack = np.stack(curves)
    return float((stack.max(axis=0) - stack.min(axis=0)).max())


def search_agreement(run_dir: Path, workload: str, size: str) -> dict[str, float] | None:
    """The identical tier's trajectory as each framework's tuned search measured it (same
    weights, same first batches): the largest difference between frameworks over 3 and over
    all checked steps. The certificate of a run that ran no identical cells."""
    curves = [np.array(r["reference_losses"]) for r in
              (read_json(p) for p in sorted((run_dir / "tuning").glob("*.json")))
              if r.get("workload") == workload and r.get("size") == size
              and r.get("reference_losses")]
    n = min((len(c) for c in curves), default=0)
    if len(curves) < 2 or n < 3:
        return None
    stack = np.stack([c[:n] for c in curves])
    spread = stack.max(axis=0) - stack.min(axis=0)
    return {"first3": float(spread[:3].max()), "all": float(spread.max()), "steps": n,
            "frameworks": len(curves)}


def caveats(heads: pd.DataFrame, manifests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every difference between the configurations of the compared (headline) cells, as
    sentences; `strong` marks a difference that changes what is computed."""
    m = {r["framework"]: manifests.get(r["cell_id"], {}) for _, r in heads.iterrows()}
    m = {fw: man for fw, man in m.items() if man}
    if len(m) < 2:
        return []
    out: list[dict[str, Any]] = []

    def listing(values: dict[str, Any]) -> str:
        return "; ".join(f"{fw}: {show(v)}" for fw, v in values.items())

    for fw, man in m.items():
        stated = man.get("differences")
        if stated:
            text = "; ".join(stated) if isinstance(stated, list) else str(stated)
            out.append({"text": f"{fw}'s cell differs from the identical algorithm by design: "
                                f"{text}.", "strong": True})
    keys = sorted((k for k in dict.fromkeys(k for man in m.values() for k in man)
                   if k not in SILENT_KEYS),
                  key=lambda k: list(CAVEAT_KEYS).index(k) if k in CAVEAT_KEYS else 99)
    for key in keys:
        values = {fw: man.get(key) for fw, man in m.items()}
        if len({show(v) for v in values.values()}) < 2:
            continue
        if key == "flags" and not any(values.values()):
            continue
        lead = CAVEAT_KEYS.get(key, f"They differ in {key}")
        stated = {fw: v for fw, v in values.items() if v not in (None, {}, [], "")}
        absent = [fw for fw in values if fw not in stated]
        out.append({"text": f"{lead}: {listing(stated)}" + (f" ({', '.join(absent)}: none)"
                                                            if absent else "") + ".",
                    "strong": False})
        if key == "optimizer":
            flat = {fw: flatten(v) for fw, v in values.items() if isinstance(v, dict)}
            shared = [k for k in dict.fromkeys(k for f in flat.values() for k in f)
                      if k not in ("class", "") and sum(k in f for f in flat.values()) > 1]
            for sub in shared:
                subs = {fw: f[sub] for fw, f in flat.items() if sub in f}
                if len({show(v) for v in subs.values()}) > 1:
                    out.append({"text": f"Optimiser setting {sub} differs: {listing(subs)}.",
                                "strong": True})
    settings = {fw: flatten(man.get("settings") or {}) for fw, man in m.items()}
    precision = {fw: {k: v for k, v in s.items() if PRECISION_KEYS.search(k)}
                 for fw, s in settings.items()}
    dtypes = {fw: p.get("compute_dtype") for fw, p in precision.items()
              if p.get("compute_dtype") is not None}
    if len(set(map(str, dtypes.values()))) > 1:
        out.append({"text": f"The compute dtypes differ: {listing(dtypes)}.", "strong": True})
    if any(precision.values()):
        out.append({"text": f"Precision settings read back: {listing(precision)}.",
                    "strong": False})
    pinned = {fw: (man.get("threads") or {}).get("threads") for fw, man in m.items()}
    pools = {fw: {k: v for k, v in s.items() if THREAD_KEYS.search(k)}
             for fw, s in settings.items()}
    same = len({str(v) for v in pinned.values()}) == 1
    out.append({"text": ("Threads: " + (f"every cell pinned to {next(iter(pinned.values()))} "
                                        "CPU(s)" if same else
                                        f"the cells were pinned to different CPU counts "
                                        f"({listing(pinned)})")
                         + (f"; pools read back: {listing(pools)}." if any(pools.values())
                            else ".")), "strong": not same})
    versions = {fw: (man.get("versions") or {}).get("framework_version") for fw, man in m.items()}
    if any(versions.values()):
        out.append({"text": "Versions: " + ", ".join(f"{fw} {v}" for fw, v in versions.items()
                                                     if v) + ".", "strong": False})
    return out


def precision_in_effect(per_process: pd.DataFrame) -> list[dict[str, str]]:
    """Per framework and precision mode, the precision settings its cells read back."""
    rows: dict[tuple[str, str], set[str]] = {}
    real = per_process[per_process["framework"] != SELF_CHECK]
    for _, r in real.iterrows():
        settings = json.loads(r["settings"]) if not is_missing(r["settings"]) else {}
        shown = ", ".join(f"{k}={show(v)}" for k, v in sorted(flatten(settings).items())
                          if PRECISION_KEYS.search(k))
        rows.setdefault((r["framework"], or_empty(r["precision"])), set()).add(shown or "–")
    return [{"framework": fw, "precision": p, "settings": "; ".join(sorted(s))}
            for (fw, p), s in rows.items()]


def noise(probes: pd.Series, real: pd.DataFrame) -> dict[str, Any]:
    """How much the machine's own speed moved during the run (the fixed probe of every cell)."""
    spread = probes.max() / probes.min() - 1
    noisy = real[real["machine_slowdown"] > 1 + NOISE_LIMIT]
    return {"fastest": fmt_s(probes.min()), "slowest": fmt_s(probes.max()),
            "median": fmt_s(probes.median()), "limit": f"{NOISE_LIMIT:.0%}",
            "spread": f"{spread:.0%}", "warn": bool(spread > NOISE_LIMIT),
            "noisy": [f"{r.cell_id} (×{r.machine_slowdown:.2f})" for r in noisy.itertuples()]}


def trust(real: pd.DataFrame, noop: pd.DataFrame, per_process: pd.DataFrame) -> dict[str, Any]:
    """The harness's checks on itself: device sync, the no-op cell's step, timing overhead,
    warm-up stability, settings read back and the machine's noise."""
    failed_sync = sorted(set(per_process[(per_process["framework"] != SELF_CHECK)
                                         & (per_process["sync_ok"] == False)]["cell_id"]))  # noqa: E712
    overhead = real["overhead_fraction"].dropna()
    probes = per_process["machine_probe_s"].dropna()
    return {
        "sync_failed": failed_sync,
        "noop_step": fmt_s(noop["step_median_s"].iloc[0]) if len(noop) else None,
        "max_overhead": f"{overhead.max():.3%}" if len(overhead) else None,
        "overhead_warn": bool(len(overhead) and overhead.max() > OVERHEAD_LIMIT),
        "worst_overhead_cell": real.loc[overhead.idxmax(), "cell_id"] if len(overhead) else None,
        "unstable": sorted(set(per_process[per_process["warmup_stable"] == False]["cell_id"])),  # noqa: E712
        "settings": sorted(set(per_process["settings"].dropna())),
        "noise": noise(probes, real) if len(probes) else None,
    }


def device_peak(entry: Any) -> str:
    """One run.json device_peaks entry in words."""
    if isinstance(entry, (int, float)):
        return f"{entry / 1e9:,.0f} GFLOP/s"
    if not isinstance(entry, dict):
        return show(entry)
    parts = []
    if not is_missing(entry.get("flops_per_s")):
        parts.append(f"{entry['flops_per_s'] / 1e9:,.0f} GFLOP/s")
    by_fw = entry.get("by_framework") or {}
    if by_fw:
        parts.append("(" + ", ".join(f"{fw} {v / 1e9:,.0f}" for fw, v in by_fw.items()
                                     if isinstance(v, (int, float))) + ")")
    if entry.get("device_name"):
        parts.append(f"on {entry['device_name']}")
    if entry.get("threads"):
        parts.append(f"{entry['threads']} thread(s)")
    if not is_missing(entry.get("datasheet_flops_per_s")):
        parts.append(f"datasheet {entry['datasheet_flops_per_s'] / 1e12:,.1f} TFLOP/s")
    return " ".join(parts) or show(entry)

