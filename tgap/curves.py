"""Learning curves and the real-equivalent size of a synthetic set.

The real learning curve is AUROC on real-test against the number of real-train images per
label. The real-equivalent size of a synthetic set is the real size whose AUROC equals the set's
S→R AUROC, read off a monotone fit of that curve; the exchange rate is synthetic images per
real-equivalent image.

**The fit.** Isotonic regression (scikit-learn's ``IsotonicRegression``, non-decreasing) of AUROC
on log n, joined by straight lines in log n between the fitted points. Chosen over a parametric
power law a − b·n^−c because (1) with the 4-8 sizes a run trains, a three-parameter fit to noisy
AUROCs is unstable and its extrapolation would be read as a number where no classifier was
trained; (2) isotonic regression assumes only what is known, that more real data does not hurt
on average, and averages away a dip instead of bending the curve through it; (3) it is
order-preserving: fitted to the AUROC intervals' low and high ends, it gives a lower and an upper
curve that enclose the fitted curve, the band used below. Its limit: between two trained sizes
the curve is a straight line in log n, so the reading there is an interpolation, and a flat
stretch (pooled points) makes a whole range of sizes equivalent to one AUROC.

**The inverse.** ``n(a)``: the sizes where the fitted curve equals ``a``; on a flat stretch their
geometric middle. Outside ``[curve(n_min), curve(n_max)]`` it is the words "below n_min" or
"above n_max (more real data than real-train holds)", never an extrapolated number.

**The interval.** From the S→R interval ``[a_lo, a_hi]`` and the curve's band ``[lower(n),
upper(n)]``: low = the smallest n where the upper curve reaches ``a_lo``, high = the largest n
where the lower curve stays at or below ``a_hi``. Both uncertainties widen it, and it always
contains the point reading (the band encloses the fit). It is conservative: the two intervals'
ends are combined as if both were at their extremes at once.

**Over seeds.** Each seed has its own real curve and its own synthetic set. The mean over seeds
is read in AUROC space, where ``tgap.metrics.seed_mean_interval`` works: the mean real curve
(each size's AUROC averaged over seeds, with its interval from the seeds' spread and the shared
real-test's sampling) and the mean S→R AUROC with its interval, then the reading above. Averaging
AUROCs, not sizes, keeps one out-of-range seed from making the mean undefined, and needs no
assumption about the shape of a size's uncertainty.

**Saturation.** A synthetic learning curve (S→R at nested fractions of the generated set) has
flattened when the full set's S→R is not above the interval of the fraction before it. The
smallest fraction whose interval still holds the full set's S→R names the smaller
``generate.n_per_label`` that would have given the same S→R.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

BELOW, ABOVE, INSIDE = "below", "above", ""


class CurveError(ValueError):
    """A learning curve cannot be fitted or read; the message says which input and why."""


# --------------------------------------------------------------------------- the fit


def _isotonic(log_n: np.ndarray, values: np.ndarray) -> np.ndarray:
    return IsotonicRegression(increasing=True).fit_transform(log_n, values)


@dataclass(frozen=True)
class Reading:
    """A size read off a curve: ``n`` inside the curve's range, else nan and the ``side``."""

    n: float
    side: str = INSIDE

    @property
    def inside(self) -> bool:
        return self.side == INSIDE


class MonotoneCurve:
    """Non-decreasing AUROC(n): isotonic on log n, linear in log n between the sizes."""

    def __init__(self, sizes: Sequence[float], auroc: Sequence[float], where: str = "curve"):
        n = np.asarray(sizes, dtype=float)
        a = np.asarray(auroc, dtype=float)
        if n.ndim != 1 or n.shape != a.shape:
            raise CurveError(f"{where}: sizes {list(n)} and AUROCs {list(a)} differ in length")
        if len(n) < 2:
            raise CurveError(f"{where}: a curve needs at least 2 sizes, got {list(n)}")
        if not (n > 0).all() or not (np.diff(n) > 0).all():
            raise CurveError(f"{where}: sizes {list(n)} must be positive and increasing")
        if not np.isfinite(a).all():
            raise CurveError(f"{where}: AUROC undefined at some size ({list(a)})")
        self.sizes = n
        self.x = np.log(n)
        self.y = _isotonic(self.x, a)

    @property
    def n_min(self) -> float:
        return float(self.sizes[0])

    @property
    def n_max(self) -> float:
        return float(self.sizes[-1])

    def __call__(self, n: float) -> float:
        """The fitted AUROC at ``n`` (n inside [n_min, n_max])."""
        return float(np.interp(math.log(n), self.x, self.y))

    def _side(self, a: float) -> str:
        if a < self.y[0]:
            return BELOW
        if a > self.y[-1]:
            return ABOVE
        return INSIDE

    def first_reaching(self, a: float) -> Reading:
        """The smallest n whose fitted AUROC is at least ``a``."""
        side = self._side(a)
        if side:
            return Reading(math.nan, side)
        i = int(np.argmax(self.y >= a))
        if i == 0:
            return Reading(self.n_min)
        return Reading(self._between(i - 1, i, a))

    def last_at_most(self, a: float) -> Reading:
        """The largest n whose fitted AUROC is at most ``a``."""
        side = self._side(a)
        if side:
            return Reading(math.nan, side)
        i = int(np.flatnonzero(self.y <= a)[-1])
        if i == len(self.y) - 1:
            return Reading(self.n_max)
        return Reading(self._between(i, i + 1, a))

    def _between(self, i: int, j: int, a: float) -> float:
        y0, y1 = self.y[i], self.y[j]
        t = 0.0 if y1 == y0 else (a - y0) / (y1 - y0)
        return float(math.exp(self.x[i] + t * (self.x[j] - self.x[i])))

    def inverse(self, a: float) -> Reading:
        """The size whose fitted AUROC is ``a`` (a flat stretch: its geometric middle)."""
        first, last = self.first_reaching(a), self.last_at_most(a)
        if not first.inside:
            return first
        return Reading(math.sqrt(first.n * last.n))


