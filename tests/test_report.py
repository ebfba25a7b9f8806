"""The report stage: structure, aggregation, best-method marking, files and size.

ALL METRICS AND ASSETS IN THIS FILE ARE MADE UP. The numbers below are chosen so that means,
sds and the best method per size have known answers; they say nothing about any real method.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from made_up import (
    AUROC_VAR,
    LABELS,
    N_TEST,
    PROVENANCE,
    R2S,
    SEED_SD,
    SEEDS,
    THESIS_METHODS,
    THESIS_SIZES,
    grid_config,
    made_up_s2r,
    noise_png,
    write_cell,
)

from tgap import metrics
from tgap.artifacts import (
    RocCurve,
)
from tgap.config import ClassifierConfig
from tgap.report import ReportError, build_report
from tgap.report.plots import pick_curve
from tgap.report.tables import detect_text, is_control, summarise

SIGMOID = ClassifierConfig(head="sigmoid")


class TableParser(HTMLParser):
    """Collects ``<table id=...>`` rows as lists of (tr attrs, [(td attrs, text)])."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list] = {}
        self.stack: list[str | None] = []
        self.row = None
        self.cell = None
        self.ci = None
        self.imgs: list[dict] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self.stack.append(a.get("id"))
            if a.get("id"):
                self.tables[a["id"]] = []
        elif tag == "tr" and self.stack and self.stack[-1]:
            self.row = (a, [])
            self.tables[self.stack[-1]].append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = [a, "", {}]  # attrs, text, {metric: text of its 95% CI span}
            self.row[1].append(self.cell)
        elif tag == "span" and self.cell is not None and "data-ci" in a:
            self.ci = a["data-ci"]
            self.cell[2][self.ci] = ""

    def handle_endtag(self, tag):
        if tag == "table" and self.stack:
            self.stack.pop()
            self.row = None
        elif tag in ("td", "th"):
            self.cell = None
        elif tag == "span":
            self.ci = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data
            if self.ci:
                self.cell[2][self.ci] += data


def parse(html_text: str) -> TableParser:
    p = TableParser()
    p.feed(html_text)
    return p


@pytest.fixture(scope="module")
def thesis_report(tmp_path_factory):
    """The thesis grid, 7 methods × 3 sizes × 5 seeds = 105 made-up cells, with big noise images
    so the size budget is exercised."""
    root = tmp_path_factory.mktemp("cells")
    dirs = [
        write_cell(root, m, n, i, image_side=400)
        for m in THESIS_METHODS
        for n in THESIS_SIZES
        for i in range(len(SEEDS))
    ]
    out = tmp_path_factory.mktemp("report")
    # Cell folders arrive in any order (KFP collects them by task id): shuffle them.
    order = np.random.default_rng(0).permutation(len(dirs))
    # The thesis preset's classifier head: each label's AUROC on its own output.
    config = replace(grid_config(THESIS_METHODS, THESIS_SIZES, SEEDS), classifier=SIGMOID)
    result = build_report([dirs[i] for i in order], config, PROVENANCE, out)
    return result, out


def test_thesis_grid_writes_every_file_and_returns_flat_metrics(thesis_report):
    result, out = thesis_report
    for name in ("report.html", "summary.md", "results.csv", "results.json", "metrics.json"):
        assert Path(result[name]) == out / name and (out / name).stat().st_size > 0
    assert result["n_cells"] == 105
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(result["metrics"])


def test_results_csv_has_one_row_per_cell_headline_columns_first(thesis_report):
    _, out = thesis_report
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
        f.seek(0)
        header = next(csv.reader(f))
    assert len(rows) == 105
    assert header[:10] == [
        "method", "size", "seed", "s2r_accuracy", "s2r_auroc", "r2s_accuracy", "r2s_auroc",
        "fter", "r2r_accuracy", "r2r_auroc",
    ]  # fmt: skip
    for col in (
        "s2r_auroc_No Finding",
        "r2s_accuracy_Unhealthy",
        "fter_ci_low",
        "fid",
        "near_copy_fraction",
    ):
        assert col in header
    # Per class before CIs before the rest.
    assert header.index("s2r_auroc_Unhealthy") < header.index("fter_ci_high") < header.index("fid")
    # Sorted by grid method order, then size, then seed, despite the shuffled input.
    assert [(r["method"], int(r["size"]), int(r["seed"])) for r in rows] == [
        (m, n, s) for m in THESIS_METHODS for n in THESIS_SIZES for s in SEEDS
    ]
    row = next(
        r for r in rows if r["method"] == "active" and r["size"] == "1000" and r["seed"] == "3"
    )
    assert float(row["s2r_auroc"]) == made_up_s2r("active", 1000, 3)
    assert float(row["fter"]) == made_up_s2r("active", 1000, 3) / R2S
    assert float(row["fid"]) == 43.0


