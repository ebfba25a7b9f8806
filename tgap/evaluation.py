"""One grid cell's numbers: AUROC and FTER with their test-sampling intervals, distribution and memorisation
metrics, and the supplementation curve, gathered into the cell artifact the report reads.

``compute_cell`` reads the three evaluation folders written by ``tgap.classify.evaluate_classifier``
(S→R, R→S, R→R) and the supplementation curve, so it never trains anything: it is a cheap CPU
stage. ``supplementation_curve`` does train (one classifier per ratio) and is its own stage
(``supplementation``), placed on the GPU pool like the other classifier trainings.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tgap import metrics
from tgap.artifacts import (
    ASSETS,
    EVALUATION,
    PREDICTIONS,
    S2R_PREDICTIONS,
    CellArtifact,
    Evaluation,
    Predictions,
    Supplementation,
    write_json,
)
from tgap.classify import (
    Classifier,
    fit,
    load_resized,
    read_predictions,
    resize_images,
    subsample_per_label,
)
from tgap.config import ClassifierConfig, EvaluationConfig
from tgap.curves import Point, score_point
from tgap.grid import GridRow
from tgap.imageset import ImageSet, ImageSetError, check_same_labels
from tgap.learning_curve import cell_curves
from tgap.seeding import derive_seed

log = logging.getLogger(__name__)

SUPPLEMENTATION = "supplementation.json"
AUROC_INTERVAL = (
    "test-image sampling only: Wilson interval with DeLong's variance as an effective n "
    "(capped by Hanley & McNeil's near AUROC 0 and 1), tgap.metrics.auroc_interval"
)
FTER_INTERVAL = (
    "test-image sampling of both directions (DeLong, independent test sets), log scale, "
    "tgap.metrics.fter_interval with one seed"
)
MEMORISATION_MAX_SIDE = 64  # pixel-space copies are obvious at 64 px; keeps NN search cheap


class Embedder(Protocol):
    name: str
    description: str

    def embed(self, images: np.ndarray) -> np.ndarray: ...


class EvaluationError(ValueError):
    """Inputs of the cell stage are missing or inconsistent; the message names which."""


# --------------------------------------------------------------------------- helpers


def _read_evaluation(
    eval_dir: str | Path, direction: str
) -> tuple[Evaluation, np.ndarray, np.ndarray, list]:
    eval_dir = Path(eval_dir)
    if not (eval_dir / EVALUATION).is_file():
        raise EvaluationError(
            f"{direction}: {eval_dir} is not an evaluation folder ({EVALUATION} missing)"
        )
    result = Evaluation.read(eval_dir)
    labels, y, scores = read_predictions(eval_dir)
    return result, y, scores, labels


def _flat(result: Evaluation | None, prefix: str, labels: Sequence[str]) -> dict[str, Any]:
    """``s2r_accuracy``, ``s2r_auroc``, per class, CI bounds and n from one evaluation."""
    get = result.get if result is not None else (lambda key, default=math.nan: default)
    out = {
        f"{prefix}_accuracy": get("accuracy"),
        f"{prefix}_auroc": get("auroc"),
        f"{prefix}_auroc_ci_low": get("auroc_ci_low"),
        f"{prefix}_auroc_ci_high": get("auroc_ci_high"),
        f"{prefix}_n": int(get("n", 0)),
    }
    for label in labels:
        out[f"{prefix}_accuracy_{label}"] = get(f"accuracy_{label}")
        out[f"{prefix}_auroc_{label}"] = get(f"auroc_{label}")
    return out


def _interval(y: np.ndarray, scores: np.ndarray, prefix: str, confidence: float) -> dict:
    """``{prefix}_auroc_var`` (``metrics.auroc_variance``: DeLong's, kept above 0 at AUROC 0 and
    1) and ``{prefix}_auroc_ci_low/high`` (``metrics.auroc_interval``); ``nan`` when AUROC is
    undefined."""
    keys = [f"{prefix}_auroc_var", f"{prefix}_auroc_ci_low", f"{prefix}_auroc_ci_high"]
    if metrics.auroc_undefined_reason(y, scores.shape[1]):
        return dict.fromkeys(keys, math.nan)
    point = score_point(0, y, scores, confidence)  # the learning curves' points, the same way
    return dict(zip(keys, (point.variance, point.low, point.high), strict=True))


def _embed_set(embedder: Embedder, images: ImageSet, batch_size: int = 512) -> np.ndarray:
    return np.concatenate([embedder.embed(x) for x, _ in images.iter_batches(batch_size)])


def _pixels(images: np.ndarray, side: int) -> np.ndarray:
    return resize_images(images, side).reshape(len(images), -1).astype(np.float32) / 255


def _pixels_of_set(images: ImageSet, side: int, batch_size: int = 512) -> np.ndarray:
    """``_pixels`` of a whole set, read ``batch_size`` images at a time."""
    return np.concatenate([_pixels(x, side) for x, _ in images.iter_batches(batch_size)])


class _Images:
    """An image set indexed like an array, decoding only the images asked for."""

    def __init__(self, images: ImageSet) -> None:
        self.images = images

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images.load(int(i))


def _closest_pairs_png(pairs, synthetic: np.ndarray, tuning: np.ndarray, threshold, path: Path):
    """Synthetic image (top) above its nearest tuning image (bottom), closest pairs first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(pairs), 1)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for j, pair in enumerate(pairs):
        copy = pair["distance"] <= threshold
        axes[0, j].imshow(synthetic[pair["synthetic"]], cmap="gray", vmin=0, vmax=255)
        axes[0, j].set_title(
            f"d={pair['distance']:.3g}", fontsize=8, color="red" if copy else "black"
        )
        axes[1, j].imshow(tuning[pair["tuning"]], cmap="gray", vmin=0, vmax=255)
    axes[0, 0].text(-0.1, 0.5, "synthetic", transform=axes[0, 0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=8)  # fmt: skip
    axes[1, 0].text(-0.1, 0.5, "nearest tuning", transform=axes[1, 0].transAxes, rotation=90,
                    ha="right", va="center", fontsize=8)  # fmt: skip
    fig.suptitle("Closest synthetic-tuning pairs (red: near-copy)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- the cell


def compute_cell(
    row: GridRow,
    s2r_dir: str | Path,
    r2s_dir: str | Path,
    r2r_dir: str | Path | None,
    synthetic: ImageSet,
    real_test: ImageSet,
    tuning: ImageSet,
    evaluation: EvaluationConfig,
    embedder: Embedder,
    extras: dict[str, Path],
    out_dir: str | Path,
    supplementation: dict[str, Any] | None = None,
    curves: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Compute one grid cell and write ``out_dir/cell.json`` + ``out_dir/assets/``.

    Per direction: DeLong's variance (``*_auroc_var``) and a Wilson interval (``*_auroc_ci_*``,
    ``metrics.auroc_interval``) over test images; FTER = AUROC(S→R) / AUROC(R→S) with a
    log-scale interval from both variances; S→R's predictions copied to
    ``assets/s2r_predictions.csv`` (the report pairs methods on those images); Fréchet
    distance, KID and precision/recall/density/coverage between ``synthetic`` and ``real_test``
    in ``embedder``'s space; memorisation of ``tuning`` by ``synthetic``; the supplementation
    curve ``supplementation`` (what ``supplementation_curve`` wrote; needed when
    ``evaluation.supplementation_ratios`` is non-empty); the real-equivalent size and the
    saturation test from ``curves`` (the seed's real learning curve and this set's synthetic one,
    what the learning-curve stages wrote; ``tgap.learning_curve.cell_curves``). Undefined
    numbers are ``null`` in ``cell.json``, with the reason in ``notes``.
    """
    _check_sets(synthetic, real_test, tuning)
    out_dir = Path(out_dir)
    assets = out_dir / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    # Each step adds its numbers to ``cell`` and its reasons to ``notes``, in cell.json's order.
    notes: dict[str, str] = {}
    directions = {"s2r": s2r_dir, "r2s": r2s_dir, "r2r": r2r_dir}
    cell = _two_way(directions, real_test, evaluation.confidence, assets, notes)
    learning_curves = _learning_curves(cell, curves, synthetic, notes)
    real_emb, syn_emb = _embed_set(embedder, real_test), _embed_set(embedder, synthetic)
    cell.update(_distribution(real_emb, syn_emb, evaluation, row.seed, notes))
    memo, space = _memorisation(synthetic, tuning, syn_emb, embedder, evaluation, assets)
    if memo["reason"]:
        notes["near_copy_fraction"] = memo["reason"]
    cell.update({key: memo[key] for key in MEMORISATION_KEYS})
    summary = _supplementation(evaluation, supplementation, assets, notes)
    _copy_extras(extras, assets)
    cell.update({
        "n_synthetic": len(synthetic), "n_real_test": len(real_test), "n_tuning": len(tuning),
    })  # fmt: skip
    artifact = CellArtifact(
        method=row.method.name, size=row.size, seed=row.seed, metrics=cell, notes=notes,
        supplementation=summary, learning_curves=learning_curves,
        text={
            "distribution_embedder": embedder.name,
            "distribution_embedder_description": embedder.description,
            "memorisation_space": space,
        },
        assets={p.name: f"{ASSETS}/{p.name}" for p in sorted(assets.iterdir())
                if not p.name.startswith(".")},
        provenance=_provenance(row, directions, synthetic, real_test, tuning, evaluation),
    )  # fmt: skip
    artifact.write(out_dir)  # last: its presence marks a complete cell
    cell = artifact.to_json()
    log.info(
        "cell %s: FTER %.3f [%.3f, %.3f] (S→R %.3f, R→S %.3f), FID %.3g, near-copies %.1f%%",
        row.label, cell["fter"], cell["fter_ci_low"], cell["fter_ci_high"],
        cell["s2r_auroc"], cell["r2s_auroc"], cell["fid"], 100 * cell["near_copy_fraction"],
    )  # fmt: skip
    return cell


def _check_sets(synthetic: ImageSet, real_test: ImageSet, tuning: ImageSet) -> None:
    if len(synthetic) == 0:
        raise ImageSetError(f"{synthetic.root}: empty synthetic set, nothing to evaluate")
    if len(tuning) == 0:
        raise ImageSetError(f"{tuning.root}: empty tuning set")
    others = {"synthetic set": synthetic, "tuning set": tuning}
    check_same_labels(("real test set", real_test), others, EvaluationError)


def _two_way(
    directions: dict[str, str | Path | None],
    real_test: ImageSet,
    confidence: float,
    assets: Path,
    notes: dict[str, str],
) -> dict[str, Any]:
    """The three directions' numbers (a missing one ``nan``, with a note) and FTER; each ROC
    into ``assets``, and S→R's predictions beside them."""
    labels = list(real_test.labels)
    cell: dict[str, Any] = {}
    for prefix, eval_dir in directions.items():
        if eval_dir is None:
            cell.update(_flat(None, prefix, labels))
            cell[f"{prefix}_auroc_var"] = math.nan
            notes[f"{prefix}_auroc"] = f"no {prefix} evaluation given"
            continue
        result, y, scores, eval_labels = _read_evaluation(eval_dir, prefix)
        others = {f"{prefix} evaluation {eval_dir}": eval_labels}
        check_same_labels(("real test set", real_test), others, EvaluationError)
        cell.update(_flat(result, prefix, labels))
        cell.update(_interval(y, scores, prefix, confidence))
        if result.auroc_undefined_reason:
            notes[f"{prefix}_auroc"] = result.auroc_undefined_reason
        write_json(assets / f"roc_{prefix}.json", result.roc.to_json())
        if prefix == "s2r":
            # Every cell scores the same real-test images: the report pairs methods on them.
            shutil.copy2(Path(eval_dir) / PREDICTIONS, assets / S2R_PREDICTIONS)
    cell["fter"], cell["fter_ci_low"], cell["fter_ci_high"] = metrics.fter_interval(
        [cell["s2r_auroc"]], [cell["s2r_auroc_var"]], [cell["r2s_auroc"]], [cell["r2s_auroc_var"]],
        confidence,
    )  # fmt: skip
    if not np.isfinite(cell["fter"]):
        notes["fter"] = "undefined: S→R or R→S AUROC is undefined or zero"
    return cell


def _learning_curves(
    cell: dict[str, Any],
    curves: tuple[dict[str, Any], dict[str, Any]] | None,
    synthetic: ImageSet,
    notes: dict[str, str],
) -> dict[str, Any] | None:
    """The real-equivalent size of the S→R and the saturation test into ``cell``; the curves
    for the cell artifact (None without curves or an S→R AUROC)."""
    if curves is None or not np.isfinite(cell["s2r_auroc"]):
        return None
    per_label = min(synthetic.counts().values())
    s2r_point = Point(per_label, *(cell[f"s2r_auroc{k}"] for k in (
        "", "_var", "_ci_low", "_ci_high")))  # fmt: skip
    numbers, curve_notes, learning_curves = cell_curves(*curves, s2r_point, per_label)
    cell.update(numbers)
    notes.update(curve_notes)
    return learning_curves


DISTRIBUTION_KEYS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")


def _distribution(
    real_emb: np.ndarray,
    syn_emb: np.ndarray,
    evaluation: EvaluationConfig,
    seed: int,
    notes: dict[str, str],
) -> dict[str, float]:
    """Distribution metrics in the embedder's space (``nan`` when a set is too small)."""
    k = evaluation.prdc_k
    if min(len(real_emb), len(syn_emb)) > k:
        return metrics.distribution_metrics(
            real_emb, syn_emb, k=k, kid_subsets=evaluation.kid_subsets,
            kid_subset_size=evaluation.kid_subset_size, seed=derive_seed(seed, "kid"),
        )  # fmt: skip
    notes["fid"] = f"distribution metrics need more than prdc_k={k} images per set"
    return dict.fromkeys(DISTRIBUTION_KEYS, float("nan"))


MEMORISATION_KEYS = (
    "near_copy_fraction", "near_copy_count", "exact_copy_count", "near_copy_threshold",
    "nn_distance_median", "nn_distance_min", "tuning_nn_distance_median", "nn_distance_ratio",
    "tuning_duplicates",
)  # fmt: skip


def _memorisation(
    synthetic: ImageSet,
    tuning: ImageSet,
    syn_emb: np.ndarray,
    embedder: Embedder,
    evaluation: EvaluationConfig,
    assets: Path,
) -> tuple[dict[str, Any], str]:
    """Memorisation of the tuning set (``metrics.memorisation``) and the space it was measured
    in; the closest pairs' figure and ``memorisation.json`` into ``assets``."""
    # Read in chunks (memory flat in the set sizes); the pairs figure decodes its few images.
    if evaluation.memorisation_space == "pixels":
        side = min(synthetic.resolution, tuning.resolution, MEMORISATION_MAX_SIDE)
        space = f"pixels at {side}x{side}, scaled to [0, 1], Euclidean distance"
        syn_vec, tuning_vec = _pixels_of_set(synthetic, side), _pixels_of_set(tuning, side)
    else:
        space = f"{embedder.name} embedder, Euclidean distance"
        syn_vec, tuning_vec = syn_emb, _embed_set(embedder, tuning)
    memo = metrics.memorisation(
        syn_vec, tuning_vec, evaluation.near_copy_quantile, evaluation.closest_pairs
    )
    for pair in memo["closest_pairs"]:
        pair["synthetic_file"] = synthetic.records[pair["synthetic"]].file
        pair["tuning_file"] = tuning.records[pair["tuning"]].file
    _closest_pairs_png(memo["closest_pairs"], _Images(synthetic), _Images(tuning),
                       memo["near_copy_threshold"], assets / "closest_pairs.png")  # fmt: skip
    write_json(assets / "memorisation.json", {
        "space": space, **{k: v for k, v in memo.items() if k not in ("distances", "nearest")},
        "nn_distances": memo["distances"],
    })  # fmt: skip
    return memo, space


def _supplementation(
    evaluation: EvaluationConfig,
    curve: dict[str, Any] | None,
    assets: Path,
    notes: dict[str, str],
) -> Supplementation | None:
    """The supplementation curve the supplementation stage wrote, into ``assets`` (None when
    ``evaluation.supplementation_ratios`` is empty)."""
    if not evaluation.supplementation_ratios:
        return None
    curve = curve or {}
    if [float(r) for r in curve.get("ratios", [])] != [
        float(r) for r in evaluation.supplementation_ratios
    ]:
        raise EvaluationError(
            f"evaluation.supplementation_ratios {evaluation.supplementation_ratios}: the "
            f"supplementation curve given has ratios {curve.get('ratios')}"
        )
    write_json(assets / SUPPLEMENTATION, curve)
    if curve["note"]:
        notes["supplementation"] = curve["note"]
    return Supplementation(
        ratios=curve["ratios"], auroc=[p["auroc"] for p in curve["points"]],
        accuracy=[p["accuracy"] for p in curve["points"]],
        real_per_label=curve["real_per_label"],
    )  # fmt: skip


def _copy_extras(extras: dict[str, Path], assets: Path) -> None:
    """Extras (training log, selection report, sample grids) copied verbatim."""
    for name, path in extras.items():
        path = Path(path)
        if not path.exists():
            raise EvaluationError(f"extras[{name!r}]: {path} does not exist")
        target = assets / name
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target)


def _provenance(
    row: GridRow,
    directions: dict[str, str | Path | None],
    synthetic: ImageSet,
    real_test: ImageSet,
    tuning: ImageSet,
    evaluation: EvaluationConfig,
) -> dict[str, Any]:
    """What the cell was computed from: the row, the evaluations' folders, the sets' hashes and
    the evaluation settings."""
    return {
        "row": row.to_item(),
        "evaluations": {k: str(v) if v is not None else None for k, v in directions.items()},
        "sets": {name: {"path": str(s.root), "content_hash": s.info.get("content_hash", "")}
                 for name, s in (("synthetic", synthetic), ("real_test", real_test),
                                 ("tuning", tuning))},
        # external:<name>: which files were evaluated (name, URI, sha256 of path + bytes).
        **({"external_set": synthetic.info["external"]} if "external" in synthetic.info else {}),
        "intervals": {"confidence": evaluation.confidence, "auroc": AUROC_INTERVAL,
                      "fter": FTER_INTERVAL},
        "evaluation": {k: getattr(evaluation, k) for k in evaluation.__dataclass_fields__},
    }  # fmt: skip


# --------------------------------------------------------------------------- supplementation


def supplementation_curve(
    real_train: ImageSet,
    synthetic: ImageSet,
    real_test: ImageSet,
    classifier: ClassifierConfig,
    ratios: Sequence[float],
    size_per_label: int | None,
    seed: int,
    out_dir: str | Path,
    *,
    bootstrap_resamples: int = 1000,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Train on real + r × synthetic images for each ratio r, test on real; write
    ``out_dir/supplementation.json`` and return it.

    The real part is fixed across ratios: the seeded subsample ``train_classifier`` takes
    (``size_per_label`` per label, None = all), so r = 0 reproduces the R→S/R→R classifier. When
    the synthetic set is too small for the largest ratio (R→S matches sizes, so r = 2 needs twice
    the synthetic images), the real part shrinks to ``min synthetic per label / max ratio`` and
    the result says so in ``note``. For each r, round(r × real) synthetic images per label are
    added (seeded, without replacement).
    """
    others = {"synthetic set": synthetic, "real test set": real_test}
    check_same_labels(("real train set", real_train), others, EvaluationError)
    labels = list(real_train.labels)
    if not ratios:
        raise EvaluationError("supplementation_curve: no ratios given")
    if any(r < 0 for r in ratios):
        raise EvaluationError(f"evaluation.supplementation_ratios {list(ratios)}: must be >= 0")
    for image_set in (real_test, synthetic):
        if len(image_set) == 0:
            raise ImageSetError(f"{image_set.root}: empty image set")
    y_real = real_train.label_indices
    real_counts = [int((y_real == c).sum()) for c in range(len(labels))]
    n_real = min(real_counts) if size_per_label is None else size_per_label
    syn_min = min(synthetic.counts().values())
    note = ""
    if max(ratios) > 0 and round(max(ratios) * n_real) > syn_min:
        capped = int(syn_min / max(ratios))
        note = (
            f"real part shrunk from {n_real} to {capped} per label: the synthetic set has "
            f"{syn_min} images for its smallest label and the largest ratio is {max(ratios)}"
        )
        log.warning("supplementation: %s", note)
        n_real = capped
    if n_real < 2:
        raise EvaluationError(
            f"supplementation: {n_real} real images per label is too few to train"
        )
    # size_per_label=None keeps every real image (unbalanced labels stay unbalanced).
    base = None if (size_per_label is None and not note) else n_real
    keep = subsample_per_label(y_real, labels, base, seed, str(real_train.root))
    real_images = load_resized(real_train, keep, classifier.resolution)
    real_y = y_real[keep]
    syn_y_all = synthetic.label_indices
    test_y = real_test.label_indices

    rng = np.random.default_rng(derive_seed(seed, "supplementation"))
    points = []
    with tempfile.TemporaryDirectory(prefix="tgap-supplementation-") as tmp:
        for r in ratios:
            picks = []
            for c in range(len(labels)):
                n_syn = round(r * int((real_y == c).sum()))
                available = np.flatnonzero(syn_y_all == c)
                picks.append(rng.choice(available, n_syn, replace=False))
            syn_idx = np.sort(np.concatenate(picks)).astype(np.int64)
            syn_images = load_resized(synthetic, syn_idx, classifier.resolution)
            images = np.concatenate([real_images, syn_images])
            y = np.concatenate([real_y, syn_y_all[syn_idx]])
            model_dir = Path(tmp) / f"r{r}"
            fit(images, y, labels, classifier, seed, model_dir, where=f"real + {r} x synthetic")
            clf = Classifier.load(model_dir)
            # Streamed: real-test is never held whole (22,000 NIH images at 512 px: 5.8 GB).
            scores = np.concatenate([
                clf.predict_proba(x) for x, _ in real_test.iter_batches(512)
            ])  # fmt: skip
            result = metrics.classification_metrics(
                test_y, scores, labels, clf.threshold,
                bootstrap_resamples=bootstrap_resamples, confidence=confidence,
                seed=derive_seed(seed, "bootstrap", "supplementation", r),
            )  # fmt: skip
            points.append({
                "ratio": float(r), "n_real": int(len(real_y)), "n_synthetic": int(len(syn_idx)),
                **{k: v for k, v in result.items() if k not in ("roc", "bootstrap", "labels")},
            })  # fmt: skip
            log.info("supplementation r=%s: AUROC %.3f on real test", r, result["auroc"])
    curve = {
        "ratios": [float(r) for r in ratios],
        "points": points,
        "size_per_label": size_per_label,
        "real_per_label": {label: int((real_y == c).sum()) for c, label in enumerate(labels)},
        "note": note,
        "seed": seed,
        "arch": classifier.arch,
        "real_train": str(real_train.root),
        "synthetic": str(synthetic.root),
        "real_test": str(real_test.root),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / SUPPLEMENTATION, curve)
    return curve


def supplementation_stage(
    real_train: ImageSet,
    synthetic: ImageSet,
    real_test: ImageSet,
    classifier: ClassifierConfig,
    evaluation: EvaluationConfig,
    size_per_label: int | None,
    seed: int,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Stage: the supplementation curve of one cell, or an empty one when no ratios are set
    (the stage always runs: kfp.local cannot skip a task on a parameter's value)."""
    if not evaluation.supplementation_ratios:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        curve: dict[str, Any] = {"ratios": [], "points": [], "note": "no ratios configured"}
        write_json(out_dir / SUPPLEMENTATION, curve)
        return curve
    return supplementation_curve(
        real_train, synthetic, real_test, classifier, evaluation.supplementation_ratios,
        size_per_label, seed, out_dir, bootstrap_resamples=evaluation.bootstrap_resamples,
        confidence=evaluation.confidence,
    )  # fmt: skip


def read_s2r_predictions(cell_dir: str | Path, name: str = S2R_PREDICTIONS):
    """``(files, y, scores)`` of the S→R predictions ``compute_cell`` copied into a cell folder
    (``assets/s2r_predictions.csv``): the real-test files, their label indices and per-label
    scores. Cells of one run list the same files in the same order, so two methods' S→R can be
    paired by image (``metrics.delong_paired``)."""
    path = Path(cell_dir) / ASSETS / name
    if not path.is_file():
        raise EvaluationError(
            f"{cell_dir}: no {ASSETS}/{name} (a cell written before it was kept?)"
        )
    found = Predictions.read(path)
    return found.files, found.y, found.scores


def read_supplementation(folder: str | Path) -> dict[str, Any]:
    """The curve a ``supplementation`` stage wrote into ``folder``."""
    path = Path(folder) / SUPPLEMENTATION
    if not path.is_file():
        raise EvaluationError(f"{folder}: not a supplementation folder ({SUPPLEMENTATION} missing)")
    return json.loads(path.read_text())
