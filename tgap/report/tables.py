"""Read the grid cells and turn them into rows: per cell, aggregated over seeds, flat metrics.

Every number the report shows comes from here, so the HTML, the Markdown summary, the CSV/JSON
files and the KFP Metrics artifact cannot disagree.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tgap.artifacts import (
    CELL,
    CELL_REQUIRED,
    SELECTION,
    TRAINING_LOG,
    ArtifactError,
    CellArtifact,
    RocCurve,
    SelectionReport,
    Supplementation,
    TrainingLog,
)
from tgap.metrics import paired_difference, seed_interval

REQUIRED = CELL_REQUIRED
HEADLINE = REQUIRED[3:]
REFERENCE = ("r2r_accuracy", "r2r_auroc")
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"


class ReportError(ValueError):
    """A cell artifact is missing or malformed; the message names the cell and the key."""


@dataclass
class Cell:
    """One grid cell as read from ``<dir>/cell.json``: its numbers and where its assets are."""

    dir: Path
    method: str
    size: int
    seed: int
    values: dict[str, float]
    assets: dict[str, Path]
    provenance: dict[str, Any] = field(default_factory=dict)
    # Non-numeric entries of cell.json: ``notes`` and the descriptions (CellArtifact.text).
    extra: dict[str, Any] = field(default_factory=dict)
    supplementation: Supplementation | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.method, self.size, self.seed)

    def training_log(self) -> TrainingLog | None:
        """Fine-tune's training log, copied into the cell's assets (None when absent)."""
        path = self.assets.get(TRAINING_LOG)
        return None if path is None else _typed(TrainingLog.read, path)

    def selection(self) -> SelectionReport | None:
        """Select's selection report, copied into the cell's assets (None when absent)."""
        path = self.assets.get(SELECTION)
        return None if path is None else _typed(SelectionReport.read, path)

    def roc(self, direction: str) -> RocCurve | None:
        """The ROC curve of one direction (``s2r``, ``r2s``, ``r2r``) that compute-FTER wrote."""
        path = self.assets.get(f"roc_{direction}.json")
        return None if path is None else _typed(RocCurve.read, path)


def _typed(read, path: Path):
    try:
        return read(path)
    except ArtifactError as exc:
        raise ReportError(str(exc)) from None


def _find_assets(cell_dir: Path, listed: Any) -> dict[str, Path]:
    """Assets named in ``cell.json`` (relative paths) plus any file in ``assets/`` by file name."""
    found: dict[str, Path] = {}
    folder = cell_dir / "assets"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file():
                found[path.name] = path
    if isinstance(listed, dict):
        for name, rel in listed.items():
            path = cell_dir / str(rel)
            # A listed asset that is not there is reported as absent, not as an error: every
            # asset is optional and the section that wanted it says so.
            if path.is_file():
                found[str(name)] = path
                found.setdefault(path.name, path)
    return found


def load_cell(cell_dir: str | Path) -> Cell:
    """Read one cell folder (``CellArtifact``); a malformed cell.json -> ReportError naming it."""
    cell_dir = Path(cell_dir)
    if not (cell_dir / CELL).is_file():
        raise ReportError(f"cell {cell_dir}: no {CELL}")
    art = _typed(CellArtifact.read, cell_dir)
    return Cell(
        cell_dir,
        art.method,
        art.size,
        art.seed,
        art.metrics,
        _find_assets(cell_dir, art.assets),
        art.provenance,
        {**art.text, "notes": art.notes},
        art.supplementation,
    )


def load_cells(cell_dirs: list[Path], method_order: list[str] | None = None) -> list[Cell]:
    """Read every cell, reject duplicates, sort by (method in grid order, size, seed)."""
    if not cell_dirs:
        raise ReportError("no cells to report: the list of cell folders is empty")
    cells = [load_cell(d) for d in cell_dirs]
    seen: dict[tuple[str, int, int], Path] = {}
    for cell in cells:
        if cell.key in seen:
            raise ReportError(
                f"cells {seen[cell.key]} and {cell.dir} are the same grid row "
                f"(method={cell.method}, size={cell.size}, seed={cell.seed})"
            )
        seen[cell.key] = cell.dir
    order = {m: i for i, m in enumerate(method_order or [])}
    return sorted(cells, key=lambda c: (order.get(c.method, len(order)), c.method, c.size, c.seed))


# --------------------------------------------------------------------------- columns


def slug(text: str) -> str:
    """How a label may appear inside a key: ``No Finding`` -> ``no_finding``."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def same_label(a: str, b: str) -> bool:
    """``No Finding``, ``no-finding`` and ``no_finding`` name the same label (file names)."""
    return re.sub(r"[^0-9a-z]", "", a.lower()) == re.sub(r"[^0-9a-z]", "", b.lower())


