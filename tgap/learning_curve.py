"""Training the learning curves that ``tgap.curves`` reads: classifiers on nested subsets of a
training set, each scored on real-test.

- The **real curve** (``real_curves_stage``): real-train subsets of ``evaluation.real_curve_sizes``
  images per label (capped at what real-train holds), one curve per seed, trained once per run
  in one task and shared by every method's cells.
- The **synthetic curve** (``synthetic_curve_stage``): subsets of one generated set at
  ``evaluation.synthetic_curve_fractions`` below 1; the full set's point is the cell's S→R,
  which the S→R classifier already gives, so one generation gives the whole curve.

Subsets are nested: one seeded order per label, each size a prefix of it, so a larger size holds
every image of a smaller one and the curve's steps are the data added, not a new draw.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tgap.artifacts import write_json
from tgap.classify import Classifier, fit, load_resized
from tgap.config import ClassifierConfig, EvaluationConfig
from tgap.curves import (
    Point,
    RealCurve,
    exchange_rate,
    real_equivalent,
    saturation,
    score_point,
)
from tgap.imageset import ImageSet, check_same_labels
from tgap.seeding import derive_seed

log = logging.getLogger(__name__)

CURVE = "curve.json"
MIN_PER_LABEL = 2  # the classifier's validation split needs one image per label besides training


class LearningCurveError(ValueError):
    """A learning curve cannot be trained as configured; the message says which input."""


def nested_subsets(y: np.ndarray, n_labels: int, sizes: Sequence[int], seed: int) -> list:
    """Indices of ``size`` images per label for each of ``sizes`` (increasing), each set a
    superset of the one before: prefixes of one seeded order per label."""
    rng = np.random.default_rng(derive_seed(seed, "learning-curve", "order"))
    orders = [rng.permutation(np.flatnonzero(y == c)) for c in range(n_labels)]
    return [np.sort(np.concatenate([order[:size] for order in orders])) for size in sizes]


def capped_sizes(configured: Sequence[int], per_label: dict[str, int]) -> tuple[list[int], str]:
    """``configured`` sizes with those above the smallest label's count replaced by that count
    (the curve ends at all of it), and a note when fewer than 2 sizes remain."""
    hold = min(per_label.values())
    sizes = sorted({min(int(s), hold) for s in configured if min(int(s), hold) >= MIN_PER_LABEL})
    note = ""
    if len(sizes) < 2:
        note = (
            f"no curve: sizes {list(configured)} give {sizes} per label with {hold} images for "
            f"the smallest label ({per_label}); a curve needs 2 sizes of >= {MIN_PER_LABEL}"
        )
    return sizes, note


def held_test(real_test: ImageSet, classifier: ClassifierConfig) -> np.ndarray:
    """Real-test at the classifier's resolution (n_test x resolution² bytes), read once for every
    classifier a task scores instead of decoded again for each size and seed."""
    return load_resized(real_test, np.arange(len(real_test)), classifier.resolution)


def train_curve(
    train: ImageSet,
    real_test: ImageSet,
    classifier: ClassifierConfig,
    sizes: Sequence[int],
    seed: int,
    confidence: float,
    test_images: np.ndarray | None = None,
) -> list[Point]:
    """One classifier per size (images per label, nested subsets of ``train``), each scored on
    ``real_test`` (``test_images``: its ``held_test``, when the caller already holds it): a
    ``Point`` per size."""
    check_same_labels(("real test set", real_test), {"training set": train}, LearningCurveError)
    y = train.label_indices
    labels = list(train.labels)
    test_y = real_test.label_indices
    if test_images is None:
        test_images = held_test(real_test, classifier)
    subsets = nested_subsets(y, len(labels), sizes, seed)
    # The largest subset holds every smaller one (sorted indices): read it once, slice the rest.
    largest = subsets[-1] if subsets else np.zeros(0, np.int64)
    held = load_resized(train, largest, classifier.resolution)
    points = []
    with tempfile.TemporaryDirectory(prefix="tgap-curve-") as tmp:
        for size, keep in zip(sizes, subsets, strict=True):
            model_dir = Path(tmp) / f"n{size}"
            images = held if len(keep) == len(largest) else held[np.searchsorted(largest, keep)]
            fit(
                images, y[keep], labels, classifier, seed, model_dir, where=f"{train.root} n={size}"
            )
            point = score_point(
                size, test_y, Classifier.load(model_dir).predict_proba(test_images), confidence
            )
            log.info("learning curve %s n=%d: AUROC %.3f", train.root, size, point.auroc)
            points.append(point)
    return points


def _write(out_dir: str | Path, curve: dict[str, Any]) -> dict[str, Any]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / CURVE, curve)
    return curve


def seed_folder(root: str | Path, seed: int) -> Path:
    return Path(root) / f"seed-{int(seed)}"


def real_curves_stage(
    real_train: ImageSet,
    real_test: ImageSet,
    classifier: ClassifierConfig,
    evaluation: EvaluationConfig,
    seeds: Sequence[int],
    out_dir: str | Path,
) -> dict[int, dict[str, Any]]:
    """Stage: the real learning curve of every seed, in ``out_dir/seed-<s>/curve.json``."""
    sizes, note = capped_sizes(evaluation.real_curve_sizes, real_train.counts())
    if not evaluation.real_curve_sizes:
        note = "no curve: evaluation.real_curve_sizes is empty"
    out = {}
    test_images = None if note else held_test(real_test, classifier)  # once for every seed
    for seed in sorted({int(s) for s in seeds}):
        points = [] if note else train_curve(
            real_train, real_test, classifier, sizes, seed, evaluation.confidence, test_images
        )  # fmt: skip
        out[seed] = _write(seed_folder(out_dir, seed), {
            "kind": "real", "seed": seed, "sizes": sizes if not note else [],
            "points": [p.to_json() for p in points], "note": note,
            "real_train_per_label": real_train.counts(), "real_train": str(real_train.root),
        })  # fmt: skip
    return out


def synthetic_curve_stage(
    synthetic: ImageSet,
    real_test: ImageSet,
    classifier: ClassifierConfig,
    evaluation: EvaluationConfig,
    seed: int,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Stage: S→R at the fractions below 1 of ``synthetic`` (``out_dir/curve.json``); the
    full set's point is added from the S→R evaluation by the cell."""
    fractions = [float(f) for f in evaluation.synthetic_curve_fractions]
    per_label = min(synthetic.counts().values())
    # Distinct sizes below the full set: a smaller set than generate.n_per_label (retrieval's,
    # capped by what the pool has left) can round two fractions to one size.
    sizes = sorted({max(MIN_PER_LABEL, round(f * per_label)) for f in fractions if f < 1})
    sizes = [size for size in sizes if size < per_label]
    note = "" if fractions else "no curve: evaluation.synthetic_curve_fractions is empty"
    if fractions and not sizes:
        note = f"no curve: fractions {fractions} of {per_label} per label give no smaller set"
    points = train_curve(
        synthetic, real_test, classifier, sizes, seed, evaluation.confidence
    ) if sizes else []  # fmt: skip
    return _write(out_dir, {
        "kind": "synthetic", "seed": seed, "fractions": fractions, "per_label": per_label,
        "points": [p.to_json() for p in points], "note": note, "synthetic": str(synthetic.root),
    })  # fmt: skip


