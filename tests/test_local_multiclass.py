"""Multi-class and bring-your-own synthetic sets, end to end through kfp.local.

A 3-class image folder with official train/test folders and patient IDs in the file names, and
an external "generated" set, both built here in a tmp folder; the micro preset with overrides.
One run (`random` and `external:mine`, one seed) serves every check.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tgap.config import load_config
from tgap.imageset import ImageSet
from tgap.local_run import run_local

MICRO = Path("pipelines/configs/micro.yaml")
TOKENIZER = Path("../shared/data/clip-tokenizer")
LABELS = ["circle", "stripes", "flat"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TOKENIZER.is_dir(), reason=f"{TOKENIZER} not found (run from the repo)"),
]


def draw(label: str, seed: int, noise: float = 20.0) -> np.ndarray:
    """A 32 px picture whose class is visible: a bright disc, stripes, or a flat field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    if label == "circle":
        base = np.where((yy - 16) ** 2 + (xx - 16) ** 2 < 80 + rng.integers(0, 40), 210.0, 60.0)
    elif label == "stripes":
        base = np.where((xx + rng.integers(0, 4)) % 8 < 4, 200.0, 50.0)
    else:
        base = np.full((32, 32), 120.0 + rng.integers(-20, 20))
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def build_fixture(root: Path) -> tuple[Path, Path]:
    source, external = root / "xray", root / "generated"
    n = 0
    for folder, patients in (("train", range(0, 36)), ("test", range(100, 112))):
        for p in patients:
            label = LABELS[p % 3]
            for k in range(2):
                path = source / folder / label / f"person{p}_{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(draw(label, n)).convert("RGB").save(path)  # RGB on purpose
                n += 1
    for label in LABELS:
        for k in range(12):
            path = external / label / f"{k:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(draw(label, 10_000 + n, noise=35.0)).save(path)
            n += 1
    return source, external


def files_sha256(root: Path) -> str:
    total = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        rel = path.relative_to(root).as_posix()
        total.update(f"{rel}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return total.hexdigest()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("multiclass")
    source, external = build_fixture(root)
    config = load_config(
        MICRO,
        [
            f"data.source={source}",
            "data.format=image-folder",
            f"data.labels={json.dumps(LABELS)}",
            "data.label_policy={}",
            "data.max_images=null",
            r"data.patient_id_pattern=person(\d+)_",
            "data.split_folders={test: test, pool_and_train: train}",
            # no val/ folder: real-val is cut by patient from train/
            "data.split.pool_fraction=0.4",
            "data.split.val_fraction=0.1",
            "grid.methods=[random, 'external:mine']",
            "grid.sizes=[8]",
            f"select.external_sets={{mine: {external}}}",
            "generate.n_per_label=8",
            "generate.grid_images=4",
        ],
    )
    out = root / "run"
    run_local(config, out)
    return out, external


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return {r["method"]: r for r in csv.DictReader(fh)}


def _cells(out: Path) -> dict[str, dict]:
    cells = {}
    for path in (out / "artifacts").glob("**/compute-fter*/cell/cell.json"):
        cell = json.loads(path.read_text())
        cells[cell["method"]] = cell | {"_dir": str(path.parent)}
    return cells


def test_multiclass_rows_have_macro_and_per_class_numbers_and_fter(run):
    out, _ = run
    rows = _rows(out)
    assert set(rows) == {"random", "external:mine"}
    for row in rows.values():
        for key in ("s2r_auroc", "r2s_auroc", "fter", "r2r_auroc"):
            assert math.isfinite(float(row[key])), (key, row["method"])
        for direction in ("s2r", "r2s"):
            for label in LABELS:
                assert row[f"{direction}_accuracy_{label}"] != ""
                assert math.isfinite(float(row[f"{direction}_auroc_{label}"]))
        assert float(row["fter"]) == pytest.approx(
            float(row["s2r_auroc"]) / float(row["r2s_auroc"])
        )


def test_macro_auroc_is_the_mean_of_the_per_class_aurocs(run):
    out, _ = run
    for row in _rows(out).values():
        for direction in ("s2r", "r2s"):
            per_class = [float(row[f"{direction}_auroc_{label}"]) for label in LABELS]
            assert float(row[f"{direction}_auroc"]) == pytest.approx(np.mean(per_class), abs=1e-9)


def test_external_cell_has_its_file_hash_and_no_fine_tune_or_generation(run):
    out, external = run
    cell = _cells(out)["external:mine"]
    provenance = cell["provenance"]["external_set"]
    assert provenance["name"] == "mine" and provenance["uri"] == str(external)
    assert provenance["files_sha256"] == files_sha256(external)
    assert cell["n_synthetic"] == 36  # the external set, whatever generate.n_per_label says
    # External sets run in the GPU-free loop: no fine-tune, no generate task in their branch.
    iteration = Path(cell["_dir"]).parents[1]
    assert not list(iteration.glob("finetune*")) and not list(iteration.glob("generate*"))
    assert not (Path(cell["_dir"]) / "assets" / "training_log.json").exists()
    # Memorisation against the pool: the "tuning set" of an external cell is the whole pool.
    pool = next((out / "artifacts").glob("**/ingest*/pool"))
    assert cell["n_tuning"] == len(ImageSet(pool))
    for key in ("fid", "precision", "recall", "near_copy_fraction"):
        assert cell[key] is not None and math.isfinite(cell[key]), key


def test_multiclass_roc_has_a_curve_per_class_and_the_macro_average(run):
    out, _ = run
    for cell in _cells(out).values():
        roc = json.loads((Path(cell["_dir"]) / "assets" / "roc_s2r.json").read_text())
        assert set(roc) == {*LABELS, "macro"}
    html = (out / "report.html").read_text()
    assert "No ROC curves" not in html and "ROC curves per class" in html
    assert "No per-class ROC curves" not in html


def test_report_says_how_the_data_was_split(run):
    out, _ = run
    html = (out / "report.html").read_text()
    assert "official splits kept" in html and "by patient" in html
    assert "shared between pool, real-train, real-val and real-test: 0" in html
