"""report.html: one self-contained page (inline CSS, images as data: URIs, no scripts, no links).

It is shown by the KFP UI's HTML viewer, an ``<iframe sandbox="allow-scripts" srcdoc=...>``:
there, relative links and in-page anchors resolve against the UI's own URL, so the page has
none; sections fold with ``<details>`` instead.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

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

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.5em;
color:#1b1b1b;max-width:1400px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:1.6em}
h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #d0d0d0;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f2f2f2;text-align:center;white-space:normal}.scroll{overflow-x:auto}td.text,th.text{text-align:left}
tr.best td{background:#eaf6ea}tr.best td.metric-best{font-weight:bold}
tr.ref td{background:#f5f5ff;font-style:italic}tr.size-start td{border-top:2px solid #888}
.note{color:#555;font-size:.85em}.ci{color:#555;font-size:.85em;font-weight:normal}.absent{color:#8a6d00;background:#fff8e1;padding:.3em .6em}
.warn{background:#fdecea;border-left:4px solid #c62828;padding:.4em .8em;margin:.4em 0}
.ok{background:#e8f5e9;border-left:4px solid #2e7d32;padding:.4em .8em;margin:.4em 0}
figure{margin:.8em 0}figcaption{font-size:.85em;color:#444;max-width:900px}
img{max-width:100%;height:auto}img.grid{image-rendering:pixelated;width:160px}
.gallery{display:flex;flex-wrap:wrap;gap:1em}.gallery figure{margin:0}
pre{background:#f7f7f7;padding:.6em;font-size:.8em;overflow:auto;max-height:40em}
details>summary{cursor:pointer;font-weight:600;margin:.4em 0}
table.per-class th.label{max-width:7em;word-break:break-word}
.flag{color:#8a4b00;font-size:.8em;font-weight:600}#table-paired td.metric-best{font-weight:bold}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if not math.isfinite(x):
        return "nan"
    return f"{x:.{digits}f}"


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


def _stat_td(stat: Stat | None, metric: str, best: bool = False, ci: bool = False) -> str:
    """A mean ± sd cell; with ``ci`` its interval below it (keeps the thesis table narrow)."""
    attrs = f' data-metric="{esc(metric)}"'
    if stat is not None:
        attrs += f' data-mean="{stat.mean!r}" data-n="{stat.n}"'
    cls = ' class="metric-best"' if best else ""
    interval = (
        f'<br><span class="ci" data-ci="{esc(metric)}">{esc(fmt_ci(stat))}</span>' if ci else ""
    )
    return f"<td{cls}{attrs}>{esc(fmt_stat(stat))}{' ★' if best else ''}{interval}</td>"


def _flag_html(flag: str) -> str:
    if not flag:
        return ""
    return (
        f'<br><span class="flag" data-flag="{esc(flag)}" title="{esc(FLAG_TEXT[flag])}">'
        f"{esc(FLAG_SHORT[flag])}</span>"
    )


def _ratio_td(stat: Stat | None, metric: str) -> str:
    """Utility or fidelity: the ratio of mean AUROCs, no interval (see tables._ratio_stat)."""
    attrs = f' data-metric="{esc(metric)}"'
    if stat is not None:
        attrs += f' data-mean="{stat.mean!r}" data-n="{stat.n}"'
    return f"<td{attrs}>{esc('—' if stat is None else fmt(stat.mean))}</td>"


def results_table(
    direction: str,
    groups: list[Group],
    cells: list[Cell],
    labels: list[str],
    best: dict[int, list[str]],
    reference: dict[str, dict[int, Stat]],
    fter_flags: dict[tuple[str, int], str] | None = None,
    untrained: set[str] | None = None,
    classifier_head: str | None = None,
    confidence: float = 0.95,
) -> str:
    """The thesis-form table for one direction: per size, the fine-tuned methods (ranked, ★),
    then the controls in their own block (never ranked), then R→R.

    ``classifier_head`` is ``classifier.head``: a two-label softmax head's per-class AUROCs equal
    the AUROC column by construction, so they are not repeated and a note says so.

    With more than ``INLINE_CLASSES`` labels the per-class columns move to ``per_class_table``,
    so ten labels do not push the table off the page. ``fter_flags`` maps (method, size) rows to
    their two-sided R→S flag, shown beside FTER; methods in ``untrained`` are marked "did not
    train".
    """
    fter_flags, untrained = fter_flags or {}, untrained or set()
    ci = f"({confidence:.0%} CI)"
    acc_classes = class_keys(cells, direction, "accuracy", labels)
    auc_classes = class_keys(cells, direction, "auroc", labels)
    if len(labels) > INLINE_CLASSES:
        acc_classes, auc_classes = [], []
    one_auroc = len(labels) == 2 and classifier_head == "softmax"
    if one_auroc:
        auc_classes = []
    ref_acc_classes = dict(class_keys(cells, "r2r", "accuracy", labels))
    ref_auc_classes = dict(class_keys(cells, "r2r", "auroc", labels))
    head = (
        '<tr><th class="text">method</th><th>size</th><th>seeds</th>'
        f"<th>accuracy<br>{ci}</th>"
        + "".join(f"<th>accuracy {esc(lab)}</th>" for lab, _ in acc_classes)
        + f"<th>AUROC<br>{ci}</th>"
        + "".join(f"<th>AUROC {esc(lab)}</th>" for lab, _ in auc_classes)
        + f"<th>FTER<br>{ci}</th><th>utility<br>S→R / R→R</th>"
        "<th>fidelity<br>R→S / R→R</th></tr>"
    )
    width = 8 + len(acc_classes) + len(auc_classes)

    def method_row(g: Group, classes: list[str]) -> str:
        is_best = g.method in best.get(g.size, [])
        classes = [*classes, "best"] if is_best else classes
        s = g.stats
        return (
            f'<tr class="{" ".join(classes)}" data-method="{esc(g.method)}" data-size="{g.size}">'
            f'<td class="text">{esc(g.method)}{" ★" if is_best else ""}'
            f"{UNTRAINED_HTML if g.method in untrained else ''}</td><td>{g.size}</td>"
            f"<td>{len(g.cells)}</td>"
            + _stat_td(s.get(f"{direction}_accuracy"), f"{direction}_accuracy", ci=True)
            + "".join(_stat_td(s.get(k), k) for _, k in acc_classes)
            + _stat_td(s.get(f"{direction}_auroc"), f"{direction}_auroc", is_best, ci=True)
            + "".join(_stat_td(s.get(k), k) for _, k in auc_classes)
            + _stat_td(s.get("fter"), "fter", ci=True)[: -len("</td>")]
            + _flag_html(fter_flags.get((g.method, g.size), ""))
            + "</td>"
            + _ratio_td(s.get("utility"), "utility")
            + _ratio_td(s.get("fidelity"), "fidelity")
            + "</tr>"
        )

    rows = []
    for size in sorted({g.size for g in groups}):
        here = [g for g in groups if g.size == size]
        tuned = [g for g in here if not is_control(g.method)]
        controls = [g for g in here if is_control(g.method)]
        rows += [method_row(g, ["size-start"] if i == 0 else []) for i, g in enumerate(tuned)]
        if controls:
            rows.append(
                f'<tr class="controls-head{"" if tuned else " size-start"}"><td class="text" '
                f'colspan="{width}">controls at size {size}: not fine-tuned, never ranked</td></tr>'
            )
            rows += [method_row(g, ["control"]) for g in controls]
        acc = reference.get("r2r_accuracy", {}).get(size)
        auc = reference.get("r2r_auroc", {}).get(size)
        if acc is not None or auc is not None:
            per_acc = {lab: reference.get(k, {}).get(size) for lab, k in ref_acc_classes.items()}
            per_auc = {lab: reference.get(k, {}).get(size) for lab, k in ref_auc_classes.items()}
            rows.append(
                f'<tr class="ref" data-method="R→R" data-size="{size}">'
                f'<td class="text">R→R (real → real)</td><td>{size}</td><td>{acc.n if acc else auc.n}</td>'
                + _stat_td(acc, "r2r_accuracy", ci=True)
                + "".join(
                    _stat_td(per_acc.get(lab), f"r2r_accuracy_{lab}") for lab, _ in acc_classes
                )
                + _stat_td(auc, "r2r_auroc", ci=True)
                + "".join(_stat_td(per_auc.get(lab), f"r2r_auroc_{lab}") for lab, _ in auc_classes)
                + "<td>—</td><td>—</td><td>—</td></tr>"
            )
    note = f'<p class="note">{esc(ONE_AUROC_NOTE)}</p>' if one_auroc else ""
    return (
        f'<div class="scroll"><table id="table-{direction}">{head}{"".join(rows)}</table></div>'
        + note
    )


ONE_AUROC_NOTE = (
    "Per-class AUROC: identical for both labels with a softmax head (one label's score is "
    "1 − the other's), so it is the AUROC column; classifier.head: sigmoid scores each label "
    "on its own output."
)


SEED_METRICS = (
    ("s2r_auroc", "S→R AUROC"),
    ("r2s_auroc", "R→S AUROC"),
    ("fter", "FTER"),
    ("s2r_accuracy", "S→R accuracy"),
    ("r2s_accuracy", "R→S accuracy"),
)


def seeds_table(groups: list[Group], reference: dict[str, dict[int, Stat]]) -> str:
    """Every seed's value of the headline numbers, a column per seed (folded)."""
    seeds = sorted({s for g in groups for s in g.seeds})
    head = (
        '<tr><th class="text">method</th><th>size</th><th class="text">metric</th>'
        + "".join(f"<th>seed {s}</th>" for s in seeds)
        + "</tr>"
    )

    def row(method: str, size: int, key: str, title: str, stat: Stat | None) -> str:
        if stat is None:
            return ""
        by_seed = dict(zip(stat.seeds, stat.values, strict=True))
        tds = "".join(f'<td data-seed="{s}">{esc(fmt(by_seed.get(s)))}</td>' for s in seeds)
        return (
            f'<tr data-method="{esc(method)}" data-size="{size}" data-metric="{esc(key)}">'
            f'<td class="text">{esc(method)}</td><td>{size}</td><td class="text">{esc(title)}</td>'
            f"{tds}</tr>"
        )

    rows = []
    for size in sorted({g.size for g in groups}):
        for g in (g for g in groups if g.size == size):
            rows += [row(g.method, size, k, t, g.stats.get(k)) for k, t in SEED_METRICS]
        for key, title in (("r2r_auroc", "R→R AUROC"), ("r2r_accuracy", "R→R accuracy")):
            rows.append(
                row("R→R (real → real)", size, key, title, reference.get(key, {}).get(size))
            )
    return (
        f"<details><summary>Every seed's value ({len(seeds)} seeds)</summary>"
        f'<div class="scroll"><table id="table-seeds">{head}{"".join(rows)}</table></div>'
        "</details>"
    )


