"""The cell stage on small real image sets (PneumoniaMNIST) with real classifiers and a stub
embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tgap import metrics
from tgap.artifacts import CellArtifact
from tgap.classify import evaluate_classifier, read_predictions, train_classifier
from tgap.config import ClassifierConfig, EvaluationConfig
from tgap.evaluation import (
    EvaluationError,
    compute_cell,
    read_s2r_predictions,
    read_supplementation,
    supplementation_curve,
    supplementation_stage,
)
from tgap.grid import GridRow
from tgap.imageset import ImageSet, ImageSetError, ImageSetWriter

NPZ = Path(__file__).resolve().parents[1] / "../shared/data/pneumoniamnist/pneumoniamnist.npz"
LABELS = ["No Finding", "Unhealthy"]
FAST = ClassifierConfig(epochs=4, batch_size=32)
EVAL = EvaluationConfig(bootstrap_resamples=200)
ROW = GridRow.from_item({"method": "random", "size": 30, "seed": 0})


class StubEmbedder:
    """8x8 mean-pooled pixels: deterministic, no model."""

    name = "stub"
    description = "8x8 mean-pooled pixels (test stub)"

    def embed(self, images: np.ndarray) -> np.ndarray:
        n, r, _ = images.shape
        return (
            images.reshape(n, 8, r // 8, 8, r // 8)
            .mean(axis=(2, 4))
            .reshape(n, 64)
            .astype(np.float32)
        )


def write_set(root: Path, images: np.ndarray, ys: np.ndarray, labels=LABELS) -> ImageSet:
    with ImageSetWriter(root, labels, 32) as writer:
        for image, y in zip(images, ys, strict=True):
            writer.add(image, labels[y])
    return ImageSet(root)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    if not NPZ.is_file():
        pytest.skip(f"PneumoniaMNIST not found at {NPZ}")
    with np.load(NPZ) as data:
        train_x, train_y = data["train_images"], data["train_labels"].ravel()
        test_x, test_y = data["test_images"], data["test_labels"].ravel()
    rng = np.random.default_rng(0)

    def pick(ys, n, exclude=()):
        return np.concatenate([
            rng.choice(np.setdiff1d(np.flatnonzero(ys == c), exclude), n, replace=False) for c in (0, 1)
        ])  # fmt: skip

    root = tmp_path_factory.mktemp("cell")
    real_idx = pick(train_y, 60)
    tuning_idx = pick(train_y, 15, exclude=real_idx)
    # "Synthetic" images: other real train images, plus 6 planted exact tuning copies.
    fresh_idx = pick(train_y, 45, exclude=np.concatenate([real_idx, tuning_idx]))
    planted = tuning_idx[[0, 1, 2, 15, 16, 17]]
    syn_idx = np.concatenate([fresh_idx, planted])
    test_idx = pick(test_y, 60)
    w = {
        "real_train": write_set(root / "real_train", train_x[real_idx], train_y[real_idx]),
        "tuning": write_set(root / "tuning", train_x[tuning_idx], train_y[tuning_idx]),
        "synthetic": write_set(root / "synthetic", train_x[syn_idx], train_y[syn_idx]),
        "real_test": write_set(root / "real_test", test_x[test_idx], test_y[test_idx]),
        "root": root,
    }
    train_classifier(w["synthetic"], FAST, 0, None, root / "clf_syn")
    train_classifier(w["real_train"], FAST, 0, 30, root / "clf_real")
    for name, model, test in (("s2r", "clf_syn", "real_test"), ("r2s", "clf_real", "synthetic"),
                              ("r2r", "clf_real", "real_test")):  # fmt: skip
        evaluate_classifier(root / model, w[test], root / name, resamples=200)
    (root / "training_log.json").write_text('{"steps": 3}')
    return w


def cell_args(w, **changes):
    args = dict(
        row=ROW, s2r_dir=w["root"] / "s2r", r2s_dir=w["root"] / "r2s", r2r_dir=w["root"] / "r2r",
        synthetic=w["synthetic"], real_test=w["real_test"], tuning=w["tuning"], evaluation=EVAL,
        embedder=StubEmbedder(), extras={"training_log.json": w["root"] / "training_log.json"},
    )  # fmt: skip
    args.update(changes)
    return args


def no_nan(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_cell_json_has_the_documented_schema_and_assets(world, tmp_path):
    cell = compute_cell(**cell_args(world), out_dir=tmp_path)
    saved = no_nan((tmp_path / "cell.json").read_text())
    required = [
        "method", "size", "seed", "s2r_accuracy", "s2r_auroc", "r2s_accuracy", "r2s_auroc", "fter",
        "r2r_accuracy", "r2r_auroc", "s2r_auroc_ci_low", "s2r_auroc_ci_high", "r2s_auroc_ci_low",
        "r2s_auroc_ci_high", "fter_ci_low", "fter_ci_high", "s2r_auroc_var", "r2s_auroc_var",
        "r2r_auroc_var", "fid", "kid", "precision", "recall",
        "density", "coverage", "near_copy_fraction", "assets", "provenance",
    ]  # fmt: skip
    for direction in ("s2r", "r2s", "r2r"):
        required += [f"{direction}_{m}_{label}" for m in ("accuracy", "auroc") for label in LABELS]
    assert not [k for k in required if k not in saved]
    assert saved["fter"] == pytest.approx(saved["s2r_auroc"] / saved["r2s_auroc"])
    assert saved["fter_ci_low"] < saved["fter"] < saved["fter_ci_high"]
    # Per-cell intervals: DeLong over the evaluation's predictions, inside [0, 1].
    labels, y, scores = read_predictions(world["root"] / "s2r")
    auc, var = metrics.delong(y, scores)
    n_pos, n_neg = metrics.class_counts(y, len(labels))
    assert saved["s2r_auroc"] == pytest.approx(auc)
    assert saved["s2r_auroc_var"] == pytest.approx(metrics.auroc_variance(auc, var, n_pos, n_neg))
    assert (saved["s2r_auroc_ci_low"], saved["s2r_auroc_ci_high"]) == pytest.approx(
        metrics.auroc_interval(auc, var, n_pos, n_neg)
    )
    for direction in ("s2r", "r2s", "r2r"):
        assert 0 <= saved[f"{direction}_auroc_ci_low"] <= saved[f"{direction}_auroc"]
        assert saved[f"{direction}_auroc"] <= saved[f"{direction}_auroc_ci_high"] <= 1
    # S→R's predictions travel with the cell, so methods can be paired on the same images.
    copied = tmp_path / saved["assets"]["s2r_predictions.csv"]
    assert copied.read_text() == (world["root"] / "s2r/predictions.csv").read_text()
    files, y_cell, scores_cell = read_s2r_predictions(tmp_path)
    assert (y_cell == y).all() and np.array_equal(scores_cell, scores) and len(files) == len(y)
    assert (
        saved["s2r_auroc"] == json.loads((world["root"] / "s2r/metrics.json").read_text())["auroc"]
    )
    for name in ("roc_s2r.json", "roc_r2s.json", "roc_r2r.json", "closest_pairs.png",
                 "memorisation.json", "training_log.json"):  # fmt: skip
        assert (tmp_path / saved["assets"][name]).is_file(), name
    assert saved["distribution_embedder"] == "stub"
    assert cell["n_synthetic"] == 96 and cell["n_tuning"] == 30


def test_cell_carries_the_real_equivalent_size_and_its_curves(world, tmp_path):
    sizes = [4, 8, 16, 32, 64]
    aurocs = np.linspace(0.3, 0.999, len(sizes))
    real = {"points": [{"n": n, "auroc": a, "variance": 1e-4, "low": a - 0.02, "high": a + 0.02}
                       for n, a in zip(sizes, aurocs, strict=True)], "note": ""}  # fmt: skip
    synthetic = {"points": [], "note": "no curve: evaluation.synthetic_curve_fractions is empty"}
    compute_cell(**cell_args(world), out_dir=tmp_path, curves=(real, synthetic))
    saved = no_nan((tmp_path / "cell.json").read_text())
    assert 4 <= saved["real_equivalent"] <= 64
    assert saved["real_equivalent_low"] <= saved["real_equivalent"] <= saved["real_equivalent_high"]
    assert saved["exchange_rate"] == pytest.approx(48 / saved["real_equivalent"])
    assert saved["synthetic_saturated"] is None and "synthetic_saturated" in saved["notes"]
    assert [p["n"] for p in saved["learning_curves"]["real"]] == sizes
    assert saved["learning_curves"]["synthetic"][0]["auroc"] == pytest.approx(saved["s2r_auroc"])
    assert CellArtifact.read(tmp_path).learning_curves == saved["learning_curves"]


def test_fter_ci_of_an_evaluation_against_itself_covers_one(world, tmp_path):
    # The two directions' test sets are independent, so the interval has width around 1.
    s2r = world["root"] / "s2r"
    cell = compute_cell(**cell_args(world, s2r_dir=s2r, r2s_dir=s2r), out_dir=tmp_path)
    assert cell["fter_ci_low"] < 1.0 < cell["fter_ci_high"]


def test_memorisation_flags_the_planted_tuning_copies(world, tmp_path):
    cell = compute_cell(**cell_args(world), out_dir=tmp_path)
    assert cell["exact_copy_count"] == 6
    assert 6 <= cell["near_copy_count"] <= 6 + 5  # the copies, and (almost) no fresh image
    memo = json.loads((tmp_path / "assets/memorisation.json").read_text())
    closest = memo["closest_pairs"][:6]
    assert all(p["distance"] == 0 for p in closest)
    tuning_files = {r.file for r in world["tuning"].records}
    assert {p["tuning_file"] for p in closest} <= tuning_files
    assert {p["synthetic"] for p in closest} == set(range(90, 96))  # the planted ones


def test_distribution_metrics_of_the_test_set_against_itself(world, tmp_path):
    cell = compute_cell(**cell_args(world, synthetic=world["real_test"]), out_dir=tmp_path)
    assert cell["fid"] == pytest.approx(0, abs=1e-6)
    assert cell["precision"] == cell["recall"] == cell["coverage"] == 1.0
    assert cell["density"] == pytest.approx(1.0)
    other = compute_cell(**cell_args(world), out_dir=tmp_path / "other")
    assert other["fid"] > 1.0  # pediatric train images vs test images: not the same set


def test_empty_synthetic_set_is_a_clear_error(world, tmp_path):
    with ImageSetWriter(tmp_path / "empty", LABELS, 32):
        pass
    with pytest.raises(ImageSetError, match="empty synthetic set"):
        compute_cell(
            **cell_args(world, synthetic=ImageSet(tmp_path / "empty")), out_dir=tmp_path / "c"
        )


def test_mismatched_labels_are_a_clear_error(world, tmp_path):
    images = world["tuning"].load_all()
    renamed = write_set(
        tmp_path / "renamed", images, world["tuning"].label_indices, ["Normal", "Pneumonia"]
    )
    with pytest.raises(EvaluationError, match="label names differ"):
        compute_cell(**cell_args(world, tuning=renamed), out_dir=tmp_path / "c")


def test_missing_extra_is_named(world, tmp_path):
    with pytest.raises(EvaluationError, match="extras\\['selection.json'\\]"):
        compute_cell(
            **cell_args(world, extras={"selection.json": tmp_path / "nope.json"}), out_dir=tmp_path
        )


def test_supplementation_at_ratio_zero_reproduces_the_real_classifier(world, tmp_path):
    curve = supplementation_curve(
        world["real_train"], world["synthetic"], world["real_test"], FAST, [0.0, 1.0], 30, 0, tmp_path,
        bootstrap_resamples=100,
    )  # fmt: skip
    r2r = json.loads((world["root"] / "r2r/metrics.json").read_text())
    zero, one = curve["points"]
    assert zero["auroc"] == pytest.approx(r2r["auroc"], abs=1e-6)  # same subsample, same seed
    assert zero["n_synthetic"] == 0 and one["n_synthetic"] == 60 and one["n_real"] == 60
    assert curve["note"] == ""
    assert json.loads((tmp_path / "supplementation.json").read_text())["ratios"] == [0.0, 1.0]


def test_supplementation_shrinks_the_real_part_when_synthetic_is_too_small(world, tmp_path):
    # 48 synthetic images per label, ratio 2: at most 24 real per label.
    curve = supplementation_curve(
        world["real_train"], world["synthetic"], world["real_test"], FAST, [0.0, 2.0], 30, 0, tmp_path,
        bootstrap_resamples=50,
    )  # fmt: skip
    assert curve["real_per_label"] == {"No Finding": 24, "Unhealthy": 24}
    assert "shrunk from 30 to 24" in curve["note"]
    assert curve["points"][1]["n_synthetic"] == 96


def test_cell_reads_the_supplementation_stage_and_never_trains(world, tmp_path, monkeypatch):
    evaluation = EvaluationConfig(bootstrap_resamples=50, supplementation_ratios=[0.0, 0.5])
    curve = supplementation_stage(
        world["real_train"], world["synthetic"], world["real_test"], FAST, evaluation, 30, 0,
        tmp_path / "supplementation",
    )  # fmt: skip
    assert read_supplementation(tmp_path / "supplementation") == json.loads(json.dumps(curve))
    # The cell stage only reads: training anything there is a bug.
    monkeypatch.setattr("tgap.evaluation.fit", lambda *a, **k: pytest.fail("cell trained"))
    with pytest.raises(EvaluationError, match="supplementation_ratios"):
        compute_cell(**cell_args(world, evaluation=evaluation), out_dir=tmp_path / "a")
    cell = compute_cell(
        **cell_args(world, evaluation=evaluation), out_dir=tmp_path / "b",
        supplementation=read_supplementation(tmp_path / "supplementation"),
    )  # fmt: skip
    assert cell["supplementation"]["ratios"] == [0.0, 0.5]
    assert len(cell["supplementation"]["auroc"]) == 2
    assert (tmp_path / "b" / cell["assets"]["supplementation.json"]).is_file()


def test_supplementation_stage_without_ratios_writes_an_empty_curve(world, tmp_path):
    curve = supplementation_stage(
        world["real_train"], world["synthetic"], world["real_test"], FAST, EVAL, 30, 0, tmp_path
    )
    assert curve["ratios"] == [] and read_supplementation(tmp_path)["ratios"] == []


def test_one_class_synthetic_set_gives_null_fter_with_a_reason(world, tmp_path):
    tuning = world["tuning"]
    unhealthy = np.flatnonzero(tuning.label_indices == 1)
    one_class = write_set(
        tmp_path / "one", tuning.load_many(unhealthy), tuning.label_indices[unhealthy]
    )
    evaluate_classifier(world["root"] / "clf_real", one_class, tmp_path / "r2s", resamples=50)
    cell = compute_cell(**cell_args(world, r2s_dir=tmp_path / "r2s"), out_dir=tmp_path / "cell")
    assert np.isnan(cell["r2s_auroc"]) and np.isnan(cell["fter"]) and np.isnan(cell["fter_ci_low"])
    assert "only one class" in cell["notes"]["r2s_auroc"] and "undefined" in cell["notes"]["fter"]
    saved = no_nan((tmp_path / "cell" / "cell.json").read_text())
    assert saved["fter"] is None and saved["s2r_auroc"] == pytest.approx(cell["s2r_auroc"])
