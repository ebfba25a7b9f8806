"""The report's learning-curve part: the real-equivalent size of every method x size (mean over
seeds, ``tgap.curves.seed_mean``), the saturation line with the GPU-hours a smaller
``generate.n_per_label`` would have saved (``tgap.plan``'s rates), flat metrics
``real_equivalent.<method>.<size>``, and one plot per size.

It reads each cell's ``learning_curves`` block (``tgap.learning_curve.cell_curves``) from its
``cell.json``; a run whose cells have none gets no section.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tgap.config import Config
from tgap.curves import CurveError, Point, RealCurve, seed_mean
from tgap.grid import row_kind
from tgap.report.html import picture
from tgap.report.images import ImageBudget, figure_png
from tgap.report.plots import style


@dataclass
class Row:
    """One method x size over its seeds."""

    method: str
    size: int
    seeds: int
    text: str  # the real-equivalent size and interval, or the words, or why there is none
    n: float = math.nan
    low: float = math.nan
    high: float = math.nan
    s2r: float = math.nan
    exchange_rate: float = math.nan
    saturated: int = 0  # seeds whose synthetic curve flattened
    sufficient: int = 0  # the largest sufficient n_per_label over the saturated seeds
    mean_curve: RealCurve | None = None
    synthetic: list[list[dict[str, Any]]] = field(default_factory=list)


def _read(cell_dirs: list[Path]) -> list[dict[str, Any]]:
    cells = [json.loads((Path(d) / "cell.json").read_text()) for d in cell_dirs]
    return [c for c in cells if c.get("learning_curves")]


def _row(method: str, size: int, cells: list[dict[str, Any]], confidence: float) -> Row:
    cells = sorted(cells, key=lambda c: c["seed"])
    blocks = [c["learning_curves"] for c in cells]
    row = Row(method, size, len(cells), "", synthetic=[b["synthetic"] for b in blocks])
    sat = [c for c in cells if c.get("synthetic_saturated") == 1]
    row.saturated = len(sat)
    row.sufficient = max((int(c["synthetic_sufficient_n_per_label"]) for c in sat), default=0)
    if not all(len(b["real"]) >= 2 and b["synthetic"] for b in blocks):
        row.text = "no real learning curve"
        return row
    curves = [RealCurve.of([Point(**p) for p in b["real"]]) for b in blocks]
    s2r = [Point(**{k: v for k, v in b["synthetic"][-1].items() if k != "fraction"})
           for b in blocks]  # fmt: skip
    try:
        row.mean_curve, reading = seed_mean(curves, s2r, confidence)
    except CurveError as exc:
        row.text = f"not read: {exc}"
        return row
    row.n, row.low, row.high, row.text = reading.n, reading.low, reading.high, reading.text()
    row.s2r = sum(p.auroc for p in s2r) / len(s2r)
    per_label = s2r[0].n
    if math.isfinite(reading.n):
        row.exchange_rate = per_label / reading.n
    return row


def rows(cell_dirs: list[Path], confidence: float) -> list[Row]:
    """One ``Row`` per method x size of the cells that carry learning curves."""
    cells = _read(cell_dirs)
    keys = list(dict.fromkeys((c["method"], int(c["size"])) for c in cells))
    return [
        _row(m, n, [c for c in cells if (c["method"], int(c["size"])) == (m, n)], confidence)
        for m, n in keys
    ]


def results_json(table: list[Row]) -> list[dict[str, Any]]:
    """results.json's ``real_equivalent``: one entry per method x size."""
    return [
        {"method": r.method, "size": r.size, "seeds": r.seeds, "text": r.text,
         "real_equivalent": r.n, "real_equivalent_low": r.low, "real_equivalent_high": r.high,
         "s2r_auroc": r.s2r, "exchange_rate": r.exchange_rate, "saturated_seeds": r.saturated,
         "sufficient_n_per_label": r.sufficient or None}
        for r in table
    ]  # fmt: skip


def flat_metrics(table: list[Row]) -> dict[str, float]:
    """``real_equivalent.<method>.<size>`` (and its interval's ends) where they are numbers."""
    out = {}
    for r in table:
        for suffix, value in (("", r.n), ("_low", r.low), ("_high", r.high)):
            if math.isfinite(value):
                out[f"real_equivalent{suffix}.{r.method}.{r.size}"] = value
    return out


