"""Known answers and invariants of the evaluation statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
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


def test_per_class_auroc_uses_each_class_own_score_and_can_differ():
    # Two labels whose score columns are each class's own output (not 1 - the other):
    # class 0's score ranks its images perfectly, class 1's score misplaces one pair.
    scores = np.array([[0.9, 0.5], [0.8, 0.2], [0.7, 0.3], [0.1, 0.4], [0.2, 0.9], [0.3, 0.8]])
    assert metrics.class_auroc(Y, scores, 0) == 1.0
    # Class 1 (images 3-5) on column 1: 0.4 is below image 0's 0.5, 8 of 9 pairs right.
    assert metrics.class_auroc(Y, scores, 1) == pytest.approx(8 / 9)
    result = metrics.classification_metrics(Y, scores, ["neg", "pos"])
    assert (result["auroc_neg"], result["auroc_pos"]) == pytest.approx((1.0, 8 / 9))
    # With softmax scores of two labels, one column is 1 - the other, so the two classes'
    # one-vs-rest AUROCs on their own scores are equal by construction.
    softmax = np.stack([1 - scores[:, 1], scores[:, 1]], axis=1)
    assert metrics.class_auroc(Y, softmax, 0) == metrics.class_auroc(Y, softmax, 1)


def test_overall_auroc_ranks_unnormalised_scores_of_a_sigmoid_head():
    # Three labels, each column its own output (rows do not sum to 1, which scikit-learn's
    # multi-class roc_auc_score refuses): the macro mean of the one-vs-rest AUROCs.
    y3 = np.array([0, 0, 1, 1, 2, 2])
    s3 = np.array([[0.9, 0.5, 0.1], [0.6, 0.1, 0.2], [0.7, 0.8, 0.3], [0.2, 0.7, 0.9],
                   [0.1, 0.2, 0.8], [0.3, 0.6, 0.7]])  # fmt: skip
    per_class = [metrics.class_auroc(y3, s3, c) for c in range(3)]
    # Class 0: 0.6 is below negative 0.7; class 1 separates; class 2: negative 0.9 tops both.
    assert per_class == pytest.approx([7 / 8, 1.0, 6 / 8])
    assert metrics.auroc(y3, s3) == pytest.approx(np.mean(per_class))
    assert metrics.delong(y3, s3)[0] == pytest.approx(np.mean(per_class))
    identity = np.arange(6)[None, :]
    assert metrics.resampled_aurocs(y3, s3, identity)[0] == pytest.approx(np.mean(per_class))


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


def test_one_cell_fter_interval_of_a_set_against_itself_holds_one():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    auc, var = metrics.delong(y, rng.random(200) + 0.5 * y)
    # The two directions' test sets are independent: the interval of a set against itself holds 1.
    ratio, low, high = metrics.fter_interval([auc], [var], [auc], [var])
    assert ratio == 1.0 and low < 1 < high
    assert math.isnan(metrics.fter_interval([0.9], [1e-4], [math.nan], [1e-4])[0])
    assert math.isnan(metrics.fter_interval([0.9], [1e-4], [0.0], [1e-4])[0])


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


# --------------------------------------------------------------------------- DeLong and intervals


def _brute_force_delong(y, scores_a, scores_b=None):
    """DeLong's (1988) structural components from the definition: psi over every
    positive-negative pair (1 if the positive outranks, 1/2 on a tie), V10 = row means,
    V01 = column means; variance S10 / m + S01 / n of AUROC(a) or of AUROC(a) - AUROC(b)."""

    def components(scores):
        p, n = scores[y == 1], scores[y == 0]
        psi = (p[:, None] > n[None, :]) + 0.5 * (p[:, None] == n[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    auc, v10, v01 = components(scores_a)
    if scores_b is not None:
        auc_b, v10_b, v01_b = components(scores_b)
        auc, v10, v01 = auc - auc_b, v10 - v10_b, v01 - v01_b
    return auc, v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01)


def test_delong_equals_the_brute_force_structural_components_with_ties():
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 70)
    a = np.round(rng.random(70) + 0.5 * y, 1)  # rounding makes many ties
    b = np.round(rng.random(70) + 0.2 * y, 1)
    auc, var = metrics.delong(y, a)
    assert (auc, var) == pytest.approx(_brute_force_delong(y, a), rel=1e-12)
    assert auc == pytest.approx(roc_auc_score(y, a))
    diff, diff_var = metrics.delong_paired(y, a, b)
    assert (diff, diff_var) == pytest.approx(_brute_force_delong(y, a, b), rel=1e-12)
    # A score set against itself differs by exactly nothing.
    assert metrics.delong_paired(y, a, a) == (0.0, 0.0)


def test_delong_on_hanley_and_mcneil_ct_ratings():
    # Hanley & McNeil (1982), Radiology 143:29, Table 1: 109 CT images rated 1-5; their AUROC
    # is 0.893.
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    ratings = np.repeat(np.tile(np.arange(1, 6), 2), normal + abnormal).astype(float)
    y = np.repeat([0, 1], [sum(normal), sum(abnormal)])
    auc, var = metrics.delong(y, ratings / 5)
    assert auc == pytest.approx(0.893, abs=5e-4)
    assert var == pytest.approx(_brute_force_delong(y, ratings)[1], rel=1e-12)
    assert 0.02 < math.sqrt(var) < 0.04  # their own standard error is 0.032


def test_multiclass_delong_is_the_macro_auroc_with_a_stratified_bootstrap_variance():
    rng = np.random.default_rng(11)
    y = np.repeat([0, 1, 2], [40, 50, 60])
    logits = rng.normal(size=(150, 3)) + 1.2 * np.eye(3)[y]
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    auc, var = metrics.delong(y, scores)
    assert auc == pytest.approx(roc_auc_score(y, scores, multi_class="ovr"))
    # Resample within each class (the class counts fixed, as the variance assumes).
    index = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), (4000, (y == c).sum())) for c in range(3)], axis=1
    )
    boot = metrics.resampled_aurocs(y, scores, index)
    assert var == pytest.approx(boot.var(), rel=0.15)


def test_auroc_interval_stays_in_the_unit_range_and_does_not_collapse_at_one():
    z = norm.ppf(0.975)
    low, high = metrics.auroc_interval(1.0, 0.0, 390, 234)
    # At AUROC 1 the effective n is Hanley & McNeil's limit 2 m n / (n + 1): Wilson [n/(n+z²), 1].
    n = 2 * 390 * 234 / 235
    assert (low, high) == pytest.approx((n / (n + z * z), 1.0))
    assert 0.99 < low < 1.0
    assert metrics.auroc_interval(0.0, 0.0, 390, 234)[0] == 0.0
    # Away from the bounds it is about as wide as auc ± z sqrt(var), nudged toward 1/2.
    low, high = metrics.auroc_interval(0.85, 0.02**2, 400, 400)
    assert high - low == pytest.approx(2 * z * 0.02, rel=0.01)
    assert (low, high) == pytest.approx((0.85 - z * 0.02, 0.85 + z * 0.02), abs=5e-3)
    for auc, var in [(0.999, 1e-7), (0.5, 0.01), (0.02, 1e-4), (0.97, 0.2)]:
        low, high = metrics.auroc_interval(auc, var, 30, 20)
        assert 0 <= low <= auc <= high <= 1
    assert math.isnan(metrics.auroc_interval(math.nan, 0.0, 3, 3)[0])
    assert metrics.auroc_variance(1.0, 0.0, 390, 234) > 0
    assert metrics.auroc_variance(0.85, 0.02**2, 400, 400) == pytest.approx(0.02**2, rel=0.02)


def test_auroc_interval_covers_the_true_auroc_near_the_bounds_too():
    # Binormal scores: negatives N(0, 1), positives N(d, 1) -> true AUROC = Phi(d / sqrt(2)).
    rng = np.random.default_rng(12)
    for truth, m, n in [(0.8, 50, 50), (0.95, 60, 40), (0.995, 100, 100)]:
        y = np.repeat([0, 1], [n, m])
        scores = rng.normal(size=(1000, m + n)) + math.sqrt(2) * norm.ppf(truth) * y
        auc, var = _delong_rows(scores, y)
        hits = [lo <= truth <= hi for lo, hi in
                (metrics.auroc_interval(a, v, m, n) for a, v in zip(auc, var, strict=True))]  # fmt: skip
        assert 0.93 <= np.mean(hits) <= 0.995, (truth, np.mean(hits))


def _delong_rows(scores, y):
    """AUROC and DeLong variance of each row of ``scores`` (..., n) at once (the test checks it
    against ``metrics.delong``); also each row's per-image influences, positives then negatives."""
    pos = y == 1
    m, n = pos.sum(), (~pos).sum()
    ranks = stats.rankdata(scores, axis=-1)
    v10 = (ranks[..., pos] - stats.rankdata(scores[..., pos], axis=-1)) / n
    v01 = 1 - (ranks[..., ~pos] - stats.rankdata(scores[..., ~pos], axis=-1)) / m
    auc = v10.mean(-1)
    return auc, v10.var(-1, ddof=1) / m + v01.var(-1, ddof=1) / n


