"""Numbers of the two-way evaluation: AUROC, accuracy, FTER, bootstrap intervals, distribution
and memorisation metrics.

Conventions:

- ``y`` holds integer label indices (index into the run's ``labels``), ``scores`` is an
  ``(n, n_labels)`` array of class probabilities.
- Overall AUROC of a binary task is the AUROC of the positive (second) label's score; with more
  labels it is the macro average of one-vs-rest AUROCs. Per-class AUROC is one-vs-rest on that
  class's own score.
- An undefined number (AUROC on a test set with one class) is ``nan``, and the result says why;
  JSON files store it as ``null`` (``tgap.artifacts.json_safe``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import linalg, stats
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score, roc_curve
from sklearn.metrics.pairwise import pairwise_distances_chunked
from sklearn.neighbors import NearestNeighbors


class MetricsError(ValueError):
    """Inputs to a metric are empty, mis-shaped or inconsistent; the message says which."""


# --------------------------------------------------------------------------- classification


def _check_scores(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        # A single score column is the positive class of a binary task.
        scores = np.stack([1.0 - scores, scores], axis=1)
    if len(y) == 0:
        raise MetricsError("no samples: cannot compute a metric on an empty set")
    if scores.shape[0] != len(y):
        raise MetricsError(f"{len(y)} labels but {scores.shape[0]} score rows")
    if y.min() < 0 or y.max() >= scores.shape[1]:
        raise MetricsError(
            f"label indices must be in [0, {scores.shape[1]}), got {y.min()}..{y.max()}"
        )
    return y.astype(np.int64), scores


def auroc_undefined_reason(y: np.ndarray, n_labels: int) -> str:
    """Why AUROC cannot be computed on labels ``y`` ('' when it can)."""
    present = np.unique(np.asarray(y))
    if len(y) == 0:
        return "empty set"
    if len(present) < 2:
        return f"only one class present (label index {int(present[0])}): AUROC needs both"
    if n_labels > 2 and len(present) < n_labels:
        return f"classes {sorted(set(range(n_labels)) - set(present.tolist()))} absent"
    return ""


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    """Overall AUROC (scikit-learn); ``nan`` when only one class is present."""
    y, scores = _check_scores(y, scores)
    if auroc_undefined_reason(y, scores.shape[1]):
        return float("nan")
    if scores.shape[1] == 2:
        return float(roc_auc_score(y == 1, scores[:, 1]))
    return float(roc_auc_score(y, scores, multi_class="ovr", average="macro"))


def class_auroc(y: np.ndarray, scores: np.ndarray, c: int) -> float:
    """One-vs-rest AUROC of class ``c`` on its own score column; ``nan`` if undefined."""
    y, scores = _check_scores(y, scores)
    positives = y == c
    if positives.all() or not positives.any():
        return float("nan")
    return float(roc_auc_score(positives, scores[:, c]))


def predict_labels(scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Label indices from scores: binary tasks use ``threshold`` on the positive score (None =
    0.5), otherwise argmax."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] == 2:
        t = 0.5 if threshold is None else threshold
        return (scores[:, 1] >= t).astype(np.int64)
    return scores.argmax(axis=1).astype(np.int64)


def accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of correct predictions (scikit-learn)."""
    if len(y) == 0:
        raise MetricsError("no samples: cannot compute accuracy on an empty set")
    return float(accuracy_score(y, predicted))


def youden_threshold(y: np.ndarray, positive_scores: np.ndarray) -> float:
    """Threshold on the positive score that maximises TPR - FPR (Youden's J); 0.5 if undefined."""
    positives = np.asarray(y) == 1
    if positives.all() or not positives.any():
        return 0.5
    fpr, tpr, thresholds = roc_curve(positives, positive_scores)
    best = int(np.argmax(tpr - fpr))
    # roc_curve's first threshold is +inf (predict nothing positive); keep thresholds finite.
    return float(min(thresholds[best], 1.0))