INLINE_CLASSES = 3  # per-class columns inside the main table up to this many labels


def per_class_table(
    direction: str,
    groups: list[Group],
    cells: list[Cell],
    labels: list[str],
    reference: dict[str, dict[int, Stat]],
) -> str:
    """Many labels: per-class accuracy and AUROC, labels as columns, two rows per method × size
    (means over seeds; sd and intervals in results.csv). Empty with few labels."""
    if len(labels) <= INLINE_CLASSES:
        return ""
    metrics = [("accuracy", "accuracy"), ("auroc", "AUROC")]
    keys = {m: dict(class_keys(cells, direction, m, labels)) for m, _ in metrics}
    ref_keys = {m: dict(class_keys(cells, "r2r", m, labels)) for m, _ in metrics}
    names = [lab for lab in labels if any(lab in keys[m] for m, _ in metrics)]
    if not names:
        return ""

    def td(stat: Stat | None, metric: str) -> str:
        value = "—" if stat is None else fmt(stat.mean)
        return f'<td data-metric="{esc(metric)}">{esc(value)}</td>'

    head = (
        '<tr><th class="text">method</th><th>size</th><th>metric</th>'
        + "".join(f'<th class="label">{esc(lab)}</th>' for lab in names)
        + "</tr>"
    )
    rows = []
    for size in sorted({g.size for g in groups}):
        entries = [(g.method, g.stats.get, "") for g in groups if g.size == size]
        entries.append(("R→R (real → real)", None, "ref"))
        for method, get, cls in entries:
            for m, title in metrics:
                source = keys[m] if get else ref_keys[m]
                if not get and not source:
                    continue
                cells_html = "".join(
                    td(
                        get(source[lab]) if get and lab in source
                        else reference.get(source[lab], {}).get(size) if lab in source
                        else None,
                        source.get(lab, ""),
                    )
                    for lab in names
                )  # fmt: skip
                rows.append(
                    f'<tr class="{cls}" data-method="{esc(method)}" data-size="{size}">'
                    f'<td class="text">{esc(method)}</td><td>{size}</td><td class="text">{title}</td>'
                    f"{cells_html}</tr>"
                )
    return (
        f"<h3>Per class ({len(names)} labels, one-vs-rest AUROC)</h3>"
        f'<div class="scroll"><table class="per-class" id="table-{direction}-per-class">'
        f"{head}{''.join(rows)}</table></div>"
        '<p class="note">Means over seeds; sd and intervals per class are in results.csv.</p>'
    )


