"""Read the grid cells and turn them into rows: per cell, aggregated over seeds, flat metrics.

Every number the report shows comes from here, so the HTML, the Markdown summary, the CSV/JSON
files and the KFP Metrics artifact cannot disagree.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tgap.artifacts import (
    CELL,
    CELL_REQUIRED,
    S2R_PREDICTIONS,
    SELECTION,
    TRAINING_LOG,
    ArtifactError,
    CellArtifact,
    Predictions,
    RocCurve,
    SelectionReport,
    Supplementation,
    TrainingLog,
)
from tgap.methods import parse_method
from tgap.metrics import (
    compare_over_seeds,
    delong_paired,
    fter_interval,
    holm,
    seed_covariance,
    seed_mean_interval,
)

REQUIRED = CELL_REQUIRED
HEADLINE = REQUIRED[3:]
REFERENCE = ("r2r_accuracy", "r2r_auroc")
# Per cell, computed here from its AUROCs: S→R / R→R and R→S / R→R.
DERIVED = ("utility", "fidelity")
CI_LOW, CI_HIGH, VAR = "_ci_low", "_ci_high", "_var"
SUFFIXES = (CI_LOW, CI_HIGH, VAR)


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

    @cached_property
    def s2r_predictions(self) -> Predictions | None:
        """The stored S→R real-test predictions (None when the cell has none), read once: the
        group's intervals and every comparison the cell is in pair on them."""
        path = self.assets.get(S2R_PREDICTIONS)
        return None if path is None else _typed(Predictions.read, path)

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
        {**art.metrics, **derived_values(art.metrics)},
        _find_assets(cell_dir, art.assets),
        art.provenance,
        {**art.text, "notes": art.notes},
        art.supplementation,
    )


def derived_values(values: dict[str, float]) -> dict[str, float]:
    """Utility (S→R / R→R) and fidelity (R→S / R→R) of one cell, when it has an R→R AUROC."""
    r2r = values.get("r2r_auroc")
    if r2r is None:
        return {}
    out = {}
    for name, key in (("utility", "s2r_auroc"), ("fidelity", "r2s_auroc")):
        value = values.get(key, math.nan)
        finite = math.isfinite(value) and math.isfinite(r2r) and r2r > 0
        out[name] = value / r2r if finite else math.nan
    return out


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
        k for c in cells for k in c.values if k.startswith(prefix) and not k.endswith(SUFFIXES)
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
    """results.csv columns: identity and headline first, then R→R, utility and fidelity, per
    class, CIs and variances, the rest."""
    keys = {k for c in cells for k in c.values}
    head = [*REQUIRED, *(k for k in (*REFERENCE, *DERIVED) if k in keys)]
    rest = keys - set(head)
    ci = sorted(k for k in rest if k.endswith(SUFFIXES))
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

# Metrics bounded by [0, 1]: their intervals are computed on the logit scale
# (tgap.metrics.seed_mean_interval) and cannot leave that range.
BOUNDED = re.compile(r"^(s2r|r2s|r2r)_(accuracy|auroc)(_.+)?$")
# Ratios of mean AUROCs over seeds (the thesis's FTER), name -> (numerator, denominator).
RATIOS = {
    "fter": ("s2r_auroc", "r2s_auroc"),
    "utility": ("s2r_auroc", "r2r_auroc"),
    "fidelity": ("r2s_auroc", "r2r_auroc"),
}


@dataclass
class Stat:
    """One metric of one (method, size) over its seeds.

    ``mean`` is the mean over seeds; for a ratio (FTER, utility, fidelity) the ratio of the mean
    AUROCs, as the thesis computes FTER, while ``values`` and ``sd`` stay those of the per-seed
    ratios.
    """

    mean: float
    sd: float  # sample sd of the per-seed values (ddof=1); NaN with one seed
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    # What the interval holds: "seeds+images" (seed spread and each cell's test-image variance),
    # "seeds" (the cells carry no test-image variance), "images" (one seed), "" (no interval).
    ci_kind: str = ""
    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": _finite_or_none(self.mean),
            "sd": _finite_or_none(self.sd),
            "n": self.n,
            "ci_low": _finite_or_none(self.ci_low),
            "ci_high": _finite_or_none(self.ci_high),
            "ci_kind": self.ci_kind,
            "seeds": self.seeds,
            "values": [_finite_or_none(v) for v in self.values],
        }


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _ci_kind(n: int, has_variance: bool) -> str:
    if not has_variance:
        return "seeds"
    return "seeds+images" if n > 1 else "images"