def test_aggregation_mean_sd_and_intervals_have_known_answers(thesis_report):
    _, out = thesis_report
    results = json.loads((out / "results.json").read_text())
    agg = {(a["method"], a["size"]): a for a in results["aggregate"]}
    assert len(agg) == 21
    s = agg[("curated", 1000)]["metrics"]["s2r_auroc"]
    values = [made_up_s2r("curated", 1000, i) for i in range(5)]
    assert s["mean"] == pytest.approx(0.71 + 0.01)
    assert s["sd"] == pytest.approx(SEED_SD)
    assert s["n"] == 5 and agg[("curated", 1000)]["seeds"] == SEEDS
    # Every seed's value, in seed order.
    assert s["seeds"] == SEEDS and s["values"] == pytest.approx(values)
    # The interval over seeds holds the seed spread and the cells' test-image variance, on
    # the logit scale; S→R's real-test is shared by every seed.
    assert s["ci_kind"] == "seeds+images"
    _, low, high = metrics.seed_mean_interval(values, [AUROC_VAR] * 5, 0.95, shared_test=True)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((low, high))
    # R→S: each seed has its own synthetic test set.
    r = agg[("curated", 1000)]["metrics"]["r2s_auroc"]
    _, low, high = metrics.seed_mean_interval([R2S] * 5, [AUROC_VAR] * 5, shared_test=False)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
    # Accuracy: the binomial variance at the Agresti-Coull point on the cells' N_TEST images.
    a = agg[("curated", 1000)]["metrics"]["s2r_accuracy"]
    accuracies = [v - 0.1 for v in values]
    variances = [(p * N_TEST + 2) / (N_TEST + 4) * (1 - (p * N_TEST + 2) / (N_TEST + 4))
                 / (N_TEST + 4) for p in accuracies]  # fmt: skip
    _, low, high = metrics.seed_mean_interval(accuracies, variances, shared_test=True)
    assert a["ci_kind"] == "seeds+images" and (a["ci_low"], a["ci_high"]) == pytest.approx(
        (low, high)
    )
    # FTER: the ratio of the mean AUROCs, its interval from fter_interval.
    f = agg[("retrieval", 10000)]["metrics"]["fter"]
    s2r = [made_up_s2r("retrieval", 10000, i) for i in range(5)]
    assert f["mean"] == pytest.approx((0.78 + 0.02 + 0.05) / R2S)
    assert f["values"] == pytest.approx([v / R2S for v in s2r])
    _, low, high = metrics.fter_interval(s2r, [AUROC_VAR] * 5, [R2S] * 5, [AUROC_VAR] * 5)
    assert (f["ci_low"], f["ci_high"]) == pytest.approx((low, high))
    # R→R: one value per (size, seed), so the same mean whatever the number of methods.
    ref = results["reference"]["r2r_auroc"]["10000"]
    assert ref["mean"] == pytest.approx(0.97) and ref["n"] == 5
    # Utility and fidelity: ratios of mean AUROCs with R→R, per cell in results.csv too.
    u = agg[("retrieval", 10000)]["metrics"]["utility"]
    assert u["mean"] == pytest.approx(0.85 / 0.97) and u["ci_kind"] == ""
    fid = agg[("retrieval", 10000)]["metrics"]["fidelity"]
    assert fid["mean"] == pytest.approx(R2S / 0.97)


def test_summarise_known_answers():
    s = summarise([0.5, 0.6, 0.7])
    assert (s.mean, s.sd, s.n, s.ci_kind) == (pytest.approx(0.6), pytest.approx(0.1), 3, "")
    assert s.values == pytest.approx([0.5, 0.6, 0.7])  # unbounded by default: no interval
    bounded = summarise([0.5, 0.6, 0.7], bounded=True)  # no test-image variance: seeds only
    assert bounded.ci_kind == "seeds"
    _, low, high = metrics.seed_mean_interval([0.5, 0.6, 0.7], [0, 0, 0])
    assert (bounded.ci_low, bounded.ci_high) == pytest.approx((low, high))
    one = summarise([0.8], bounded=True)
    assert one.mean == 0.8 and math.isnan(one.sd) and one.ci_kind == ""
    boot = summarise([0.8], bounded=True, cell_interval=(0.7, 0.9))  # one seed: test images only
    assert (boot.ci_low, boot.ci_high, boot.ci_kind) == (0.7, 0.9, "images")
    assert math.isnan(summarise([0.5, float("nan")]).mean)  # an undefined seed stays visible


def _set(d: Path, **values) -> None:
    data = json.loads((d / "cell.json").read_text())
    data.update(values)
    (d / "cell.json").write_text(json.dumps(data))


def test_fter_is_the_ratio_of_mean_aurocs_and_csv_keeps_each_seed(tmp_path):
    """Made up: S→R 0.8 on every seed, R→S 0.6 / 0.9 / 0.99. The mean of per-seed ratios is
    0.990, the thesis's ratio of means 0.8 / 0.83 = 0.964."""
    r2s = [0.6, 0.9, 0.99]
    dirs = [write_cell(tmp_path / "cells", "random", 500, i, assets=False) for i in range(3)]
    for d, value in zip(dirs, r2s, strict=True):
        _set(d, s2r_auroc=0.8, r2s_auroc=value, fter=0.8 / value)
    result = build_report(dirs, grid_config(["random"], [500], [0, 1, 2]), {}, tmp_path / "out")
    assert result["metrics"]["fter.random.500"] == pytest.approx(0.8 / np.mean(r2s))
    results = json.loads(Path(result["results.json"]).read_text())
    fter = results["aggregate"][0]["metrics"]["fter"]
    assert fter["mean"] == pytest.approx(0.8 / np.mean(r2s))
    assert fter["values"] == pytest.approx([0.8 / v for v in r2s])
    assert fter["ci_low"] < fter["mean"] < fter["ci_high"]
    with open(result["results.csv"], newline="") as f:
        assert [float(r["fter"]) for r in csv.DictReader(f)] == pytest.approx(
            [0.8 / v for v in r2s]
        )


def test_no_interval_leaves_zero_one_near_one(tmp_path):
    """Made up: values near 1 with a skewed spread (R→S 0.956 / 0.673 / 0.997, S→R 1.0 on
    every seed): every interval the report prints stays inside [0, 1] and holds its mean."""
    dirs = [write_cell(tmp_path / "cells", "random", 500, i, assets=False) for i in range(3)]
    for d, r2s, acc in zip(dirs, [0.956, 0.673, 0.997], [1.0, 0.99, 1.0], strict=True):
        _set(d, s2r_auroc=1.0, r2s_auroc=r2s, fter=1.0 / r2s, s2r_accuracy=acc,
             r2r_auroc=0.999, r2s_accuracy=acc)  # fmt: skip
    result = build_report(dirs, grid_config(["random"], [500], [0, 1, 2]), {}, tmp_path / "out")
    results = json.loads(Path(result["results.json"]).read_text())
    stats = [*results["aggregate"][0]["metrics"].items()]
    stats += [(k, v["500"]) for k, v in results["reference"].items()]
    bounded = [(k, s) for k, s in stats if s["ci_low"] is not None and k not in ("fter",)]
    assert {k for k, _ in bounded} >= {"s2r_auroc", "r2s_auroc", "s2r_accuracy", "r2r_auroc"}
    for key, s in bounded:
        assert 0 <= s["ci_low"] <= s["mean"] + 1e-12 and s["mean"] <= s["ci_high"] + 1e-12, key
        assert s["ci_high"] <= 1, key
    # S→R 1.0 on every seed: the interval does not collapse to the point.
    s2r = results["aggregate"][0]["metrics"]["s2r_auroc"]
    assert s2r["ci_low"] < 1.0 and s2r["ci_high"] == 1.0
    page = parse(Path(result["report.html"]).read_text())
    shown = [
        (metric, text)
        for table in ("table-s2r", "table-r2s")
        for _, tds in page.tables[table]
        for _, _, spans in tds
        for metric, text in spans.items()
        if metric != "fter"
    ]
    assert len(shown) == 8  # accuracy and AUROC of the method and of R→R, in both tables
    for metric, text in shown:
        low, high = map(float, re.fullmatch(r"\[([0-9.]+), ([0-9.]+)\]", text).groups())
        assert 0 <= low <= high <= 1, (metric, text)


