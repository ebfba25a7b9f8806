"""report.html: one self-contained page (inline CSS, images as data: URIs, no scripts, no links).

It is shown by the KFP UI's HTML viewer, an ``<iframe sandbox="allow-scripts" srcdoc=...>``:
there, relative links and in-page anchors resolve against the UI's own URL, so the page has
none; sections fold with ``<details>`` instead.

The markup is in Jinja2 templates (``templates/``, autoescaped: every value is escaped unless a
template says otherwise). The functions here turn the report's tables into the plain values a
template lays out, and hold the number formats the templates use as filters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from tgap.report.images import MAX_IMAGE_SIDE, ImageBudget, shrink_png
from tgap.report.tables import (
    FLAG_SHORT,
    FLAG_TEXT,
    Cell,
    Group,
    Stat,
    class_keys,
    detect_text,
    is_control,
    same_label,
)

# The thesis grid (7 methods × 3 sizes) is 21 rows; a bigger grid shows the first rows only.
MAX_GRID_ROWS = 30
INLINE_CLASSES = 3  # per-class columns inside the main table up to this many labels
METRIC_NAMES = {"s2r_auroc": "S→R AUROC", "r2s_auroc": "R→S AUROC"}
SEED_METRICS = (
    ("s2r_auroc", "S→R AUROC"),
    ("r2s_auroc", "R→S AUROC"),
    ("fter", "FTER"),
    ("s2r_accuracy", "S→R accuracy"),
    ("r2s_accuracy", "R→S accuracy"),
)
REFERENCE_NAME = "R→R (real → real)"

# --------------------------------------------------------------------------- number formats


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if not math.isfinite(x):
        return "nan"
    return f"{x:.{digits}f}"


def fmt_mean(stat: Stat | None) -> str:
    return "—" if stat is None else fmt(stat.mean)


def fmt_stat(stat: Stat | None) -> str:
    if stat is None:
        return "—"
    if stat.n > 1 and math.isfinite(stat.sd):
        return f"{fmt(stat.mean)} ± {fmt(stat.sd)}"
    return fmt(stat.mean)


# What an interval leaves out: † seed spread only (the cells carry no test-image variance),
# ‡ one seed (test images only).
CI_MARK = {"seeds+images": "", "seeds": "†", "images": "‡"}


def fmt_ci(stat: Stat | None) -> str:
    """The interval over seeds, marked when it holds only one of the two sources of variance."""
    if stat is None or not stat.ci_kind:
        return "—"
    return f"[{fmt(stat.ci_low)}, {fmt(stat.ci_high)}]{CI_MARK.get(stat.ci_kind, '')}"


def fmt_signed(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3f}"


def fmt_p(p: float) -> str:
    return "—" if not math.isfinite(p) else f"{p:.3g}"


def fmt_auto(stat: Stat | None) -> str:
    """Counts as integers, large numbers with one decimal, the rest with three."""
    if stat is None:
        return "—"
    if math.isfinite(stat.mean) and (abs(stat.mean) >= 1e4 or 0 < abs(stat.mean) < 1e-3):
        text = f"{stat.mean:.4g}"  # KID, tiny distances: significant digits, not decimals
        return text + (f" ± {stat.sd:.2g}" if stat.n > 1 and math.isfinite(stat.sd) else "")
    digits = 3
    if math.isfinite(stat.mean) and abs(stat.mean) >= 100:
        digits = 1
    if math.isfinite(stat.mean) and float(stat.mean).is_integer() and (stat.n == 1 or stat.sd == 0):
        digits = 0
    text = fmt(stat.mean, digits)
    if stat.n > 1 and math.isfinite(stat.sd):
        text += f" ± {fmt(stat.sd, max(digits, 1) if digits else 0)}"
    return text


def json_text(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)


def value_kind(value: Any, depth: int) -> str:
    """How ``provenance.html`` shows a JSON value: nested tables while shallow and short, JSON
    text when deep or long, a comma list for a list of plain values."""
    if isinstance(value, dict):
        return "empty" if not value else ("json" if depth >= 3 else "mapping")
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return "plain list"
        if all(isinstance(v, dict) for v in value) and depth < 3 and len(value) <= 200:
            return "records"
        return "json"
    return "float" if isinstance(value, float) else "text"


def record_keys(records: list[dict[str, Any]]) -> list[str]:
    """The columns of a list of records: every key, in first-seen order."""
    return list(dict.fromkeys(k for record in records for k in record))


# --------------------------------------------------------------------------- templates

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("tgap.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the report, not a blank cell
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    fmt=fmt,
    mean=fmt_mean,
    stat=fmt_stat,
    ci=fmt_ci,
    signed=fmt_signed,
    p=fmt_p,
    auto=fmt_auto,
    json_text=json_text,
)
ENV.globals.update(
    value_kind=value_kind, record_keys=record_keys, flag_short=FLAG_SHORT, flag_text=FLAG_TEXT
)


def render(template: str, **values: Any) -> str:
    return ENV.get_template(template).render(**values)


@dataclass
class Picture:
    """An inlined PNG: ``uri`` is None when the image budget left it out."""

    uri: str | None
    alt: str = ""


def picture(png: bytes | None, budget: ImageBudget, alt: str = "") -> Picture | None:
    """None when there is nothing to show (the section says why)."""
    return None if png is None else Picture(budget.take(png), alt)


# --------------------------------------------------------------------------- the two-way tables


@dataclass
class MethodRow:
    group: Group
    classes: list[str]
    best: bool
    untrained: bool
    flag: str  # the FTER row's two-sided R→S flag ('' without)


@dataclass
class ReferenceRow:
    n: int
    accuracy: Stat | None
    auroc: Stat | None
    accuracy_classes: list[tuple[str, Stat | None]]  # (data-metric, stat) per shown column
    auroc_classes: list[tuple[str, Stat | None]]


@dataclass
class SizeBlock:
    size: int
    tuned: list[MethodRow]
    controls: list[MethodRow]
    reference: ReferenceRow | None


@dataclass
class TwoWayTable:
    direction: str
    ci: str  # the interval's header, "(95% CI)"
    accuracy_classes: list[tuple[str, str]]  # (label, key) of the per-class columns
    auroc_classes: list[tuple[str, str]]
    one_auroc: bool  # a two-label softmax head: one AUROC for both labels (a note says so)
    blocks: list[SizeBlock] = field(default_factory=list)

    @property
    def width(self) -> int:
        return 8 + len(self.accuracy_classes) + len(self.auroc_classes)


def results_table(
    direction: str,
    groups: list[Group],
    cells: list[Cell],
    labels: list[str],
    best: dict[int, list[str]],
    reference: dict[str, dict[int, Stat]],
    fter_flags: dict[tuple[str, int], str],
    untrained: set[str],
    classifier_head: str,
    confidence: float,
) -> TwoWayTable:
    """The thesis-form table for one direction (``two_way.html``): per size, the fine-tuned
    methods (ranked, ★), then the controls in their own block (never ranked), then R→R.

    ``classifier_head`` is ``classifier.head``: a two-label softmax head's per-class AUROCs equal
    the AUROC column by construction, so they are not repeated and a note says so.

    With more than ``INLINE_CLASSES`` labels the per-class columns move to ``per_class_table``,
    so ten labels do not push the table off the page. ``fter_flags`` maps (method, size) rows to
    their two-sided R→S flag, shown beside FTER; methods in ``untrained`` are marked "did not
    train".
    """
    inline = len(labels) <= INLINE_CLASSES
    one_auroc = len(labels) == 2 and classifier_head == "softmax"
    table = TwoWayTable(
        direction,
        f"({confidence:.0%} CI)",
        class_keys(cells, direction, "accuracy", labels) if inline else [],
        class_keys(cells, direction, "auroc", labels) if inline and not one_auroc else [],
        one_auroc,
    )

    def row(g: Group, classes: list[str]) -> MethodRow:
        is_best = g.method in best.get(g.size, [])
        classes = [*classes, "best"] if is_best else classes
        flag = fter_flags.get((g.method, g.size), "")
        return MethodRow(g, classes, is_best, g.method in untrained, flag)

    for size in sorted({g.size for g in groups}):
        here = [g for g in groups if g.size == size]
        tuned = [g for g in here if not is_control(g.method)]
        controls = [g for g in here if is_control(g.method)]
        table.blocks.append(
            SizeBlock(
                size,
                [row(g, ["size-start"] if i == 0 else []) for i, g in enumerate(tuned)],
                [row(g, ["control"]) for g in controls],
                _reference_row(table, cells, labels, reference, size),
            )
        )
    return table


def _reference_row(
    table: TwoWayTable,
    cells: list[Cell],
    labels: list[str],
    reference: dict[str, dict[int, Stat]],
    size: int,
) -> ReferenceRow | None:
    """R→R at one size, with the per-class columns the table shows (None without R→R)."""
    accuracy = reference.get("r2r_accuracy", {}).get(size)
    auroc = reference.get("r2r_auroc", {}).get(size)
    if accuracy is None and auroc is None:
        return None

    def per_class(metric: str, shown: list[tuple[str, str]]) -> list[tuple[str, Stat | None]]:
        keys = dict(class_keys(cells, "r2r", metric, labels))
        at_size = {lab: reference.get(k, {}).get(size) for lab, k in keys.items()}
        return [(f"r2r_{metric}_{lab}", at_size.get(lab)) for lab, _ in shown]

    return ReferenceRow(
        (accuracy or auroc).n,
        accuracy,
        auroc,
        per_class("accuracy", table.accuracy_classes),
        per_class("auroc", table.auroc_classes),
    )


@dataclass
class SeedRow:
    method: str
    size: int
    key: str
    title: str
    by_seed: dict[int, float]


def seeds_table(groups: list[Group], reference: dict[str, dict[int, Stat]]) -> dict[str, Any]:
    """Every seed's value of the headline numbers, a column per seed (``seeds_table.html``)."""
    rows = []
    for size in sorted({g.size for g in groups}):
        named = [(g.method, k, t, g.stats.get(k)) for g in groups if g.size == size
                 for k, t in SEED_METRICS]  # fmt: skip
        named += [
            (REFERENCE_NAME, key, title, reference.get(key, {}).get(size))
            for key, title in (("r2r_auroc", "R→R AUROC"), ("r2r_accuracy", "R→R accuracy"))
        ]
        rows += [
            SeedRow(method, size, key, title, dict(zip(stat.seeds, stat.values, strict=True)))
            for method, key, title, stat in named
            if stat is not None
        ]
    return {"seeds": sorted({s for g in groups for s in g.seeds}), "rows": rows}