def data_section(ingest: dict[str, Any] | None) -> str:
    """How the real data was split (patients known or not, official splits) and what ingest
    left out (unreadable files, with the reason), from the pool's dataset.json."""
    if not ingest:
        return absent("No ingest facts: the pool's dataset.json has no `ingest` entry.")
    parts = [f"<p>Split: {esc(ingest.get('split', ''))}.</p>"]
    if ingest.get("leakage_warning"):
        parts.append(f'<div class="warn">{esc(ingest["leakage_warning"])}</div>')
    elif ingest.get("shared_patients_total") is not None:
        parts.append(
            f'<div class="ok">Patients ({esc(ingest.get("patient_ids", ""))}) shared between '
            f"pool, real-train, real-val and real-test: {esc(ingest['shared_patients_total'])}.</div>"
        )
    dropped = ingest.get("test_patients_dropped") or {}
    if dropped.get("images"):
        parts.append(
            f'<div class="ok">Sealed real-test: {esc(dropped["images"])} images of '
            f"{esc(dropped['patients'])} patients who also have images in real-test were dropped "
            f"from the other splits ({esc(dropped.get('by_split'))}; "
            "data.split.drop_test_patients).</div>"
        )
    if ingest.get("cross_split_patients_total"):
        parts.append(
            f'<div class="warn">Leak in the dataset itself: {esc(ingest["cross_split_patients_total"])} '
            f"patients are in more than one official split ({esc(ingest.get('cross_split_patients'))}).</div>"
        )
    if ingest.get("unmatched_own_patient"):
        parts.append(
            f"<p>{esc(ingest['unmatched_own_patient'])} paths did not match "
            "data.patient_id_pattern; each is its own patient.</p>"
        )
    corrupt = ingest.get("corrupt_files") or []
    n = ingest.get("skipped_corrupt", 0)
    if corrupt:
        items = "".join(
            f'<tr><td class="text">{esc(c.get("file"))}</td><td class="text">{esc(c.get("reason"))}</td></tr>'
            for c in corrupt
        )
        parts.append(
            f"<details><summary>{esc(n)} unreadable file(s) skipped (data.on_corrupt: skip)"
            f'</summary><table id="skipped-files"><tr><th class="text">file</th>'
            f'<th class="text">reason</th></tr>{items}</table>'
            + (f'<p class="note">first {len(corrupt)} listed</p>' if n > len(corrupt) else "")
            + "</details>"
        )
    missing = ingest.get("skipped_missing", 0)
    if missing:
        parts.append(
            f"<p>{esc(missing)} listed images were missing and skipped (data.on_missing).</p>"
        )
    return "".join(parts)