def test_flat_metric_names_line_up_cell_by_cell(thesis_report):
    result, _ = thesis_report
    m = result["metrics"]
    expected = {
        f"{name}.{meth}.{n}"
        for name in (
            "fter",
            "utility",
            "fidelity",
            "auroc_s2r",
            "auroc_r2s",
            "accuracy_s2r",
            "accuracy_r2s",
        )
        for meth in THESIS_METHODS
        for n in THESIS_SIZES
    } | {f"{name}.{n}" for name in ("auroc_r2r", "accuracy_r2r") for n in THESIS_SIZES}
    assert set(m) == expected
    assert m["fter.active.500"] == pytest.approx(0.80 / R2S)
    assert m["auroc_s2r.random.1000"] == pytest.approx(0.71)
    assert m["auroc_r2s.spectral-clip.10000"] == pytest.approx(R2S)
    assert m["utility.active.500"] == pytest.approx(0.80 / 0.95)
    assert m["fidelity.active.500"] == pytest.approx(R2S / 0.95)
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())


def test_html_tables_aggregate_over_seeds_and_mark_best_method(thesis_report):
    _, out = thesis_report
    page = parse((out / "report.html").read_text())
    s2r = page.tables["table-s2r"]
    body = [r for r in s2r if r[0].get("data-method")]
    methods_rows = [r for r in body if r[0]["data-method"] != "R→R"]
    assert len(methods_rows) == 21 and len(body) == 24  # + one R→R row per size
    best = {
        (r[0]["data-method"], int(r[0]["data-size"]))
        for r in methods_rows
        if "best" in r[0].get("class", "")
    }
    # Made up: retrieval has the highest S→R at 10000, but a control is never ranked; the
    # fine-tuned active leads every size by a constant 0.06 over spectral-clip: separated.
    assert best == {("active", 500), ("active", 1000), ("active", 10000)}
    controls = {r[0]["data-method"] for r in methods_rows if "control" in r[0].get("class", "")}
    assert controls == {"no-finetune", "retrieval"}
    # Per size: the fine-tuned methods, then the controls' block, then R→R.
    order = [r[0].get("data-method") or r[1][0][1] for r in s2r[1:9]]
    assert order[5].startswith("controls at size 500") and order[6:] == ["no-finetune", "retrieval"]
    row = next(
        r
        for r in methods_rows
        if r[0]["data-method"] == "spectral-clip" and r[0]["data-size"] == "500"
    )
    auroc = next(c for c in row[1] if c[0].get("data-metric") == "s2r_auroc")
    assert float(auroc[0]["data-mean"]) == pytest.approx(0.74)
    values = [made_up_s2r("spectral-clip", 500, i) for i in range(5)]
    _, low, high = metrics.seed_mean_interval(values, [AUROC_VAR] * 5)
    assert auroc[1] == f"0.740 ± {SEED_SD:.3f}[{low:.3f}, {high:.3f}]"
    assert auroc[2] == {"s2r_auroc": f"[{low:.3f}, {high:.3f}]"}
    fter = next(c for c in row[1] if c[0].get("data-metric") == "fter")
    _, f_low, f_high = metrics.fter_interval(values, [AUROC_VAR] * 5, [R2S] * 5, [AUROC_VAR] * 5)
    assert fter[2]["fter"] == f"[{f_low:.3f}, {f_high:.3f}]"
    # R→S 0.85 is below R→R's interval (0.95 ± 0.020): every FTER carries the caveat flag.
    assert fter[1].endswith("⚑ R→S below R→R")
    utility = next(c for c in row[1] if c[0].get("data-metric") == "utility")
    assert utility[1] == f"{0.74 / 0.95:.3f}"
    ref = next(r for r in body if r[0]["data-method"] == "R→R" and r[0]["data-size"] == "500")
    ref_auroc = next(c for c in ref[1] if c[0].get("data-metric") == "r2r_auroc")
    r2r = [0.95 + o for o in (-0.02, -0.01, 0.0, 0.01, 0.02)]
    _, low, high = metrics.seed_mean_interval(r2r, [AUROC_VAR] * 5)
    assert ref_auroc[2] == {"r2r_auroc": f"[{low:.3f}, {high:.3f}]"}
    headers = [c[1] for c in s2r[0][1]]
    assert "accuracy No Finding" in headers and "AUROC Unhealthy" in headers
    assert "FTER(95% CI)" in headers and "utilityS→R / R→R" in headers
    best_cell = next(
        c for r in methods_rows if r[0]["data-method"] == "active" and r[0]["data-size"] == "10000"
        for c in r[1] if c[0].get("data-metric") == "s2r_auroc"
    )  # fmt: skip
    assert "★" in best_cell[1] and "metric-best" in best_cell[0]["class"]
    # No ★ anywhere near FTER or a control.
    assert not any("★" in c[1] for r in methods_rows for c in r[1]
                   if c[0].get("data-metric") == "fter" or is_control(r[0]["data-method"]))  # fmt: skip
    # The R→S table ranks by R→S AUROC: every method ties at the made-up 0.85, so no method
    # is separated from its runner-up and none is marked.
    r2s_best = [r for r in page.tables["table-r2s"] if "best" in r[0].get("class", "")]
    assert r2s_best == []
    assert "size 500: no fine-tuned method separated:" in (out / "report.html").read_text()
    assert len([r for r in page.tables["cells"] if r[0] == {}]) == 106  # header + 105 cells
    # Every seed's value, folded: a column per seed.
    seeds = page.tables["table-seeds"]
    row = next(r for r in seeds if r[0].get("data-method") == "curated"
               and r[0]["data-size"] == "1000" and r[0]["data-metric"] == "s2r_auroc")  # fmt: skip
    assert [c[1] for c in row[1][3:]] == [
        f"{made_up_s2r('curated', 1000, i):.3f}" for i in range(5)
    ]