def saved_gpu_hours(table: list[Row], config: Config) -> float:
    """GPU-hours the saturated cells' generations would have saved at their sufficient
    ``n_per_label`` (``tgap.plan.generation_hours``), over every saturated seed."""
    from tgap.plan import generation_hours

    full = generation_hours(config, config.generate.n_per_label)
    saved = 0.0
    for r in table:
        if r.saturated and row_kind({"method": r.method, "size": r.size}) != "retrieval":
            saved += r.saturated * (full - generation_hours(config, r.sufficient))
    return saved


def saturation_line(table: list[Row], config: Config) -> str:
    """One sentence: which cells' synthetic curves flattened, and what generating less saves."""
    generated = [r for r in table if row_kind({"method": r.method, "size": r.size}) != "retrieval"]
    flat = [r for r in generated if r.saturated]
    if not generated:
        return ""
    n = config.generate.n_per_label
    if not flat:
        return (
            f"Synthetic curves: S→R still rising at {n} images per label in every cell "
            "(generating more may help)."
        )
    names = ", ".join(f"{r.method}/{r.size} ({r.saturated}/{r.seeds} seeds)" for r in flat)
    sufficient = max(r.sufficient for r in flat)
    return (
        f"Synthetic curves flattened: {names}. generate.n_per_label {sufficient} would have "
        f"given the same S→R (within the smaller set's interval) instead of {n}, saving "
        f"~{saved_gpu_hours(flat, config):.1f} GPU-hours of generation at tgap plan's rates."
    )


def rate_text(row: Row) -> str:
    """Synthetic images per real one, or a dash where there is no real-equivalent size."""
    return f"{row.exchange_rate:.1f}" if math.isfinite(row.exchange_rate) else "–"


def markdown(table: list[Row], config: Config) -> str:
    """The summary.md block: a table of real-equivalent sizes and the saturation line."""
    if not table:
        return ""
    lines = [
        "## Real-equivalent size",
        "",
        "Real-train images per label whose classifier scores the synthetic set's S→R AUROC "
        "(mean over seeds, read off the mean real learning curve; docs/evaluation.md).",
        "",
        "| method | size | S→R AUROC | real-equivalent per label | synthetic per real |",
        "|---|---|---|---|---|",
    ]
    for r in table:
        s2r = f"{r.s2r:.3f}" if math.isfinite(r.s2r) else "–"
        lines.append(f"| {r.method} | {r.size} | {s2r} | {r.text} | {rate_text(r)} |")
    line = saturation_line(table, config)
    return "\n".join([*lines, "", line, ""] if line else [*lines, ""])


def plot(table: list[Row], size: int, methods: list[str]) -> bytes | None:
    """The mean real curve of one tuning-set size with its band, each method's S→R as a point
    on it (at its real-equivalent size) and its synthetic curve (mean over seeds)."""
    mine = [r for r in table if r.size == size and r.mean_curve is not None]
    if not mine:
        return None
    looks = style(methods)
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    curve = mine[0].mean_curve
    ax.fill_between(curve.sizes, curve.low, curve.high, color="0.85", label="real, interval")
    ax.plot(curve.sizes, curve.auroc, "k-o", ms=3, lw=1.5, label="real learning curve")
    for r in mine:
        look = looks.get(r.method, {"color": "C0", "marker": "o"})
        xs = [p["n"] for p in r.synthetic[0]]
        ys = [sum(s[i]["auroc"] for s in r.synthetic) / len(r.synthetic) for i in range(len(xs))]
        ax.plot(xs, ys, ls=":", lw=1, color=look["color"], marker=look["marker"], ms=3,
                label=f"{r.method} synthetic curve")  # fmt: skip
        if math.isfinite(r.n):
            ax.plot([r.n], [r.s2r], ms=9, ls="", mfc="none", mew=2, color=look["color"],
                    marker=look["marker"], label=f"{r.method} S→R at its real-equivalent")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("training images per label (real, or synthetic for the dotted curves)")
    ax.set_ylabel("AUROC on real-test")
    ax.set_title(f"Learning curves, tuning-set size {size}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure_png(fig)


def html_view(table: list[Row], config: Config, budget: ImageBudget) -> dict[str, Any] | None:
    """What ``templates/curves.html`` shows: the table, the saturation line and one plot per
    size (None without learning curves)."""
    if not table:
        return None
    methods = list(dict.fromkeys(r.method for r in table))
    figures = [
        picture(plot(table, size, methods), budget, f"learning curves {size}")
        for size in sorted({r.size for r in table})
    ]
    return {
        "rows": [{**vars(r), "rate": rate_text(r)} for r in table],
        "saturation": saturation_line(table, config),
        "figures": [f for f in figures if f is not None],
    }