UNTRAINED_HTML = (
    '<br><span class="flag" data-flag="did-not-train">did not train (not ranked)</span>'
)
METRIC_NAMES = {"s2r_auroc": "S→R AUROC", "r2s_auroc": "R→S AUROC"}


def comparisons_table(rows: list[dict[str, Any]], confidence: float) -> str:
    """Every comparison of the report: difference (method − against) with its interval over
    seeds, p, Holm-adjusted p, what it could detect; bold where Holm separates it."""
    if not rows:
        return absent(
            "No comparisons: the grid has no fine-tuned method beside another method at one size."
        )
    head = (
        '<tr><th class="text">metric</th><th>size</th><th class="text">method − against</th>'
        '<th class="text">why</th><th class="text">paired by</th><th>seeds</th>'
        f"<th>difference<br>({confidence:.0%} CI)</th><th>p</th><th>Holm p</th>"
        '<th class="text">power</th></tr>'
    )
    body = []
    for r in rows:
        p = "—" if not math.isfinite(r["p"]) else f"{r['p']:.3g}"
        p_holm = "—" if not math.isfinite(r["p_holm"]) else f"{r['p_holm']:.3g}"
        cls = ' class="metric-best"' if r["separated"] else ""
        body.append(
            f'<tr data-metric="{esc(r["metric"])}" data-method="{esc(r["method"])}" '
            f'data-against="{esc(r["against"])}" data-size="{r["size"]}" '
            f'data-outcome="{"separated" if r["separated"] else "not separated"}">'
            f'<td class="text">{esc(METRIC_NAMES[r["metric"]])}</td><td>{r["size"]}</td>'
            f'<td class="text">{esc(r["method"])} − {esc(r["against"])}</td>'
            f'<td class="text">{esc("; ".join(r["why"]))}</td>'
            f'<td class="text">{esc(r["paired_by"] or "—")}</td><td>{len(r["seeds"])}</td>'
            f'<td{cls} data-diff="{r["diff"]!r}">{esc(fmt_signed(r["diff"]))}<br><span class="ci">'
            f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]</span></td>"
            f'<td data-p="{r["p"]!r}">{esc(p)}</td><td data-p-holm="{r["p_holm"]!r}">{esc(p_holm)}</td>'
            f'<td class="text">{esc(detect_text(r))}</td></tr>'
        )
    return f'<div class="scroll"><table id="table-comparisons">{head}{"".join(body)}</table></div>'


