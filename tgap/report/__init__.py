"""The report stage: every grid cell into the files a Kubeflow user looks at.

``build_report`` writes ``report.html`` (self-contained), ``summary.md`` (KFP Markdown viewer),
``results.csv`` (one row per cell), ``results.json`` (cells, aggregates, best methods,
provenance) and ``metrics.json`` (flat ``fter.active.500``-style names for the KFP Metrics
artifact, so the UI's run comparison lines runs up cell by cell).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tgap.artifacts import json_safe
from tgap.artifacts import write_text as _write
from tgap.config import Config
from tgap.report import curves, plots
from tgap.report import html as h
from tgap.report.images import ImageBudget
from tgap.report.markdown import summary_markdown
from tgap.report.tables import (
    FLAT_NAMES,
    POWER,
    R2S_NOT_PAIRED,
    Cell,
    Group,
    ReportError,
    Stat,
    active_thresholds,
    add_cell_flags,
    aggregate,
    cell_rows,
    class_keys,
    comparisons,
    did_not_train,
    flat_metrics,
    group_fter_flag,
    is_control,
    load_cell,
    load_cells,
    reference_by_size,
    settings_chosen_on,
)
from tgap.report.tuning import tuning_section

__all__ = ["ReportError", "build_report", "load_cell", "load_cells", "FLAT_NAMES"]

log = logging.getLogger(__name__)

# Keys the two-way tables already show; everything else numeric goes to the "other metrics" table.
_TWO_WAY_PREFIXES = ("s2r_", "r2s_", "r2r_", "fter")
DISTRIBUTION = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")
MEMORISATION_PREFIXES = ("near_copy", "exact_copy", "nn_", "tuning_")
FILES = ("report.html", "summary.md", "results.csv", "results.json", "metrics.json")


@dataclass
class Analysis:
    """Every number the report's files show, computed once from the cells."""

    cells: list[Cell]
    labels: list[str]
    methods: list[str]
    sizes: list[int]
    seeds: list[int]
    confidence: float
    groups: list[Group]
    untrained: set[str]  # fine-tunes flagged "did not train": the base model, never ranked
    compared: list[dict[str, Any]]
    best: dict[str, dict[int, list[str]]]
    not_separated: dict[str, dict[int, str]]
    reference: dict[str, dict[int, Stat]]
    fter_flags: dict[tuple[str, int], str]
    columns: list[str]  # results.csv
    rows: list[dict[str, Any]]
    metrics: dict[str, float]
    chosen_on: str
    curve_rows: list[curves.Row]