def summarise(
    values: list[float],
    variances: list[float] | None = None,
    confidence: float = 0.95,
    bounded: bool = False,
    seeds: list[int] | None = None,
    *,
    shared_test: bool = True,
    covariance: float | None = None,
    cell_interval: tuple[float, float] | None = None,
) -> Stat:
    """Mean ± sd over seeds, every seed's value, and for a metric ``bounded`` by [0, 1] its
    interval. Unbounded metrics (FID, counts) get no interval.

    Two or more seeds: ``tgap.metrics.seed_mean_interval`` (logit scale, so inside [0, 1]): the
    spread over seeds plus the cells' test-image ``variances`` (zero when the cells carry none:
    ci_kind "seeds"); ``shared_test`` when every seed scores the same test images (S→R, R→R on
    real-test), not when each seed has its own (R→S on its synthetic set); ``covariance``: how
    much the seeds' shared test errors covary, when measured (else all of it, conservative).
    One seed: the cell's
    own interval over test images (``cell_interval``), ci_kind "images".
    NaN values propagate: a seed whose metric is undefined makes the mean undefined, visibly.
    """
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    mean = float(arr.mean())
    sd = float(arr.std(ddof=1)) if n > 1 else math.nan
    stat = Stat(mean, sd, n, values=[float(v) for v in arr], seeds=list(seeds or []))
    if not bounded or not np.isfinite(arr).all():
        return stat
    if n == 1:
        if cell_interval is not None and all(map(math.isfinite, cell_interval)):
            stat.ci_low, stat.ci_high = cell_interval
            stat.ci_kind = "images"
        return stat
    has_variance = variances is not None and bool(np.isfinite(variances).all())
    var = np.asarray(variances if has_variance else np.zeros(n), dtype=float)
    _, stat.ci_low, stat.ci_high = seed_mean_interval(
        arr, var, confidence, shared_test=shared_test, covariance=covariance
    )
    stat.ci_kind = "seeds+images" if has_variance else "seeds"
    return stat


def image_variance(cell: Cell, key: str) -> float | None:
    """The test-image variance of one cell's metric: ``<key>_var`` (written by compute_cell,
    DeLong's with a floor) or, for an overall accuracy on ``<direction>_n`` test images, the
    binomial variance at the Agresti-Coull point (x + 2) / (n + 4), never 0 even at accuracy 1;
    None when the cell cannot say."""
    value = cell.values.get(key + VAR)
    if value is not None:
        return value
    match = re.fullmatch(r"(s2r|r2s|r2r)_accuracy", key)
    n = cell.values.get(f"{match[1]}_n") if match else None
    p = cell.values.get(key)
    if n is None or p is None or not n > 0 or not math.isfinite(p):
        return None
    centre = (p * n + 2) / (n + 4)
    return centre * (1 - centre) / (n + 4)


def _cell_interval(cell: Cell, key: str) -> tuple[float, float] | None:
    low, high = cell.values.get(key + CI_LOW), cell.values.get(key + CI_HIGH)
    return None if low is None or high is None else (low, high)


def _variances(members: list[Cell], key: str) -> list[float] | None:
    found = [image_variance(c, key) for c in members]
    return None if any(v is None for v in found) else found


def s2r_covariance(members: list[Cell]) -> float | None:
    """How much the seeds' S→R test errors covary (``seed_covariance`` on their real-test
    predictions); None with one seed or when a cell stores no predictions."""
    found = _aligned(members) if len(members) > 1 else None
    return None if found is None else seed_covariance(*found)


