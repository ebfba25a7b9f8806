"""summary.md for the KFP Markdown viewer: the headline table and what to look at next."""

from __future__ import annotations

import math

from tgap.report.html import fmt_stat, model_statements
from tgap.report.tables import Cell, Group, Stat


def _cell(stat: Stat | None, best: bool = False) -> str:
    text = fmt_stat(stat)
    return f"**{text}** ★" if best else text


def summary_markdown(
    title: str,
    groups: list[Group],
    cells: list[Cell],
    best_s2r: dict[int, list[str]],
    best_fter: dict[int, list[str]],
    reference: dict[int, Stat],
    provenance: dict,
) -> str:
    """A compact Markdown summary: one row per method × size, mean ± sd over seeds."""
    seeds = sorted({c.seed for c in cells})
    lines = [
        f"# tgap: {title}",
        "",
        f"{len(cells)} cells: {len({g.method for g in groups})} methods × "
        f"{len({g.size for g in groups})} sizes × {len(seeds)} seeds ({', '.join(map(str, seeds))}). "
        "Values are mean ± sd over seeds; ★ marks the best S→R AUROC and the best FTER per size.",
        "",
    ]
    for ok, text in model_statements(provenance, cells):
        lines.append(f"- {'' if ok else '**'}{text}{'' if ok else '**'}")
    ingest = provenance.get("ingest") or {}
    if ingest.get("leakage_warning"):
        lines.append(f"- **{ingest['leakage_warning']}**")
    if ingest.get("cross_split_patients_total"):
        lines.append(
            f"- **Leak in the dataset itself: {ingest['cross_split_patients_total']} patients "
            "are in more than one official split.**"
        )
    if ingest.get("skipped_corrupt"):
        lines.append(
            f"- {ingest['skipped_corrupt']} unreadable real image(s) skipped (listed in the report)."
        )
    lines += [
        "",
        "| method | size | seeds | S→R accuracy | S→R AUROC | R→S accuracy | R→S AUROC | FTER |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sorted({g.size for g in groups}):
        for g in (g for g in groups if g.size == size):
            s = g.stats
            lines.append(
                f"| {g.method} | {size} | {len(g.cells)} | {_cell(s.get('s2r_accuracy'))} | "
                f"{_cell(s.get('s2r_auroc'), g.method in best_s2r.get(size, []))} | "
                f"{_cell(s.get('r2s_accuracy'))} | {_cell(s.get('r2s_auroc'))} | "
                f"{_cell(s.get('fter'), g.method in best_fter.get(size, []))} |"
            )
        if size in reference:
            lines.append(
                f"| *R→R (real → real)* | {size} | {reference[size].n} | | "
                f"*{fmt_stat(reference[size])}* | | | |"
            )
    gaps = [g for g in groups if math.isfinite(g.stats["fter"].mean) and g.stats["fter"].mean < 1]
    lines += [
        "",
        f"FTER < 1 (trainability gap) in {len(gaps)} of {len(groups)} method × size rows. "
        "Read S→R together with R→S and the sample grids: see the HTML report for intervals, "
        "per-class numbers, plots, sample grids and provenance; `results.csv` has every cell.",
        "",
    ]
    return "\n".join(lines)