def build_report(
    cell_dirs: list[Path], config: Config, provenance: dict, out_dir: str | Path
) -> dict:
    """Build every report file from the collected cell folders into ``out_dir``.

    Returns the paths written and ``metrics`` (the flat name -> mean-over-seeds dict). A cell
    without a required key (method, size, seed, s2r_*, r2s_*, fter) is a ReportError naming it;
    optional keys and assets may be absent, and the section that needed them says so.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = provenance or {}
    a = analyse([Path(d) for d in cell_dirs], config, provenance)
    _write_results(out_dir, a, config, provenance)
    _write(out_dir / "summary.md", _summary(a, config, provenance))
    page = _page(a, config, provenance, start)
    _write(out_dir / "report.html", page)
    log.info(
        "report: %d cells (%d methods × %d sizes × %d seeds) -> %s (%.1f MB) in %.1f s",
        len(a.cells),
        len(a.methods),
        len(a.sizes),
        len(a.seeds),
        out_dir,
        len(page.encode()) / 1e6,
        time.perf_counter() - start,
    )
    paths = {name: str(out_dir / name) for name in FILES}
    return {
        **paths,
        "metrics": a.metrics,
        "n_cells": len(a.cells),
        "html_bytes": len(page.encode()),
    }


def analyse(cell_dirs: list[Path], config: Config, provenance: dict) -> Analysis:
    """Load the cells and compute every aggregate, comparison, flag and flat metric."""
    cells = load_cells(cell_dirs, list(config.grid.methods))
    labels = list(config.data.labels)
    confidence = config.evaluation.confidence
    groups = aggregate(cells, confidence)
    untrained = {c.method for c in cells if did_not_train(c)}
    compared, best, not_separated = comparisons(
        groups, cells, config.evaluation.reference_method, untrained, confidence
    )
    ref_keys = ["r2r_accuracy", "r2r_auroc"]
    ref_keys += [k for _, k in class_keys(cells, "r2r", "accuracy", labels)]
    ref_keys += [k for _, k in class_keys(cells, "r2r", "auroc", labels)]
    reference = {k: reference_by_size(cells, k, confidence) for k in ref_keys}
    columns, rows = cell_rows(cells)
    columns = add_cell_flags(columns, rows, cells)
    fter_flags = {
        (g.method, g.size): flag
        for g in groups
        if (flag := group_fter_flag(g, reference["r2r_auroc"]))
    }
    metrics = flat_metrics(groups, cells)
    curve_rows = curves.rows(cell_dirs, confidence)
    metrics.update(curves.flat_metrics(curve_rows))
    return Analysis(
        cells=cells,
        labels=labels,
        methods=list(dict.fromkeys(c.method for c in cells)),
        sizes=sorted({c.size for c in cells}),
        seeds=sorted({c.seed for c in cells}),
        confidence=confidence,
        groups=groups,
        untrained=untrained,
        compared=compared,
        best=best,
        not_separated=not_separated,
        reference=reference,
        fter_flags=fter_flags,
        columns=columns,
        rows=rows,
        metrics=metrics,
        chosen_on=settings_chosen_on(provenance),
        curve_rows=curve_rows,
    )


def _write_results(out_dir: Path, a: Analysis, config: Config, provenance: dict) -> None:
    """results.csv (one row per cell), results.json (everything) and metrics.json (flat)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=a.columns, lineterminator="\n")
    writer.writeheader()
    for row in a.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    _write(out_dir / "results.csv", buf.getvalue())
    results = _results_json(a, config, provenance)
    _write(out_dir / "results.json", json.dumps(json_safe(results), indent=1, default=str))
    _write(out_dir / "metrics.json", json.dumps(a.metrics, indent=1, sort_keys=True))


def _results_json(a: Analysis, config: Config, provenance: dict) -> dict[str, Any]:
    return {
        "name": config.name,
        "labels": a.labels,
        "methods": a.methods,
        "controls": [m for m in a.methods if is_control(m)],
        "sizes": a.sizes,
        "seeds": a.seeds,
        "columns": a.columns,
        "cells": a.rows,
        "aggregate": [
            {
                "method": g.method,
                "size": g.size,
                "control": is_control(g.method),
                "seeds": g.seeds,
                "metrics": {k: s.to_dict() for k, s in g.stats.items()},
            }
            for g in a.groups
        ],
        "reference": {
            k: {str(size): s.to_dict() for size, s in v.items()} for k, v in a.reference.items()
        },
        "best": {m: {str(size): ms for size, ms in b.items()} for m, b in a.best.items()},
        "not_separated": {m: {str(k): v for k, v in w.items()} for m, w in a.not_separated.items()},
        "comparisons": {
            "confidence": a.confidence,
            "power": POWER,
            "correction": "holm",
            "family_size": sum(1 for r in a.compared if math.isfinite(r["p"])),
            "r2s_note": R2S_NOT_PAIRED,
            "rows": a.compared,
        },
        "fter_flags": [
            {"method": m, "size": n, "flag": flag} for (m, n), flag in sorted(a.fter_flags.items())
        ],
        "did_not_train": sorted(a.untrained),
        "settings_chosen_on": a.chosen_on,
        "active_thresholds": active_thresholds(a.cells),
        "metrics": a.metrics,
        "real_equivalent": curves.results_json(a.curve_rows),
        "provenance": provenance,
    }


def _summary(a: Analysis, config: Config, provenance: dict) -> str:
    markdown = summary_markdown(
        config.name,
        a.groups,
        a.cells,
        a.best["s2r_auroc"],
        a.reference,
        provenance,
        fter_flags=a.fter_flags,
        untrained=a.untrained,
        not_separated=a.not_separated["s2r_auroc"],
        compared=a.compared,
        chosen_on=a.chosen_on,
    )
    return markdown + curves.markdown(a.curve_rows, config)