@dataclass
class PerClassRow:
    css_class: str
    method: str
    size: int
    title: str
    values: list[tuple[str, Stat | None]]  # (data-metric, stat) per label


def per_class_table(
    direction: str,
    groups: list[Group],
    cells: list[Cell],
    labels: list[str],
    reference: dict[str, dict[int, Stat]],
) -> dict[str, Any] | None:
    """Many labels: per-class accuracy and AUROC, labels as columns, two rows per method × size
    (means over seeds; sd and intervals in results.csv). None with few labels."""
    if len(labels) <= INLINE_CLASSES:
        return None
    metrics = [("accuracy", "accuracy"), ("auroc", "AUROC")]
    keys = {m: dict(class_keys(cells, direction, m, labels)) for m, _ in metrics}
    ref_keys = {m: dict(class_keys(cells, "r2r", m, labels)) for m, _ in metrics}
    names = [lab for lab in labels if any(lab in keys[m] for m, _ in metrics)]
    if not names:
        return None

    def columns(key_of: dict[str, str], lookup: Any) -> list[tuple[str, Stat | None]]:
        return [
            (key_of.get(lab, ""), lookup(key_of[lab]) if lab in key_of else None) for lab in names
        ]

    rows = []
    for size in sorted({g.size for g in groups}):
        for g in (g for g in groups if g.size == size):
            rows += [PerClassRow("", g.method, size, title, columns(keys[m], g.stats.get))
                     for m, title in metrics]  # fmt: skip
        for m, title in metrics:
            if ref_keys[m]:
                at_size = {k: reference.get(k, {}).get(size) for k in ref_keys[m].values()}
                rows.append(
                    PerClassRow(
                        "ref", REFERENCE_NAME, size, title, columns(ref_keys[m], at_size.get)
                    )
                )
    return {"direction": direction, "labels": names, "rows": rows}