def fmt_signed(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3f}"


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


def other_metrics_table(groups: list[Group], keys: list[str], table_id: str) -> str:
    """Distribution or memorisation metrics (FID, precision/recall, near copies, ...)."""
    head = (
        '<tr><th class="text">method</th><th>size</th>'
        + "".join(f"<th>{esc(k)}</th>" for k in keys)
        + "</tr>"
    )
    rows = []
    for g in sorted(groups, key=lambda g: g.size):
        tds = "".join(
            f'<td data-metric="{esc(k)}"'
            + (f' data-mean="{g.stats[k].mean!r}"' if k in g.stats else "")
            + f">{esc(fmt_auto(g.stats.get(k)))}</td>"
            for k in keys
        )
        rows.append(
            f'<tr data-method="{esc(g.method)}" data-size="{g.size}"><td class="text">'
            f"{esc(g.method)}</td><td>{g.size}</td>{tds}</tr>"
        )
    return f'<div class="scroll"><table id="{table_id}">{head}{"".join(rows)}</table></div>'


def cells_table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """Every cell as in results.csv (``data-value`` holds the exact number)."""
    head = "<tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>"
    body = []
    for row in rows:
        tds = []
        for col in columns:
            value = row.get(col)
            if col in ("method", "size", "seed") or isinstance(value, str):
                tds.append(
                    f'<td class="text" data-col="{col}" data-value="{esc(value)}">{esc(value)}</td>'
                )
            else:
                raw = "" if value is None else repr(float(value))
                tds.append(
                    f'<td data-col="{esc(col)}" data-value="{raw}">{esc(fmt(value, 4))}</td>'
                )
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f'<div class="scroll"><table id="cells">{head}{"".join(body)}</table></div>'