def _cross_seed_covariance(scores, y):
    """``metrics.seed_covariance`` of each run (runs, seeds, images) at once."""
    pos = y == 1
    m, n = pos.sum(), (~pos).sum()
    ranks = stats.rankdata(scores, axis=-1)
    v10 = (ranks[..., pos] - stats.rankdata(scores[..., pos], axis=-1)) / n
    v01 = 1 - (ranks[..., ~pos] - stats.rankdata(scores[..., ~pos], axis=-1)) / m
    k = scores.shape[1]
    total = 0.0
    for v, size in ((v10 / m, m), (v01 / n, n)):
        c = v - v.mean(-1, keepdims=True)
        summed = c.sum(1)
        total = total + size / (size - 1) * ((summed**2).sum(-1) - (c**2).sum((1, 2)))
    return total / (k * (k - 1))


def _simulate_seeds(rng, runs, k, draw_d, test_shared, m=100, n=100, rho=0.7):
    """``runs`` simulated runs of ``k`` seeds: seed ``i``'s classifier separates the classes by
    ``d_i`` (training randomness, ``draw_d``); its scores on image ``j`` are
    ``d_i y_j + sqrt(rho) u_j + sqrt(1 - rho) e_ij``, ``u`` the image's own difficulty (the
    same for every seed when the test set is shared), ``e`` the seed's idiosyncrasy.
    Returns y, scores (runs, k, m + n), per-seed AUROCs and auroc_variance."""
    y = np.repeat([0, 1], [n, m])
    d = draw_d((runs, k, 1))
    u = rng.normal(size=(runs, 1 if test_shared else k, m + n))
    scores = d * y + math.sqrt(rho) * u + math.sqrt(1 - rho) * rng.normal(size=(runs, k, m + n))
    auc, var = _delong_rows(scores, y)
    variances = np.vectorize(lambda a, v: metrics.auroc_variance(a, v, m, n))(auc, var)
    return y, scores, auc, variances