def class_keys(
    cells: list[Cell], direction: str, metric: str, labels: list[str]
) -> list[tuple[str, str]]:
    """``[(label, key)]`` of per-class columns such as ``s2r_auroc_No Finding`` present in any cell.

    Labels are matched as written or slugged (``s2r_auroc_no_finding``); config order first, then
    any other class keys found, so a label the config does not know still shows.
    """
    prefix = f"{direction}_{metric}_"
    present = {
        k
        for c in cells
        for k in c.values
        if k.startswith(prefix) and not k.endswith((CI_LOW, CI_HIGH))
    }
    out: list[tuple[str, str]] = []
    for label in labels:
        for key in (prefix + label, prefix + slug(label)):
            if key in present:
                out.append((label, key))
                present.discard(key)
                break
    out.extend((k[len(prefix) :], k) for k in sorted(present))
    return out


def csv_columns(cells: list[Cell]) -> list[str]:
    """results.csv columns: identity and headline first, then R→R, per class, CIs, the rest."""
    keys = {k for c in cells for k in c.values}
    head = [*REQUIRED, *(k for k in REFERENCE if k in keys)]
    rest = keys - set(head)
    ci = sorted(k for k in rest if k.endswith((CI_LOW, CI_HIGH)))
    per_class = sorted(
        k for k in rest if re.match(r"^(s2r|r2s|r2r)_(accuracy|auroc)_", k) and k not in ci
    )
    other = sorted(rest - set(ci) - set(per_class))
    return head + per_class + ci + other


def cell_rows(cells: list[Cell]) -> tuple[list[str], list[dict[str, Any]]]:
    """One dict per cell with every column (absent values are None)."""
    columns = csv_columns(cells)
    rows = []
    for c in cells:
        row: dict[str, Any] = {"method": c.method, "size": c.size, "seed": c.seed}
        row.update({k: c.values.get(k) for k in columns[3:]})
        rows.append(row)
    return columns, rows


# --------------------------------------------------------------------------- aggregation


@dataclass
class Stat:
    """One metric of one (method, size) over its seeds."""

    mean: float
    sd: float  # sample sd (ddof=1); NaN with one seed
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    # "seeds": Student-t interval over seeds (training variance in it); "bootstrap": one seed,
    # the cell's bootstrap interval over test images only.
    ci_kind: str = ""
    # The cells' bootstrap intervals over test images only (bounds averaged over seeds).
    test_ci_low: float = math.nan
    test_ci_high: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": _finite_or_none(self.mean),
            "sd": _finite_or_none(self.sd),
            "n": self.n,
            "ci_low": _finite_or_none(self.ci_low),
            "ci_high": _finite_or_none(self.ci_high),
            "ci_kind": self.ci_kind,
            "test_images_ci_low": _finite_or_none(self.test_ci_low),
            "test_images_ci_high": _finite_or_none(self.test_ci_high),
        }


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def summarise(
    values: list[float],
    lows: list[float] | None = None,
    highs: list[float] | None = None,
    confidence: float = 0.95,
) -> Stat:
    """Mean ± sd over seeds and an interval.

    With two or more seeds: a Student-t interval of the mean over seeds
    (``tgap.metrics.seed_interval``), which holds the training randomness. The cells' own
    bootstrap intervals (test images only; bounds averaged over seeds) are kept beside it, and
    are the interval with one seed (``ci_kind`` "bootstrap", labelled as test images only).
    NaN values propagate: a seed whose metric is undefined makes the mean undefined, visibly.
    """
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    mean = float(arr.mean())
    sd = float(arr.std(ddof=1)) if n > 1 else math.nan
    test = (math.nan, math.nan)
    if lows and highs and len(lows) == n and len(highs) == n:
        test = (float(np.mean(lows)), float(np.mean(highs)))
    if n > 1 and math.isfinite(sd):
        _, low, high = seed_interval(arr, confidence)
        return Stat(mean, sd, n, low, high, "seeds", *test)
    if math.isfinite(test[0]):
        return Stat(mean, sd, n, test[0], test[1], "bootstrap", *test)
    return Stat(mean, sd, n)


@dataclass
class Group:
    """All seeds of one (method, size)."""

    method: str
    size: int
    cells: list[Cell]
    stats: dict[str, Stat]

    @property
    def seeds(self) -> list[int]:
        return [c.seed for c in self.cells]


