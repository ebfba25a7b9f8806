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
from pathlib import Path

from tgap.artifacts import json_safe
from tgap.artifacts import write_text as _write
from tgap.config import Config
from tgap.report import curves, plots
from tgap.report import html as h
from tgap.report.images import ImageBudget
from tgap.report.markdown import summary_markdown
from tgap.report.tables import (
    FLAG_TEXT,
    FLAT_NAMES,
    POWER,
    R2S_NOT_PAIRED,
    ReportError,
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
from tgap.report.tuning import conditioning_note, tuning_section

__all__ = ["ReportError", "build_report", "load_cell", "load_cells", "FLAT_NAMES"]

log = logging.getLogger(__name__)

# Keys the two-way tables already show; everything else numeric goes to the "other metrics" table.
_TWO_WAY_PREFIXES = ("s2r_", "r2s_", "r2r_", "fter")
DISTRIBUTION = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")
MEMORISATION_PREFIXES = ("near_copy", "exact_copy", "nn_", "tuning_")


def _metric_sections(groups: list, cells: list) -> str:
    """Distribution metrics, memorisation metrics and any other numbers, one table each."""
    keys = sorted({k for g in groups for k in g.stats if not k.startswith(_TWO_WAY_PREFIXES)})
    distribution = [k for k in DISTRIBUTION if k in keys]
    memorisation = [k for k in keys if k.startswith(MEMORISATION_PREFIXES)]
    other = [k for k in keys if k not in distribution and k not in memorisation]

    def described(key: str) -> str:
        values = sorted({str(c.extra[key]) for c in cells if isinstance(c.extra.get(key), str)})
        return f'<p class="note">{h.esc("; ".join(values))}</p>' if values else ""

    parts = ["<h3>Distribution (synthetic vs real test)</h3>"]
    if distribution:
        parts += [
            described("distribution_embedder_description"),
            h.other_metrics_table(groups, distribution, "table-distribution"),
        ]
    else:
        parts.append(h.absent("No distribution metrics (FID, KID, precision/recall) in any cell."))
    parts.append("<h3>Memorisation (synthetic vs tuning set)</h3>")
    if memorisation:
        parts += [
            described("memorisation_space"),
            h.other_metrics_table(groups, memorisation, "table-memorisation"),
        ]
    else:
        parts.append(h.absent("No memorisation metrics (near copies) in any cell."))
    if other:
        parts += ["<h3>Other numbers</h3>", h.other_metrics_table(groups, other, "table-other")]
    return "".join(parts)


def _plot_section(
    title: str, png: bytes | None, caption: str, missing: str, budget: ImageBudget
) -> str:
    if png is None:
        return f"<h3>{h.esc(title)}</h3>" + h.absent(missing)
    return f"<h3>{h.esc(title)}</h3>" + h.figure(budget.take(png), caption, title)


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
    cells = load_cells([Path(d) for d in cell_dirs], list(config.grid.methods))
    labels = list(config.data.labels)
    head = config.classifier.head  # a two-label softmax head has one AUROC for both labels
    methods = list(dict.fromkeys(c.method for c in cells))
    sizes = sorted({c.size for c in cells})
    seeds = sorted({c.seed for c in cells})
    confidence = config.evaluation.confidence
    groups = aggregate(cells, confidence)
    # A fine-tune flagged "did not train" is the base model: never ranked.
    untrained = {c.method for c in cells if did_not_train(c)}
    controls = [m for m in methods if is_control(m)]
    compared, best, not_separated = comparisons(
        groups, cells, config.evaluation.reference_method, untrained, confidence
    )
    thresholds = active_thresholds(cells)
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
    chosen_on = settings_chosen_on(provenance)
    curve_rows = curves.rows([Path(d) for d in cell_dirs], confidence)
    metrics.update(curves.flat_metrics(curve_rows))

    # ---- results.csv / results.json / metrics.json
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    _write(out_dir / "results.csv", buf.getvalue())
    results = {
        "name": config.name,
        "labels": labels,
        "methods": methods,
        "controls": controls,
        "sizes": sizes,
        "seeds": seeds,
        "columns": columns,
        "cells": rows,
        "aggregate": [
            {
                "method": g.method,
                "size": g.size,
                "control": is_control(g.method),
                "seeds": g.seeds,
                "metrics": {k: s.to_dict() for k, s in g.stats.items()},
            }
            for g in groups
        ],
        "reference": {
            k: {str(size): s.to_dict() for size, s in v.items()} for k, v in reference.items()
        },
        "best": {m: {str(size): ms for size, ms in b.items()} for m, b in best.items()},
        "not_separated": {m: {str(k): v for k, v in w.items()} for m, w in not_separated.items()},
        "comparisons": {
            "confidence": confidence,
            "power": POWER,
            "correction": "holm",
            "family_size": sum(1 for r in compared if math.isfinite(r["p"])),
            "r2s_note": R2S_NOT_PAIRED,
            "rows": compared,
        },
        "fter_flags": [
            {"method": m, "size": n, "flag": flag} for (m, n), flag in sorted(fter_flags.items())
        ],
        "did_not_train": sorted(untrained),
        "settings_chosen_on": chosen_on,
        "active_thresholds": thresholds,
        "metrics": metrics,
        "real_equivalent": curves.results_json(curve_rows),
        "provenance": provenance,
    }
    _write(out_dir / "results.json", json.dumps(json_safe(results), indent=1, default=str))
    _write(out_dir / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    _write(
        out_dir / "summary.md",
        summary_markdown(
            config.name,
            groups,
            cells,
            best["s2r_auroc"],
            reference,
            provenance,
            fter_flags=fter_flags,
            untrained=untrained,
            not_separated=not_separated["s2r_auroc"],
            compared=compared,
            chosen_on=chosen_on,
        )
        + curves.markdown(curve_rows, config),
    )

    # ---- report.html
    budget = ImageBudget()
    statements = "".join(
        f'<div class="{"ok" if ok else "warn"}">{h.esc(text)}</div>'
        for ok, text in h.model_statements(provenance, cells)
    )
    ci_note = (
        f"{confidence:.0%} intervals stay inside [0, 1]: AUROC and accuracy over seeds on the "
        "logit scale, combining the spread over seeds (each seed a whole run) with each cell's "
        "test-image variance (DeLong's for AUROC, binomial for accuracy); † the cells carry no "
        "test-image variance, so the interval holds the seed spread only; ‡ one seed, test "
        "images only. FTER is the ratio of the mean AUROCs over seeds (as in the thesis), its "
        "interval on the log scale; utility = S→R / R→R and fidelity = R→S / R→R, ratios of "
        "means, no interval. ★ marks the best fine-tuned method per size only where its "
        "comparison with the runner-up is separated after Holm's correction; controls and FTER "
        f"are never ranked. ⚑ beside FTER: {FLAG_TEXT['r2s_below_r2r']}; or "
        f"{FLAG_TEXT['r2s_above_r2r']}."
    )
    chosen_html = (
        f'<p class="note" id="settings-chosen-on">Settings chosen on: {h.esc(chosen_on)}.</p>'
        if chosen_on
        else ""
    )

    active_note = (
        '<p class="note" id="active-thresholds">Thresholds used: '
        + h.esc("; ".join(
            f"{t['method']} {t['size']} seed {t['seed']}: {t['threshold']:.4f} "
            f"({'auto' if t['setting'] == 'auto' else 'fixed'}, skipped {t['skipped']} of "
            f"{t['evaluated']} batches)" for t in thresholds
        ))
        + "</p>"
        if thresholds
        else ""
    )  # fmt: skip

    def separation_note(metric: str) -> str:
        why = not_separated[metric]
        return "".join(f'<p class="note" data-separated="no">size {n}: {h.esc(w)}</p>'
                       for n, w in sorted(why.items()))  # fmt: skip

    roc_png, roc_curve_names = plots.roc_curves(cells, methods, labels)
    cluster_png, cluster_methods = plots.cluster_sizes(cells, methods, labels)
    sections = [
        f"<h1>tgap report: {h.esc(config.name)}</h1>",
        f'<p class="note">{h.esc(config.description)}</p>' if config.description else "",
        f"<p>{len(cells)} cells: methods {h.esc(', '.join(methods))}; tuning-set sizes "
        f"{h.esc(', '.join(map(str, sizes)))} (images per label); seeds {h.esc(', '.join(map(str, seeds)))}. "
        "Tables show mean ± sd over seeds. FTER = mean AUROC(S→R) / mean AUROC(R→S): below 1 "
        "is a trainability gap.</p>",
        statements,
        chosen_html,
        "<h2>Real data and its split</h2>",
        h.data_section(provenance.get("ingest")),
        conditioning_note(config.diffusion.conditioning),
        "<h2>S→R: train on synthetic, test on real</h2>",
        h.results_table(
            "s2r",
            groups,
            cells,
            labels,
            best["s2r_auroc"],
            reference,
            fter_flags,
            untrained,
            head,
            confidence,
        ),
        h.per_class_table("s2r", groups, cells, labels, reference),
        separation_note("s2r_auroc"),
        "<h2>R→S: train on real, test on synthetic</h2>",
        h.results_table(
            "r2s",
            groups,
            cells,
            labels,
            best["r2s_auroc"],
            reference,
            fter_flags,
            untrained,
            head,
            confidence,
        ),
        h.per_class_table("r2s", groups, cells, labels, reference),
        separation_note("r2s_auroc"),
        f'<p class="note">{h.esc(ci_note)}</p>',
        "<h3>Every seed</h3>",
        h.seeds_table(groups, reference),
        "<h2>Comparisons</h2>",
        '<p class="note">'
        + h.esc(
            "S→R between two methods is paired on the same real-test images within each seed "
            "(DeLong's paired test on the stored predictions, 'paired by images'; 'seeds' where a "
            "cell has no predictions), combined over seeds. "
            + R2S_NOT_PAIRED
            + f" Holm's correction runs over every comparison of this report; bold: separated "
            f"at {1 - confidence:.2g} after it. 'power': the smallest difference each "
            f"comparison could detect with {POWER:.0%} power at its seeds."
        )
        + "</p>",
        h.comparisons_table(compared, confidence),
        h.run_notes(cells),
        curves.html_section(curve_rows, config, budget),
        "<h2>Distribution and memorisation metrics</h2>",
        _metric_sections(groups, cells),
        "<h2>Plots</h2>",
        _plot_section(
            "FTER vs tuning-set size",
            plots.fter_vs_size(groups, methods),
            "Ratio of the mean AUROCs over seeds with its interval; dashed line FTER = 1.",
            "",
            budget,
        ),
        _plot_section(
            "AUROC S→R vs R→S",
            plots.auroc_scatter(groups, methods),
            "One point per method × size (mean over seeds); the diagonal is FTER = 1, "
            "points below it have a trainability gap.",
            "No finite AUROC pairs to plot.",
            budget,
        ),
        _plot_section(
            "ROC curves",
            roc_png,
            f"Mean over seeds (vertical averaging); curve used: {h.esc(roc_curve_names)}. "
            "Dotted: R→R reference.",
            "No ROC curves: no cell has roc_s2r.json or roc_r2s.json.",
            budget,
        ),
        _plot_section(
            "ROC curves per class",
            plots.roc_per_class(cells, methods, labels),
            "One-vs-rest ROC of each class and their macro average (dashed), mean over seeds.",
            "No per-class ROC curves: the run is binary, or no cell has per-class curves.",
            budget,
        )
        if len(labels) > 2
        else "",
        _plot_section(
            "Supplementation",
            plots.supplementation(cells, methods),
            "A classifier trained on real plus r × synthetic images, tested on real.",
            "No supplementation curves: no cell has supplementation.json "
            "(evaluation.supplementation_ratios is empty by default).",
            budget,
        ),
        _plot_section(
            "Active data selection",
            plots.active_selection(cells, config.finetune.active.threshold),
            "Batches whose generated images are more similar than the threshold to the "
            "batch are skipped.",
            "No active-selection log: no cell's training_log.json has active-selection records "
            "(only the active method writes them).",
            budget,
        ),
        active_note,
        _plot_section(
            "Fine-tuning loss",
            plots.training_loss(cells, methods),
            "DreamBooth loss per step, mean over seeds.",
            "No fine-tuning loss: no cell's training_log.json has a loss per step "
            "(methods that do not fine-tune have none).",
            budget,
        ),
        _plot_section(
            "Cluster sizes of the selected tuning sets",
            cluster_png,
            f"Methods with clusters: {h.esc(cluster_methods)}. Bars: pool images per "
            "cluster; picked per cluster; duplicates added to keep cluster weights equal.",
            "No cluster sizes: no cell's selection.json has clusters (only clustered methods do).",
            budget,
        ),
        "<h2>Generation tuning</h2>",
        tuning_section(cells, budget, config.generate.tune.trials),
        "<h2>Sample grids</h2>",
        h.sample_grids(cells, labels, budget),
        "<h2>Closest synthetic–tuning pairs (memorisation check)</h2>",
        h.closest_pairs(cells, budget),
        "<h2>All cells</h2>",
        f"<details><summary>{len(rows)} rows, as in results.csv</summary>"
        f"{h.cells_table(columns, rows)}</details>",
        "<h2>Provenance</h2>",
        h.provenance_section(provenance, config.to_dict(), cells),
        f'<p class="note">Report built in {time.perf_counter() - start:.1f} s. '
        + (
            f"{budget.refused} image(s) left out to stay under the size budget."
            if budget.refused
            else ""
        )
        + "</p>",
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # An empty inline icon: otherwise a browser opening the file asks its server for
        # /favicon.ico, a request the self-contained page should not cause.
        '<link rel="icon" href="data:,">'
        f"<title>tgap report: {h.esc(config.name)}</title><style>{h.CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>"
    )
    _write(out_dir / "report.html", page)
    paths = {
        name: str(out_dir / name)
        for name in ("report.html", "summary.md", "results.csv", "results.json", "metrics.json")
    }
    log.info(
        "report: %d cells (%d methods × %d sizes × %d seeds) -> %s (%.1f MB) in %.1f s",
        len(cells),
        len(methods),
        len(sizes),
        len(seeds),
        out_dir,
        len(page.encode()) / 1e6,
        time.perf_counter() - start,
    )
    return {**paths, "metrics": metrics, "n_cells": len(cells), "html_bytes": len(page.encode())}