# --------------------------------------------------------------------------- the reading


@dataclass(frozen=True)
class RealEquivalent:
    """The real-equivalent size per label of one S→R AUROC on one real curve, with its interval.

    ``low``/``high`` are nan where the interval runs out of the curve's range (``low_side`` /
    ``high_side`` say which way); ``n`` is nan with ``side`` set when the point itself does.
    """

    n: float
    low: float
    high: float
    side: str
    low_side: str
    high_side: str
    n_min: float
    n_max: float

    def contains(self, n: float) -> bool:
        """Whether ``n`` lies in the interval (an end out of range is open that way)."""
        above_low = self.low_side == BELOW or (self.low_side == INSIDE and self.low <= n)
        below_high = self.high_side == ABOVE or (self.high_side == INSIDE and n <= self.high)
        return above_low and below_high

    def text(self) -> str:
        """What a reader sees: ``"312 [150, 620]"``, ``"312 [<25, >3200]"`` or the words."""
        if self.side == BELOW:
            return f"below n_min ({self.n_min:,.0f} real images per label)"
        if self.side == ABOVE:
            return (
                f"above n_max ({self.n_max:,.0f} per label: more real data than real-train holds)"
            )
        low = f"<{self.n_min:,.0f}" if self.low_side == BELOW else f"{self.low:,.0f}"
        high = f">{self.n_max:,.0f}" if self.high_side == ABOVE else f"{self.high:,.0f}"
        return f"{self.n:,.0f} [{low}, {high}]"

    def to_json(self, prefix: str = "real_equivalent") -> dict[str, float | str]:
        return {
            prefix: self.n,
            f"{prefix}_low": self.low,
            f"{prefix}_high": self.high,
            f"{prefix}_text": self.text(),
        }


@dataclass(frozen=True)
class Point:
    """One classifier's AUROC on real-test: its test-sampling variance and interval
    (``tgap.metrics.auroc_variance`` and ``auroc_interval``)."""

    n: float  # training images per label
    auroc: float
    variance: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def score_point(n: float, y: np.ndarray, scores: np.ndarray, confidence: float) -> Point:
    """``Point`` of a classifier trained on ``n`` images per label, from its real-test scores."""
    from tgap import metrics

    auc, var = metrics.delong(y, scores)
    n_pos, n_neg = metrics.class_counts(y, scores.shape[1])
    low, high = metrics.auroc_interval(auc, var, n_pos, n_neg, confidence)
    return Point(float(n), auc, metrics.auroc_variance(auc, var, n_pos, n_neg), low, high)


@dataclass
class RealCurve:
    """A real learning curve: AUROC on real-test, with its interval, per size per label
    (``variance``: each point's test-sampling variance, needed for the mean over seeds)."""

    sizes: list[float]
    auroc: list[float]
    low: list[float]
    high: list[float]
    variance: list[float] | None = None

    @classmethod
    def of(cls, points: Sequence[Point]) -> RealCurve:
        return cls(
            sizes=[p.n for p in points],
            auroc=[p.auroc for p in points],
            low=[p.low for p in points],
            high=[p.high for p in points],
            variance=[p.variance for p in points],
        )

    def fits(self) -> tuple[MonotoneCurve, MonotoneCurve, MonotoneCurve]:
        """The fitted curve and its band (the same fit of the intervals' low and high ends)."""
        for name in ("auroc", "low", "high"):
            if len(getattr(self, name)) != len(self.sizes):
                raise CurveError(
                    f"real curve: {len(self.sizes)} sizes but {len(getattr(self, name))} {name}"
                )
        return (
            MonotoneCurve(self.sizes, self.auroc, "real curve"),
            MonotoneCurve(self.sizes, self.low, "real curve, interval low ends"),
            MonotoneCurve(self.sizes, self.high, "real curve, interval high ends"),
        )