def classification_metrics(
    y: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    threshold: float | None = None,
    *,
    bootstrap_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy and AUROC overall and per class, ROC curve, confusion matrix, AUROC bootstrap CI.

    Per-class accuracy is the fraction of that class's images predicted as that class (recall).
    """
    y, scores = _check_scores(y, scores)
    labels = list(labels)
    if scores.shape[1] != len(labels):
        raise MetricsError(f"{scores.shape[1]} score columns but {len(labels)} labels {labels}")
    predicted = predict_labels(scores, threshold)
    reason = auroc_undefined_reason(y, len(labels))
    out: dict[str, Any] = {
        "n": int(len(y)),
        "n_per_class": {label: int((y == c).sum()) for c, label in enumerate(labels)},
        "labels": labels,
        "threshold": threshold,
        "accuracy": accuracy(y, predicted),
        "auroc": auroc(y, scores),
        "auroc_undefined_reason": reason,
    }
    for c, label in enumerate(labels):
        mask = y == c
        out[f"accuracy_{label}"] = float((predicted[mask] == c).mean()) if mask.any() else math.nan
        out[f"auroc_{label}"] = class_auroc(y, scores, c)
    low, high = auroc_ci(y, scores, bootstrap_resamples, confidence, seed)
    out["auroc_ci_low"], out["auroc_ci_high"] = low, high
    out["bootstrap"] = {"resamples": bootstrap_resamples, "confidence": confidence, "seed": seed}
    out["confusion_matrix"] = confusion_matrix(y, predicted, labels=range(len(labels))).tolist()
    out["roc"] = roc_points(y, scores, labels)
    return out


def _curve(positives: np.ndarray, score: np.ndarray) -> dict[str, list[float]]:
    fpr, tpr, thresholds = roc_curve(positives, score)
    # The first threshold is +inf ("nothing positive"); store the next float above 1 instead,
    # which classifies the same way for probabilities and is valid JSON.
    thresholds = np.where(np.isinf(thresholds), np.nextafter(1.0, 2.0), thresholds)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


def roc_points(
    y: np.ndarray, scores: np.ndarray, labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """ROC curves as JSON-safe lists.

    Binary: ``{"fpr", "tpr", "thresholds"}`` of the positive class (empty when undefined). More
    labels: one-vs-rest per class, ``{label: {"fpr", "tpr", "thresholds"}}`` for every class
    present and absent from the rest, plus ``"macro"``: the mean TPR of those curves on a common
    FPR grid (the union of their FPRs), whose area is close to the macro AUROC.
    """
    y, scores = _check_scores(y, scores)
    if scores.shape[1] == 2:
        if auroc_undefined_reason(y, 2):
            return {"fpr": [], "tpr": [], "thresholds": []}
        return _curve(y == 1, scores[:, 1])
    names = list(labels) if labels is not None else [str(c) for c in range(scores.shape[1])]
    out: dict[str, Any] = {}
    for c, name in enumerate(names):
        positives = y == c
        if positives.any() and not positives.all():
            out[name] = _curve(positives, scores[:, c])
    if out:
        grid = np.unique(np.concatenate([np.asarray(v["fpr"]) for v in out.values()]))
        tpr = np.mean([np.interp(grid, v["fpr"], v["tpr"]) for v in out.values()], axis=0)
        out["macro"] = {"fpr": grid.tolist(), "tpr": tpr.tolist()}
    return out


# --------------------------------------------------------------------------- FTER and bootstrap


def fter(s2r_auroc: float, r2s_auroc: float) -> float:
    """Fine-Tune Efficiency Ratio = AUROC(S→R) / AUROC(R→S); nan if either is undefined or 0."""
    if not (math.isfinite(s2r_auroc) and math.isfinite(r2s_auroc)) or r2s_auroc == 0:
        return float("nan")
    return float(s2r_auroc / r2s_auroc)


def resampled_aurocs(y: np.ndarray, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """AUROC of each row of resample indices ``index`` (B, n), vectorised (Mann-Whitney U).

    Equal to scikit-learn's ``roc_auc_score`` per resample (ties get average ranks, as there);
    ``nan`` for a resample with one class only. Binary tasks score the positive column; with more
    labels, the macro average of one-vs-rest AUROCs.
    """
    y, scores = _check_scores(y, scores)
    columns = [1] if scores.shape[1] == 2 else list(range(scores.shape[1]))
    per_class = []
    for c in columns:
        positive = (y == c)[index]
        s = scores[:, c][index]
        ranks = stats.rankdata(s, axis=1)
        n_pos = positive.sum(axis=1)
        n_neg = index.shape[1] - n_pos
        u = (ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class.append(np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan))
    return np.mean(per_class, axis=0)


def bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    sizes: Sequence[int],
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> tuple[float, float, int]:
    """Percentile bootstrap interval, resampling each sample independently with replacement.

    ``statistic(*indices)`` receives one ``(b, n_i)`` index array per sample (sizes ``n_i``) and
    returns ``b`` values; ``nan`` values (undefined resamples) are dropped. Returns
    ``(low, high, n_valid)``; ``(nan, nan, 0)`` when no resample is defined.
    """
    if resamples < 1:
        raise MetricsError(f"bootstrap resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise MetricsError(f"confidence must be in (0, 1), got {confidence}")
    if any(n < 1 for n in sizes):
        raise MetricsError(f"cannot bootstrap an empty sample (sizes {list(sizes)})")
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        values.append(statistic(*[rng.integers(0, n, size=(b, n)) for n in sizes]))
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), 0
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high), int(len(values))


def auroc_ci(
    y: np.ndarray,
    scores: np.ndarray,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap CI for AUROC (resampling test images); ``(nan, nan)`` if AUROC is undefined."""
    y, scores = _check_scores(y, scores)
    if auroc_undefined_reason(y, scores.shape[1]):
        return float("nan"), float("nan")
    low, high, _ = bootstrap_ci(
        lambda idx: resampled_aurocs(y, scores, idx), [len(y)], resamples, confidence, seed
    )
    return low, high


def fter_ci(
    s2r: tuple[np.ndarray, np.ndarray],
    r2s: tuple[np.ndarray, np.ndarray],
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap CI for FTER, resampling the real test set (S→R) and the synthetic test set (R→S)
    independently. ``s2r`` and ``r2s`` are ``(y, scores)`` pairs."""
    (ys, ss), (yr, sr) = _check_scores(*s2r), _check_scores(*r2s)
    if auroc_undefined_reason(ys, ss.shape[1]) or auroc_undefined_reason(yr, sr.shape[1]):
        return float("nan"), float("nan")

    def ratio(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return resampled_aurocs(ys, ss, i) / resampled_aurocs(yr, sr, j)

    low, high, _ = bootstrap_ci(ratio, [len(ys), len(yr)], resamples, confidence, seed)
    return low, high


# --------------------------------------------------------------------------- over seeds


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean over seeds and its Student-t interval, ``(mean, low, high)``.

    Each seed is one whole run (selection, fine-tune, generation, classifiers), so the spread
    of its values is the training randomness and, where each seed has its own test set (R→S,
    the synthetic set), the test-image randomness too. Chosen over a hierarchical bootstrap
    because with 3-5 seeds a bootstrap over seeds under-covers (it cannot see a spread wider
    than the few values drawn); the t quantile is exact for normal seed effects. Needs 2+
    finite values, else the bounds are ``nan``.
    """
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        raise MetricsError("seed_interval: no values")
    if not 0 < confidence < 1:
        raise MetricsError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(arr.mean())
    if len(arr) < 2 or not np.isfinite(arr).all():
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, len(arr) - 1) * arr.std(ddof=1))
    half /= math.sqrt(len(arr))
    return mean, mean - half, mean + half


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> dict[str, float]:
    """Mean of ``a - b`` over paired seeds, its t-interval and the paired t-test's two-sided
    p-value (``scipy.stats.ttest_rel``). ``nan`` bounds and p with fewer than 2 pairs or a
    non-finite value; when every seed gives the same difference, p is 0 (``nan`` if it is 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise MetricsError(
            f"paired_difference: expected two equal-length lists, got {a.shape}, {b.shape}"
        )
    diff = a - b
    mean, low, high = seed_interval(diff, confidence) if len(diff) else (math.nan,) * 3
    p = math.nan
    if len(diff) >= 2 and np.isfinite(diff).all():
        if np.ptp(diff) <= 1e-12 * max(1.0, abs(mean)):
            # Every seed gives the same difference: certain if it is not 0, nothing if it is.
            p = 0.0 if abs(mean) > 1e-12 else math.nan
        else:
            p = float(stats.ttest_rel(a, b).pvalue)
    return {"mean": mean, "ci_low": low, "ci_high": high, "p_value": p, "n": int(len(diff))}


# --------------------------------------------------------------------------- distributions


def _check_features(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise MetricsError(
            f"{what}: expected two (n, d) arrays with the same d, got {a.shape}, {b.shape}"
        )
    if len(a) < 2 or len(b) < 2:
        raise MetricsError(f"{what}: needs at least 2 samples per set, got {len(a)} and {len(b)}")
    return a, b


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula)."""
    a, b = _check_features(a, b, "frechet_distance")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        # Singular product (n < d): regularise as the reference FID code does.
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real  # sqrtm may return tiny imaginary parts from round-off
    value = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def _cubic_kernel(x: np.ndarray, y: np.ndarray, d: int) -> np.ndarray:
    k = x @ y.T
    k /= d
    k += 1
    return k * k * k  # not ** 3: numpy's generic pow is several times slower


