"""summary.md for the KFP Markdown viewer: the headline tables and what to look at next."""

from __future__ import annotations

import math

from tgap.report.html import METRIC_NAMES, fmt, fmt_ci, fmt_signed, fmt_stat, model_statements
from tgap.report.tables import (
    FLAG_SIDE,
    FLAG_TEXT,
    R2S_NOT_PAIRED,
    Cell,
    Group,
    Stat,
    detect_text,
    is_control,
)

HEAD = (
    "| method | size | seeds | S→R accuracy | S→R AUROC [CI] | R→S accuracy | R→S AUROC [CI] "
    "| FTER [CI] | utility | fidelity |"
)
RULE = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def _cell(stat: Stat | None, best: bool = False, ci: bool = False) -> str:
    text = fmt_stat(stat)
    if ci and stat is not None and stat.ci_kind:
        text += f" {fmt_ci(stat)}"
    return f"**{text}** ★" if best else text


def _mean(stat: Stat | None) -> str:
    return "—" if stat is None else fmt(stat.mean)


def _row(g: Group, best: bool, flag: str, untrained: set[str]) -> str:
    s = g.stats
    return (
        f"| {g.method}{' (did not train)' if g.method in untrained else ''} | {g.size} | "
        f"{len(g.cells)} | {_cell(s.get('s2r_accuracy'))} | "
        f"{_cell(s.get('s2r_auroc'), best, ci=True)} | "
        f"{_cell(s.get('r2s_accuracy'))} | {_cell(s.get('r2s_auroc'), ci=True)} | "
        f"{_cell(s.get('fter'), ci=True)}{' ⚑ ' + FLAG_SIDE[flag] if flag else ''} | "
        f"{_mean(s.get('utility'))} | {_mean(s.get('fidelity'))} |"
    )


def _per_seed(stat: Stat | None, seeds: list[int]) -> str:
    """Values in seed order; each named by its seed when some seed is missing."""
    if stat is None:
        return "—"
    if stat.seeds == seeds:
        return " / ".join(fmt(v) for v in stat.values)
    return " / ".join(f"seed {s}: {fmt(v)}" for s, v in zip(stat.seeds, stat.values, strict=True))