def aggregate(cells: list[Cell], confidence: float = 0.95) -> list[Group]:
    """Group cells by (method, size) in their sorted order and summarise every metric over seeds.

    A metric is summarised over the seeds that have it; ``Stat.n`` says how many.
    """
    groups: dict[tuple[str, int], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.method, c.size), []).append(c)
    out = []
    for (method, size), members in groups.items():
        keys = sorted({k for c in members for k in c.values if not k.endswith((CI_LOW, CI_HIGH))})
        summary = {}
        for key in keys:
            have = [c for c in members if key in c.values]
            lows = [c.values[key + CI_LOW] for c in have if key + CI_LOW in c.values]
            highs = [c.values[key + CI_HIGH] for c in have if key + CI_HIGH in c.values]
            summary[key] = summarise([c.values[key] for c in have], lows, highs, confidence)
        out.append(Group(method, size, members, summary))
    return out


def best_methods(groups: list[Group], metric: str) -> dict[int, list[str]]:
    """Per size, the method(s) with the highest mean ``metric`` (ties all marked; NaN never best)."""
    best: dict[int, list[str]] = {}
    for size in sorted({g.size for g in groups}):
        scores = {
            g.method: g.stats[metric].mean
            for g in groups
            if g.size == size and metric in g.stats and math.isfinite(g.stats[metric].mean)
        }
        if scores:
            top = max(scores.values())
            best[size] = [
                m for m, v in scores.items() if math.isclose(v, top, rel_tol=0, abs_tol=1e-12)
            ]
    return best


def reference_by_size(cells: list[Cell], key: str, confidence: float = 0.95) -> dict[int, Stat]:
    """R→R per size over seeds: the real classifier depends on (size, seed) only, so each seed
    counts once (its value, and its bootstrap bounds when present, averaged over the methods
    that report it)."""
    per: dict[int, dict[int, list[Cell]]] = {}
    for c in cells:
        if key in c.values:
            per.setdefault(c.size, {}).setdefault(c.seed, []).append(c)
    out = {}
    for size, seeds in sorted(per.items()):
        groups = [members for _, members in sorted(seeds.items())]
        values = [float(np.mean([c.values[key] for c in m])) for m in groups]
        bounds = {}
        for end in (CI_LOW, CI_HIGH):
            if all(key + end in c.values for m in groups for c in m):
                bounds[end] = [float(np.mean([c.values[key + end] for c in m])) for m in groups]
        out[size] = summarise(values, bounds.get(CI_LOW), bounds.get(CI_HIGH), confidence)
    return out


FLAT_NAMES = {
    "fter": "fter",
    "s2r_auroc": "auroc_s2r",
    "r2s_auroc": "auroc_r2s",
    "s2r_accuracy": "accuracy_s2r",
    "r2s_accuracy": "accuracy_r2s",
}


def flat_metrics(groups: list[Group], cells: list[Cell]) -> dict[str, float]:
    """Name -> mean over seeds, e.g. ``fter.active.500``, for the KFP run comparison.

    Non-finite means are left out (KFP Metrics and JSON cannot hold NaN); the report tables still
    show them.
    """
    out: dict[str, float] = {}
    for g in groups:
        for key, name in FLAT_NAMES.items():
            stat = g.stats.get(key)
            if stat is not None and math.isfinite(stat.mean):
                out[f"{name}.{g.method}.{g.size}"] = stat.mean
    for key, name in (("r2r_auroc", "auroc_r2r"), ("r2r_accuracy", "accuracy_r2r")):
        for size, stat in reference_by_size(cells, key).items():
            if math.isfinite(stat.mean):
                out[f"{name}.{size}"] = stat.mean
    return out


# --------------------------------------------------------------------------- caveats, comparisons

FTER_FLAG = "r2s_below_r2r"
FTER_FLAG_TEXT = (
    "synthetic set is harder to label than real data; FTER > 1 here does not mean it trains better"
)


def cell_fter_flag(cell: Cell) -> str:
    """``r2s_below_r2r`` when the cell's R→S AUROC is below the lower bound of its R→R
    interval (the real-trained classifier labels the synthetic set worse than real images)."""
    r2s, low = cell.values.get("r2s_auroc", math.nan), cell.values.get("r2r_auroc" + CI_LOW)
    if low is None or not (math.isfinite(r2s) and math.isfinite(low)):
        return ""
    return FTER_FLAG if r2s < low else ""


def group_fter_flag(group: Group, reference: dict[int, Stat]) -> bool:
    """A method × size row's flag: mean R→S AUROC below the lower bound of R→R's test-image
    interval (the same bound the cells are flagged against; its interval over seeds when the
    cells carry no bootstrap bounds)."""
    r2s, ref = group.stats.get("r2s_auroc"), reference.get(group.size)
    if r2s is None or ref is None:
        return False
    low = ref.test_ci_low if math.isfinite(ref.test_ci_low) else ref.ci_low
    return math.isfinite(r2s.mean) and math.isfinite(low) and r2s.mean < low


