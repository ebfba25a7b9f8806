"""Numbers of the two-way evaluation: AUROC, accuracy, their intervals (DeLong per cell, over
seeds on the logit scale), FTER, paired comparisons, Holm, power, distribution and memorisation
metrics.

Conventions:

- ``y`` holds integer label indices (index into the run's ``labels``), ``scores`` is an
  ``(n, n_labels)`` array of class scores: softmax probabilities, or a sigmoid head's per-label
  probabilities, whose rows need not sum to 1. AUROC uses only each column's ranks, so nothing
  here requires normalised rows.
- Overall AUROC of a binary task is the AUROC of the positive (second) label's score; with more
  labels it is the macro average of one-vs-rest AUROCs. Per-class AUROC is one-vs-rest on that
  class's own score.
- An undefined number (AUROC on a test set with one class) is ``nan``, and the result says why;
  JSON files store it as ``null`` (``tgap.artifacts.json_safe``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg, optimize, special, stats
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
    # The macro one-vs-rest average, as roc_auc_score(multi_class="ovr") computes it, but without
    # its demand that rows sum to 1: a sigmoid head's scores are not one distribution.
    return float(np.mean([class_auroc(y, scores, c) for c in range(scores.shape[1])]))


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


# --------------------------------------------------------------------------- bootstrap


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


# --------------------------------------------------------------------------- DeLong


def _influence(y: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """AUROC and each image's influence on it (DeLong's structural components, centred).

    For a class column ``c`` with ``m`` positive and ``n`` negative images, DeLong's components
    are ``V10_i`` (fraction of negatives positive image ``i`` outranks, ties half) and ``V01_j``
    (fraction of positives that outrank negative ``j``), from midranks (Sun & Xu 2014). Image
    ``i``'s influence is ``(V10_i - auc) / m`` as a positive, ``(V01_j - auc) / n`` as a negative.
    Binary tasks score the positive column; more labels: the mean over one-vs-rest classes.
    """
    columns = [1] if scores.shape[1] == 2 else list(range(scores.shape[1]))
    aucs, phi = [], np.zeros(len(y))
    for c in columns:
        positive = y == c
        m, n = int(positive.sum()), int((~positive).sum())
        s = scores[:, c]
        ranks = stats.rankdata(s)
        v = np.empty(len(y))
        v[positive] = (ranks[positive] - stats.rankdata(s[positive])) / n
        v[~positive] = 1 - (ranks[~positive] - stats.rankdata(s[~positive])) / m
        auc = float(v[positive].mean())
        aucs.append(auc)
        phi += np.where(positive, (v - auc) / m, (v - auc) / n)
    return float(np.mean(aucs)), phi / len(columns)


def _stratified_covariance(y: np.ndarray, phi_a: np.ndarray, phi_b: np.ndarray) -> float:
    """Covariance of two statistics with per-image influences ``phi_a``, ``phi_b`` on the same
    images, the test set's class counts held fixed:
    ``sum over classes of n_l / (n_l - 1) * sum (phi_a - class mean)(phi_b - class mean)``.
    With ``phi_a = phi_b`` and one binary AUROC this is DeLong's ``S10 / m + S01 / n``."""
    total = 0.0
    for label in np.unique(y):
        a, b = phi_a[y == label], phi_b[y == label]
        if len(a) > 1:
            total += len(a) / (len(a) - 1) * float(((a - a.mean()) * (b - b.mean())).sum())
    return total


def _stratified_variance(y: np.ndarray, phi: np.ndarray) -> float:
    return _stratified_covariance(y, phi, phi)


