"""report.html in real headless Chromium: values, images, requests, console.

The cells are the MADE-UP ones of test_report.py (their numbers mean nothing). Skipped, with the
reason, when Chromium or chromedriver is not installed (scripts/ensure-chromium.sh installs them).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from browser import check_report_in_chromium, chromium_missing_reason, problems
from made_up import PROVENANCE, grid_config, write_cell
from PIL import Image

from tgap.report import build_report

MISSING = chromium_missing_reason()
if MISSING:
    print(f"skipping the Chromium report tests: {MISSING}")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

METHODS = ["random", "active", "no-finetune"]
SIZES = [500, 1000]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    dirs = [write_cell(root, m, n, i) for m in METHODS for n in SIZES for i in range(2)]
    out = tmp_path_factory.mktemp("report")
    build_report(dirs, grid_config(METHODS, SIZES, [0, 1]), PROVENANCE, out)
    shot = out / "screenshot.png"
    return out, check_report_in_chromium(out / "report.html", shot)


def test_report_renders_with_every_image_and_no_outside_request_or_console_error(rendered):
    out, result = rendered
    assert problems(result) == []
    page = result["page"]
    assert page["title"] == "tgap report: made-up" and page["scripts"] == 0
    html = (out / "report.html").read_text()
    assert len(page["images"]) == html.count("<img ") >= 10
    assert all(im["naturalWidth"] > 0 and im["scheme"] == "data" for im in page["images"])
    assert result["console_errors"] == []
    assert [r.split("?")[0] for r in result["server_requests"]] == [
        "/report.html",
        "/__kfp_html_viewer__.html",
    ]
    # Inside the KFP viewer's sandboxed srcdoc iframe too.
    sandboxed = result["sandboxed"]
    assert sandboxed["origin"] == "null"  # opaque origin: sandbox without allow-same-origin
    assert len(sandboxed["images"]) == len(page["images"])
    assert all(im["naturalWidth"] > 0 for im in sandboxed["images"])


def test_screenshot_is_a_non_blank_png(rendered):
    out, result = rendered
    shot = Path(result["screenshot"])
    assert shot == out / "screenshot.png"
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.width >= 800 and im.height >= 600
        grey = im.convert("L")
        low, high = grey.getextrema()
    assert high - low > 100 and result["screenshot_facts"]["grey_stddev"] > 5


def test_rendered_tables_equal_results_csv(rendered):
    out, result = rendered
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    table = result["page"]["tables"]["cells"]
    header = [c["text"] for c in table[0]["cells"]]
    assert header == list(rows[0].keys())
    shown = table[1:]
    assert len(shown) == len(rows) == len(METHODS) * len(SIZES) * 2
    for row, tr in zip(rows, shown, strict=True):
        for (col, value), td in zip(row.items(), tr["cells"], strict=True):
            assert td["attrs"]["data-col"] == col
            if col in ("method", "size", "seed", "fter_flag", "did_not_train"):
                assert td["text"] == value
            elif value == "":
                assert td["text"] == "—"
            else:
                assert float(td["attrs"]["data-value"]) == float(value)
                assert td["text"] == f"{float(value):.4f}"
    # The aggregated S→R table shows the mean over seeds of results.csv.
    for tr in result["page"]["tables"]["s2r"][1:]:
        method, size = tr["attrs"].get("data-method"), tr["attrs"].get("data-size")
        if method in (None, "R→R"):  # the controls' heading row, the reference
            continue
        td = next(c for c in tr["cells"] if c["attrs"].get("data-metric") == "s2r_auroc")
        values = [
            float(r["s2r_auroc"]) for r in rows if r["method"] == method and r["size"] == size
        ]
        mean = sum(values) / len(values)
        assert math.isclose(float(td["attrs"]["data-mean"]), mean, abs_tol=1e-12)
        assert td["text"].startswith(f"{mean:.3f} ± ")


def test_comparisons_and_fter_flags_are_visible(rendered):
    out, result = rendered
    page = result["page"]
    body = [r for r in page["tables"]["comparisons"] if r["attrs"].get("data-method")]
    # Made-up cells: active vs no-finetune and random vs no-finetune on S→R, active vs random
    # on S→R and R→S, at 2 sizes.
    assert {
        (r["attrs"]["data-metric"], r["attrs"]["data-method"], r["attrs"]["data-against"],
         r["attrs"]["data-size"]) for r in body
    } == {
        (metric, a, b, str(n))
        for n in SIZES
        for metric, a, b in [("s2r_auroc", "active", "no-finetune"),
                             ("s2r_auroc", "random", "no-finetune"),
                             ("s2r_auroc", "active", "random"), ("r2s_auroc", "active", "random")]
    }  # fmt: skip
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in body:
        metric, method, against = (
            r["attrs"][k] for k in ("data-metric", "data-method", "data-against")
        )
        size = r["attrs"]["data-size"]
        td = next(c for c in r["cells"] if "data-diff" in c["attrs"])
        diffs = [
            float(a[metric]) - float(b[metric])
            for a in rows
            for b in rows
            if a["method"] == method and b["method"] == against
            and a["size"] == b["size"] == size and a["seed"] == b["seed"]
        ]  # fmt: skip
        assert td["text"].startswith(f"{sum(diffs) / len(diffs):+.3f}")
    # R→S (made-up 0.85) is below R→R's interval in every row: the flag shows beside each FTER.
    flags = [f for f in page["flags"] if f["text"] == "⚑ R→S below R→R"]
    assert len(flags) == 2 * len(METHODS) * len(SIZES) and all(f["visible"] for f in flags)
    assert "synthetic harder to classify than real" in flags[0]["title"]
    # R→S ties at the made-up 0.85 in every row: no fine-tuned method separated, said once
    # per size.
    assert len(page["separated"]) == len(SIZES)
    assert all(t.startswith(f"size {n}: no fine-tuned method separated") for t, n in
               zip(page["separated"], SIZES, strict=True))  # fmt: skip


def test_checker_catches_broken_images_outside_requests_and_console_errors(tmp_path):
    """The helper must fail a bad page, or the tests above prove nothing."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><p>bad page</p>'
        '<img alt="missing" src="missing.png">'
        '<img alt="elsewhere" src="http://127.0.0.1:9/x.png">'
        "<script>console.error('made-up failure')</script></body></html>"
    )
    result = check_report_in_chromium(bad, sandboxed=False)
    found = "\n".join(problems(result))
    assert "image 'missing' did not load" in found
    assert "image 'elsewhere' did not load" in found
    assert "a request left the page: http://127.0.0.1:9/x.png" in found
    assert "made-up failure" in found
    assert "requested /missing.png" in found
