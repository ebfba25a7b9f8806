"""The report's plots (matplotlib, no pyplot: figures are built directly, so no global backend
state and no display is needed). Each function returns PNG bytes, or None when no cell has the
data it needs, so the report can say which data was absent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tgap.artifacts import RocCurve, SelectionReport, TrainingLog
from tgap.report.images import figure_png
from tgap.report.tables import Cell, Group, Stat

MARKERS = "osD^vP*Xh<>p"


def style(methods: list[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per method, in grid order, shared by every plot."""
    colours = [f"C{i}" for i in range(10)]
    return {
        m: {"color": colours[i % 10], "marker": MARKERS[i % len(MARKERS)]}
        for i, m in enumerate(methods)
    }


def _subplots(
    n: int, width: float = 4.2, height: float = 3.4, rows: int = 1
) -> tuple[Figure, list]:
    cols = max(1, math.ceil(n / rows))
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _below_above(stat: Stat) -> tuple[float, float]:
    """Error-bar lengths below and above the point: its interval, or none."""
    low, high, mean = stat.ci_low, stat.ci_high, stat.mean
    if not all(map(math.isfinite, (low, high, mean))):
        return 0.0, 0.0
    return max(mean - low, 0.0), max(high - mean, 0.0)


def fter_vs_size(groups: list[Group], methods: list[str]) -> bytes | None:
    """FTER (ratio of mean AUROCs, with its interval where there is one) against tuning-set
    size, one line per method, FTER = 1 marked."""
    looks = style(methods)
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    sizes = sorted({g.size for g in groups})
    for method in methods:
        mine = sorted(
            (g for g in groups if g.method == method and "fter" in g.stats), key=lambda g: g.size
        )
        if not mine:
            continue
        x = [g.size for g in mine]
        y = [g.stats["fter"].mean for g in mine]
        err = np.array([_below_above(g.stats["fter"]) for g in mine]).T
        ax.errorbar(x, y, yerr=err, label=method, capsize=3, lw=1.5, ms=5, **looks[method])
    ax.axhline(1.0, color="k", ls="--", lw=1, label="FTER = 1")
    if len(sizes) > 1 and sizes[-1] / max(sizes[0], 1) >= 10:
        ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("tuning-set size (images per label)")
    ax.set_ylabel("FTER = AUROC(S→R) / AUROC(R→S)")
    ax.set_title("FTER vs tuning-set size (ratio of mean AUROCs, interval over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure_png(fig)


def auroc_scatter(groups: list[Group], methods: list[str]) -> bytes | None:
    """AUROC S→R against AUROC R→S per method × size; the diagonal is FTER = 1."""
    looks = style(methods)
    sizes = sorted({g.size for g in groups})
    size_marker = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(sizes)}
    fig = Figure(figsize=(7.5, 5.0))
    ax = fig.subplots()
    values = []
    for g in groups:
        x, y = g.stats["r2s_auroc"].mean, g.stats["s2r_auroc"].mean
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        values += [x, y]
        ax.scatter(
            x,
            y,
            color=looks[g.method]["color"],
            marker=size_marker[g.size],
            s=45,
            edgecolor="k",
            linewidth=0.5,
        )
    if not values:
        return None
    lo, hi = min(min(values), 0.5) - 0.02, max(max(values), 1.0) + 0.02
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.text(hi - 0.01, hi - 0.03, "FTER = 1", ha="right", va="top", fontsize=8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("AUROC R→S (real-trained classifier on synthetic)")
    ax.set_ylabel("AUROC S→R (synthetic-trained classifier on real)")
    ax.set_title("Two-way evaluation (below the line: trainability gap)")
    ax.grid(alpha=0.3)
    handles = [
        ax.scatter([], [], color=looks[m]["color"], marker="o", label=m)
        for m in methods
        if any(g.method == m for g in groups)
    ]
    handles += [
        ax.scatter([], [], color="grey", marker=size_marker[s], label=f"size {s}") for s in sizes
    ]
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure_png(fig)


def pick_curve(roc: RocCurve | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The overall ROC curve compute-FTER wrote, or None when there is none to draw."""
    if roc is None or not roc.drawable:
        return None
    return np.asarray(roc.fpr, float), np.asarray(roc.tpr, float)


def _mean_roc(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Vertical averaging over seeds: mean TPR on a common FPR grid."""
    grid = np.linspace(0, 1, 101)
    tprs = []
    for fpr, tpr in curves:
        order = np.argsort(fpr, kind="stable")
        tprs.append(np.interp(grid, fpr[order], tpr[order]))
    return grid, np.mean(tprs, axis=0)


def roc_curves(
    cells: list[Cell], methods: list[str], labels: list[str]
) -> tuple[bytes | None, str]:
    """ROC per direction (rows) and size (columns), one curve per method averaged over seeds."""
    looks = style(methods)
    sizes = sorted({c.size for c in cells})
    directions = [("s2r", "S→R"), ("r2s", "R→S")]
    found: dict[tuple[str, int, str], list] = {}
    reference: dict[int, list] = {}
    for c in cells:
        for d, _ in directions:
            curve = pick_curve(c.roc(d))
            if curve:
                found.setdefault((d, c.size, c.method), []).append(curve)
        curve = pick_curve(c.roc("r2r"))
        if curve:
            reference.setdefault(c.size, []).append(curve)
    if not found:
        return None, ""
    fig, axes = _subplots(len(sizes) * 2, width=3.6, height=3.4, rows=2)
    for row, (d, title) in enumerate(directions):
        for col, size in enumerate(sizes):
            ax = axes[row * len(sizes) + col]
            for method in methods:
                if (d, size, method) in found:
                    x, y = _mean_roc(found[(d, size, method)])
                    ax.plot(x, y, color=looks[method]["color"], lw=1.3, label=method)
            if size in reference:
                x, y = _mean_roc(reference[size])
                ax.plot(x, y, color="k", ls=":", lw=1.3, label="R→R")
            ax.plot([0, 1], [0, 1], color="grey", lw=0.6)
            ax.set_title(f"{title}, size {size}", fontsize=9)
            ax.set_xlabel("false positive rate", fontsize=8)
            ax.set_ylabel("true positive rate", fontsize=8)
            ax.tick_params(labelsize=7)
    handles, legend_labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in legend_labels:
                handles.append(h)
                legend_labels.append(lab)
    fig.legend(handles, legend_labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return figure_png(fig), "overall"


def roc_per_class(cells: list[Cell], methods: list[str], labels: list[str]) -> bytes | None:
    """Multi-class runs: one-vs-rest ROC per class and the macro average (dashed), one panel per
    direction × method at the largest size, mean over seeds. None for binary runs."""
    if len(labels) <= 2:
        return None
    size = max((c.size for c in cells), default=0)
    directions = [("s2r", "S→R"), ("r2s", "R→S")]
    curves: dict[tuple[str, str, str], list] = {}
    for c in cells:
        if c.size != size:
            continue
        for d, _ in directions:
            roc = c.roc(d)
            if roc is None:
                continue
            for name in (*labels, "macro"):
                entry = roc.per_class.get(name)
                if entry is not None and entry.drawable:
                    curve = (np.asarray(entry.fpr, float), np.asarray(entry.tpr, float))
                    curves.setdefault((d, c.method, name), []).append(curve)
    panels = [(d, t, m) for d, t in directions for m in methods if (d, m, "macro") in curves]
    if not panels:
        return None
    per_row = len({m for _, _, m in panels})
    fig, axes = _subplots(len(panels), width=3.4, height=3.3, rows=math.ceil(len(panels) / per_row))
    colours = [f"C{i}" for i in range(10)]
    for ax, (d, title, method) in zip(axes, panels, strict=False):
        for k, name in enumerate(labels):
            if (d, method, name) in curves:
                x, y = _mean_roc(curves[(d, method, name)])
                ax.plot(x, y, color=colours[k % 10], lw=1.0, label=name)
        x, y = _mean_roc(curves[(d, method, "macro")])
        ax.plot(x, y, color="k", ls="--", lw=1.6, label="macro average")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.6)
        ax.set_title(f"{title}, {method}, size {size}", fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return figure_png(fig)


def supplementation_points(cell: Cell) -> list[tuple[float, float]]:
    """``[(ratio, auroc)]`` of the cell's supplementation curve (undefined points dropped)."""
    curve = cell.supplementation
    if curve is None:
        return []
    return [
        (float(r), float(a))
        for r, a in zip(curve.ratios, curve.auroc, strict=True)
        if a is not None and math.isfinite(a)
    ]


def _mean_over_seeds_panels(
    cells: list[Cell], methods: list[str], points_of, xlabel: str, ylabel: str, **line
) -> bytes | None:
    """One panel per size, one line per method: the mean over seeds of each cell's
    ``points_of(cell)`` pairs (x, y) at every x; ``line``: matplotlib settings beside the
    method's colour and marker (``style``). None when no cell has a point."""
    looks = style(methods)
    log_y = line.pop("log_y", False)
    per: dict[tuple[int, str], dict[float, list[float]]] = {}
    for c in cells:
        for x, y in points_of(c):
            per.setdefault((c.size, c.method), {}).setdefault(x, []).append(y)
    if not per:
        return None
    sizes = sorted({s for s, _ in per})
    fig, axes = _subplots(len(sizes))
    for ax, size in zip(axes, sizes, strict=False):
        for method in methods:
            points = per.get((size, method))
            if points:
                xs = sorted(points)
                look = {**looks[method], **line}
                ax.plot(xs, [np.mean(points[x]) for x in xs], label=method, **look)
        ax.set_title(f"size {size}", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[len(sizes) - 1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return figure_png(fig)


def supplementation(cells: list[Cell], methods: list[str]) -> bytes | None:
    """Real + r × synthetic, tested on real: AUROC against r, per size, mean over seeds."""
    return _mean_over_seeds_panels(
        cells, methods, supplementation_points, "synthetic : real ratio r", "AUROC on real test"
    )


def active_log(log: TrainingLog | None) -> tuple[list[float], list[float], float | None]:
    """Similarities, skip fraction per epoch (the summary fine-tune wrote) and threshold."""
    if log is None or not log.active:
        return [], [], None
    sims = [a.similarity for a in log.active]
    fractions = []
    if log.active_summary is not None:
        table = log.active_summary.skip_fraction_per_epoch
        fractions = [float(table[k]) for k in sorted(table, key=int)]
    threshold = (log.active_config or {}).get("threshold")
    return sims, fractions, None if threshold is None else float(threshold)


def active_selection(cells: list[Cell], threshold: float | str) -> bytes | None:
    """Active data selection: batch similarity histogram (pooled over seeds) and skip fraction per
    epoch (mean over seeds), per size."""
    sims: dict[int, list[float]] = {}
    skips: dict[int, list[list[float]]] = {}
    for c in cells:
        similarities, fractions, logged = active_log(c.training_log())
        if logged is not None:
            threshold = logged  # the threshold the run used, over the report's config
        if similarities:
            sims.setdefault(c.size, []).extend(similarities)
        if fractions:
            skips.setdefault(c.size, []).append(fractions)
    if not sims and not skips:
        return None
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    sizes = sorted(set(sims) | set(skips))
    for i, size in enumerate(sizes):
        if size in sims:
            left.hist(sims[size], bins=30, alpha=0.5, color=f"C{i}", label=f"size {size}")
        if size in skips:
            width = max(len(s) for s in skips[size])
            padded = np.full((len(skips[size]), width), np.nan)
            for j, s in enumerate(skips[size]):
                padded[j, : len(s)] = s
            right.plot(
                range(1, width + 1),
                np.nanmean(padded, axis=0),
                marker="o",
                color=f"C{i}",
                label=f"size {size}",
            )
    if isinstance(threshold, int | float):  # the config's "auto" with no logged value: no line
        left.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    left.set_xlabel("cosine similarity, generated vs batch")
    left.set_ylabel("batches")
    left.set_title("Active selection: batch similarity", fontsize=10)
    left.legend(fontsize=8)
    right.set_xlabel("epoch")
    right.set_ylabel("fraction of batches skipped")
    right.set_ylim(0, 1)
    right.set_title("Skip fraction per epoch (mean over seeds)", fontsize=10)
    right.grid(alpha=0.3)
    if skips:
        right.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def loss_curve(log: TrainingLog | None) -> list[tuple[int, float]]:
    """``[(step, loss)]`` of a fine-tune (steps that active selection skipped left out)."""
    if log is None:
        return []
    return [(i, float(v)) for i, v in enumerate(log.loss) if v is not None]


def training_loss(cells: list[Cell], methods: list[str]) -> bytes | None:
    """Fine-tuning loss per step, one panel per size, one line per method (mean over seeds)."""
    return _mean_over_seeds_panels(
        cells, methods, lambda c: loss_curve(c.training_log()), "step", "loss",
        lw=1, marker=None, log_y=True,
    )  # fmt: skip


def selection_clusters(selection: SelectionReport | None) -> dict[str, dict[str, list[float]]]:
    """``{label: {"sizes", "picks", "duplicates"}}`` per cluster of a clustered selection."""
    if selection is None:
        return {}
    return {
        label: {
            "sizes": [c.size for c in entry.clusters],
            "picks": [c.share for c in entry.clusters],
            "duplicates": [c.duplicates for c in entry.clusters],
        }
        for label, entry in selection.labels.items()
        if entry.clusters
    }


def cluster_sizes(
    cells: list[Cell], methods: list[str], labels: list[str]
) -> tuple[bytes | None, str]:
    """Cluster sizes of each clustered method's selection (bars), images picked per cluster and
    duplicates added; one representative cell per method (smallest size, lowest seed)."""
    chosen: dict[str, tuple[Cell, dict]] = {}
    for c in cells:  # cells are sorted by (method, size, seed): the first hit is representative
        if c.method in chosen:
            continue
        clusters = selection_clusters(c.selection())
        if clusters:
            chosen[c.method] = (c, clusters)
    if not chosen:
        return None, ""
    rows = [m for m in methods if m in chosen]
    cluster_labels = [lab for lab in labels if any(lab in chosen[m][1] for m in rows)]
    cluster_labels += sorted({lab for m in rows for lab in chosen[m][1]} - set(cluster_labels))
    fig, axes = _subplots(len(rows) * len(cluster_labels), width=3.6, height=2.6, rows=len(rows))
    for i, method in enumerate(rows):
        cell, clusters = chosen[method]
        for j, label in enumerate(cluster_labels):
            ax = axes[i * len(cluster_labels) + j]
            info = clusters.get(label) if isinstance(clusters.get(label), dict) else {}
            sizes = [float(v) for v in info.get("sizes") or []]
            if not sizes:
                ax.text(0.5, 0.5, "no clusters", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            x = np.arange(len(sizes))
            ax.bar(x - 0.2, sizes, width=0.4, color="C0", label="cluster size (pool)")
            picks = info.get("picks") or []
            dups = info.get("duplicates") or []
            if len(picks) == len(sizes):
                ax.bar(x + 0.2, picks, width=0.4, color="C1", label="picked")
            if len(dups) == len(sizes):
                ax.bar(
                    x + 0.2, dups, width=0.4, color="C3", hatch="//", label="of which duplicates"
                )
            ax.set_title(f"{method} — {label} (size {cell.size}, seed {cell.seed})", fontsize=8)
            ax.set_xticks(x, [str(i) for i in x])
            ax.set_xlabel("cluster", fontsize=8)
            ax.tick_params(labelsize=7)
    handles, names = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in names:
                handles.append(h)
                names.append(lab)
    fig.legend(handles, names, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3)
    fig.tight_layout()
    return figure_png(fig), ", ".join(rows)