def _defined(y: np.ndarray, scores: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    y, scores = _check_scores(y, scores)
    reason = auroc_undefined_reason(y, scores.shape[1])
    if reason:
        raise MetricsError(f"{where}: AUROC undefined ({reason})")
    return y, scores


def delong(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUROC and DeLong's (1988) variance of it over test-image sampling, ``(auc, var)``.

    Binary: the positive column's AUROC. More labels: the macro one-vs-rest AUROC and the
    variance of that mean from the classes' joint influence (DeLong's covariance of the
    per-class AUROCs, the test set's class counts held fixed). Raises ``MetricsError`` when AUROC
    is undefined (one class present). The variance is 0 at AUROC 0 or 1: ``auroc_variance``
    and ``auroc_interval`` give it a floor.
    """
    y, scores = _defined(y, scores, "delong")
    auc, phi = _influence(y, scores)
    return auc, _stratified_variance(y, phi)


def delong_paired(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float]:
    """AUROC(a) - AUROC(b) of two score sets on the same images, and DeLong's variance of that
    difference (which subtracts the covariance the shared images create), ``(diff, var)``."""
    y, scores_a = _defined(y, scores_a, "delong_paired")
    _, scores_b = _defined(y, scores_b, "delong_paired")
    if scores_a.shape != scores_b.shape:
        raise MetricsError(
            f"delong_paired: score arrays differ in shape {scores_a.shape} vs {scores_b.shape}"
        )
    auc_a, phi_a = _influence(y, scores_a)
    auc_b, phi_b = _influence(y, scores_b)
    return auc_a - auc_b, _stratified_variance(y, phi_a - phi_b)


def class_counts(y: np.ndarray, n_labels: int) -> tuple[int, int]:
    """``(n_pos, n_neg)`` that ``auroc_interval`` sizes a cell's AUROC with: binary, the second
    and first label's image counts; more labels, the smallest class against the rest (the
    scarcest one-vs-rest comparison bounds how much the macro AUROC can be trusted)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_labels)
    if n_labels == 2:
        return int(counts[1]), int(counts[0])
    smallest = int(counts.min())
    return smallest, int(counts.sum()) - smallest


# --------------------------------------------------------------------------- per-cell interval


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise MetricsError(f"confidence must be in (0, 1), got {confidence}")


def _hanley_mcneil_n(auc: float, n_pos: int, n_neg: int) -> float:
    """``auc (1 - auc) / var`` of Hanley & McNeil's (1982) AUROC variance: the effective number
    of binomial trials their model gives ``n_pos`` positives and ``n_neg`` negatives. Written
    without the ``auc (1 - auc)`` factor, so it stays finite at AUROC 0 and 1."""
    a = auc
    per_pair = 1 + (n_pos - 1) * (1 - a) / (2 - a) + (n_neg - 1) * a / (1 + a)
    return n_pos * n_neg / per_pair


def effective_n(auc: float, var: float, n_pos: int, n_neg: int) -> float:
    """The number of binomial trials whose proportion has this AUROC's variance.

    ``auc (1 - auc) / var`` with DeLong's ``var``, capped at Hanley & McNeil's effective n for
    the same AUROC and class counts. Near AUROC 0 or 1 DeLong's variance falls to 0 (at 1 every
    positive outranks every negative, so no image's component varies) while the AUROC is still
    uncertain; the cap keeps the test set's finite size in the interval there.
    """
    if n_pos < 1 or n_neg < 1:
        raise MetricsError(f"effective_n: needs n_pos, n_neg >= 1, got {n_pos}, {n_neg}")
    cap = _hanley_mcneil_n(auc, n_pos, n_neg)
    if var <= 0 or auc <= 0 or auc >= 1:
        return cap
    return min(auc * (1 - auc) / var, cap)