def comparisons_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every comparison with its metric's name and what it could detect (``comparisons.html``)."""
    return [{**r, "name": METRIC_NAMES[r["metric"]], "power": detect_text(r)} for r in rows]


def cells_table(columns: list[str], rows: list[dict[str, Any]]) -> list[list[tuple]]:
    """Every cell as in results.csv: ``(column, value, is_text)`` per column."""
    return [
        [
            (col, row.get(col), col in ("method", "size", "seed") or isinstance(row.get(col), str))
            for col in columns
        ]
        for row in rows
    ]


# --------------------------------------------------------------------------- images


@dataclass
class GridImage:
    uri: str | None
    alt: str
    produced: bool  # False: no file; True with no uri: over the size budget


def _grid_image(path: Path | None, alt: str, budget: ImageBudget) -> GridImage:
    return GridImage(budget.take(shrink_png(path)) if path else None, alt, path is not None)


def _label_asset(cell: Cell, prefix: str, label: str) -> Path | None:
    """``<prefix><label>.png`` with the label as written or slugged (``grid_no-finding.png``)."""
    for name, path in cell.assets.items():
        if name.startswith(prefix) and name.endswith(".png"):
            if same_label(name[len(prefix) : -len(".png")], label):
                return path
    return None


def _grid_labels(cells: list[Cell], labels: list[str]) -> list[str]:
    """Configured labels plus any label a grid file names that the config does not."""
    named = {
        name[len("grid_") : -len(".png")]
        for c in cells
        for name in c.assets
        if name.startswith("grid_") and name.endswith(".png")
    }
    return labels + sorted(n for n in named if not any(same_label(n, lab) for lab in labels))