def _ratio_stat(
    members: list[Cell], name: str, confidence: float, s2r_cov: float | None
) -> Stat | None:
    """FTER, utility or fidelity of a group: the ratio of mean AUROCs over the seeds that have
    both, with every seed's own ratio. Only FTER gets an interval (``fter_interval``, log
    scale, ``s2r_cov`` the group's ``s2r_covariance``): utility's and fidelity's numerator and
    denominator share test images or a classifier, which that interval assumes they do not."""
    num, den = RATIOS[name]
    have = [c for c in members if num in c.values and den in c.values]
    if not have:
        return None
    a = np.array([c.values[num] for c in have], dtype=float)
    b = np.array([c.values[den] for c in have], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = np.where(b > 0, a / b, math.nan)
    stat = summarise(per_seed.tolist(), seeds=[c.seed for c in have])
    mean_b = float(b.mean())
    stat.mean = float(a.mean()) / mean_b if mean_b and np.isfinite(mean_b) else math.nan
    if name != "fter" or not math.isfinite(stat.mean):
        return stat
    var_a, var_b = _variances(have, num), _variances(have, den)
    has_variance = var_a is not None and var_b is not None
    if len(have) < 2 and not has_variance:
        return stat
    zeros = [0.0] * len(have)
    _, stat.ci_low, stat.ci_high = fter_interval(
        a, var_a or zeros, b, var_b or zeros, confidence, s2r_covariance=s2r_cov
    )
    stat.ci_kind = _ci_kind(len(have), has_variance)
    return stat


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


def _summary_keys(members: list[Cell]) -> list[str]:
    keys = {k for c in members for k in c.values}
    return sorted(k for k in keys if not k.endswith(SUFFIXES) and k not in RATIOS)


def aggregate(cells: list[Cell], confidence: float = 0.95) -> list[Group]:
    """Group cells by (method, size) in their sorted order and summarise every metric over seeds.

    A metric is summarised over the seeds that have it; ``Stat.n`` says how many.
    """
    groups: dict[tuple[str, int], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.method, c.size), []).append(c)
    out = []
    for (method, size), members in groups.items():
        # Every cell has s2r_auroc and r2s_auroc (CELL_REQUIRED): S→R's and FTER's seeds are
        # the group's, so the seeds' shared real-test error is measured once for both.
        s2r_cov = s2r_covariance(members)
        summary = {}
        for key in _summary_keys(members):
            have = [c for c in members if key in c.values]
            summary[key] = summarise(
                [c.values[key] for c in have],
                _variances(have, key),
                confidence,
                bounded=bool(BOUNDED.match(key)),
                seeds=[c.seed for c in have],
                shared_test=not key.startswith("r2s_"),
                covariance=s2r_cov if key == "s2r_auroc" else None,
                cell_interval=_cell_interval(have[0], key),
            )
        for name in RATIOS:
            stat = _ratio_stat(members, name, confidence, s2r_cov)
            if stat is not None:
                summary[name] = stat
        out.append(Group(method, size, members, summary))
    return out


def reference_by_size(cells: list[Cell], key: str, confidence: float = 0.95) -> dict[int, Stat]:
    """R→R per size over seeds: the real classifier depends on (size, seed) only, so each seed
    counts once (its value and test-image variance, averaged over the methods that carry the
    same number)."""
    per: dict[int, dict[int, list[Cell]]] = {}
    for c in cells:
        if key in c.values:
            per.setdefault(c.size, {}).setdefault(c.seed, []).append(c)
    out = {}
    for size, seeds in sorted(per.items()):
        ordered = sorted(seeds.items())
        values = [float(np.mean([c.values[key] for c in m])) for _, m in ordered]
        found = [_variances(m, key) for _, m in ordered]
        variances = None if any(v is None for v in found) else [float(np.mean(v)) for v in found]
        out[size] = summarise(
            values,
            variances,
            confidence,
            bool(BOUNDED.match(key)),
            [s for s, _ in ordered],
            cell_interval=_cell_interval(ordered[0][1][0], key),
        )
    return out


FLAT_NAMES = {
    "fter": "fter",
    "utility": "utility",
    "fidelity": "fidelity",
    "s2r_auroc": "auroc_s2r",
    "r2s_auroc": "auroc_r2s",
    "s2r_accuracy": "accuracy_s2r",
    "r2s_accuracy": "accuracy_r2s",
}