def _skewed(rng, size):
    """Separations whose AUROCs look like the demo's R→S by seed (0.956 / 0.673 / 0.997):
    lognormal, so AUROCs pile up near 1 with a long tail down."""
    return np.exp(math.log(2.3) + 0.6 * rng.normal(size=size))


def _gaussian(rng, size):
    return math.sqrt(2) * norm.ppf(0.85 + 0.02 * rng.normal(size=size))


@pytest.mark.parametrize(
    ("n_seeds", "shape", "shared", "measured"),
    [(3, "skewed", True, False), (5, "skewed", True, True), (3, "skewed", False, False),
     (5, "gaussian", True, True)],
)  # fmt: skip
def test_seed_mean_interval_covers_the_true_mean_auroc(n_seeds, shape, shared, measured):
    """2,000 simulated runs; the 95 % interval of the plain mean over seeds must cover the true
    mean AUROC (over training randomness) in [0.92, 0.98] of them. ``shared``: one test set for
    every seed (S→R on real-test); ``measured``: the seeds' covariance from their predictions
    (``seed_covariance``), else the conservative default."""
    rng = np.random.default_rng(13)
    draw = {"skewed": _skewed, "gaussian": _gaussian}[shape]
    truth = norm.cdf(draw(rng, 400_000) / math.sqrt(2)).mean()
    y, scores, auc, variances = _simulate_seeds(
        rng, 2000, n_seeds, lambda size: draw(rng, size), shared
    )
    covariance = _cross_seed_covariance(scores, y)
    assert covariance[0] == pytest.approx(metrics.seed_covariance(y, list(scores[0])), rel=1e-9)
    assert _delong_rows(scores[0, 0], y) == pytest.approx(metrics.delong(y, scores[0, 0]))
    hits = 0
    for i in range(len(auc)):
        mean, low, high = metrics.seed_mean_interval(
            auc[i], variances[i], shared_test=shared,
            covariance=covariance[i] if measured else None,
        )  # fmt: skip
        assert 0 <= low <= high <= 1
        hits += low <= truth <= high
    assert 0.92 <= hits / len(auc) <= 0.98, hits / len(auc)