def real_equivalent(curve: RealCurve, auroc: float, low: float, high: float) -> RealEquivalent:
    """The real-equivalent size of an S→R AUROC ``auroc`` with interval ``[low, high]``."""
    if not low <= auroc <= high:
        raise CurveError(f"S→R AUROC {auroc} is outside its interval [{low}, {high}]")
    fitted, lower, upper = curve.fits()
    point = fitted.inverse(auroc)
    start = upper.first_reaching(low)
    end = lower.last_at_most(high)
    return RealEquivalent(
        n=point.n,
        low=start.n,
        high=end.n,
        side=point.side,
        low_side=start.side,
        high_side=end.side,
        n_min=fitted.n_min,
        n_max=fitted.n_max,
    )


def exchange_rate(synthetic_per_label: float, reading: RealEquivalent) -> dict[str, float]:
    """Synthetic images per real-equivalent image, with the interval from the reading's (nan
    where the reading is out of range; its interval's high end gives the rate's low end)."""

    def rate(n: float) -> float:
        return synthetic_per_label / n if n > 0 else math.nan

    return {
        "exchange_rate": rate(reading.n),
        "exchange_rate_low": rate(reading.high),
        "exchange_rate_high": rate(reading.low),
    }


# --------------------------------------------------------------------------- over seeds


def seed_mean(
    curves: Sequence[RealCurve],
    s2r: Sequence[Point],
    confidence: float,
) -> tuple[RealCurve, RealEquivalent]:
    """The real-equivalent size over seeds: the S→R AUROC's mean over seeds read off the mean
    real curve, each with ``tgap.metrics.seed_mean_interval`` (real-test is shared by every
    seed). One seed: its own curve and S→R with their test-sampling intervals.
    """
    if not curves or len(curves) != len(s2r):
        raise CurveError(f"seed_mean: {len(curves)} real curves for {len(s2r)} S→R points")
    sizes = curves[0].sizes
    for c in curves:
        if list(c.sizes) != list(sizes) or c.variance is None:
            raise CurveError(
                f"seed_mean: every seed's real curve needs sizes {list(sizes)} and variances, "
                f"got {list(c.sizes)}"
            )
    if len(curves) == 1:
        mean_curve, point = curves[0], s2r[0]
        return mean_curve, real_equivalent(mean_curve, point.auroc, point.low, point.high)
    columns = [
        _mean([c.auroc[i] for c in curves], [c.variance[i] for c in curves], confidence)
        for i in range(len(sizes))
    ]
    mean_curve = RealCurve(
        sizes=list(sizes),
        auroc=[m for m, _, _ in columns],
        low=[lo for _, lo, _ in columns],
        high=[hi for _, _, hi in columns],
    )
    auroc, low, high = _mean([p.auroc for p in s2r], [p.variance for p in s2r], confidence)
    return mean_curve, real_equivalent(mean_curve, auroc, low, high)


def _mean(values, variances, confidence) -> tuple[float, float, float]:
    from tgap.metrics import seed_mean_interval

    mean, low, high = seed_mean_interval(values, variances, confidence, shared_test=True)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise CurveError(f"seed mean of {list(values)}: no interval (a value is undefined)")
    return mean, low, high


# --------------------------------------------------------------------------- saturation


@dataclass(frozen=True)
class Saturation:
    """Whether a synthetic curve flattened, and the smallest set size that gives its S→R."""

    saturated: bool
    fraction: float  # the smallest fraction whose S→R interval holds the full set's S→R
    n_per_label: int  # that fraction of the generated images per label

    def to_json(self) -> dict[str, float]:
        return {
            "synthetic_saturated": float(self.saturated),
            "synthetic_sufficient_fraction": self.fraction,
            "synthetic_sufficient_n_per_label": float(self.n_per_label),
        }


def saturation(
    fractions: Sequence[float],
    auroc: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    n_per_label: int,
) -> Saturation:
    """The saturation test of a synthetic curve (fractions increasing, the last one 1).

    Saturated: the full set's S→R is not above the interval of the fraction before it (more
    generated images did not raise S→R beyond the smaller set's uncertainty). The sufficient
    fraction: walking down from the full set, the last fraction whose interval's high end is
    still at or above the full set's S→R.
    """
    f = [float(v) for v in fractions]
    if len(f) < 2 or f != sorted(set(f)) or f[-1] != 1.0:
        raise CurveError(
            f"synthetic curve fractions {f}: need 2+ increasing fractions ending at 1.0"
        )
    for name, values in (("auroc", auroc), ("low", low), ("high", high)):
        if len(values) != len(f) or not np.isfinite(values).all():
            raise CurveError(
                f"synthetic curve {name} {list(values)}: one finite value per fraction"
            )
    full = float(auroc[-1])
    j = len(f) - 1
    while j > 0 and full <= high[j - 1]:
        j -= 1
    return Saturation(
        saturated=j < len(f) - 1,
        fraction=f[j],
        n_per_label=max(1, round(f[j] * n_per_label)),
    )
