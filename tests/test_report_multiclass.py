"""A 10-label report: tables fit the page in headless Chromium, ROC per class + macro, and the
real-data section (split in words, skipped files). Cells are made up; their numbers mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tgap import metrics
from tgap.config import Config, DataConfig, GridConfig
from tgap.report import build_report

try:
    from browser import check_report_in_chromium, chromium_missing_reason, problems
except ImportError:  # tests/ is a package
    from tests.browser import check_report_in_chromium, chromium_missing_reason, problems

LABELS = [f"finding number {k}" for k in range(10)]
METHODS = ["random", "spectral-pixel", "external:mine"]
INGEST = {
    "split": "by image, stratified by label: no patient IDs",
    "leakage_warning": "Patients are not known, so the split is by image and leakage is possible.",
    "patients_known": False,
    "shared_patients_total": None,
    "skipped_corrupt": 2,
    "corrupt_files": [
        {"file": "cat/broken.png", "reason": "not a readable image (truncated)"},
        {"file": "dog/x.jpg", "reason": "not a readable image (cannot identify)"},
    ],
}


def write_cell(root: Path, method: str, seed: int) -> Path:
    rng = np.random.default_rng(seed + 7 * len(method))
    d = root / f"{method.replace(':', '_')}-{seed}"
    (d / "assets").mkdir(parents=True)
    cell = {"method": method, "size": 50, "seed": seed}
    for direction in ("s2r", "r2s", "r2r"):
        y = rng.integers(0, 10, 300)
        scores = rng.dirichlet(np.ones(10), 300)
        scores[np.arange(300), y] += 0.3
        scores /= scores.sum(1, keepdims=True)
        result = metrics.classification_metrics(y, scores, LABELS, bootstrap_resamples=20)
        cell[f"{direction}_accuracy"], cell[f"{direction}_auroc"] = (
            result["accuracy"],
            result["auroc"],
        )
        for label in LABELS:
            cell[f"{direction}_accuracy_{label}"] = result[f"accuracy_{label}"]
            cell[f"{direction}_auroc_{label}"] = result[f"auroc_{label}"]
        (d / "assets" / f"roc_{direction}.json").write_text(json.dumps(result["roc"]))
    cell["fter"] = cell["s2r_auroc"] / cell["r2s_auroc"]
    (d / "cell.json").write_text(json.dumps(cell))
    return d


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cells")
    dirs = [write_cell(root, m, s) for m in METHODS for s in (0, 1)]
    config = Config(
        name="ten labels",
        data=DataConfig(labels=LABELS, label_policy={}),
        grid=GridConfig(methods=METHODS, sizes=[50], seeds=[0, 1]),
    )
    out = tmp_path_factory.mktemp("report")
    build_report(dirs, config, {"ingest": INGEST}, out)
    return out


def test_multiclass_roc_json_has_one_vs_rest_curves_and_a_macro_average() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    scores = rng.dirichlet(np.ones(3), 60)
    roc = metrics.roc_points(y, scores, ["a", "b", "c"])
    assert set(roc) == {"a", "b", "c", "macro"}
    from sklearn.metrics import auc

    areas = [auc(roc[k]["fpr"], roc[k]["tpr"]) for k in "abc"]
    assert areas == pytest.approx([metrics.class_auroc(y, scores, c) for c in range(3)])
    # The macro curve's area is close to the macro AUROC (it averages the curves, not the areas).
    assert auc(roc["macro"]["fpr"], roc["macro"]["tpr"]) == pytest.approx(
        metrics.auroc(y, scores), abs=0.05
    )


def test_ten_label_report_has_per_class_tables_roc_and_the_data_section(report) -> None:
    html = (report / "report.html").read_text()
    assert "No ROC curves" not in html and "ROC curves per class" in html
    assert 'id="table-s2r-per-class"' in html and 'id="table-r2s-per-class"' in html
    assert "leakage is possible" in html and "patients shared" not in html.lower()
    assert "cat/broken.png" in html and "truncated" in html
    assert "leakage is possible" in (report / "summary.md").read_text()


MISSING = chromium_missing_reason()


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_ten_label_tables_fit_the_page_in_chromium(report, tmp_path) -> None:
    result = check_report_in_chromium(report / "report.html", tmp_path / "shot.png")
    assert problems(result) == []
    layout = result["page"]["layout"]
    assert layout["page"] <= layout["viewport"], layout
    for table_id in ("table-s2r", "table-r2s", "table-s2r-per-class", "table-r2s-per-class"):
        box = layout["tables"][table_id]
        assert box["width"] <= box["room"] and box["right"] <= layout["viewport"], (table_id, box)
