"""tgap.curves: the monotone fit, its inverse, the real-equivalent size and saturation."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from tgap import learning_curve, metrics
from tgap.classify import load_resized
from tgap.config import ClassifierConfig, EvaluationConfig
from tgap.curves import (
    ABOVE,
    BELOW,
    CurveError,
    MonotoneCurve,
    Point,
    RealCurve,
    exchange_rate,
    real_equivalent,
    saturation,
    score_point,
    seed_mean,
)
from tgap.imageset import ImageSet, ImageSetWriter
from tgap.learning_curve import (
    capped_sizes,
    cell_curves,
    nested_subsets,
    real_curves_stage,
    synthetic_curve_stage,
)

SIZES = [25, 50, 100, 200, 400, 800, 1600, 3200]


def known(n):
    """A made-up real curve with a known inverse: n = (0.4 / (0.95 - a))^2."""
    return 0.95 - 0.4 * np.asarray(n, dtype=float) ** -0.5


def known_inverse(a):
    return (0.4 / (0.95 - a)) ** 2


def curve(half_width=0.02, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    auroc = known(SIZES) + rng.normal(0, noise, len(SIZES))
    return RealCurve(SIZES, list(auroc), list(auroc - half_width), list(auroc + half_width))


@pytest.mark.parametrize("n", [40, 130, 300, 1000, 2500])
def test_known_curve_recovers_the_size_within_its_interval(n):
    a = float(known(n))
    reading = real_equivalent(curve(), a, a - 0.01, a + 0.01)
    assert reading.side == ""
    assert reading.contains(n)
    # Linear in log n between sizes a factor 2 apart: close to the true inverse.
    assert reading.n == pytest.approx(n, rel=0.1)


def test_interval_is_finite_and_excludes_other_sizes_mid_curve():
    a = float(known(300))
    reading = real_equivalent(curve(half_width=0.003), a, a - 0.003, a + 0.003)
    assert reading.low_side == reading.high_side == ""
    assert not reading.contains(100) and not reading.contains(900)
    assert reading.text() == f"{reading.n:,.0f} [{reading.low:,.0f}, {reading.high:,.0f}]"


def test_noisy_curve_still_holds_the_size():
    for seed in range(5):
        a = float(known(300))
        # Noise sd 0.005 inside a band of +-0.01 (two sd): the interval still holds n.
        reading = real_equivalent(curve(0.01, 0.005, seed), a, a - 0.005, a + 0.005)
        assert reading.contains(300), seed


def test_exact_points_invert_exactly_at_the_trained_sizes():
    fit = MonotoneCurve(SIZES, known(SIZES))
    for n in SIZES:
        assert fit.inverse(float(known(n))).n == pytest.approx(n)


def test_outside_the_range_gives_words_not_a_number():
    a = float(known(10))
    low_reading = real_equivalent(curve(), a, a - 0.01, a + 0.01)
    assert low_reading.side == BELOW and math.isnan(low_reading.n)
    assert low_reading.text().startswith("below n_min (25")
    high = 0.949
    high_reading = real_equivalent(curve(), high, high - 0.001, high)
    assert high_reading.side == ABOVE and math.isnan(high_reading.n)
    assert "more real data than real-train holds" in high_reading.text()
    assert "3,200" in high_reading.text()


def test_interval_open_at_the_range_ends_says_so():
    a = float(known(30))
    reading = real_equivalent(curve(), a, a - 0.05, a + 0.01)
    assert reading.side == "" and reading.low_side == BELOW and math.isnan(reading.low)
    assert reading.text().split("[")[1].startswith("<25")
    assert reading.contains(1) and not reading.contains(1000)


def test_flat_stretch_reads_its_geometric_middle():
    fit = MonotoneCurve([100, 200, 400, 800], [0.6, 0.7, 0.7, 0.8])
    assert fit.inverse(0.7).n == pytest.approx(math.sqrt(200 * 400))


def test_a_dip_is_pooled_not_followed():
    fit = MonotoneCurve([100, 200, 400], [0.7, 0.6, 0.8])
    assert fit(100) == pytest.approx(0.65) and fit(200) == pytest.approx(0.65)


def test_bad_curves_are_refused():
    with pytest.raises(CurveError, match="at least 2"):
        MonotoneCurve([100], [0.7])
    with pytest.raises(CurveError, match="increasing"):
        MonotoneCurve([200, 100], [0.7, 0.8])
    with pytest.raises(CurveError, match="undefined"):
        MonotoneCurve([100, 200], [0.7, float("nan")])
    with pytest.raises(CurveError, match="outside its interval"):
        real_equivalent(curve(), 0.8, 0.81, 0.9)


def test_exchange_rate_and_its_interval():
    a = float(known(400))
    reading = real_equivalent(curve(0.003), a, a - 0.003, a + 0.003)
    rate = exchange_rate(4000, reading)
    assert rate["exchange_rate"] == pytest.approx(4000 / reading.n)
    assert rate["exchange_rate_low"] < rate["exchange_rate"] < rate["exchange_rate_high"]
    below = real_equivalent(curve(), 0.5, 0.49, 0.51)
    assert math.isnan(exchange_rate(4000, below)["exchange_rate"])


def test_saturation_names_the_smaller_set():
    # S→R stops rising after half the set: the full set's 0.80 is inside 0.5's interval.
    flat = saturation([0.25, 0.5, 1.0], [0.70, 0.79, 0.80], [0.66, 0.75, 0.76],
                      [0.74, 0.83, 0.84], n_per_label=1000)  # fmt: skip
    assert flat.saturated and flat.fraction == 0.5 and flat.n_per_label == 500
    rising = saturation([0.25, 0.5, 1.0], [0.60, 0.70, 0.80], [0.57, 0.67, 0.77],
                        [0.63, 0.73, 0.83], n_per_label=1000)  # fmt: skip
    assert not rising.saturated and rising.fraction == 1.0 and rising.n_per_label == 1000
    with pytest.raises(CurveError, match="ending at 1.0"):
        saturation([0.25, 0.5], [0.6, 0.7], [0.5, 0.6], [0.7, 0.8], 100)


def seed_curve(seed, sd=0.005, variance=0.005**2):
    rng = np.random.default_rng(seed)
    points = [
        Point(n, a, variance, a - 0.01, a + 0.01)
        for n, a in zip(SIZES, known(SIZES) + rng.normal(0, sd, len(SIZES)), strict=True)
    ]
    return RealCurve.of(points)


def test_seed_mean_reads_the_mean_s2r_off_the_mean_curve():
    a = float(known(300))
    rng = np.random.default_rng(7)
    s2r = [Point(1000, v, 0.004**2, v - 0.008, v + 0.008) for v in a + rng.normal(0, 0.004, 3)]
    mean_curve, reading = seed_mean([seed_curve(s) for s in range(3)], s2r, 0.95)
    assert reading.side == "" and reading.contains(300)
    assert mean_curve.auroc[0] == pytest.approx(np.mean([seed_curve(s).auroc[0] for s in range(3)]))
    assert all(
        lo < m < hi
        for lo, m, hi in zip(mean_curve.low, mean_curve.auroc, mean_curve.high, strict=True)
    )
    # One seed: its own curve and interval.
    one = seed_mean([seed_curve(0)], s2r[:1], 0.95)[1]
    assert one == real_equivalent(seed_curve(0), s2r[0].auroc, s2r[0].low, s2r[0].high)
    with pytest.raises(CurveError, match="2 real curves for 3"):
        seed_mean([seed_curve(0), seed_curve(1)], s2r, 0.95)


def binormal_point(rng, size, y, difficulty):
    """A made-up classifier trained on ``size`` real images per label, scored on real-test
    ``y``: binormal scores whose AUROC is ``known(size)`` plus training noise (sd 0.005); half
    of each image's score variance is its ``difficulty``, shared by every classifier, as a real
    image is hard for every model."""
    auc = float(known(size)) + rng.normal(0, 0.005)
    d = math.sqrt(2) * NormalDist().inv_cdf(auc)
    z = d * y + math.sqrt(0.5) * (difficulty + rng.normal(size=len(y)))
    positive = 1 / (1 + np.exp(-z))
    return score_point(size, y, np.column_stack([1 - positive, positive]), 0.95)


@pytest.mark.parametrize("n", [60, 300])
def test_identity_a_real_subset_in_the_synthetic_sets_place_reads_as_its_own_size(n):
    # 5 seeds, each with its real curve and an S→R classifier trained on n real images per
    # label, all scored on one real-test of 2,000 images per label (~0.25 s). Over 200 draws of
    # this set-up the seed-mean interval held n every time and one seed's 97-99 %.
    rng = np.random.default_rng(n)
    y = np.repeat([0, 1], 2000)
    difficulty = rng.normal(size=len(y))
    curves, s2r = [], []
    for _ in range(5):
        curves.append(RealCurve.of([binormal_point(rng, s, y, difficulty) for s in SIZES]))
        s2r.append(binormal_point(rng, n, y, difficulty))
    _, reading = seed_mean(curves, s2r, 0.95)
    one = real_equivalent(curves[0], s2r[0].auroc, s2r[0].low, s2r[0].high)
    for r in (reading, one):
        assert r.side == "" and r.contains(n), r.text()  # a number, and its interval holds n
    assert n / 2 < reading.n < 2 * n, reading.text()


def test_score_point_is_the_auroc_with_its_interval():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    positive = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, len(y)), 0, 1)
    scores = np.column_stack([1 - positive, positive])
    point = score_point(50, y, scores, 0.95)
    assert point.auroc == pytest.approx(metrics.auroc(y, scores))
    assert point.low < point.auroc < point.high and point.variance > 0
    assert point.n == 50


def curve_dict(points, **extra):
    return {"points": [p.to_json() for p in points], "note": "", **extra}


def test_cell_curves_reads_the_cell_off_its_seed_curve():
    real = curve_dict(
        [Point(n, a, 1e-5, a - 0.006, a + 0.006) for n, a in zip(SIZES, known(SIZES), strict=True)]
    )
    a = float(known(300))
    s2r = Point(1000, a, 1e-5, a - 0.006, a + 0.006)
    synthetic = curve_dict([Point(250, a - 0.001, 1e-5, a - 0.007, a + 0.005),
                            Point(500, a, 1e-5, a - 0.006, a + 0.006)])  # fmt: skip
    numbers, notes, block = cell_curves(real, synthetic, s2r, 1000)
    assert notes == {}
    assert numbers["real_equivalent_low"] < 300 < numbers["real_equivalent_high"]
    assert numbers["exchange_rate"] == pytest.approx(1000 / numbers["real_equivalent"])
    assert numbers["synthetic_saturated"] == 1.0
    assert numbers["synthetic_sufficient_n_per_label"] == 250
    assert [p["fraction"] for p in block["synthetic"]] == [0.25, 0.5, 1.0]
    assert len(block["real"]) == len(SIZES) and block["real_equivalent_text"].count("[") == 1


def test_cell_curves_without_curves_says_why():
    s2r = Point(100, 0.8, 1e-4, 0.78, 0.82)
    numbers, notes, block = cell_curves({"points": [], "note": "no curve: x"}, None, s2r, 100)
    assert math.isnan(numbers["real_equivalent"]) and math.isnan(numbers["synthetic_saturated"])
    assert notes == {"real_equivalent": "no curve: x",
                     "synthetic_saturated": "no synthetic learning curve given"}  # fmt: skip
    assert block["real"] == [] and block["real_equivalent_text"] == ""


def test_nested_subsets_grow_by_adding_images():
    y = np.repeat([0, 1], 50)
    small, large = nested_subsets(y, 2, [10, 30], seed=3)
    assert set(small) < set(large)
    assert np.bincount(y[small]).tolist() == [10, 10] and np.bincount(y[large]).tolist() == [30, 30]


def test_sizes_are_capped_at_what_real_train_holds():
    assert capped_sizes([25, 50, 100, 200], {"a": 120, "b": 80}) == ([25, 50, 80], "")
    sizes, note = capped_sizes([25, 50], {"a": 10, "b": 80})
    assert sizes == [10] and "a curve needs 2 sizes" in note


def image_set(root, n, rng):
    with ImageSetWriter(root, ["a", "b"], 16) as writer:
        for i in range(n):
            writer.add(rng.integers(0, 256, (16, 16), dtype=np.uint8), "ab"[i % 2])
    return ImageSet(root)


@pytest.fixture
def stub_training(monkeypatch):
    """No training: fit and the classifier are stubs that record what they were given, and
    every shard read is recorded by set."""
    record = {"fitted": [], "scored": [], "reads": []}

    class Stub:
        @classmethod
        def load(cls, model_dir):
            return cls()

        def predict_proba(self, images):
            record["scored"].append(images)
            positive = images.reshape(len(images), -1).mean(axis=1) / 255
            return np.column_stack([1 - positive, positive])

    def fit(images, y, *args, **kwargs):
        record["fitted"].append((images, y))

    load_many = ImageSet.load_many
    monkeypatch.setattr(learning_curve, "fit", fit)
    monkeypatch.setattr(learning_curve, "Classifier", Stub)
    monkeypatch.setattr(
        ImageSet, "load_many", lambda s, i: record["reads"].append(s.root) or load_many(s, i)
    )
    return record


def test_real_curves_train_on_nested_subsets_and_read_each_set_once(tmp_path, stub_training):
    rng = np.random.default_rng(0)
    train, test = image_set(tmp_path / "train", 40, rng), image_set(tmp_path / "test", 12, rng)
    classifier = ClassifierConfig(resolution=8)
    evaluation = EvaluationConfig(real_curve_sizes=[5, 10, 20])
    curves = real_curves_stage(train, test, classifier, evaluation, [0, 1], tmp_path / "out")
    reads = stub_training["reads"]
    assert reads.count(test.root) == 1 and reads.count(train.root) == 2  # once per seed
    held_test = load_resized(test, np.arange(len(test)), 8)
    subsets = [k for s in (0, 1) for k in nested_subsets(train.label_indices, 2, [5, 10, 20], s)]
    for keep, (images, y), test_images in zip(
        subsets, stub_training["fitted"], stub_training["scored"], strict=True
    ):
        assert np.array_equal(images, load_resized(train, keep, 8))
        assert np.array_equal(y, train.label_indices[keep])
        assert np.array_equal(test_images, held_test)
    assert [p["n"] for p in curves[1]["points"]] == [5, 10, 20]


def test_a_small_synthetic_set_trains_distinct_smaller_sizes_or_says_why_not(
    tmp_path, stub_training
):
    # Retrieval's set may hold fewer than generate.n_per_label: 0.25 and 0.5 of 3 both round to 2.
    rng = np.random.default_rng(0)
    test = image_set(tmp_path / "test", 12, rng)
    evaluation = EvaluationConfig(synthetic_curve_fractions=[0.25, 0.5, 1.0])
    clf = ClassifierConfig(resolution=8)
    small = synthetic_curve_stage(image_set(tmp_path / "s6", 6, rng), test, clf, evaluation, 0,
                                  tmp_path / "a")  # fmt: skip
    assert [p["n"] for p in small["points"]] == [2] and small["note"] == ""
    tiny = synthetic_curve_stage(image_set(tmp_path / "s4", 4, rng), test, clf, evaluation, 0,
                                 tmp_path / "b")  # fmt: skip
    assert tiny["points"] == [] and tiny["note"].startswith("no curve: fractions")


NPZ = Path(__file__).resolve().parents[1] / "../shared/data/pneumoniamnist/pneumoniamnist.npz"


@pytest.fixture(scope="module")
def pneumonia(tmp_path_factory):
    """The micro run's data (PneumoniaMNIST): real-train and a disjoint "synthetic" stand-in,
    both from the official train split, and 150 test images per label."""
    if not NPZ.is_file():
        pytest.skip(f"PneumoniaMNIST not found at {NPZ}")
    with np.load(NPZ) as data:
        train_x, train_y = data["train_images"], data["train_labels"].ravel()
        test_x, test_y = data["test_images"], data["test_labels"].ravel()
    rng = np.random.default_rng(0)
    by_label = [rng.permutation(np.flatnonzero(train_y == c)) for c in (0, 1)]
    test = np.concatenate([rng.choice(np.flatnonzero(test_y == c), 150, replace=False)
                           for c in (0, 1)])  # fmt: skip
    root = tmp_path_factory.mktemp("identity")

    def write(name, x, y):
        with ImageSetWriter(root / name, ["No Finding", "Unhealthy"], 32) as writer:
            for image, label in zip(x, y, strict=True):
                writer.add(image, writer.labels[label])
        return ImageSet(root / name)

    train = np.concatenate([b[:160] for b in by_label])
    stand_in = np.concatenate([b[160:200] for b in by_label])  # 40 per label, none in real-train
    return (write("real_train", train_x[train], train_y[train]),
            write("synthetic", train_x[stand_in], train_y[stand_in]),
            write("real_test", test_x[test], test_y[test]))  # fmt: skip


def test_identity_on_the_micro_data_a_real_set_reads_as_its_own_size(pneumonia):
    # The identity check with trained classifiers: 40 real images per label in the
    # synthetic set's place, its S→R read off the real curves (10..160 per label) of 3 seeds.
    real_train, stand_in, real_test = pneumonia
    classifier = ClassifierConfig(epochs=6, batch_size=32)
    curves, s2r = [], []
    for seed in (0, 1, 2):
        points = learning_curve.train_curve(real_train, real_test, classifier,
                                            [10, 20, 40, 80, 160], seed, 0.95)  # fmt: skip
        curves.append(RealCurve.of(points))
        s2r += learning_curve.train_curve(stand_in, real_test, classifier, [40], seed, 0.95)
    _, reading = seed_mean(curves, s2r, 0.95)
    # Measured here: 28 [<10, 141], wide on 300 test images, yet it rules out all of real-train.
    assert reading.side == "" and reading.contains(40), reading.text()
    assert not reading.contains(160), reading.text()