def sample_grids(cells: list[Cell], labels: list[str], budget: ImageBudget) -> dict[str, Any]:
    """Real sample grids per label, then synthetic ones: a row per method, a column per size ×
    label (the lowest seed of each method × size)."""
    labels = _grid_labels(cells, labels)
    real = {
        lab: next((p for c in cells if (p := _label_asset(c, "real_grid_", lab))), None)
        for lab in labels
    }
    real_images = (
        [_grid_image(real[lab], f"real {lab}", budget) for lab in labels]
        if any(real.values())
        else []
    )
    representative: dict[tuple[str, int], Cell] = {}
    for c in cells:
        representative.setdefault((c.method, c.size), c)
    found = {
        key: {lab: _label_asset(c, "grid_", lab) for lab in labels}
        for key, c in representative.items()
    }
    methods = list(dict.fromkeys(m for (m, _), f in found.items() if any(f.values())))
    sizes = sorted({n for (m, n), f in found.items() if any(f.values())})
    rows = []
    for method in methods[:MAX_GRID_ROWS]:
        images = []
        for n in sizes:
            c = representative.get((method, n))
            for lab in labels:
                alt = f"{method} {lab} size {n} seed {c.seed if c else ''}"
                images.append(_grid_image(found.get((method, n), {}).get(lab), alt, budget))
        rows.append((method, images))
    return {
        "labels": labels,
        "real": real_images,
        "sizes": sizes,
        "rows": rows,
        "methods": len(methods),
        "seeds": sorted({c.seed for c in representative.values()}),
        "max_side": MAX_IMAGE_SIDE,
    }