def figure(uri: str | None, caption: str, alt: str) -> str:
    if uri is None:
        return (
            f'<p class="absent">{esc(alt)}: left out to keep the report under its size budget.</p>'
        )
    return f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{caption}</figcaption></figure>'


def absent(text: str) -> str:
    return f'<p class="absent">{esc(text)}</p>'


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


def _img_td(path: Path | None, alt: str, budget: ImageBudget) -> str:
    uri = budget.take(shrink_png(path)) if path else None
    if uri:
        return f'<td><img class="grid" src="{uri}" alt="{esc(alt)}"></td>'
    return f'<td class="note">{"not produced" if path is None else "over size budget"}</td>'


def sample_grids(cells: list[Cell], labels: list[str], budget: ImageBudget) -> str:
    """Real sample grids per label, then synthetic ones: a row per method, a column per size ×
    label (the lowest seed of each method × size)."""
    labels = _grid_labels(cells, labels)
    parts = []
    real = {
        lab: next((p for c in cells if (p := _label_asset(c, "real_grid_", lab))), None)
        for lab in labels
    }
    if any(real.values()):
        parts.append(
            '<h3>Real images</h3><table id="real-grids"><tr>'
            + "".join(f"<th>{esc(lab)}</th>" for lab in labels)
            + "</tr><tr>"
            + "".join(_img_td(real[lab], f"real {lab}", budget) for lab in labels)
            + "</tr></table>"
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
    if not methods and not parts:
        return absent("No sample grids: no cell has grid_<label>.png or real_grid_<label>.png.")
    if not methods:
        return "".join(parts) + absent("No synthetic sample grids: no cell has grid_<label>.png.")
    shown = methods[:MAX_GRID_ROWS]
    head = (
        '<tr><th class="text" rowspan="2">method</th>'
        + "".join(f'<th colspan="{len(labels)}">size {n}</th>' for n in sizes)
        + "</tr><tr>"
        + "".join(f"<th>{esc(lab)}</th>" for _ in sizes for lab in labels)
        + "</tr>"
    )
    body = []
    for method in shown:
        tds = []
        for n in sizes:
            c = representative.get((method, n))
            for lab in labels:
                path = found.get((method, n), {}).get(lab)
                tds.append(
                    _img_td(path, f"{method} {lab} size {n} seed {c.seed if c else ''}", budget)
                )
        body.append(f'<tr><td class="text">{esc(method)}</td>{"".join(tds)}</tr>')
    seeds = sorted({c.seed for c in representative.values()})
    parts.append(
        '<h3>Synthetic images</h3><div class="scroll"><table id="sample-grids">'
        f"{head}{''.join(body)}</table></div>"
        f'<p class="note">Lowest seed of each method × size (seed {", ".join(map(str, seeds))}). '
        + (f"Showing {len(shown)} of {len(methods)} methods. " if len(methods) > len(shown) else "")
        + f"Images shrunk to at most {MAX_IMAGE_SIDE} px; the full grids are in each cell's assets.</p>"
    )
    return "".join(parts)


def closest_pairs(cells: list[Cell], budget: ImageBudget) -> str:
    """The memorisation check's closest synthetic–tuning pairs per method × size (lowest seed)."""
    representative: dict[tuple[str, int], Cell] = {}
    for c in cells:
        if "closest_pairs.png" in c.assets:
            representative.setdefault((c.method, c.size), c)
    if not representative:
        return absent("No closest-pair images: no cell has closest_pairs.png.")
    items = []
    for (method, size), c in list(representative.items())[:MAX_GRID_ROWS]:
        uri = budget.take(shrink_png(c.assets["closest_pairs.png"], 2 * MAX_IMAGE_SIDE))
        near = c.values.get("near_copy_fraction")
        caption = f"{esc(method)}, size {size}, seed {c.seed}" + (
            f"; near-copy fraction {fmt(near)}" if near is not None else ""
        )
        items.append(figure(uri, caption, f"closest pairs {method} {size}"))
    return f'<div class="gallery">{"".join(items)}</div>'


def _cells_list(where: list[str]) -> str:
    shown = ", ".join(where[:6]) + (" …" if len(where) > 6 else "")
    return f"<span class='note'>({len(where)} cell(s): {esc(shown)})</span>"


def run_notes(cells: list[Cell]) -> str:
    """What the stages said about undefined numbers, skipped fine-tunes and degenerate active
    selection, each note once with the cells (method/size/seed) it applies to."""
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
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)} {_cells_list(w)}</li>" for n, w in notes.items())
    return f'<h2>Notes from the stages</h2><ul id="notes">{items}</ul>'


