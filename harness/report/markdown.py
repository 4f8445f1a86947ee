"""summary.md: the decision table, rankings and sentences in Markdown, for pull requests and
terminals (the full report is index.html beside it)."""

from __future__ import annotations

from typing import Any

from harness.report.decide import CRITERIA, NOT_MEASURED, PRIORITIES


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary(ctx: dict[str, Any], links: list[dict[str, str]]) -> str:
    """The decision table and the sentences in Markdown (for pull requests and terminals)."""
    run = ctx["run"]
    titles = [c.title for c in CRITERIA]
    lines = [f"# framebench run `{run['run_id']}`: decision summary", "",
             f"Run {run['started']} to {run['ended'] or '(unfinished)'}; precision "
             f"{run['precision'] or 'fp32'}, {run['repeats'] or 1} fresh process(es) per cell. "
             "Each framework's headline cell (tuned tier if present, else idiomatic, else "
             "identical) is compared; the full report is [index.html](index.html).", "",
             "| workload (device) | tier | " + " | ".join(titles) + " |",
             "|---|---|" + "---|" * len(titles)]
    for d in ctx["decisions"]:
        cells = []
        for c in CRITERIA:
            lead = d["leads"][c.key]
            if not lead["leader"]:
                cells.append(_md(lead["verdict"] or "–"))
                continue
            text = f"**{lead['leader']}** {lead['figure']}" if not lead["tie"] else \
                f"tie: {lead['figure']}"
            if lead["ratio"]:
                text += f", {lead['ratio']}"
            detail = "; ".join(x for x in (lead["ci"], lead["verdict"] if not lead["tie"]
                                           else "", lead["evidence"]) if x)
            cells.append(_md(text + (f" ({detail})" if detail else "")))
        lines.append(f"| {_md(d['where'])} | {d['tier']} | " + " | ".join(cells) + " |")
    for name in NOT_MEASURED:
        lines.append("| " + " | ".join([name, "", "not measured in this run"]
                                        + [""] * (len(titles) - 1)) + " |")
    lines += ["", "Rankings by priority:", ""]
    for d in ctx["decisions"]:
        ranks = "; ".join(f"by {name}: " + ", ".join(e["framework"] for e in
                                                      d["rankings"][key])
                          for key, name in PRIORITIES.items())
        lines.append(f"- {d['where']}: {ranks}")
    lines += [""] + [f"- {text}" for text in ctx["overall"].values()]
    for d in ctx["decisions"]:
        lines += ["", f"## {d['where']}", ""] + [f"- {s}" for s in d["sentences"]]
        if d["caveats"]:
            lines += ["", "Caveats (configurations of the compared cells):", ""]
            lines += [f"- {'**' if c['strong'] else ''}{c['text']}{'**' if c['strong'] else ''}"
                      for c in d["caveats"]]
    corr = ctx["correction"]
    lines += ["", "## Method", "",
              (f"Throughput ratios are step-time ratios with a CI; CIs behind verdicts are "
               f"Bonferroni-corrected for the m = {corr['m']} between-framework comparisons of "
               f"this report (each at 1 − 0.05/m = {corr['level']})." if corr["corrected"] else
               f"Throughput ratios carry {corr['level']} CIs (this run predates the "
               "multiple-comparison correction)."),
              f"Verdicts: faster/slower beyond ±{ctx['margin']}, equivalent within it, else "
              "inconclusive. Start-up, memory and accuracy are measured once per process, and "
              "time to target is a median over seeds trained one after another: their ratios "
              "carry no CI.", "", "## Tables", ""]
    lines += [f"- {link['name']}: " + ", ".join(f"[{f['ext']}]({f['href']})"
                                                for f in link["files"]) for link in links]
    if ctx["problems"]:
        lines += ["", f"{len(ctx['problems'])} cell process(es) did not finish: "
                  + ", ".join(p["cell_id"] for p in ctx["problems"]) + "."]
    return "\n".join(lines) + "\n"

