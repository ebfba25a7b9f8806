"""summary.md for the KFP Markdown viewer: the headline table and what to look at next."""

from __future__ import annotations

import math

from tgap.report.html import fmt, fmt_stat, model_statements
from tgap.report.tables import FTER_FLAG_TEXT, Cell, Group, Stat


def _cell(stat: Stat | None, best: bool = False) -> str:
    text = fmt_stat(stat)
    return f"**{text}** ★" if best else text


def _diff(d: dict) -> str:
    p = "—" if not math.isfinite(d["p_value"]) else f"{d['p_value']:.3g}"
    return f"{d['mean']:+.3f} [{fmt(d['ci_low'])}, {fmt(d['ci_high'])}] p {p}"


def summary_markdown(
    title: str,
    groups: list[Group],
    cells: list[Cell],
    best_s2r: dict[int, list[str]],
    best_fter: dict[int, list[str]],
    reference: dict[int, Stat],
    provenance: dict,
    *,
    fter_flags: set[tuple[str, int]] | None = None,
    untrained: set[str] | None = None,
    not_separated: dict[int, str] | None = None,
    paired: list[dict] | None = None,
    reference_method: str = "",
) -> str:
    """A compact Markdown summary: one row per method × size, mean ± sd over seeds.

    ⚑ beside an FTER: the FTER caveat (``FTER_FLAG_TEXT``); "did not train" beside a method
    whose fine-tune was flagged; the paired comparisons against ``reference_method`` below."""
    fter_flags, untrained = fter_flags or set(), untrained or set()
    seeds = sorted({c.seed for c in cells})
    lines = [
        f"# tgap: {title}",
        "",
        f"{len(cells)} cells: {len({g.method for g in groups})} methods × "
        f"{len({g.size for g in groups})} sizes × {len(seeds)} seeds ({', '.join(map(str, seeds))}). "
        "Values are mean ± sd over seeds; ★ marks the best S→R AUROC and the best FTER per size, "
        "only where a paired t-test over seeds separates it from the runner-up.",
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
                f"| {g.method}{' (did not train)' if g.method in untrained else ''} | {size} | "
                f"{len(g.cells)} | {_cell(s.get('s2r_accuracy'))} | "
                f"{_cell(s.get('s2r_auroc'), g.method in best_s2r.get(size, []))} | "
                f"{_cell(s.get('r2s_accuracy'))} | {_cell(s.get('r2s_auroc'))} | "
                f"{_cell(s.get('fter'), g.method in best_fter.get(size, []))}"
                f"{' ⚑' if (g.method, size) in fter_flags else ''} |"
            )
        if size in reference:
            lines.append(
                f"| *R→R (real → real)* | {size} | {reference[size].n} | | "
                f"*{fmt_stat(reference[size])}* | | | |"
            )
    for size, why in sorted((not_separated or {}).items()):
        lines += ["", f"Size {size}: {why}."]
    if fter_flags:
        lines += ["", f"⚑ {FTER_FLAG_TEXT} (R→S AUROC below the lower bound of R→R's interval)."]
    if paired:
        lines += [
            "",
            f"Paired differences against {reference_method} (mean over shared seeds, 95% "
            "t-interval, paired t-test p):",
            "",
            "| method | size | seeds | Δ S→R AUROC | Δ R→S AUROC | Δ FTER |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in paired:
            lines.append(
                f"| {r['method']} | {r['size']} | {len(r['seeds'])} | "
                + " | ".join(_diff(r[k]) for k in ("s2r_auroc", "r2s_auroc", "fter"))
                + " |"
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