def test_html_is_self_contained_and_under_10_mb(thesis_report):
    _, out = thesis_report
    text = (out / "report.html").read_text()
    assert len(text.encode()) < 10_000_000
    page = parse(text)
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text, re.I)
    assert not any(tag in ("script", "iframe", "object", "embed") for tag, _ in page.tags)
    assert all(a["href"].startswith("data:") for tag, a in page.tags if tag == "link")
    assert "url(" not in text and "@import" not in text
    assert len(page.imgs) >= 20
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.imgs)
    for section in ("FTER vs tuning-set size", "ROC curves", "Supplementation", "Active data selection",
                    "Cluster sizes", "Sample grids", "Closest synthetic", "Provenance"):  # fmt: skip
        assert section in text
    assert "not fine-tuned: method no-finetune uses the base model" in text
    grids = page.tables["sample-grids"]
    assert [c[1] for c in grids[0][1]] == ["method", "size 500", "size 1000", "size 10000"]
    assert [r[1][0][1] for r in grids[2:]] == THESIS_METHODS  # a row per method
    assert len(page.tables["real-grids"][1][1]) == len(LABELS)


def test_provenance_states_randomly_initialised_models(thesis_report):
    _, out = thesis_report
    text = (out / "report.html").read_text()
    assert (
        '<div class="warn">models.diffusion was randomly initialised, not pretrained (source: tiny-pixel).</div>'
        in text
    )
    assert "models.embedder: pretrained weights from /weights/clip." in text
    assert "made-up://nowhere" in text and "stage_seconds" in text
    # Per-cell times differ by seed: shown as a total over the 105 cells.
    assert "total 1260, range 10 – 14" in text  # sum over 21 groups of (10+11+12+13+14) = 21 * 60
    summary = (out / "summary.md").read_text()
    assert "**models.diffusion was randomly initialised" in summary


def test_summary_markdown_has_one_row_per_method_and_size(thesis_report):
    _, out = thesis_report
    summary = (out / "summary.md").read_text()
    main = summary.split("Controls (not fine-tuned")[0]
    rows = [
        line
        for line in main.splitlines()
        if line.startswith("| ") and not line.startswith("| method")
    ]
    assert len([r for r in rows if "R→R" not in r]) == 15  # 5 fine-tuned methods × 3 sizes
    active = next(r for r in rows if r.startswith("| active | 500 |"))
    values = [made_up_s2r("active", 500, i) for i in range(5)]
    _, low, high = metrics.seed_mean_interval(values, [AUROC_VAR] * 5)
    assert f"**0.800 ± {SEED_SD:.3f} [{low:.3f}, {high:.3f}]** ★" in active
    controls = summary.split("Controls (not fine-tuned")[1].split("\n\n")[1]
    assert len([r for r in controls.splitlines() if r.startswith("| retrieval")]) == 3
    assert "★" not in controls
    # Every seed's value.
    seeds = next(r for r in summary.splitlines() if r.startswith("| active | 500 | 0."))
    assert " / ".join(f"{v:.3f}" for v in values) in seeds
    assert "105 cells: 7 methods × 3 sizes × 5 seeds" in summary
    assert "utility = S→R / R→R and fidelity = R→S / R→R" in summary  # the columns say what