def read_curve(folder: str | Path) -> dict[str, Any]:
    """The curve a learning-curve stage wrote into ``folder``."""
    path = Path(folder) / CURVE
    if not path.is_file():
        raise LearningCurveError(f"{folder}: not a learning-curve folder ({CURVE} missing)")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- the cell


def _points(curve: dict[str, Any] | None) -> list[Point]:
    return [Point(**p) for p in (curve or {}).get("points", [])]


def cell_curves(
    real: dict[str, Any] | None,
    synthetic: dict[str, Any] | None,
    s2r: Point,
    n_per_label: int,
) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """A cell's real-equivalent size, exchange rate and saturation test from its seed's real
    curve, its synthetic curve and its S→R ``s2r`` (trained on ``n_per_label`` per label):
    ``(flat metrics, notes, the curves' points for cell.json)``. Every key is present; a number
    that cannot be read is nan with the reason in the notes."""
    numbers: dict[str, float] = dict.fromkeys(
        ("real_equivalent", "real_equivalent_low", "real_equivalent_high", "exchange_rate",
         "exchange_rate_low", "exchange_rate_high", "synthetic_saturated",
         "synthetic_sufficient_fraction", "synthetic_sufficient_n_per_label"), float("nan"),
    )  # fmt: skip
    notes: dict[str, str] = {}
    text = ""
    real_points = _points(real)
    if len(real_points) >= 2:
        reading = real_equivalent(
            RealCurve.of(real_points), s2r.auroc, s2r.low, s2r.high
        )  # fmt: skip
        numbers.update({k: v for k, v in reading.to_json().items() if k != "real_equivalent_text"})
        numbers.update(exchange_rate(n_per_label, reading))
        text = reading.text()
    else:
        notes["real_equivalent"] = (real or {}).get("note") or "no real learning curve given"
    syn_points = [*_points(synthetic), s2r]
    fractions = [p.n / n_per_label for p in syn_points[:-1]] + [1.0]
    if len(syn_points) >= 2:
        numbers.update(saturation(
            fractions, [p.auroc for p in syn_points], [p.low for p in syn_points],
            [p.high for p in syn_points], n_per_label,
        ).to_json())  # fmt: skip
    else:
        notes["synthetic_saturated"] = (synthetic or {}).get(
            "note"
        ) or "no synthetic learning curve given"
    block = {
        "real": [p.to_json() for p in real_points],
        "synthetic": [dict(p.to_json(), fraction=f) for p, f in zip(syn_points, fractions,
                                                                   strict=True)],
        "real_equivalent_text": text,
    }  # fmt: skip
    return numbers, notes, block
