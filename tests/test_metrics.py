"""Known answers and invariants of the evaluation statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from tgap import metrics
from tgap.metrics import MetricsError

Y = np.array([0, 0, 0, 1, 1, 1])
PERFECT = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])


def test_auroc_of_perfect_inverted_and_constant_scores():
    assert metrics.auroc(Y, PERFECT) == 1.0
    assert metrics.auroc(Y, 1 - PERFECT) == 0.0
    assert metrics.auroc(Y, np.full(6, 0.4)) == 0.5


def test_per_class_auroc_is_one_vs_rest_on_that_class_score():
    scores = np.stack([1 - PERFECT, PERFECT], axis=1)
    assert metrics.class_auroc(Y, scores, 0) == 1.0 and metrics.class_auroc(Y, scores, 1) == 1.0
    # Three classes: class 2's score separates it perfectly, class 0's score is inverted.
    y3 = np.array([0, 0, 1, 1, 2, 2])
    s3 = np.array([[0.1, 0.5, 0.4], [0.2, 0.4, 0.4], [0.6, 0.2, 0.2], [0.5, 0.3, 0.2],
                   [0.3, 0.1, 0.6], [0.3, 0.2, 0.5]])  # fmt: skip
    assert metrics.class_auroc(y3, s3, 2) == 1.0
    assert metrics.class_auroc(y3, s3, 0) == 0.0
    assert metrics.auroc(y3, s3) == pytest.approx(roc_auc_score(y3, s3, multi_class="ovr"))


def test_auroc_is_nan_with_a_reason_when_one_class_is_present():
    assert math.isnan(metrics.auroc(np.ones(5, int), np.linspace(0, 1, 5)))
    assert "only one class" in metrics.auroc_undefined_reason(np.ones(5, int), 2)
    result = metrics.classification_metrics(np.ones(5, int), np.linspace(0, 1, 5), ["a", "b"])
    assert math.isnan(result["auroc"]) and math.isnan(result["auroc_ci_low"])
    assert math.isnan(result["auroc_a"]) and result["roc"]["fpr"] == []
    assert result["accuracy"] == pytest.approx(3 / 5)  # scores 0.5, 0.75, 1.0 >= 0.5


def test_empty_or_misshaped_inputs_are_clear_errors():
    with pytest.raises(MetricsError, match="empty set"):
        metrics.auroc(np.array([], int), np.zeros((0, 2)))
    with pytest.raises(MetricsError, match="3 labels but 2 score rows"):
        metrics.auroc(np.array([0, 1, 1]), np.zeros((2, 2)))
    with pytest.raises(MetricsError, match="2 score columns but 3 labels"):
        metrics.classification_metrics(Y, np.stack([1 - PERFECT, PERFECT], 1), ["a", "b", "c"])


def test_classification_metrics_counts_and_confusion_matrix():
    scores = np.array([0.1, 0.6, 0.3, 0.7, 0.4, 0.9])
    result = metrics.classification_metrics(Y, scores, ["neg", "pos"], threshold=0.5)
    assert result["confusion_matrix"] == [[2, 1], [1, 2]]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["accuracy_neg"] == pytest.approx(2 / 3) and result[
        "accuracy_pos"
    ] == pytest.approx(2 / 3)
    assert result["auroc"] == pytest.approx(roc_auc_score(Y, scores))
    assert result["n_per_class"] == {"neg": 3, "pos": 3}
    # The threshold moves predictions, not AUROC.
    strict = metrics.classification_metrics(Y, scores, ["neg", "pos"], threshold=0.95)
    assert strict["accuracy"] == 0.5 and strict["auroc"] == result["auroc"]


def test_youden_threshold_separates_a_separable_set():
    t = metrics.youden_threshold(Y, PERFECT)
    assert 0.3 < t <= 0.7
    assert (metrics.predict_labels(np.stack([1 - PERFECT, PERFECT], 1), t) == Y).all()


def test_vectorised_resampled_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    scores = np.round(rng.random(80) + 0.3 * y, 1)  # rounding makes many ties
    index = rng.integers(0, 80, size=(20, 80))
    fast = metrics.resampled_aurocs(y, scores, index)
    for row, value in zip(index, fast, strict=True):
        assert value == pytest.approx(roc_auc_score(y[row], scores[row]))


def test_fter_is_the_auroc_ratio_and_its_ci_covers_one_for_identical_evaluations():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    scores = rng.random(200) + 0.5 * y
    # Both directions resampled independently: the interval of a set against itself holds 1.
    low, high = metrics.fter_ci((y, scores), (y, scores), resamples=500, seed=0)
    assert low < 1 < high
    assert metrics.fter(0.8, 0.4) == 2.0
    assert math.isnan(metrics.fter(float("nan"), 0.9)) and math.isnan(metrics.fter(0.9, 0.0))


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(2)
    y, scores = rng.integers(0, 2, 100), rng.random(100)
    assert metrics.auroc_ci(y, scores, 200, seed=5) == metrics.auroc_ci(y, scores, 200, seed=5)
    assert metrics.auroc_ci(y, scores, 200, seed=5) != metrics.auroc_ci(y, scores, 200, seed=6)


def test_bootstrap_interval_covers_the_true_auroc_at_about_the_nominal_rate():
    # Binormal scores: negatives N(0, 1), positives N(d, 1) -> true AUROC = Phi(d / sqrt(2)).
    d = 1.0
    true_auroc = norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(3)
    simulations, covered = 200, 0
    for i in range(simulations):
        y = np.repeat([0, 1], 60)
        scores = rng.normal(size=120) + d * y
        low, high = metrics.auroc_ci(y, scores, resamples=300, confidence=0.95, seed=i)
        covered += low <= true_auroc <= high
    # Nominal 95 %; 200 simulations give a standard error of ~1.5 points.
    assert 0.89 <= covered / simulations <= 0.99


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_shift():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(500, 8))
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    distances = [metrics.frechet_distance(a, a + shift) for shift in (0.1, 0.5, 1.0)]
    # Same covariance, shifted mean: exactly the squared shift norm (8 dims).
    np.testing.assert_allclose(distances, [8 * 0.01, 8 * 0.25, 8 * 1.0], rtol=1e-6)
    # Scaled copy: cov_b = 4 cov_a -> tr(A) + tr(4A) - 2 tr(2A) = tr(A); the means differ by mu_a.
    expected = np.trace(np.cov(a, rowvar=False)) + np.sum(a.mean(axis=0) ** 2)
    assert metrics.frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)


def test_kid_is_near_zero_for_the_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = metrics.kid(a, b, subsets=20, subset_size=200)
    shifted, _ = metrics.kid(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.05 and shifted > 10 * max(abs(same), 0.01)


def test_prdc_matches_the_reference_package_values():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(800, 16))
    fake = rng.normal(0.3, 1.1, size=(700, 16))
    # Reference: prdc 0.2 (clovaai), prdc.compute_prdc(real, fake, 5) on these arrays.
    expected = {"precision": 0.6957142857142857, "recall": 0.90875,
                "density": 0.5285714285714286, "coverage": 0.79375}  # fmt: skip
    assert metrics.prdc(real, fake, k=5) == pytest.approx(expected)


def test_prdc_known_answers_for_identical_and_disjoint_sets():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(300, 4))
    same = metrics.prdc(a, a, k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0)  # open balls: centre + 4 nearer neighbours
    far = metrics.prdc(a, a + 100, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_memorisation_flags_planted_copies_and_not_fresh_samples():
    rng = np.random.default_rng(7)
    tuning = rng.normal(size=(100, 20))
    tuning = np.concatenate([tuning, tuning[:3]])  # selection may pick an image twice
    fresh = rng.normal(size=(300, 20))
    copies = tuning[10:20] + rng.normal(scale=1e-3, size=(10, 20))  # near-exact copies
    synthetic = np.concatenate([fresh, copies, tuning[[40, 41]]])
    result = metrics.memorisation(synthetic, tuning, quantile=0.01, n_pairs=12)
    distances = result["distances"]
    near = distances <= result["near_copy_threshold"]
    assert near[300:].all()  # every planted copy is flagged
    assert near[:300].mean() < 0.05  # fresh samples mostly are not
    assert result["exact_copy_count"] == 2 and result["tuning_duplicates"] == 3
    assert result["near_copy_threshold"] > 0  # duplicates in the tuning set do not zero it
    assert {p["synthetic"] for p in result["closest_pairs"]} == set(range(300, 312))
    assert result["nn_distance_ratio"] > 0.5  # mostly fresh: not closer than tuning to itself


def test_memorisation_of_a_set_of_copies_has_ratio_zero():
    rng = np.random.default_rng(8)
    tuning = rng.normal(size=(50, 5))
    result = metrics.memorisation(tuning[rng.integers(0, 50, 40)], tuning)
    assert result["near_copy_fraction"] == 1.0 and result["nn_distance_ratio"] == 0.0
    with pytest.raises(MetricsError, match="empty set"):
        metrics.memorisation(np.zeros((0, 5)), tuning)


# --------------------------------------------------------------------------- over seeds


def test_paired_difference_matches_scipy_on_fixed_numbers():
    from scipy import stats as st

    from tgap.metrics import paired_difference

    a = [0.852, 0.871, 0.830, 0.866, 0.845]
    b = [0.801, 0.842, 0.829, 0.810, 0.790]
    got = paired_difference(a, b, 0.95)
    ref = st.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert got["mean"] == pytest.approx(np.mean(np.subtract(a, b))) and got["n"] == 5
    # Hand-checked: differences 0.051 0.029 0.001 0.056 0.055, mean 0.0384, sd 0.02370,
    # t = 0.0384 / (0.02370 / sqrt 5) = 3.623 on 4 df -> p = 0.0223.
    assert got["p_value"] == pytest.approx(0.0223, abs=5e-4)
    one = paired_difference([0.9], [0.8])
    assert one["mean"] == pytest.approx(0.1) and math.isnan(one["p_value"])
    assert math.isnan(one["ci_low"])


def test_seed_interval_matches_scipy_t_interval():
    from scipy import stats as st

    from tgap.metrics import seed_interval

    values = [0.91, 0.87, 0.95]
    mean, low, high = seed_interval(values, 0.9)
    ref = st.t.interval(0.9, 2, loc=np.mean(values), scale=st.sem(values))
    assert (low, high) == pytest.approx(ref, rel=1e-12) and mean == pytest.approx(0.91)


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_interval_over_seeds_covers_at_the_nominal_rate_in_simulation(n_seeds):
    """Each simulated seed: AUROC of its own classifier (true mean 0.85 + a training effect,
    sd 0.04) measured on its own 200 test images (binormal scores). The t-interval over seeds
    must cover the true mean in [0.90, 0.99] of 2,000 simulated runs at 0.95."""
    from scipy import stats

    from tgap.metrics import seed_interval

    rng = np.random.default_rng(0)
    truth, runs = 0.85, 2000
    y = np.repeat([0, 1], 100)
    target = truth + rng.normal(0, 0.04, (runs, n_seeds, 1))
    scores = rng.normal(0, 1, (runs, n_seeds, 200)) + math.sqrt(2) * stats.norm.ppf(target) * y
    # AUROC per (run, seed) by the Mann-Whitney rank formula (what roc_auc_score computes).
    ranks = stats.rankdata(scores, axis=-1)
    values = (ranks[..., y == 1].sum(-1) - 100 * 101 / 2) / (100 * 100)
    assert values[0, 0] == pytest.approx(roc_auc_score(y, scores[0, 0]))
    hits = 0
    for run in values:
        _, low, high = seed_interval(run, 0.95)
        hits += low <= truth <= high
    assert 0.90 <= hits / runs <= 0.99, hits / runs