def _page(a: Analysis, config: Config, provenance: dict, start: float) -> str:
    """report.html. The sections that inline images are prepared in page order: the image
    budget goes to the first images on the page."""
    budget = ImageBudget()
    tables = {
        d: h.results_table(
            d, a.groups, a.cells, a.labels, a.best[f"{d}_auroc"], a.reference, a.fter_flags,
            a.untrained, config.classifier.head, a.confidence,
        )
        for d in ("s2r", "r2s")
    }  # fmt: skip
    view = dict(
        name=config.name,
        description=config.description,
        n_cells=len(a.cells),
        methods=a.methods,
        sizes=a.sizes,
        seeds=a.seeds,
        statements=h.model_statements(provenance, a.cells),
        chosen_on=a.chosen_on,
        ingest=provenance.get("ingest"),
        conditioning=config.diffusion.conditioning,
        two_way=tables,
        per_class={
            d: h.per_class_table(d, a.groups, a.cells, a.labels, a.reference) for d in tables
        },
        not_separated=a.not_separated,
        level=f"{a.confidence:.0%}",
        alpha=f"{1 - a.confidence:.2g}",
        power=f"{POWER:.0%}",
        r2s_not_paired=R2S_NOT_PAIRED,
        seeds_table=h.seeds_table(a.groups, a.reference),
        comparisons=h.comparisons_table(a.compared),
        notes=h.run_notes(a.cells),
        curves=curves.html_view(a.curve_rows, config, budget),
        metric_tables=_metric_tables(a.groups, a.cells),
        plots=_plots(a, config, budget),
        tuning=tuning_section(a.cells, budget, config.generate.tune.trials),
        grids=h.sample_grids(a.cells, a.labels, budget),
        pairs=h.closest_pairs(a.cells, budget),
        cells_columns=a.columns,
        cells_rows=h.cells_table(a.columns, a.rows),
        provenance=h.provenance_section(provenance, config.to_dict(), a.cells),
    )
    return h.render(
        "report.html", **view, seconds=time.perf_counter() - start, refused=budget.refused
    )


def _metric_tables(groups: list[Group], cells: list[Cell]) -> dict[str, Any]:
    """Distribution metrics, memorisation metrics and any other numbers, with the cells'
    descriptions of the space each was measured in."""
    keys = sorted({k for g in groups for k in g.stats if not k.startswith(_TWO_WAY_PREFIXES)})
    distribution = [k for k in DISTRIBUTION if k in keys]
    memorisation = [k for k in keys if k.startswith(MEMORISATION_PREFIXES)]

    def described(key: str) -> list[str]:
        return sorted({str(c.extra[key]) for c in cells if isinstance(c.extra.get(key), str)})

    return {
        "groups": sorted(groups, key=lambda g: g.size),
        "distribution": distribution,
        "distribution_described": described("distribution_embedder_description"),
        "memorisation": memorisation,
        "memorisation_described": described("memorisation_space"),
        "other": [k for k in keys if k not in distribution and k not in memorisation],
    }


def _plots(a: Analysis, config: Config, budget: ImageBudget) -> dict[str, Any]:
    """Every figure of the Plots section, in page order (see ``_page``)."""
    roc_png, roc_curve_names = plots.roc_curves(a.cells, a.methods, a.labels)
    cluster_png, cluster_methods = plots.cluster_sizes(a.cells, a.methods, a.labels)
    multiclass = len(a.labels) > 2
    return {
        "fter_vs_size": h.picture(plots.fter_vs_size(a.groups, a.methods), budget),
        "auroc_scatter": h.picture(plots.auroc_scatter(a.groups, a.methods), budget),
        "roc": h.picture(roc_png, budget),
        "roc_curve_names": roc_curve_names,
        "multiclass": multiclass,
        "roc_per_class": h.picture(plots.roc_per_class(a.cells, a.methods, a.labels), budget)
        if multiclass
        else None,
        "supplementation": h.picture(plots.supplementation(a.cells, a.methods), budget),
        "active_selection": h.picture(
            plots.active_selection(a.cells, config.finetune.active.threshold), budget
        ),
        "thresholds": active_thresholds(a.cells),
        "training_loss": h.picture(plots.training_loss(a.cells, a.methods), budget),
        "cluster_sizes": h.picture(cluster_png, budget),
        "cluster_methods": cluster_methods,
    }