def test_missing_required_key_is_an_error_naming_the_cell(tmp_path):
    d = write_cell(tmp_path / "cells", "random", 500, 0, assets=False)
    data = json.loads((d / "cell.json").read_text())
    del data["r2s_auroc"]
    (d / "cell.json").write_text(json.dumps(data))
    with pytest.raises(
        ReportError, match=r"random-500-0/cell.json: missing required key\(s\) r2s_auroc"
    ):
        build_report([d], grid_config(["random"], [500], [0]), {}, tmp_path / "out")
    data["r2s_auroc"] = "high"
    (d / "cell.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="r2s_auroc must be a number, got 'high'"):
        build_report([d], grid_config(["random"], [500], [0]), {}, tmp_path / "out")


def test_duplicate_grid_rows_are_rejected(tmp_path):
    a = write_cell(tmp_path / "a", "random", 500, 0, assets=False)
    b = write_cell(tmp_path / "b", "random", 500, 0, assets=False)
    with pytest.raises(ReportError, match="same grid row"):
        build_report([a, b], grid_config(["random"], [500], [0]), {}, tmp_path / "out")


def test_minimal_cells_build_and_absent_sections_say_so(tmp_path):
    """Only the required keys, no assets, one NaN FTER: the report builds and says what is missing."""
    dirs = []
    for i, (method, r2s) in enumerate([("random", 0.7 / 0.9), ("active", None)]):
        d = tmp_path / "cells" / str(i)
        d.mkdir(parents=True)
        fter = None if r2s is None else 0.7 / r2s
        cell = {"method": method, "size": 20, "seed": 0, "s2r_accuracy": 0.6, "s2r_auroc": 0.7,
                "r2s_accuracy": 0.7, "r2s_auroc": r2s, "fter": fter}  # fmt: skip
        (d / "cell.json").write_text(json.dumps(cell))
        dirs.append(d)
    result = build_report(dirs, grid_config(["random", "active"], [20], [0]), {}, tmp_path / "out")
    text = Path(result["report.html"]).read_text()
    for message in ("No ROC curves", "No sample grids", "No supplementation curves", "No active-selection log",
                    "No cluster sizes", "No closest-pair images", "No distribution metrics", "No memorisation metrics"):  # fmt: skip
        assert message in text
    assert result["metrics"]["fter.random.20"] == pytest.approx(0.9)
    assert "fter.active.20" not in result["metrics"]  # NaN is not a KFP metric
    results = json.loads(Path(result["results.json"]).read_text())  # strict JSON: NaN -> null
    assert results["cells"][1]["fter"] is None and results["cells"][1]["method"] == "active"
    with open(result["results.csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["random", "active"] and rows[1]["fter"] == "nan"
    assert "r2r_auroc" not in rows[0]


def test_a_two_label_softmax_head_shows_one_auroc_with_a_note(tmp_path):
    d = tmp_path / "cells" / "0"
    d.mkdir(parents=True)
    cell = {"method": "random", "size": 20, "seed": 0, "s2r_accuracy": 0.6, "s2r_auroc": 0.7,
            "r2s_accuracy": 0.7, "r2s_auroc": 0.8, "fter": 0.875,
            "s2r_auroc_No Finding": 0.7, "s2r_auroc_Unhealthy": 0.7}  # fmt: skip
    (d / "cell.json").write_text(json.dumps(cell))
    config = grid_config(["random"], [20], [0])
    headers = {}
    for head in ("softmax", "sigmoid"):
        config = replace(config, classifier=ClassifierConfig(head=head))
        result = build_report([d], config, {}, tmp_path / head)
        text = Path(result["report.html"]).read_text()
        headers[head] = [c[1] for c in parse(text).tables["table-s2r"][0][1]]
        assert ("identical for both labels with a softmax head" in text) == (head == "softmax")
    assert "AUROC Unhealthy" not in headers["softmax"]
    assert {"AUROC No Finding", "AUROC Unhealthy"} <= set(headers["sigmoid"])


def test_roc_asset_is_the_curve_compute_fter_wrote_and_a_malformed_one_is_named(tmp_path):
    fpr, tpr = pick_curve(RocCurve([0, 0.5, 1], [0, 0.8, 1], [2, 0.5, 0]))
    assert tpr.tolist() == [0, 0.8, 1]
    assert pick_curve(RocCurve()) is None  # undefined AUROC: nothing to draw
    assert pick_curve(None) is None
    d = write_cell(tmp_path / "cells", "random", 500, 0)
    (d / "assets" / "roc_s2r.json").write_text(json.dumps({"fpr": [0, 1], "tpr": [0]}))
    with pytest.raises(ReportError, match=r"roc_s2r.json: fpr and tpr differ in length"):
        build_report([d], grid_config(["random"], [500], [0]), {}, tmp_path / "out")


def test_cells_in_the_shapes_the_stages_write_are_read(tmp_path):
    """Made-up cells shaped like compute_cell's output: loss per step with None for skipped
    batches, active records + active_summary, selection.json per label, supplementation points,
    slugged grid names, null FTER with its note, provenance flags that are None or False."""
    dirs = []
    for seed in (0, 1):
        d = tmp_path / "cells" / f"active-{seed}"
        a = d / "assets"
        a.mkdir(parents=True)
        log = {
            "method": "active",
            "fine_tuned": True,
            "loss": [0.9, None, 0.5, 0.4],
            "active": [
                {"batch": i, "update": i - (i > 1), "epoch": i // 2, "similarity": 0.1 * i, "skipped": i == 1}
                for i in range(4)
            ],
            "active_summary": {"skip_fraction_per_epoch": {"0": 0.5, "1": 0.0}, "skipped": 1, "evaluated": 4,
                               "similarity_min": 0.0, "similarity_max": 0.3, "warnings": ["epoch 1: skipped no batch"]},
            "active_config": {"threshold": 0.25},
        }  # fmt: skip
        (a / "training_log.json").write_text(json.dumps(log))
        selection = {
            "method": "active", "selection": "spectral", "embedder": "pixel", "size": 20, "seed": seed,
            "labels": {
                lab: {"pool_count": 10, "picked": 6, "unique": 4, "duplicates": 2,
                      "clusters": [{"cluster": 0, "size": 9, "share": 3, "unique": 3, "duplicates": 0},
                                   {"cluster": 1, "size": 1, "share": 3, "unique": 1, "duplicates": 2}]}
                for lab in LABELS
            },
        }  # fmt: skip
        (a / "selection.json").write_text(json.dumps(selection))
        noise_png(a / "grid_no-finding.png", 32, seed)
        (a / "tgap_model.json").write_text("{}")
        cell = {
            "method": "active", "size": 20, "seed": seed, "s2r_accuracy": 0.5, "s2r_auroc": None,
            "r2s_accuracy": 0.7, "r2s_auroc": 0.8, "fter": None, "fter_ci_low": None,
            "notes": {"fter": "undefined: S→R or R→S AUROC is undefined or zero"},
            "supplementation": {"ratios": [0, 1], "auroc": [0.8, None], "accuracy": [0.7, None],
                                "real_per_label": {"No Finding": 10, "Unhealthy": 10}},
            "memorisation_space": "pixels at 32x32",
            "near_copy_fraction": 0.0,
            "assets": {p.name: f"assets/{p.name}" for p in a.iterdir()},
            "provenance": {"classifier": {"pretrained": None, "arch": "small-cnn"}},
        }  # fmt: skip
        (d / "cell.json").write_text(json.dumps(cell))
        dirs.append(d)
    provenance = {"models": {"tgap_model": {"pretrained": False, "source": "built from config"}}}
    result = build_report(dirs, grid_config(["active"], [20], [0, 1]), provenance, tmp_path / "out")
    text = Path(result["report.html"]).read_text()
    for absent in ("No fine-tuning loss", "No active-selection log", "No cluster sizes",
                   "No supplementation curves", "No sample grids"):  # fmt: skip
        assert absent not in text
    page = parse(text)
    grids = page.tables["sample-grids"]
    assert [c[1] for c in grids[0][1]] == ["method", "size 20"]
    assert [c[1] for c in grids[1][1]] == LABELS  # no extra "no-finding" column
    assert sum(1 for img in page.imgs if img["alt"].startswith("active No Finding")) == 1
    assert "fter: undefined: S→R or R→S AUROC is undefined or zero" in text
    assert "active selection: epoch 1: skipped no batch" in text
    assert (
        "models.tgap_model was randomly initialised, not pretrained (source: built from config)."
        in text
    )
    assert "classifier was randomly initialised, not pretrained." in text
    assert "pixels at 32x32" in text
    assert "fter.active.20" not in result["metrics"] and "auroc_r2s.active.20" in result["metrics"]


def test_other_numbers_are_formatted_for_their_scale():
    from tgap.report.html import fmt_auto

    assert fmt_auto(summarise([12.0, 12.0])) == "12 ± 0"  # counts
    assert fmt_auto(summarise([250.5, 251.5])) == "251.0 ± 0.7"  # FID-sized
    assert fmt_auto(summarise([0.5, 0.6])) == "0.550 ± 0.071"
    assert fmt_auto(summarise([1.2e10, 1.4e10])) == "1.3e+10 ± 1.4e+09"  # KID on raw pixels
    assert fmt_auto(None) == "—"


# --------------------------------------------------------------------------- comparisons, caveats


def _write_predictions(d: Path, y: np.ndarray, positive: np.ndarray, ids: list[str]) -> None:
    """Made-up S→R real-test predictions in the cell's assets (as compute_cell copies the S→R
    evaluation's predictions.csv), and the cell's S→R AUROC."""
    rows = ["file,label,score_No Finding,score_Unhealthy,predicted"]
    rows += [f"{i},{LABELS[t]},{1 - p:.17g},{p:.17g},{LABELS[int(p >= 0.5)]}"
             for i, t, p in zip(ids, y, positive, strict=True)]  # fmt: skip
    (d / "assets" / "s2r_predictions.csv").write_text("\n".join(rows) + "\n")
    _set(d, s2r_auroc=metrics.auroc(y, positive))


def test_comparisons_pair_s2r_by_image_holm_and_power(tmp_path):
    """Made up: 80 real-test images; active's scores separate the labels better than random's,
    no-finetune's barely. S→R comparisons are paired on the same images within each seed."""
    methods, seeds = ["random", "active", "no-finetune"], [0, 1, 2]
    dirs = {(m, i): write_cell(tmp_path / "cells", m, 500, i) for m in methods for i in seeds}
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    ids = [f"img{k:03d}" for k in range(80)]
    signal = {"random": 1.0, "active": 2.0, "no-finetune": 0.2}
    scores = {}
    for (m, i), d in dirs.items():
        scores[(m, i)] = 1 / (1 + np.exp(-(signal[m] * (y - 0.5) + rng.normal(0, 1, 80))))
        # Each cell lists the images in its own order: pairing goes by image id.
        order = rng.permutation(80) if m == "active" else np.arange(80)
        _write_predictions(d, y[order], scores[(m, i)][order], [ids[k] for k in order])
    for i, value in enumerate([0.80, 0.86, 0.83]):
        _set(dirs[("active", i)], r2s_auroc=value)
    out = tmp_path / "out"
    build_report(list(dirs.values()), grid_config(methods, [500], seeds), PROVENANCE, out)
    results = json.loads((out / "results.json").read_text())
    rows = {(r["metric"], r["method"], r["against"]): r for r in results["comparisons"]["rows"]}
    # Each fine-tuned method against no-finetune (S→R) and against the reference (S→R, R→S).
    assert set(rows) == {
        ("s2r_auroc", "random", "no-finetune"),
        ("s2r_auroc", "active", "no-finetune"),
        ("s2r_auroc", "active", "random"),
        ("r2s_auroc", "active", "random"),
    }
    got = rows[("s2r_auroc", "active", "random")]
    two = {k: np.stack([1 - v, v], axis=1) for k, v in scores.items()}
    a, b = [two[("active", i)] for i in seeds], [two[("random", i)] for i in seeds]
    paired = [metrics.delong_paired(y, x, z) for x, z in zip(a, b, strict=True)]
    want = metrics.compare_over_seeds(
        [d for d, _ in paired], [v for _, v in paired], covariance=metrics.seed_covariance(y, a, b)
    )
    assert got["paired_by"] == "images" and got["seeds"] == seeds
    assert got["seed_differences"] == pytest.approx([d for d, _ in paired])
    assert (got["diff"], got["ci_low"], got["ci_high"], got["p"], got["mdd"]) == pytest.approx(
        (want.diff, want.low, want.high, want.p, want.mdd)
    )
    assert "vs random" in got["why"] and "best vs runner-up" in got["why"]
    # The group's S→R interval: the seeds' real-test errors covary as measured on the images.
    active = next(g for g in results["aggregate"] if g["method"] == "active")["metrics"]
    values = [metrics.auroc(y, x) for x in a]
    _, low, high = metrics.seed_mean_interval(
        values, [AUROC_VAR] * 3, covariance=metrics.seed_covariance(y, a)
    )
    assert (active["s2r_auroc"]["ci_low"], active["s2r_auroc"]["ci_high"]) == pytest.approx(
        (low, high)
    )
    # R→S: seed-level differences, the two cells' variances summed, seeds not sharing images.
    r2s = rows[("r2s_auroc", "active", "random")]
    want = metrics.compare_over_seeds(
        [v - R2S for v in (0.80, 0.86, 0.83)], [2 * AUROC_VAR] * 3, shared_test=False
    )
    assert r2s["paired_by"] == "seeds" and r2s["p"] == pytest.approx(want.p)
    assert "R→S cannot be paired by image" in results["comparisons"]["r2s_note"]
    # Holm over every comparison of the report.
    ordered = results["comparisons"]["rows"]
    assert [r["p_holm"] for r in ordered] == pytest.approx(metrics.holm([r["p"] for r in ordered]))
    assert results["comparisons"]["family_size"] == 4
    assert all(r["separated"] == (r["p_holm"] < 0.05) for r in ordered)
    # The page and the summary print each comparison with its Holm p and what it could detect.
    page = parse((out / "report.html").read_text())
    shown = [r for r in page.tables["table-comparisons"] if r[0].get("data-metric")]
    assert len(shown) == 4
    assert all(r[1][-1][1].startswith("could detect ≥ ") and r[1][-1][1].endswith("at 3 seeds")
               for r in shown)  # fmt: skip
    summary = (out / "summary.md").read_text()
    assert "Holm's family: the 4 rows below with a p-value, S→R and R→S together" in summary
    assert "| S→R AUROC | 500 | active − no-finetune | vs no-finetune | images | 3 |" in summary
    mdd = rows[("s2r_auroc", "active", "no-finetune")]["mdd"]
    assert f"could detect ≥ {mdd:.3f} with 80% power at 3 seeds" in summary


def test_unreadable_s2r_predictions_are_a_report_error_naming_the_file(tmp_path):
    dirs = [write_cell(tmp_path / "cells", "random", 500, i, assets=False) for i in range(2)]
    for d in dirs:  # made up: a score that is not a number
        (d / "assets" / "s2r_predictions.csv").write_text(
            "file,label,score_No Finding,score_Unhealthy,predicted\na.png,Unhealthy,x,0.9,b\n"
        )
    with pytest.raises(ReportError, match=r"random-500-0/assets/s2r_predictions.csv: a score"):
        build_report(dirs, grid_config(["random"], [500], [0, 1]), {}, tmp_path / "out")


def test_power_text_says_when_no_possible_difference_is_detectable():
    assert detect_text({"mdd": 0.0523, "seeds": [0, 1, 2]}) == (
        "could detect ≥ 0.052 with 80% power at 3 seeds"
    )
    # Above 1: more than any difference of two AUROCs, so "≥ 1.5" would promise nothing.
    assert detect_text({"mdd": 1.5, "seeds": [0, 1]}).startswith("could detect no possible")
    assert detect_text({"mdd": math.nan, "seeds": [0]}) == "no power estimate at 1 seed(s)"


def test_flag_is_two_sided_with_words_for_each_side(tmp_path):
    """Made up: active's R→S 0.60 is below R→R's interval, spectral-pixel's 0.999 above it,
    random's 0.85 inside the cells' R→R bounds [0.80, 0.99] (the rows' reference is R→R over
    seeds, 0.94-0.96 here, so random's row is flagged below too)."""
    methods, seeds = ["random", "active", "spectral-pixel"], [0, 1, 2]
    dirs = {(m, i): write_cell(tmp_path / "cells", m, 500, i) for m in methods for i in seeds}
    for (m, _), d in dirs.items():
        r2s = {"random": R2S, "active": 0.60, "spectral-pixel": 0.999}[m]
        _set(d, r2s_auroc=r2s, r2r_auroc_ci_low=0.80, r2r_auroc_ci_high=0.99)
    out = tmp_path / "out"
    build_report(list(dirs.values()), grid_config(methods, [500], seeds), PROVENANCE, out)
    with open(out / "results.csv", newline="") as f:
        flags = {r["method"]: r["fter_flag"] for r in csv.DictReader(f)}
    assert flags == {"random": "", "active": "r2s_below_r2r", "spectral-pixel": "r2s_above_r2r"}
    results = json.loads((out / "results.json").read_text())
    assert {f["method"]: f["flag"] for f in results["fter_flags"]} == {
        "random": "r2s_below_r2r",
        "active": "r2s_below_r2r",
        "spectral-pixel": "r2s_above_r2r",
    }
    html = (out / "report.html").read_text()
    assert html.count("⚑ R→S below R→R") == 4 and html.count("⚑ R→S above R→R") == 2
    assert "synthetic easier to classify than real" in html
    summary = (out / "summary.md").read_text()
    assert "⚑ above: synthetic easier to classify than real" in summary
    assert "⚑ below: synthetic harder to classify than real" in summary
    row = next(
        line for line in summary.splitlines() if line.startswith("| spectral-pixel | 500 | 3")
    )
    assert "⚑ above |" in row
    # No ★ on FTER: the report ranks S→R and R→S only.
    assert set(results["best"]) == {"s2r_auroc", "r2s_auroc"}


def test_a_fine_tune_that_did_not_train_is_flagged_and_never_ranked(tmp_path):
    methods = ["random", "active"]
    dirs = [write_cell(tmp_path / "cells", m, 500, i) for m in methods for i in range(3)]
    for d in dirs:
        if "active" in d.name:  # made up: far ahead on S→R, but its fine-tune did not train
            log = json.loads((d / "assets" / "training_log.json").read_text())
            log.update(did_not_train=True, did_not_train_reason="active selection trained 0 of 8")
            (d / "assets" / "training_log.json").write_text(json.dumps(log))
    out = tmp_path / "out"
    build_report(dirs, grid_config(methods, [500], [0, 1, 2]), PROVENANCE, out)
    results = json.loads((out / "results.json").read_text())
    assert results["did_not_train"] == ["active"]
    # random is the only ranked method: no runner-up, so no ★ (it would claim a lead over nobody).
    assert results["best"]["s2r_auroc"] == {}
    assert (
        "random is the only fine-tuned method ranked"
        in results["not_separated"]["s2r_auroc"]["500"]
    )
    html = (out / "report.html").read_text()
    assert "did not train (not ranked)" in html
    assert not any("best" in r[0].get("class", "") for r in parse(html).tables["table-s2r"])
    assert "| active (did not train) | 500 |" in (out / "summary.md").read_text()
    with open(out / "results.csv", newline="") as f:
        assert {r["method"]: r["did_not_train"] for r in csv.DictReader(f)} == {
            "random": "no",
            "active": "yes",
        }


def test_readme_results_block_is_written_from_a_run_folder(tmp_path):
    import subprocess
    import sys

    methods = ["random", "active", "no-finetune"]
    dirs = [write_cell(tmp_path / "cells", m, 500, i) for m in methods for i in range(3)]
    run = tmp_path / "run"
    build_report(dirs, grid_config(methods, [500], [0, 1, 2]), PROVENANCE, run)
    (run / "run.json").write_text(json.dumps({"seconds": 600.0}))
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\nbefore\n<!-- results:begin -->\nold table\n<!-- results:end -->\nafter\n"
    )
    script = Path(__file__).resolve().parents[1] / "scripts" / "readme-results.py"
    done = subprocess.run([sys.executable, script, run, "--readme", readme], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert (
        "old table" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    )
    assert f"`python scripts/readme-results.py {run}`" in text and "wall time **10.0 min**" in text
    results = json.loads((run / "results.json").read_text())
    active = next(a for a in results["aggregate"] if a["method"] == "active")["metrics"]
    m, f = active["s2r_auroc"], active["fter"]
    assert f"| active ★ | 500 | {m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}] | " in text
    assert f"{f['mean']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}] ⚑ below |" in text
    # Every interval in the block lies inside [0, 1], except FTER's (a ratio).
    for line in text.splitlines():
        if line.startswith("| ") and "[" in line:
            cells = line.split(" | ")
            for cell in cells[2:4] + cells[-2:]:  # AUROCs and accuracies
                for low, high in re.findall(r"\[(-?[0-9.]+), (-?[0-9.]+)\]", cell):
                    assert 0 <= float(low) <= float(high) <= 1, line
    # Controls apart, never starred; every seed's value; the comparisons with Holm p and mdd.
    controls = text.split("Controls (not fine-tuned, never ranked):")[1].split("Every seed")[0]
    assert "| no-finetune | 500 |" in controls and "★" not in controls
    assert " / ".join(f"{v:.3f}" for v in m["values"]) in text
    row = next(r for r in results["comparisons"]["rows"]
               if (r["method"], r["against"]) == ("active", "no-finetune"))  # fmt: skip
    assert (
        f"| S→R AUROC | 500 | active − no-finetune | seeds | **{row['diff']:+.3f} "
        f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]** | {row['p']:.3g} | {row['p_holm']:.3g} | "
        f"{row['mdd']:.3f} (3 seeds) |" in text
    )
    assert "Fine-tuned vs `no-finetune` on S→R: `random` (size 500) separated" in text
    assert "Targets" not in text


def test_the_report_says_which_data_chose_the_settings(tmp_path):
    """The line comes from provenance's ``choices`` (tgap.provenance); none without it."""
    dirs = [write_cell(tmp_path / "cells", "random", 500, i, assets=False) for i in range(2)]
    config = grid_config(["random"], [500], [0, 1])
    choices = {
        "generate.tune (guidance, steps, scheduler)": {"chosen_on": "real-val"},
        "real-test": {"read_by": "compute-FTER", "chosen_on": "nothing"},
    }
    out = build_report(dirs, config, {"choices": choices}, tmp_path / "with")
    line = "generate.tune (guidance, steps, scheduler): real-val; real-test: nothing"
    assert f"Settings chosen on: {line}." in Path(out["summary.md"]).read_text()
    assert json.loads(Path(out["results.json"]).read_text())["settings_chosen_on"] == line
    assert (
        f'id="settings-chosen-on">Settings chosen on: {line}.'
        in Path(out["report.html"]).read_text()
    )
    out = build_report(dirs, config, {}, tmp_path / "without")
    assert "Settings chosen on" not in Path(out["summary.md"]).read_text()
    assert "settings-chosen-on" not in Path(out["report.html"]).read_text()


def _curve_block(s2r: float, seed: int, saturated: bool) -> dict:
    """A cell's learning_curves: real AUROC = 0.95 - 0.4 n^-0.5 (+ a seed offset), and a
    synthetic curve whose last step is flat when ``saturated``."""
    real = [{"n": n, "auroc": 0.95 - 0.4 * n**-0.5 + 0.001 * seed, "variance": 1e-5,
             "low": 0.94 - 0.4 * n**-0.5, "high": 0.96 - 0.4 * n**-0.5}
            for n in (25, 50, 100, 200, 400, 800)]  # fmt: skip
    half = s2r - (0.001 if saturated else 0.05)
    synthetic = [
        {"n": 500, "auroc": half, "variance": 1e-5, "low": half - 0.01, "high": half + 0.01,
         "fraction": 0.5},
        {"n": 1000, "auroc": s2r, "variance": 1e-5, "low": s2r - 0.01, "high": s2r + 0.01,
         "fraction": 1.0},
    ]  # fmt: skip
    return {"real": real, "synthetic": synthetic, "real_equivalent_text": ""}


def test_real_equivalent_table_metrics_and_saturation_line(tmp_path):
    """Method random's S→R sits at n = 200 on the real curve and its synthetic curve is flat;
    active's is at n = 50 and still rising."""
    dirs = []
    for method, n, saturated in (("random", 200, True), ("active", 50, False)):
        s2r = 0.95 - 0.4 * n**-0.5
        for seed in (0, 1):
            d = tmp_path / "cells" / f"{method}-{seed}"
            d.mkdir(parents=True)
            cell = {"method": method, "size": 20, "seed": seed, "s2r_accuracy": 0.6,
                    "s2r_auroc": s2r, "r2s_accuracy": 0.7, "r2s_auroc": 0.8, "fter": s2r / 0.8,
                    "synthetic_saturated": float(saturated),
                    "synthetic_sufficient_n_per_label": 500 if saturated else 1000,
                    "learning_curves": _curve_block(s2r, seed, saturated)}  # fmt: skip
            (d / "cell.json").write_text(json.dumps(cell))
            dirs.append(d)
    config = grid_config(["random", "active"], [20], [0, 1])
    config.generate.n_per_label = 1000
    result = build_report(dirs, config, {}, tmp_path / "out")
    metrics = result["metrics"]
    assert 150 < metrics["real_equivalent.random.20"] < 260
    assert (
        metrics["real_equivalent_low.random.20"] < 200 < metrics["real_equivalent_high.random.20"]
    )
    assert 35 < metrics["real_equivalent.active.20"] < 70
    summary = Path(result["summary.md"]).read_text()
    assert "## Real-equivalent size" in summary
    assert "flattened: random/20 (2/2 seeds)" in summary and "n_per_label 500" in summary
    assert "active/20" not in summary.split("flattened:")[1]
    html_text = Path(result["report.html"]).read_text()
    assert 'id="table-real-equivalent"' in html_text and "Learning curves" in html_text
    entries = json.loads(Path(result["results.json"]).read_text())["real_equivalent"]
    assert [(e["method"], e["saturated_seeds"]) for e in entries] == [("random", 2), ("active", 0)]


# --------------------------------------------------------------------------- the templates

MARKUP = "<script>alert('x')</script> & <b>\"bold\"</b>"


def test_every_value_on_the_page_is_escaped(tmp_path):
    """Names, notes, ingest facts and provenance carrying markup show as text, never as tags."""
    dirs = [write_cell(tmp_path / "cells", "random", 500, i, assets=False) for i in range(2)]
    _set(dirs[0], notes={"fid": MARKUP}, memorisation_space=MARKUP)
    config = grid_config(["random"], [500], [0, 1], name=MARKUP)
    config.description = MARKUP
    ingest = {"split": MARKUP, "leakage_warning": MARKUP, "skipped_corrupt": 1,
              "corrupt_files": [{"file": MARKUP, "reason": MARKUP}]}  # fmt: skip
    provenance = {**PROVENANCE, "ingest": ingest, MARKUP: {MARKUP: [MARKUP, 1.5]}}
    build_report(dirs, config, provenance, tmp_path / "out")
    page = parse((tmp_path / "out" / "report.html").read_text())
    assert not any(tag in ("script", "b") for tag, _ in page.tags)
    texts = []
    page.handle_data = texts.append  # every text node of a second pass
    page.feed((tmp_path / "out" / "report.html").read_text())
    shown = "".join(texts)
    # the title, h1, description, split, warning, skipped file and reason, note, space, provenance
    assert shown.count(MARKUP) >= 10


def test_the_templates_are_package_data_of_the_wheel():
    """A non-editable install carries only the files pyproject's package-data globs name."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["tgap.report"]
    package = root / "tgap" / "report"
    templates = [p.relative_to(package).as_posix() for p in (package / "templates").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]  # fmt: skip
    assert "templates/report.html" in templates and "templates/base.html" in templates
    shipped = {q.relative_to(package).as_posix() for p in patterns for q in package.glob(p)}
    assert set(templates) <= shipped