def test_seed_mean_interval_on_the_demo_values_stays_in_the_unit_range():
    mean, low, high = metrics.seed_mean_interval([0.956, 0.673, 0.997], [1e-4] * 3)
    assert mean == pytest.approx(0.8753333) and 0 < low < mean < high < 1
    # Every seed at 1.0: the test sampling alone keeps the interval open below.
    v = metrics.auroc_variance(1.0, 0.0, 100, 100)
    mean, low, high = metrics.seed_mean_interval([1.0, 1.0, 1.0], [v] * 3)
    assert mean == high == 1.0 and 0.98 < low < 1.0
    # A seed's covariance with an identical seed is its own variance.
    rng = np.random.default_rng(14)
    y, s = rng.integers(0, 2, 80), rng.random(80)
    assert metrics.seed_covariance(y, [s, s]) == pytest.approx(metrics.delong(y, s)[1])
    assert math.isnan(metrics.seed_mean_interval([0.9], [1e-4])[1])


def test_fter_is_the_ratio_of_mean_aurocs_with_a_log_scale_interval():
    # The thesis's Table 4.13: 0.637 / 0.957 = 0.666 (a ratio of means, not a mean of ratios).
    ratio, low, high = metrics.fter_interval([0.637] * 3, [1e-4] * 3, [0.957] * 3, [1e-4] * 3)
    assert ratio == pytest.approx(0.666, abs=5e-4) and 0 < low < ratio < high
    assert high / ratio == pytest.approx(ratio / low)  # symmetric on the log scale
    s2r, r2s = [0.80, 0.85, 0.82], [0.956, 0.673, 0.997]
    ratio, low, high = metrics.fter_interval(s2r, [1e-4] * 3, r2s, [1e-4] * 3)
    assert ratio == pytest.approx(np.mean(s2r) / np.mean(r2s))
    assert ratio != pytest.approx(np.mean(np.divide(s2r, r2s)), abs=1e-3)
    assert 0 < low < ratio < high


def test_fter_interval_covers_the_ratio_of_true_means(n_seeds=3):
    rng = np.random.default_rng(15)
    truth = (norm.cdf(np.exp(math.log(1.5) + 0.3 * rng.normal(size=400_000)) / math.sqrt(2)).mean()
             / norm.cdf(_skewed(rng, 400_000) / math.sqrt(2)).mean())  # fmt: skip
    _, _, s2r, s2r_var = _simulate_seeds(
        rng, 2000, n_seeds, lambda size: np.exp(math.log(1.5) + 0.3 * rng.normal(size=size)), True
    )
    _, _, r2s, r2s_var = _simulate_seeds(rng, 2000, n_seeds, lambda s: _skewed(rng, s), False)
    hits = sum(
        low <= truth <= high
        for _, low, high in map(metrics.fter_interval, s2r, s2r_var, r2s, r2s_var)
    )
    assert 0.92 <= hits / 2000 <= 0.98, hits / 2000