def _wilson(p: float, n: float, q: float) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` of ``n`` trials at quantile ``q``."""
    centre = (p + q * q / (2 * n)) / (1 + q * q / n)
    half = q * math.sqrt(p * (1 - p) / n + q * q / (4 * n * n)) / (1 + q * q / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def auroc_interval(
    auc: float, var: float, n_pos: int, n_neg: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval for one cell's AUROC over test-image sampling, ``(low, high)``.

    A Wilson score interval with ``effective_n`` trials: the AUROC treated as a proportion
    whose binomial variance equals DeLong's variance (capped near 0 and 1, see
    ``effective_n``). It always lies in [0, 1], always contains ``auc``, is close to
    ``auc ± z sqrt(var)`` away from the bounds, and stays wide enough at AUROC 1.0
    (``[n / (n + z^2), 1]``). ``(nan, nan)`` when ``auc`` or ``var`` is not finite.
    """
    _check_confidence(confidence)
    if not (math.isfinite(auc) and math.isfinite(var)):
        return math.nan, math.nan
    n = effective_n(auc, var, n_pos, n_neg)
    return _wilson(auc, n, float(stats.norm.ppf(0.5 + confidence / 2)))


def auroc_variance(auc: float, var: float, n_pos: int, n_neg: int) -> float:
    """The test-sampling variance tgap carries for a cell's AUROC: ``p (1 - p) / n`` at the
    Agresti-Coull point ``p = (auc n + 2) / (n + 4)`` with ``n = effective_n + 4``.

    Close to DeLong's variance away from 0 and 1 (the two differ by ``O(1 / n)``), and never 0:
    at AUROC 1.0 it is about ``2 / n^2``, so intervals over seeds do not collapse when every
    seed scores 1.0.
    """
    if not (math.isfinite(auc) and math.isfinite(var)):
        return math.nan
    n = effective_n(auc, var, n_pos, n_neg) + 4
    p = (auc * (n - 4) + 2) / n
    return p * (1 - p) / n


def _seed_arrays(values: Sequence[float], variances: Sequence[float], where: str):
    a, v = np.asarray(values, dtype=float), np.asarray(variances, dtype=float)
    if a.ndim != 1 or a.shape != v.shape or len(a) == 0:
        raise MetricsError(
            f"{where}: expected equal-length, non-empty lists of values and variances, "
            f"got shapes {a.shape} and {v.shape}"
        )
    if (v < 0).any():
        raise MetricsError(f"{where}: variances must be >= 0, got {v.tolist()}")
    return a, v


def _mean_variance(
    values: np.ndarray, variances: np.ndarray, covariance: float
) -> tuple[float, float]:
    """Variance of the mean over ``k`` seeds and its Welch-Satterthwaite degrees of freedom.

    ``values_i = mu + training effect_i + test error_i``, the test errors with variance
    ``variances_i`` and mean covariance ``covariance`` between two seeds. The sample variance
    ``s^2`` over seeds sees the training spread and the part of the test error that differs
    between seeds (``mean(variances) - covariance``), but not the part they share, which does
    not shrink with more seeds; so ``Var(mean) = s^2 / k + covariance`` (unbiased), never less
    than the test sampling alone, ``mean(variances) / k + (1 - 1 / k) covariance``. Degrees of
    freedom: ``k - 1`` for the ``s^2`` part, the DeLong part treated as known.
    """
    k = len(values)
    between = float(values.var(ddof=1)) / k
    test = float(variances.mean()) / k + (1 - 1 / k) * covariance
    total = max(between + covariance, test)
    df = math.inf if between == 0 else (k - 1) * (total / between) ** 2
    return total, df


def _covariance(variances: np.ndarray, shared_test: bool, covariance: float | None) -> float:
    if covariance is not None:
        if not math.isfinite(covariance):
            raise MetricsError(f"covariance must be finite, got {covariance}")
        return covariance
    return float(variances.mean()) if shared_test else 0.0


def seed_covariance(y: np.ndarray, scores_a: Sequence[np.ndarray], scores_b=None) -> float:
    """Mean covariance, over pairs of seeds, of the test-sampling errors of their AUROCs (or,
    with ``scores_b``, of their paired AUROC differences ``a - b``) on the same images ``y``.

    ``scores_a[i]`` is seed ``i``'s scores on the shared test set. DeLong's covariance of two
    AUROCs on the same images, from their per-image structural components (class counts held
    fixed). Pass it as ``covariance`` to ``seed_mean_interval`` / ``compare_over_seeds`` in
    place of the conservative assumption that the seeds' test errors are identical.
    """
    if len(scores_a) < 2:
        raise MetricsError(f"seed_covariance: needs 2+ seeds, got {len(scores_a)}")
    if scores_b is not None and len(scores_b) != len(scores_a):
        raise MetricsError(f"seed_covariance: {len(scores_a)} seeds of a but {len(scores_b)} of b")
    phis = []
    for i, scores in enumerate(scores_a):
        y_i, s = _defined(y, scores, "seed_covariance")
        phi = _influence(y_i, s)[1]
        if scores_b is not None:
            phi = phi - _influence(*_defined(y, scores_b[i], "seed_covariance"))[1]
        phis.append(phi)
    y = np.asarray(y)
    k, total = len(phis), 0.0
    for i in range(k):
        for j in range(i + 1, k):
            total += _stratified_covariance(y, phis[i], phis[j])
    return total / (k * (k - 1) / 2)


def _quantile(confidence: float, df: float) -> float:
    p = 0.5 + confidence / 2
    return float(stats.norm.ppf(p) if math.isinf(df) else stats.t.ppf(p, df))


def _logit_interval(mean: float, var: float, q: float) -> tuple[float, float]:
    """``mean ± q sqrt(var)`` mapped through the logit (delta method), so it stays in (0, 1);
    at a mean of exactly 0 or 1 (every seed there) the logit is infinite and the raw-scale bound
    ``1 - q sqrt(var)`` (or ``q sqrt(var)``) is used on the open side."""
    half = q * math.sqrt(var)
    if mean >= 1:
        return max(1 - half, 0.0), 1.0
    if mean <= 0:
        return 0.0, min(half, 1.0)
    centre, scale = math.log(mean / (1 - mean)), half / (mean * (1 - mean))
    return float(special.expit(centre - scale)), float(special.expit(centre + scale))


def seed_mean_interval(
    values: Sequence[float],
    variances: Sequence[float],
    confidence: float = 0.95,
    *,
    shared_test: bool = True,
    covariance: float | None = None,
) -> tuple[float, float, float]:
    """Mean AUROC over seeds and its interval, ``(mean, low, high)``.

    The point is the plain mean of ``values`` (one AUROC per seed). The interval accounts for
    both sources of error: the training randomness (the spread of ``values`` over seeds, with a
    t quantile on its ``k - 1`` degrees of freedom) and the test-image sampling (``variances``,
    each seed's ``auroc_variance``). ``shared_test=True`` (S→R: every seed scores the same
    real-test images) adds the mean test variance undivided, because a shared test set's error
    is the same for every seed and does not average out; ``False`` (R→S: each seed has its own
    synthetic test set) takes the test error as part of the seed spread. See ``_mean_variance``.
    The interval is ``mean ± q se`` on the logit scale (delta method), so it stays in [0, 1].
    Needs 2+ finite values, else the bounds are ``nan``.
    """
    _check_confidence(confidence)
    a, v = _seed_arrays(values, variances, "seed_mean_interval")
    mean = float(a.mean())
    if len(a) < 2 or not (np.isfinite(a).all() and np.isfinite(v).all()):
        return mean, math.nan, math.nan
    total, df = _mean_variance(a, v, _covariance(v, shared_test, covariance))
    return (mean, *_logit_interval(mean, total, _quantile(confidence, df)))


def fter_interval(
    s2r: Sequence[float],
    s2r_var: Sequence[float],
    r2s: Sequence[float],
    r2s_var: Sequence[float],
    confidence: float = 0.95,
    *,
    s2r_covariance: float | None = None,
) -> tuple[float, float, float]:
    """FTER of a method over seeds, ``(ratio, low, high)``: mean S→R AUROC / mean R→S AUROC (the
    ratio of means, as the thesis's tables), with an interval on the log scale.

    Delta method with the seeds paired: each seed contributes
    ``u_i = s2r_i / mean(s2r) - r2s_i / mean(r2s)``, whose spread over seeds (``var(u) / k``)
    holds both directions' training randomness and their covariance, plus R→S's test error
    (each seed has its own synthetic test set); S→R's shared real-test adds
    ``s2r_covariance / mean(s2r)^2`` (default ``mean(s2r_var)``: the seeds' real-test errors
    taken as identical; ``seed_covariance`` measures it; see ``seed_mean_interval``). t quantile with
    Welch-Satterthwaite degrees of freedom. A single seed gives the per-cell interval of test
    sampling alone (both variances). ``nan`` bounds when a mean is 0 or a value is not finite.
    """
    _check_confidence(confidence)
    s, vs = _seed_arrays(s2r, s2r_var, "fter_interval (S→R)")
    r, vr = _seed_arrays(r2s, r2s_var, "fter_interval (R→S)")
    if len(s) != len(r):
        raise MetricsError(f"fter_interval: {len(s)} S→R seeds but {len(r)} R→S seeds")
    ms, mr = float(s.mean()), float(r.mean())
    finite = all(np.isfinite(x).all() for x in (s, vs, r, vr))
    if not finite or ms <= 0 or mr <= 0:
        return (ms / mr if finite and mr > 0 else math.nan), math.nan, math.nan
    k = len(s)
    if k == 1:
        between, test = 0.0, float(vs[0]) / ms**2 + float(vr[0]) / mr**2
    else:
        shared = _covariance(vs, True, s2r_covariance) / ms**2
        u = s / ms - r / mr
        between = max(float(u.var(ddof=1)), float(vr.mean()) / mr**2) / k
        test = max(shared, float(vs.mean()) / ms**2 / k)
    total = between + test
    df = math.inf if between == 0 else (k - 1) * (total / between) ** 2
    half = _quantile(confidence, df) * math.sqrt(total)
    ratio = ms / mr
    return ratio, ratio * math.exp(-half), ratio * math.exp(half)


@dataclass(frozen=True)
class Comparison:
    """A difference combined over seeds: ``diff`` (mean over seeds), its interval
    ``[low, high]``, the two-sided ``p`` for no difference, and ``mdd``: the smallest true
    difference this many seeds would detect with the requested power at the same alpha."""

    diff: float
    low: float
    high: float
    p: float
    mdd: float


def _power(detect: float, se: float, df: float, alpha: float) -> float:
    """Power of a two-sided t test (df degrees of freedom) with standard error ``se`` against a
    true difference ``detect`` (noncentral t)."""
    if math.isinf(df):
        crit, ncp = float(stats.norm.ppf(1 - alpha / 2)), detect / se
        return float(stats.norm.sf(crit - ncp) + stats.norm.cdf(-crit - ncp))
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    ncp = detect / se
    # scipy's noncentral t returns nan for the far tail at a large ncp; that tail is ~0 there.
    far = float(stats.nct.cdf(-crit, df, ncp))
    return float(stats.nct.sf(crit, df, ncp)) + (far if math.isfinite(far) else 0.0)


def _minimum_detectable(se: float, df: float, alpha: float, power: float) -> float:
    """The true difference a two-sided t test detects with probability ``power``."""
    if se == 0:
        return 0.0
    high = se
    while _power(high, se, df, alpha) < power:  # bracket: power grows with the difference
        high *= 2
    return float(optimize.brentq(lambda d: _power(d, se, df, alpha) - power, 0.0, high))


def compare_over_seeds(
    diffs: Sequence[float],
    variances: Sequence[float],
    confidence: float = 0.95,
    power: float = 0.8,
    *,
    shared_test: bool = True,
    covariance: float | None = None,
) -> Comparison:
    """Combine per-seed differences between two methods (paired by seed) into one comparison.

    ``diffs``: one difference per seed. S→R: ``delong_paired`` on the same real-test images,
    ``variances`` its paired variances (``shared_test=True``: the images are the same for every
    seed, so their sampling error does not average out). R→S, which cannot be paired by image
    (each method has its own synthetic set): the seed-level difference, ``variances`` the two
    cells' variances summed (``shared_test=False``). The variance of the mean difference and its
    degrees of freedom are those of ``seed_mean_interval``; the interval is a t interval on the
    raw scale (a difference of AUROCs is symmetric around 0), cut to the range [-1, 1] a
    difference of AUROCs can take (with few seeds the t quantile is large: 12.7 at 2 seeds),
    ``p`` the two-sided t test, ``mdd`` the smallest true difference detected with probability
    ``power`` at ``alpha = 1 - confidence`` (above 1: no possible difference is detectable).
    Needs 2+ seeds, else bounds, p and mdd are ``nan``.
    """
    _check_confidence(confidence)
    if not 0 < power < 1:
        raise MetricsError(f"power must be in (0, 1), got {power}")
    d, v = _seed_arrays(diffs, variances, "compare_over_seeds")
    mean = float(d.mean())
    if len(d) < 2 or not (np.isfinite(d).all() and np.isfinite(v).all()):
        return Comparison(mean, math.nan, math.nan, math.nan, math.nan)
    total, df = _mean_variance(d, v, _covariance(v, shared_test, covariance))
    se = math.sqrt(total)
    half = _quantile(confidence, df) * se
    if se == 0:
        p = math.nan if mean == 0 else 0.0
    else:
        t = abs(mean) / se
        p = float(2 * (stats.norm.sf(t) if math.isinf(df) else stats.t.sf(t, df)))
    mdd = _minimum_detectable(se, df, 1 - confidence, power)
    return Comparison(mean, max(mean - half, -1.0), min(mean + half, 1.0), p, mdd)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    With the ``m`` finite p-values sorted ascending, the ``i``-th (from 1) becomes
    ``max over j <= i of min(1, (m - j + 1) p_(j))``. Rejecting where the adjusted value is
    ``<= alpha`` controls the family-wise error at ``alpha``. ``nan`` stays ``nan`` and does
    not count in ``m``.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        out[i] = running
    return out.tolist()


def seeds_needed(
    between_sd: float,
    test_var: float,
    detect: float,
    alpha: float = 0.05,
    power: float = 0.8,
    max_seeds: int = 200,
) -> int:
    """Fewest seeds (>= 2) at which ``compare_over_seeds`` detects a true difference ``detect``
    with probability ``power`` at level ``alpha``.

    ``between_sd``: SD over seeds of the per-seed difference (training randomness);
    ``test_var``: the test-image variance of one seed's difference, shared by all seeds (S→R on
    real-test), so it does not shrink with more seeds. Returns ``max_seeds + 1`` when even
    ``max_seeds`` seeds fall short (the shared test set alone may make ``detect`` undetectable:
    then only a larger test set helps).
    """
    if detect <= 0:
        raise MetricsError(f"seeds_needed: detect must be > 0, got {detect}")
    if between_sd < 0 or test_var < 0:
        raise MetricsError(
            f"seeds_needed: between_sd {between_sd}, test_var {test_var} must be >= 0"
        )
    if max_seeds < 2:
        raise MetricsError(f"seeds_needed: max_seeds must be >= 2, got {max_seeds}")
    for k in range(2, max_seeds + 1):
        between = between_sd**2 / k
        total = between + test_var
        if total == 0:
            return k
        df = math.inf if between == 0 else (k - 1) * (total / between) ** 2
        if _power(detect, math.sqrt(total), df, alpha) >= power:
            return k
    return max_seeds + 1


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