def kid(
    a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance formula (unbiased MMD², cubic polynomial kernel) averaged over
    random subsets; returns ``(mean, std)``."""
    a, b = _check_features(a, b, "kid")
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (_cubic_kernel(p, q, d) for p, q in ((x, x), (y, y), (x, y)))
        values[i] = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean()
        )
    return float(values.mean()), float(values.std())


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of ``x`` to its k-th nearest other row.

    Same distance routine and orientation as the ball counts below (scikit-learn's chunked
    Euclidean), so the k-th neighbour sits exactly on its (open) ball's boundary.
    """

    def kth(block: np.ndarray, start: int) -> np.ndarray:
        return np.partition(block, k, axis=1)[:, k]  # column 0 is the point itself

    return np.concatenate(
        list(pairwise_distances_chunked(x, x, reduce_func=kth, working_memory=256))
    )


def _count_in_balls(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For each query, how many open balls ``(centres, radii)`` contain it (chunked over centres,
    bounded memory; distances oriented centre -> query, like the radii)."""
    counts = np.zeros(len(queries), dtype=np.int64)
    start = 0
    for block in pairwise_distances_chunked(centres, queries, working_memory=256):
        counts += (block < radii[start : start + len(block), None]).sum(axis=0)
        start += len(block)
    return counts


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020)
    with k-nearest-neighbour balls, computed in chunks so 10k × 10k stays within memory.

    Same definitions as the authors' ``prdc`` package (open balls, Euclidean distance); density
    of a set against itself is 1.
    """
    real, fake = _check_features(real, fake, "prdc")
    if min(len(real), len(fake)) <= k:
        raise MetricsError(
            f"prdc: needs more than k={k} samples per set, got {len(real)}, {len(fake)}"
        )
    real_radii = _kth_neighbour_radius(real, k)
    fake_radii = _kth_neighbour_radius(fake, k)
    fake_in_real = _count_in_balls(fake, real, real_radii)
    real_in_fake = _count_in_balls(real, fake, fake_radii)
    nearest_fake = np.concatenate(list(pairwise_distances_chunked(
        real, fake, reduce_func=lambda block, start: block.min(axis=1), working_memory=256
    )))  # fmt: skip
    return {
        "precision": float((fake_in_real > 0).mean()),
        "recall": float((real_in_fake > 0).mean()),
        "density": float(fake_in_real.sum() / (k * len(fake))),
        "coverage": float((nearest_fake < real_radii).mean()),
    }


def distribution_metrics(
    real: np.ndarray,
    fake: np.ndarray,
    k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Fréchet distance, KID (mean, std), precision/recall/density/coverage of ``fake`` vs ``real``."""
    kid_mean, kid_std = kid(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return {
        "fid": frechet_distance(real, fake),
        "kid": kid_mean,
        "kid_std": kid_std,
        **prdc(real, fake, k=k),
    }


# --------------------------------------------------------------------------- memorisation


def memorisation(
    synthetic: np.ndarray, tuning: np.ndarray, quantile: float = 0.01, n_pairs: int = 8
) -> dict[str, Any]:
    """Does the synthetic set copy its tuning set?

    For each synthetic image: the distance to its nearest tuning image. The reference is the
    tuning set's own nearest-neighbour distances (each tuning image to its nearest *other* tuning
    image, ignoring exact duplicates that selection may have introduced). A synthetic image is a
    near-copy when its distance is at most the ``quantile`` of those reference distances, i.e.
    closer to a tuning image than all but the closest tuning pairs are to each other.
    Returns the fraction of near-copies, distance summaries and the ``n_pairs`` closest pairs.
    """
    synthetic, tuning = np.asarray(synthetic, np.float64), np.asarray(tuning, np.float64)
    if synthetic.ndim != 2 or tuning.ndim != 2 or synthetic.shape[1] != tuning.shape[1]:
        raise MetricsError(
            f"memorisation: expected (n, d) arrays, got {synthetic.shape}, {tuning.shape}"
        )
    if len(synthetic) == 0 or len(tuning) == 0:
        raise MetricsError(
            f"memorisation: empty set (synthetic {len(synthetic)}, tuning {len(tuning)})"
        )
    if not 0 <= quantile <= 1:
        raise MetricsError(f"memorisation: quantile must be in [0, 1], got {quantile}")
    nearest = NearestNeighbors(n_neighbors=1).fit(tuning).kneighbors(synthetic)[1][:, 0]
    # Recompute the distances directly: the fast search expands |a-b|² = |a|² + |b|² - 2ab, whose
    # round-off would hide an exact copy (distance 0) as ~1e-6.
    distance = np.linalg.norm(synthetic - tuning[nearest], axis=1)

    # Tuning reference: nearest distinct neighbour. Exact duplicates (distance 0) are the same
    # image picked twice, not a pair of similar X-rays, so skip them.
    unique = np.unique(tuning, axis=0)
    reason = ""
    if len(unique) >= 2:
        other = NearestNeighbors(n_neighbors=2).fit(unique).kneighbors(unique)[1][:, 1]
        reference = np.linalg.norm(unique - unique[other], axis=1)
        threshold = float(np.quantile(reference, quantile))
    else:
        reference = np.zeros(0)
        threshold = 0.0
        reason = "tuning set has fewer than 2 distinct images: only exact copies count"
    near = distance <= threshold
    order = np.argsort(distance, kind="stable")[:n_pairs]
    median_ref = float(np.median(reference)) if len(reference) else float("nan")
    return {
        "near_copy_fraction": float(near.mean()),
        "near_copy_count": int(near.sum()),
        "exact_copy_count": int((distance == 0).sum()),
        "near_copy_threshold": threshold,
        "near_copy_quantile": quantile,
        "nn_distance_median": float(np.median(distance)),
        "nn_distance_min": float(distance.min()),
        "tuning_nn_distance_median": median_ref,
        # < 1: synthetic images sit closer to the tuning set than tuning images to each other.
        "nn_distance_ratio": float(np.median(distance) / median_ref)
        if median_ref > 0
        else float("nan"),
        "tuning_duplicates": int(len(tuning) - len(unique)),
        "reason": reason,
        "closest_pairs": [
            {"synthetic": int(i), "tuning": int(nearest[i]), "distance": float(distance[i])}
            for i in order
        ],
        "distances": distance,
        "nearest": nearest,
    }