# --------------------------------------------------------------------------- provenance


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


def render_value(value: Any, depth: int = 0) -> str:
    """Any JSON value as nested HTML tables (deep or long values as JSON text)."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        if depth >= 3:
            return f"<pre>{esc(json.dumps(value, indent=1, default=str))}</pre>"
        rows = "".join(
            f'<tr><th class="text">{esc(k)}</th><td class="text">{render_value(v, depth + 1)}</td></tr>'
            for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return esc(", ".join(map(str, value)))
        if all(isinstance(v, dict) for v in value) and depth < 3 and len(value) <= 200:
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{esc(k)}</th>" for k in keys)
            body = "".join(
                "<tr>"
                + "".join(
                    f'<td class="text">{render_value(v.get(k, ""), depth + 1)}</td>' for k in keys
                )
                + "</tr>"
                for v in value
            )
            return f"<table><tr>{head}</tr>{body}</table>"
        return f"<pre>{esc(json.dumps(value, indent=1, default=str))}</pre>"
    if isinstance(value, float):
        return esc(f"{value:.4g}")
    return esc(value)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def cell_provenance(cells: list[Cell]) -> str:
    """The cells' own provenance, summarised: a value shared by all cells once; numbers that
    differ (times) as total and range; other differing values as a count of distinct values."""
    flat = [_flatten(c.provenance) for c in cells if c.provenance]
    if not flat:
        return ""
    keys = list(dict.fromkeys(k for f in flat for k in f))
    rows = []
    for key in keys:
        values = [f[key] for f in flat if key in f]
        texts = {json.dumps(v, sort_keys=True, default=str) for v in values}
        if len(texts) == 1:
            shown = render_value(values[0], 2)
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            shown = esc(f"total {sum(values):.4g}, range {min(values):.4g} – {max(values):.4g}")
        else:
            shown = esc(f"{len(texts)} distinct values")
        rows.append(
            f'<tr><th class="text">{esc(key)}</th><td>{len(values)}</td><td class="text">{shown}</td></tr>'
        )
    return (
        f"<h3>Per-cell provenance ({len(flat)} cells)</h3>"
        '<table id="cell-provenance"><tr><th>key</th><th>cells</th><th>value</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def provenance_section(
    provenance: dict[str, Any], config: dict[str, Any], cells: list[Cell]
) -> str:
    parts = []
    for key, value in provenance.items():
        if key == "config":
            continue
        parts.append(f"<h3>{esc(key)}</h3>{render_value(value)}")
    parts.append(cell_provenance(cells))
    config_json = esc(
        json.dumps(provenance.get("config", config), indent=2, sort_keys=True, default=str)
    )
    parts.append(f"<details><summary>Run configuration</summary><pre>{config_json}</pre></details>")
    return "".join(parts)