def flat_metrics(groups: list[Group], cells: list[Cell]) -> dict[str, float]:
    """Name -> value over seeds, e.g. ``fter.active.500`` (ratio of mean AUROCs), for the KFP
    run comparison.

    Non-finite values are left out (KFP Metrics and JSON cannot hold NaN); the report tables
    still show them.
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


# --------------------------------------------------------------------------- caveats

FLAG_BELOW, FLAG_ABOVE = "r2s_below_r2r", "r2s_above_r2r"
FLAG_TEXT = {
    FLAG_BELOW: "synthetic harder to classify than real (R→S below R→R's interval): "
    "FTER > 1 here does not mean the set trains better",
    FLAG_ABOVE: "synthetic easier to classify than real (R→S above R→R's interval): "
    "FTER understates how well the set trains",
}
FLAG_SIDE = {FLAG_BELOW: "below", FLAG_ABOVE: "above"}
FLAG_SHORT = {flag: f"⚑ R→S {side} R→R" for flag, side in FLAG_SIDE.items()}


def _outside(value: float, low: float | None, high: float | None) -> str:
    if low is None or high is None or not all(map(math.isfinite, (value, low, high))):
        return ""
    return FLAG_BELOW if value < low else FLAG_ABOVE if value > high else ""


def cell_fter_flag(cell: Cell) -> str:
    """``r2s_below_r2r`` / ``r2s_above_r2r`` when the cell's R→S AUROC is outside its R→R
    interval (the real-trained classifier labels the synthetic set worse / better than real
    images); '' inside it or when the cell has no R→R interval."""
    return _outside(
        cell.values.get("r2s_auroc", math.nan),
        cell.values.get("r2r_auroc" + CI_LOW),
        cell.values.get("r2r_auroc" + CI_HIGH),
    )


def group_fter_flag(group: Group, reference: dict[int, Stat]) -> str:
    """A method × size row's flag: its mean R→S AUROC against R→R's interval over seeds at that
    size, on either side ('' inside or without an interval)."""
    r2s, ref = group.stats.get("r2s_auroc"), reference.get(group.size)
    if r2s is None or ref is None:
        return ""
    return _outside(r2s.mean, ref.ci_low, ref.ci_high)


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


# --------------------------------------------------------------------------- comparisons

COMPARED = ("s2r_auroc", "r2s_auroc")
POWER = 0.8
NO_FINETUNE = "no-finetune"
R2S_NOT_PAIRED = (
    "R→S cannot be paired by image: each method is tested on its own synthetic set, so R→S "
    "compares seed by seed (the same real-trained classifier) with the two cells' test-image "
    "variances summed."
)


def is_control(method: str) -> bool:
    """A method that fine-tunes nothing (``no-finetune``, ``retrieval``, ``external:*``, or a
    name tgap's methods do not know, such as ``real``): shown apart, never ranked."""
    try:
        return not parse_method(method).fine_tunes
    except ValueError:
        return True


def _plan(
    groups: list[Group], reference_method: str, untrained: set[str]
) -> tuple[dict[tuple, dict[str, Any]], dict[tuple[str, int], tuple[str, str]]]:
    """The comparisons one report makes, and per (metric, size) the ranked top two.

    Each fine-tuned method against ``no-finetune`` on S→R (the effect the demo must detect) and
    against ``reference_method`` on S→R and R→S; the best fine-tuned method against its
    runner-up (★). A pair asked for twice is made once, with both reasons.
    """
    planned: dict[tuple, dict[str, Any]] = {}
    ranked_top: dict[tuple[str, int], tuple[str, str]] = {}

    def add(metric: str, size: int, a: str, b: str, why: str) -> None:
        row = planned.setdefault(
            (metric, size, frozenset((a, b))),
            {"metric": metric, "size": size, "method": a, "against": b, "why": []},
        )
        row["why"].append(why)

    for size in sorted({g.size for g in groups}):
        here = {g.method: g for g in groups if g.size == size}
        tuned = [m for m in here if not is_control(m)]
        for m in tuned:
            if NO_FINETUNE in here:
                add("s2r_auroc", size, m, NO_FINETUNE, f"vs {NO_FINETUNE}")
            if reference_method in here and m != reference_method:
                for metric in COMPARED:
                    add(metric, size, m, reference_method, f"vs {reference_method}")
        for metric in COMPARED:
            ranked = sorted(
                (m for m in tuned if m not in untrained and metric in here[m].stats
                 and math.isfinite(here[m].stats[metric].mean)),
                key=lambda m: -here[m].stats[metric].mean,
            )  # fmt: skip
            if len(ranked) >= 2:
                ranked_top[(metric, size)] = (ranked[0], ranked[1])
                add(metric, size, ranked[0], ranked[1], "best vs runner-up")
            elif ranked:
                ranked_top[(metric, size)] = (ranked[0], "")
    return planned, ranked_top


def _aligned(cells: list[Cell]) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Every cell's S→R scores in the first cell's image order, and the labels; None when a
    cell has no predictions. Cells scored on different images are a ReportError."""
    found = [c.s2r_predictions for c in cells]
    if any(p is None for p in found):
        return None
    first = found[0]
    out = []
    for p, cell in zip(found, cells, strict=True):
        where = f"cells {cells[0].dir} and {cell.dir}"
        if sorted(p.files) != sorted(first.files):
            raise ReportError(f"{where}: S→R predictions are not on the same real-test images")
        order = {image: i for i, image in enumerate(p.files)}
        index = np.array([order[image] for image in first.files])
        if not np.array_equal(p.y[index], first.y):
            raise ReportError(f"{where}: the same real-test images carry different labels")
        out.append(p.scores[index])
    return first.y, out


def _cells_by_seed(cells: list[Cell], method: str, size: int) -> dict[int, Cell]:
    return {c.seed: c for c in cells if c.method == method and c.size == size}


def _seed_differences(
    pairs: list[tuple[Cell, Cell]], metric: str
) -> tuple[list[float], list[float], str, float | None]:
    """Per shared seed, metric(a) − metric(b) and its test-image variance.

    S→R with every cell's real-test predictions: DeLong's paired difference on the same images
    (``paired_by`` "images"), and how much the seeds' differences share their test error
    (``seed_covariance``, measured instead of assumed). Otherwise (R→S, or predictions absent)
    the difference of the two cells' values with their variances summed (0 where a cell carries
    none), "seeds", covariance None (compare_over_seeds' default).
    """
    if metric == "s2r_auroc":
        found = _aligned([c for pair in pairs for c in pair])
        if found is not None:
            y, scores = found
            a, b = scores[0::2], scores[1::2]
            paired = [delong_paired(y, x, z) for x, z in zip(a, b, strict=True)]
            covariance = seed_covariance(y, a, b) if len(pairs) > 1 else None
            return [d for d, _ in paired], [v for _, v in paired], "images", covariance
    diffs = [x.values.get(metric, math.nan) - y.values.get(metric, math.nan) for x, y in pairs]
    variances = [(image_variance(x, metric) or 0.0) + (image_variance(y, metric) or 0.0)
                 for x, y in pairs]  # fmt: skip
    return diffs, variances, "seeds", None


def _compare(cells: list[Cell], row: dict[str, Any], confidence: float) -> dict[str, Any]:
    a = _cells_by_seed(cells, row["method"], row["size"])
    b = _cells_by_seed(cells, row["against"], row["size"])
    seeds = sorted(set(a) & set(b))
    out = {**row, "seeds": seeds, "paired_by": "", "seed_differences": []}
    out.update(diff=math.nan, ci_low=math.nan, ci_high=math.nan, p=math.nan, mdd=math.nan)
    if not seeds:
        return out
    pairs = [(a[s], b[s]) for s in seeds]
    diffs, variances, paired_by, covariance = _seed_differences(pairs, row["metric"])
    out.update(paired_by=paired_by, seed_differences=diffs)
    if np.isfinite(diffs).all() and np.isfinite(variances).all():
        # S→R's seeds share the real-test images (their test errors do not average out);
        # R→S's seeds each have their own synthetic sets.
        shared = row["metric"] == "s2r_auroc"
        result = compare_over_seeds(
            diffs, variances, confidence, POWER, shared_test=shared, covariance=covariance
        )
        out.update(diff=result.diff, ci_low=result.low, ci_high=result.high, p=result.p)
        out["mdd"] = result.mdd
    return out


def comparisons(
    groups: list[Group],
    cells: list[Cell],
    reference_method: str,
    untrained: set[str],
    confidence: float = 0.95,
) -> tuple[list[dict[str, Any]], dict[str, dict[int, list[str]]], dict[str, dict[int, str]]]:
    """Every comparison the report makes, Holm-adjusted together, and the ★ they allow.

    Returns ``(rows, best, not_separated)``: rows with ``diff`` (method − against), its
    interval, ``p``, ``p_holm`` (Holm over every row with a p-value), ``mdd`` (the smallest
    difference detectable with 80 % power at these seeds) and ``separated`` (p_holm below
    1 − confidence); per metric and size the ★ fine-tuned method, or why none was marked
    (its lead over the runner-up is not separated, or there is no runner-up). Controls and
    fine-tunes that did not train are never ranked; FTER is never ranked.
    """
    planned, ranked_top = _plan(groups, reference_method, untrained)
    rows = [_compare(cells, row, confidence) for row in planned.values()]
    tested = [r for r in rows if math.isfinite(r["p"])]
    for r, adjusted in zip(tested, holm([r["p"] for r in tested]) if tested else [], strict=True):
        r["p_holm"] = adjusted
    alpha = 1 - confidence
    for r in rows:
        r.setdefault("p_holm", math.nan)
        r["separated"] = math.isfinite(r["p_holm"]) and r["p_holm"] < alpha
    best: dict[str, dict[int, list[str]]] = {m: {} for m in COMPARED}
    why: dict[str, dict[int, str]] = {m: {} for m in COMPARED}
    by_pair = {(r["metric"], r["size"], frozenset((r["method"], r["against"]))): r for r in rows}
    for (metric, size), (top, second) in ranked_top.items():
        if not second:  # ★ says "ahead of the runner-up": with none, there is nothing to say
            why[metric][size] = (
                f"no ★: {top} is the only fine-tuned method ranked, no runner-up to separate "
                "it from"
            )
            continue
        r = by_pair[(metric, size, frozenset((top, second)))]
        lead = r["diff"] if r["method"] == top else -r["diff"]
        if r["separated"] and lead > 0:
            best[metric][size] = [top]
        else:
            p = (
                "no test"
                if not math.isfinite(r["p_holm"])
                else f"Holm-adjusted p = {r['p_holm']:.3g}"
            )
            why[metric][size] = (
                f"no fine-tuned method separated: {top} vs runner-up {second}, difference "
                f"{lead:+.3f} over {len(r['seeds'])} seed(s), {p}"
            )
    return rows, best, why


def detect_text(row: dict[str, Any]) -> str:
    """'could detect ≥ 0.052 with 80 % power at 3 seeds' (or why it cannot say)."""
    seeds = len(row["seeds"])
    if not math.isfinite(row["mdd"]):
        return f"no power estimate at {seeds} seed(s)"
    if row["mdd"] > 1:  # a difference of AUROCs is at most 1
        return (
            f"could detect no possible difference with {POWER:.0%} power at {seeds} seeds "
            f"(needs ≥ {row['mdd']:.3f})"
        )
    return f"could detect ≥ {row['mdd']:.3f} with {POWER:.0%} power at {seeds} seeds"


def settings_chosen_on(provenance: dict[str, Any]) -> str:
    """Which data chose the run's settings, in one line, from provenance's ``choices``
    (``{setting: {"chosen_on": text}}``, written by tgap.provenance); '' when it has none."""
    choices = provenance.get("choices")
    if not isinstance(choices, dict):
        return ""
    parts = []
    for setting, value in choices.items():
        said = value.get("chosen_on") if isinstance(value, dict) else value
        if isinstance(said, str) and said:
            parts.append(f"{setting}: {said}")
    return "; ".join(parts)


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