def closest_pairs(cells: list[Cell], budget: ImageBudget) -> list[dict[str, Any]]:
    """The memorisation check's closest synthetic–tuning pairs per method × size (lowest seed)."""
    representative: dict[tuple[str, int], Cell] = {}
    for c in cells:
        if "closest_pairs.png" in c.assets:
            representative.setdefault((c.method, c.size), c)
    return [
        {
            "uri": budget.take(shrink_png(c.assets["closest_pairs.png"], 2 * MAX_IMAGE_SIDE)),
            "method": method,
            "size": size,
            "seed": c.seed,
            "near": c.values.get("near_copy_fraction"),
        }
        for (method, size), c in list(representative.items())[:MAX_GRID_ROWS]
    ]


# --------------------------------------------------------------------------- notes, provenance


def run_notes(cells: list[Cell]) -> dict[str, list[str]]:
    """What the stages said about undefined numbers, skipped fine-tunes and degenerate active
    selection: each note once, with the cells (method/size/seed) it applies to."""
    notes: dict[str, list[str]] = {}
    for c in cells:
        where = f"{c.method}/{c.size}/{c.seed}"
        for key, reason in c.extra.get("notes", {}).items():
            notes.setdefault(f"{key}: {reason}", []).append(where)
        log = c.training_log()
        if log is None:
            continue
        texts = [] if log.fine_tuned else [log.message]
        if log.active_summary is not None:
            texts += [f"active selection: {w}" for w in log.active_summary.warnings]
        for text in texts:
            if text:
                notes.setdefault(text, []).append(where)
    return notes


def model_statements(provenance: dict[str, Any], cells: list[Cell]) -> list[tuple[bool, str]]:
    """``(pretrained, sentence)`` for every dict with a ``pretrained`` flag, anywhere in the run
    provenance or the cells' provenance (deduplicated)."""
    found: dict[str, tuple[bool, str]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "pretrained" in node:
                # A flag, or what was loaded (a dict/URI); False/None/"" = random initial weights.
                pretrained = bool(node["pretrained"])
                name = str(node.get("name") or path or "model")
                source = node.get("source") or node.get("uri") or node.get("weights") or ""
                if isinstance(node["pretrained"], str):
                    source = source or node["pretrained"]
                if pretrained:
                    text = (
                        f"{name}: pretrained weights" + (f" from {source}" if source else "") + "."
                    )
                else:
                    text = (
                        f"{name} was randomly initialised, not pretrained"
                        + (f" (source: {source})" if source else "")
                        + "."
                    )
                found.setdefault(text, (pretrained, text))
            for key, value in node.items():
                if key != "config":
                    walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(provenance, "")
    for c in cells:
        walk(c.provenance, "")
    return sorted(found.values(), key=lambda t: t[0])


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def cell_provenance(cells: list[Cell]) -> dict[str, Any] | None:
    """The cells' own provenance, summarised: a value shared by all cells once (``summary``
    None); numbers that differ (times) as total and range; other differing values as a count
    of distinct values."""
    flat = [_flatten(c.provenance) for c in cells if c.provenance]
    if not flat:
        return None
    rows = []
    for key in dict.fromkeys(k for f in flat for k in f):
        values = [f[key] for f in flat if key in f]
        texts = {json.dumps(v, sort_keys=True, default=str) for v in values}
        summary = None
        if len(texts) > 1 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            summary = f"total {sum(values):.4g}, range {min(values):.4g} – {max(values):.4g}"
        elif len(texts) > 1:
            summary = f"{len(texts)} distinct values"
        rows.append({"key": key, "cells": len(values), "value": values[0], "summary": summary})
    return {"cells": len(flat), "rows": rows}


def provenance_section(
    provenance: dict[str, Any], config: dict[str, Any], cells: list[Cell]
) -> dict[str, Any]:
    return {
        "run": {k: v for k, v in provenance.items() if k != "config"},
        "cells": cell_provenance(cells),
        "config": json.dumps(
            provenance.get("config", config), indent=2, sort_keys=True, default=str
        ),
    }