def did_not_train(cell: Cell) -> str:
    """The fine-tune's own "did not train" reason from its training log ('' when it trained)."""
    training_log = cell.training_log()
    return "" if training_log is None else training_log.did_not_train_reason


def add_cell_flags(columns: list[str], rows: list[dict[str, Any]], cells: list[Cell]) -> list[str]:
    """Add the ``fter_flag`` and ``did_not_train`` columns to results.csv's rows, in place."""
    for row, cell in zip(rows, cells, strict=True):
        row["fter_flag"] = cell_fter_flag(cell)
        row["did_not_train"] = "yes" if did_not_train(cell) else "no"
    return [*columns, "fter_flag", "did_not_train"]


PAIRED_METRICS = ("s2r_auroc", "r2s_auroc", "fter")


def paired_comparisons(
    cells: list[Cell], reference_method: str, confidence: float = 0.95
) -> list[dict[str, Any]]:
    """Each method against ``reference_method`` on the seeds both have, per size: the mean paired
    difference (method - reference), its t-interval and the paired t-test's p-value, for S→R
    AUROC, R→S AUROC and FTER. Empty when the reference method is not in the cells."""
    by_key = {c.key: c for c in cells}
    out = []
    methods = list(dict.fromkeys(c.method for c in cells))
    if reference_method not in methods:
        return []
    for size in sorted({c.size for c in cells}):
        ref_seeds = {c.seed for c in cells if c.method == reference_method and c.size == size}
        for method in methods:
            if method == reference_method:
                continue
            seeds = sorted(
                ref_seeds & {c.seed for c in cells if c.method == method and c.size == size}
            )
            if not seeds:
                continue
            row: dict[str, Any] = {"method": method, "size": size, "seeds": seeds}
            for key in PAIRED_METRICS:
                a = [by_key[(method, size, s)].values.get(key, math.nan) for s in seeds]
                b = [by_key[(reference_method, size, s)].values.get(key, math.nan) for s in seeds]
                row[key] = paired_difference(a, b, confidence)
            out.append(row)
    return out


def separated_best(
    groups: list[Group], metric: str, confidence: float = 0.95, exclude: set[str] | None = None
) -> tuple[dict[int, list[str]], dict[int, str]]:
    """Per size, the method with the highest mean ``metric``, only when a paired t-test over
    the seeds they share separates it from the runner-up at ``confidence`` (p < 1 -
    confidence, the difference's interval above 0). Methods in ``exclude`` (did not train)
    are never ranked. Returns ``({size: [best]}, {size: why none was marked})``."""
    exclude = exclude or set()
    best: dict[int, list[str]] = {}
    why: dict[int, str] = {}
    for size in sorted({g.size for g in groups}):
        ranked = sorted(
            (g for g in groups
             if g.size == size and g.method not in exclude and metric in g.stats
             and math.isfinite(g.stats[metric].mean)),
            key=lambda g: -g.stats[metric].mean,
        )  # fmt: skip
        if len(ranked) == 1:
            best[size] = [ranked[0].method]
        if len(ranked) < 2:
            continue
        top, second = ranked[0], ranked[1]
        a = {c.seed: c.values.get(metric, math.nan) for c in top.cells}
        b = {c.seed: c.values.get(metric, math.nan) for c in second.cells}
        seeds = sorted(set(a) & set(b))
        test = paired_difference([a[s] for s in seeds], [b[s] for s in seeds], confidence)
        if (
            math.isfinite(test["p_value"])
            and test["p_value"] < 1 - confidence
            and test["ci_low"] > 0
        ):
            best[size] = [top.method]
        else:
            p = "no test with one seed" if len(seeds) < 2 else f"p = {test['p_value']:.3g}"
            why[size] = (
                f"no method separated: {top.method} vs runner-up {second.method}, paired "
                f"difference {test['mean']:+.3f} over {len(seeds)} seed(s), {p}"
            )
    return best, why


def active_thresholds(cells: list[Cell]) -> list[dict[str, Any]]:
    """The active-selection threshold each fine-tune used, and how it was set (auto or fixed)."""
    out = []
    for c in cells:
        path = c.assets.get("training_log.json")
        try:
            log = json.loads(path.read_text()) if path is not None else {}
        except (OSError, json.JSONDecodeError):
            continue
        config = log.get("active_config") if isinstance(log, dict) else None
        if isinstance(config, dict) and isinstance(config.get("threshold"), int | float):
            out.append({
                "method": c.method, "size": c.size, "seed": c.seed,
                "threshold": float(config["threshold"]),
                "setting": config.get("threshold_setting", config["threshold"]),
                "skipped": (log.get("active_summary") or {}).get("skipped"),
                "evaluated": (log.get("active_summary") or {}).get("evaluated"),
            })  # fmt: skip
    return out