def test_compare_over_seeds_is_the_one_sample_t_test_without_test_variance():
    from scipy import stats as st

    diffs = [0.051, 0.029, 0.001, 0.056, 0.055]
    got = metrics.compare_over_seeds(diffs, [0.0] * 5, shared_test=False)
    ref = st.ttest_1samp(diffs, 0.0)
    ci = ref.confidence_interval(0.95)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    # Hand-checked: mean 0.0384, sd 0.02370, t = 3.623 on 4 df -> p = 0.0223.
    assert got.diff == pytest.approx(0.0384) and got.p == pytest.approx(0.0223, abs=5e-4)
    # mdd: the difference a t test on 4 df detects with 80 % power (noncentral t).
    se = np.std(diffs, ddof=1) / math.sqrt(5)
    crit = st.t.ppf(0.975, 4)
    power = st.nct.sf(crit, 4, got.mdd / se) + st.nct.cdf(-crit, 4, got.mdd / se)
    assert power == pytest.approx(0.8, abs=1e-6)
    # A shared test set's variance widens the interval and raises the mdd.
    shared = metrics.compare_over_seeds(diffs, [2e-4] * 5)
    assert shared.high - shared.low > got.high - got.low and shared.mdd > got.mdd
    assert math.isnan(metrics.compare_over_seeds([0.1], [1e-4]).p)


def test_a_comparison_interval_stays_in_the_range_of_a_difference_of_aurocs():
    # Two seeds: the t quantile on 1 df is 12.7, so mean 0.7 ± 12.7 x 0.2 would reach past ±1.
    got = metrics.compare_over_seeds([0.5, 0.9], [0.0, 0.0], shared_test=False)
    assert got.diff == pytest.approx(0.7) and (got.low, got.high) == (-1.0, 1.0)
    assert got.mdd > 1  # no difference an AUROC can make is detectable with 2 such seeds


def test_holm_against_its_definition():
    p = [0.01, 0.04, 0.03, 0.005, math.nan, 0.5]
    # Sorted: 0.005 x 5, 0.01 x 4, 0.03 x 3, 0.04 x 2, 0.5 x 1, each at least the one before.
    expected = [0.04, 0.09, 0.09, 0.025, math.nan, 0.5]
    assert metrics.holm(p) == pytest.approx(expected, nan_ok=True)
    # Definition: step down through the sorted p-values, rejecting while p_(i) <= alpha / (m-i+1);
    # the adjusted p-value is <= alpha exactly for the hypotheses that procedure rejects.
    rng = np.random.default_rng(16)
    for _ in range(50):
        p = rng.random(6) ** 3
        adjusted = np.array(metrics.holm(p))
        for alpha in (0.01, 0.05, 0.1, 0.3):
            rejected = set()
            for i, j in enumerate(np.argsort(p)):
                if p[j] > alpha / (len(p) - i):
                    break
                rejected.add(int(j))
            assert rejected == set(np.flatnonzero(adjusted <= alpha).tolist())


def test_seeds_needed_is_the_fewest_seeds_reaching_the_power():
    k = metrics.seeds_needed(0.03, 0.0, 0.02)
    assert k > 2
    for seeds, reaches in ((k, True), (k - 1, False)):
        se = 0.03 / math.sqrt(seeds)
        assert (metrics._power(0.02, se, seeds - 1, 0.05) >= 0.8) is reaches
    assert metrics.seeds_needed(0.06, 0.0, 0.02) > k  # noisier seeds need more
    assert metrics.seeds_needed(0.0075, 0.0, 0.05) <= metrics.seeds_needed(0.0075, 0.0, 0.02)
    assert metrics.seeds_needed(0.0075, 0.0, 0.05) == 3  # p(0.05 at 3 seeds) = 0.9986
    # A shared test set whose error alone hides the difference: no number of seeds helps.
    assert metrics.seeds_needed(0.03, 0.015**2, 0.02, max_seeds=50) == 51
    with pytest.raises(MetricsError, match="detect must be > 0"):
        metrics.seeds_needed(0.03, 0.0, 0.0)