def _comparison_lines(compared: list[dict]) -> list[str]:
    family = sum(1 for r in compared if math.isfinite(r["p"]))
    lines = [
        f"Comparisons (Holm's family: the {family} rows below with a p-value, S→R and R→S "
        "together; S→R paired on the same real-test images within each seed where the cells "
        f"store their predictions). {R2S_NOT_PAIRED}",
        "",
        "| metric | size | method − against | why | paired by | seeds | difference [CI] | p "
        "| Holm p | power |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in compared:
        p = "—" if not math.isfinite(r["p"]) else f"{r['p']:.3g}"
        p_holm = "—" if not math.isfinite(r["p_holm"]) else f"{r['p_holm']:.3g}"
        diff = f"{fmt_signed(r['diff'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
        lines.append(
            f"| {METRIC_NAMES[r['metric']]} | {r['size']} | {r['method']} − {r['against']} | "
            f"{'; '.join(r['why'])} | {r['paired_by'] or '—'} | {len(r['seeds'])} | "
            f"{'**' + diff + '**' if r['separated'] else diff} | {p} | {p_holm} | "
            f"{detect_text(r)} |"
        )
    return lines


def _caveats(provenance: dict, cells: list[Cell]) -> list[str]:
    """Untrained models in bold, the data's leaks and skipped files."""
    lines = []
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
    return lines


def _headline_table(
    groups: list[Group],
    sizes: list[int],
    best_s2r: dict[int, list[str]],
    r2r: dict[int, Stat],
    fter_flags: dict[tuple[str, int], str],
    untrained: set[str],
) -> list[str]:
    """Fine-tuned methods per size with R→R below them, then the controls in a table of their own."""
    lines = ["", HEAD, RULE]
    for size in sizes:
        for g in (g for g in groups if g.size == size and not is_control(g.method)):
            flag = fter_flags.get((g.method, size), "")
            lines.append(_row(g, g.method in best_s2r.get(size, []), flag, untrained))
        if size in r2r:
            lines.append(
                f"| *R→R (real → real)* | {size} | {r2r[size].n} | | "
                f"*{_cell(r2r[size], ci=True)}* | | | | | |"
            )
    controls = [g for g in groups if is_control(g.method)]
    if controls:
        lines += ["", "Controls (not fine-tuned, never ranked):", "", HEAD, RULE]
        for g in controls:
            lines.append(_row(g, False, fter_flags.get((g.method, g.size), ""), untrained))
    return lines


def _seed_table(
    groups: list[Group], sizes: list[int], seeds: list[int], r2r: dict[int, Stat]
) -> list[str]:
    lines = [
        "",
        f"Every seed's value (seeds {', '.join(map(str, seeds))} in order):",
        "",
        "| method | size | S→R AUROC | R→S AUROC | FTER |",
        "|---|---:|---|---|---|",
    ]
    for g in groups:
        s = g.stats
        lines.append(
            f"| {g.method} | {g.size} | {_per_seed(s.get('s2r_auroc'), seeds)} | "
            f"{_per_seed(s.get('r2s_auroc'), seeds)} | {_per_seed(s.get('fter'), seeds)} |"
        )
    for size in sizes:
        if size in r2r:
            lines.append(f"| R→R | {size} | {_per_seed(r2r[size], seeds)} | | |")
    return lines


def summary_markdown(
    title: str,
    groups: list[Group],
    cells: list[Cell],
    best_s2r: dict[int, list[str]],
    reference: dict[str, dict[int, Stat]],
    provenance: dict,
    *,
    fter_flags: dict[tuple[str, int], str] | None = None,
    untrained: set[str] | None = None,
    not_separated: dict[int, str] | None = None,
    compared: list[dict] | None = None,
    chosen_on: str = "",
) -> str:
    """A compact Markdown summary: fine-tuned methods, then controls, one row per method ×
    size (mean ± sd over seeds and the interval), every seed's value, the comparisons.

    ⚑ beside an FTER: R→S outside R→R's interval (``FLAG_TEXT`` says which side); "did not
    train" beside a method whose fine-tune was flagged."""
    fter_flags, untrained = fter_flags or {}, untrained or set()
    seeds = sorted({c.seed for c in cells})
    sizes = sorted({g.size for g in groups})
    lines = [
        f"# tgap: {title}",
        "",
        f"{len(cells)} cells: {len({g.method for g in groups})} methods × "
        f"{len(sizes)} sizes × {len(seeds)} seeds ({', '.join(map(str, seeds))}). "
        "Values are mean ± sd over seeds; AUROC with its interval over seeds and test images "
        "(logit scale, inside [0, 1]; † seed spread only; ‡ one seed, test images only). FTER "
        "is the ratio of the mean AUROCs (± the sd of the per-seed ratios, log-scale interval); "
        "utility = S→R / R→R and fidelity = R→S / R→R, ratios of mean AUROCs without an "
        "interval. ★ marks the best fine-tuned S→R AUROC per size, only where its comparison "
        "with the runner-up is separated after Holm's correction. Controls are listed apart "
        "and never ranked.",
        "",
    ]
    if chosen_on:
        lines += [f"Settings chosen on: {chosen_on}.", ""]
    lines += _caveats(provenance, cells)
    r2r = reference.get("r2r_auroc", {})
    lines += _headline_table(groups, sizes, best_s2r, r2r, fter_flags, untrained)
    for size, why in sorted((not_separated or {}).items()):
        lines += ["", f"Size {size}: {why}."]
    for flag in sorted(set(fter_flags.values())):
        lines += ["", f"⚑ {FLAG_SIDE[flag]}: {FLAG_TEXT[flag]}."]
    lines += _seed_table(groups, sizes, seeds, r2r)
    if compared:
        lines += ["", *_comparison_lines(compared)]
    gaps = [g for g in groups if math.isfinite(g.stats["fter"].mean) and g.stats["fter"].mean < 1]
    lines += [
        "",
        f"FTER < 1 (trainability gap) in {len(gaps)} of {len(groups)} method × size rows. "
        "Read S→R together with R→S and the sample grids: see the HTML report for intervals, "
        "per-class numbers, plots, sample grids and provenance; `results.csv` has every cell.",
        "",
    ]
    return "\n".join(lines)
