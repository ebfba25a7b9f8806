"""The classifier of the two-way evaluation: train it, load it, evaluate it.

Two architectures:

- ``small-cnn``: three conv blocks and a linear head, for fast CPU runs (32 px grey).
- ``densenet121``: CheXNet, i.e. torchvision's DenseNet-121 with a linear head of one output
  per label. The grey image is repeated to 3 channels (and normalised with ImageNet statistics)
  rather than replacing the first conv, so ImageNet or CheXNet weights load unchanged.

Two heads on either architecture (``classifier.head``): ``softmax`` (one distribution over the
labels, cross-entropy) and ``sigmoid`` (one independent logistic output per label, one-vs-rest
binary cross-entropy, as CheXNet). Scores are the softmax probabilities or the per-label sigmoid
probabilities; the latter need not sum to 1, and each label's AUROC ranks its own output.

A trained classifier is a folder: ``model.safetensors`` + ``classifier.json`` (architecture, head,
labels, resolution, threshold, normalisation, training history, seed, images per label).
Training is separate from evaluation so the real-data classifier is trained once per
(size, seed) and KFP caching shares it across methods.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from tgap import metrics, storage
from tgap.artifacts import (
    CLASSIFIER_INFO,
    EVALUATION,
    PREDICTIONS,
    ArtifactError,
    Evaluation,
    Predictions,
    write_json,
)
from tgap.config import ClassifierConfig
from tgap.config.schema import ClassifierArch, ClassifierHead
from tgap.device import pick_device
from tgap.imageset import ImageSet, ImageSetError, check_same_labels, to_grey_square
from tgap.seeding import derive_seed, seed_everything, torch_generator

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
INFO = CLASSIFIER_INFO
METRICS = EVALUATION
ARCHS = get_args(ClassifierArch)  # the config's classifier.arch choices
HEADS = get_args(ClassifierHead)
# small-cnn: pixels/255 mapped to roughly zero mean, unit spread; densenet121: ImageNet stats.
NORMALISATION = {
    "small-cnn": {"mean": [0.5], "std": [0.25], "channels": 1},
    "densenet121": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channels": 3},
}


class ClassifierError(ValueError):
    """Classifier inputs or a classifier folder are wrong; the message names what and where."""


# --------------------------------------------------------------------------- models


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (32, 64, 128 channels), global average pool, linear head."""

    def __init__(self, n_labels: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
            )

        self.features = nn.Sequential(
            block(1, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2), block(64, 128),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, n_labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DenseNet121(nn.Module):
    """torchvision DenseNet-121 trunk + linear head; ``features`` gives the 1024-d pooled vector."""

    def __init__(self, n_labels: int) -> None:
        super().__init__()
        from torchvision.models import densenet121

        self.trunk = densenet121(weights=None).features  # weights=None: never a hub download
        self.head = nn.Linear(1024, n_labels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's DenseNet forward: ReLU, global average pool, flatten.
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(self.trunk(x)), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(arch: str, n_labels: int) -> nn.Module:
    if arch == "small-cnn":
        return SmallCNN(n_labels)
    if arch == "densenet121":
        return DenseNet121(n_labels)
    raise ClassifierError(f"classifier.arch {arch!r}: expected one of {', '.join(ARCHS)}")


def _load_pretrained(model: DenseNet121, uri: str) -> dict[str, Any]:
    """Load DenseNet-121 trunk weights from a path/URI (torchvision ImageNet or CheXNet layout).

    Only the feature trunk is loaded (the head has one output per *run* label); keys are
    normalised from the common layouts: ``module.``/``densenet121.`` prefixes and the legacy
    ``norm.1``-style names of old torchvision checkpoints.
    """
    import re

    path = storage.download_to_cache(uri)  # a local path as it is, a URI through the cache
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    trunk = {}
    for key, value in state.items():
        key = re.sub(r"^(module\.)?(densenet121\.)?", "", key)
        key = re.sub(r"\.(norm|relu|conv)\.(\d)", r".\1\2", key)  # legacy names
        if key.startswith("features."):
            trunk[key.removeprefix("features.")] = value
    if not trunk:
        raise ClassifierError(
            f"classifier.weights {uri}: no DenseNet-121 'features.*' tensors found"
        )
    missing, unexpected = model.trunk.load_state_dict(trunk, strict=False)
    if missing or unexpected:
        raise ClassifierError(
            f"classifier.weights {uri}: not a DenseNet-121 trunk "
            f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
        )
    return {"weights": uri, "tensors": len(trunk)}


def _check_head(head: str, where: str) -> str:
    if head not in HEADS:
        raise ClassifierError(f"{where} {head!r}: expected one of {', '.join(HEADS)}")
    return head


def head_scores(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Scores of the logits (n, n_labels): softmax over labels, or each label's own sigmoid."""
    return torch.softmax(logits, dim=1) if head == "softmax" else torch.sigmoid(logits)


def head_loss(logits: torch.Tensor, y: torch.Tensor, head: str) -> torch.Tensor:
    """Cross-entropy (softmax), or the mean one-vs-rest binary cross-entropy over every image and
    label (sigmoid: label ``c``'s output is trained to say "this image is ``c``")."""
    if head == "softmax":
        return F.cross_entropy(logits, y)
    targets = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets)


# --------------------------------------------------------------------------- preprocessing


def resize_images(images: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 (n, r, r) -> uint8 (n, resolution, resolution), the image-set resize (PIL bilinear)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ClassifierError(f"expected uint8 images (n, r, r), got {images.dtype} {images.shape}")
    if images.shape[1:] == (resolution, resolution):
        return images
    return (
        np.stack([to_grey_square(im, resolution) for im in images])
        if len(images)
        else (np.zeros((0, resolution, resolution), np.uint8))
    )


def load_resized(
    images: ImageSet, indices: Sequence[int] | np.ndarray, resolution: int, chunk: int = 512
) -> np.ndarray:
    """``images.load_many(indices)`` resized to ``resolution``, read ``chunk`` images at a time.

    The same pixels as resizing the whole load at once; at 512 px -> 224 px the set never sits
    in memory at its own resolution (10,000 images per label: 1.0 GB instead of 5.2 GB + 1.0 GB).
    """
    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(indices), resolution, resolution), np.uint8)
    for start in range(0, len(indices), chunk):
        part = indices[start : start + chunk]
        out[start : start + len(part)] = resize_images(images.load_many(part), resolution)
    return out


def _to_tensor(images: np.ndarray, normalisation: dict[str, Any]) -> torch.Tensor:
    x01 = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255).unsqueeze(1)
    return _normalise(x01, normalisation)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light, per-image augmentation on [0, 1] grey tensors (b, 1, r, r): rotation ±5°, shift
    ±4 %, scale ±5 %, brightness/contrast ±10 %. No flips: chest X-rays are not symmetric."""
    b = x.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, generator=generator)

    angle = uniform(-5, 5) * torch.pi / 180
    scale = uniform(0.95, 1.05)
    shift = torch.stack([uniform(-0.08, 0.08), uniform(-0.08, 0.08)], dim=1)  # ±4 % of width
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    # Random numbers come from the CPU generator (same draws on any device), then move.
    theta = theta.to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    contrast = uniform(0.9, 1.1).view(b, 1, 1, 1).to(x.device)
    brightness = uniform(-0.1, 0.1).view(b, 1, 1, 1).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp(0, 1)


def _normalise(x01: torch.Tensor, normalisation: dict[str, Any]) -> torch.Tensor:
    channels = normalisation["channels"]
    if channels == 3:
        x01 = x01.expand(-1, 3, -1, -1)
    mean = torch.tensor(normalisation["mean"], device=x01.device).view(1, channels, 1, 1)
    std = torch.tensor(normalisation["std"], device=x01.device).view(1, channels, 1, 1)
    return (x01 - mean) / std


# --------------------------------------------------------------------------- the classifier


class Classifier:
    """A trained classifier folder, ready for inference (CPU or the given device)."""

    def __init__(
        self, model: nn.Module, info: dict[str, Any], device: str | torch.device = "cpu"
    ) -> None:
        self.model = model.to(device).eval()
        self.info = info
        self.device = torch.device(device)
        self.labels: list[str] = list(info["labels"])
        self.resolution: int = int(info["resolution"])
        self.threshold: float | None = info.get("threshold")
        self.arch: str = info["arch"]
        # Folders written before heads existed were trained with softmax.
        self.head: str = _check_head(info.get("head", "softmax"), f"{INFO} head")

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu") -> Classifier:
        """Load ``model.safetensors`` + ``classifier.json`` from ``model_dir``."""
        model_dir = Path(model_dir)
        info_path, weights_path = model_dir / INFO, model_dir / WEIGHTS
        for path in (info_path, weights_path):
            if not path.is_file():
                raise ClassifierError(
                    f"{model_dir}: not a classifier folder ({path.name} is missing)"
                )
        info = json.loads(info_path.read_text())
        model = build_model(info["arch"], len(info["labels"]))
        model.load_state_dict(load_file(str(weights_path)))
        return cls(model, info, device)

    @torch.no_grad()
    def _run(self, images: np.ndarray, which: str, batch_size: int | None = None) -> np.ndarray:
        images = resize_images(images, self.resolution)
        if batch_size is None:
            # ~256 images at 64 px, fewer at higher resolution: bounded activation memory.
            batch_size = int(min(256, max(8, 256 * (64 / self.resolution) ** 2)))
        out = []
        for start in range(0, len(images), batch_size):
            x = _to_tensor(images[start : start + batch_size], self.info["normalisation"])
            x = x.to(self.device)
            if which == "features":
                out.append(self.model.features(x).float().cpu())
            else:
                out.append(head_scores(self.model(x).float(), self.head).cpu())
        if not out:
            width = len(self.labels) if which == "proba" else self.feature_dim
            return np.zeros((0, width), np.float64 if which == "proba" else np.float32)
        result = torch.cat(out).numpy()
        return result.astype(np.float64) if which == "proba" else result.astype(np.float32)

    @property
    def feature_dim(self) -> int:
        return 128 if self.arch == "small-cnn" else 1024

    def predict_proba(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Scores, float (n, n_labels), columns in ``self.labels`` order: softmax probabilities
        (rows sum to 1) or, with a sigmoid head, each label's own probability."""
        return self._run(images, "proba", batch_size)

    def features(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Penultimate-layer features, float32 (n, d): 128 (small-cnn) or 1024 (densenet121)."""
        return self._run(images, "features", batch_size)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Label indices, using the validation-chosen threshold for binary tasks."""
        return metrics.predict_labels(self.predict_proba(images), self.threshold)


# --------------------------------------------------------------------------- training


def subsample_per_label(
    y: np.ndarray, labels: Sequence[str], size_per_label: int | None, seed: int, where: str
) -> np.ndarray:
    """Indices of ``size_per_label`` images per label (seeded; None = all), sorted."""
    rng = np.random.default_rng(derive_seed(seed, "classify", "subsample"))
    keep = []
    for c, label in enumerate(labels):
        idx = np.flatnonzero(y == c)
        if size_per_label is None:
            keep.append(idx)
            continue
        if len(idx) < size_per_label:
            raise ClassifierError(
                f"{where}: label {label!r} has {len(idx)} images, fewer than size_per_label={size_per_label}"
            )
        keep.append(rng.choice(idx, size_per_label, replace=False))
    return np.sort(np.concatenate(keep))


def _val_split(y: np.ndarray, labels: Sequence[str], fraction: float, seed: int, where: str):
    """Stratified split of training indices: at least one validation image per label."""
    if not 0 < fraction < 1:
        raise ClassifierError(f"classifier.val_fraction {fraction}: expected a value in (0, 1)")
    rng = np.random.default_rng(derive_seed(seed, "classify", "val"))
    train, val = [], []
    for c, label in enumerate(labels):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            raise ClassifierError(
                f"{where}: label {label!r} has {len(idx)} training images; need at least 2 "
                "(one to train on, one to validate on)"
            )
        n_val = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def fit(
    images: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    classifier: ClassifierConfig,
    seed: int,
    out_dir: str | Path,
    extra_info: dict[str, Any] | None = None,
    where: str = "training set",
) -> dict[str, Any]:
    """Train on in-memory images (uint8 (n, r, r), label indices ``y``) and save to ``out_dir``.

    ``train_classifier`` and the supplementation curve both call this.
    """
    labels = list(labels)
    if classifier.arch not in ARCHS:
        raise ClassifierError(
            f"classifier.arch {classifier.arch!r}: expected one of {', '.join(ARCHS)}"
        )
    _check_head(classifier.head, "classifier.head")
    if len(labels) < 2:
        raise ClassifierError(f"{where}: a classifier needs at least 2 labels, got {labels}")
    for name in ("epochs", "batch_size", "resolution"):
        if getattr(classifier, name) < 1:
            raise ClassifierError(f"classifier.{name} {getattr(classifier, name)}: expected >= 1")
    start_time = time.perf_counter()
    seed_everything(derive_seed(seed, "classify", "init"))
    images = resize_images(images, classifier.resolution)
    train_idx, val_idx = _val_split(y, labels, classifier.val_fraction, seed, where)
    normalisation = NORMALISATION[classifier.arch]

    model = build_model(classifier.arch, len(labels))
    pretrained = None
    if classifier.weights:
        if classifier.arch != "densenet121":
            raise ClassifierError("classifier.weights is only supported for arch densenet121")
        pretrained = _load_pretrained(model, classifier.weights)
    device = pick_device(classifier.device)
    model.to(device)
    generator = torch_generator(derive_seed(seed, "classify", "batches"))
    # uint8 until a batch is drawn: a float32 copy of every training image would be 4x the set
    # (3.2 GB for 20,000 images at 224 px); the per-batch conversion gives the same numbers.
    x_train = torch.from_numpy(images[train_idx]).unsqueeze(1)
    y_train = torch.from_numpy(y[train_idx].astype(np.int64))
    val_images, y_val = images[val_idx], y[val_idx]

    trained = _train_epochs(
        model, x_train, y_train, val_images, y_val, classifier, labels, device, generator
    )
    history, best_epoch, best_auroc = trained.history, trained.best_epoch, trained.best_auroc

    # Threshold on the validation split (Youden's J on the positive = second label's score).
    info: dict[str, Any] = {
        "arch": classifier.arch,
        "head": classifier.head,
        "labels": labels,
        "resolution": classifier.resolution,
        "normalisation": normalisation,
        "input": "grey repeated to 3 channels"
        if normalisation["channels"] == 3
        else "grey, 1 channel",
    }
    val_scores = Classifier(model, info, device).predict_proba(val_images)
    threshold = metrics.youden_threshold(y_val, val_scores[:, 1]) if len(labels) == 2 else None
    counts = {label: int((y == c).sum()) for c, label in enumerate(labels)}
    info.update({
        "threshold": threshold,
        "threshold_rule": "Youden's J on the validation split" if threshold is not None else "argmax",
        "seed": seed,
        "n_per_label": counts,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "best_epoch": best_epoch,
        "val_auroc": float(best_auroc),
        "history": history,
        "config": {k: getattr(classifier, k) for k in classifier.__dataclass_fields__},
        "device": str(device),
        "pretrained": pretrained,
        "train_images_per_second": (
            trained.n_seen / trained.train_seconds if trained.train_seconds > 0 else float("nan")
        ),
        "seconds": time.perf_counter() - start_time,
        **(extra_info or {}),
    })  # fmt: skip

    _save(model, info, Path(out_dir))
    log.info(
        "trained %s on %d images (%s): best epoch %d, val AUROC %.3f, threshold %s, %.1f s",
        classifier.arch, len(y), counts, best_epoch, best_auroc, threshold, info["seconds"],
    )  # fmt: skip
    return {k: v for k, v in info.items() if k not in ("history", "normalisation")}


@dataclass
class _Trained:
    """What ``_train_epochs`` reports: the per-epoch history, the best epoch (whose weights the
    model holds) and its validation AUROC, and the training throughput."""

    history: list[dict[str, float]]
    best_epoch: int
    best_auroc: float
    n_seen: int
    train_seconds: float


def _train_epochs(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    val_images: np.ndarray,
    y_val: np.ndarray,
    classifier: ClassifierConfig,
    labels: list[str],
    device,
    generator: torch.Generator,
) -> _Trained:
    """Train for up to ``classifier.epochs``, stopping after ``classifier.patience`` epochs
    without a better validation AUROC; leave ``model`` at its best epoch, in eval mode."""
    normalisation = NORMALISATION[classifier.arch]
    optimiser = torch.optim.Adam(model.parameters(), lr=classifier.learning_rate)
    history: list[dict[str, float]] = []
    best_auroc, best_epoch, best_state, stale = -np.inf, -1, None, 0
    n_seen = 0
    train_seconds = 0.0
    for epoch in tqdm(range(classifier.epochs), desc=f"train {classifier.arch}", leave=False):
        t0 = time.perf_counter()
        losses, seen = _train_epoch(
            model, x_train, y_train, classifier, device, optimiser, generator
        )
        n_seen += seen
        train_seconds += time.perf_counter() - t0
        model.eval()
        current = Classifier(model, {"labels": labels, "resolution": classifier.resolution,
                                     "normalisation": normalisation, "arch": classifier.arch,
                                     "head": classifier.head}, device)  # fmt: skip
        val_scores = current.predict_proba(val_images)
        val_auroc = metrics.auroc(y_val, val_scores)
        history.append({
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_auroc": val_auroc,
            "val_accuracy": metrics.accuracy(y_val, metrics.predict_labels(val_scores)),
            "seconds": time.perf_counter() - t0,
        })  # fmt: skip
        if val_auroc > best_auroc:
            best_auroc, best_epoch, stale = val_auroc, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= classifier.patience:
                break
    if best_state is None:  # validation AUROC was nan throughout (cannot happen with ≥1 per label)
        best_state, best_epoch = model.state_dict(), len(history)
    model.load_state_dict(best_state)
    model.eval()
    return _Trained(history, best_epoch, best_auroc, n_seen, train_seconds)


def _train_epoch(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    classifier: ClassifierConfig,
    device,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
) -> tuple[list[float], int]:
    """One pass over the training images in a fresh order: the batch losses, images seen."""
    normalisation = NORMALISATION[classifier.arch]
    model.train()
    order = torch.randperm(len(x_train), generator=generator)
    losses = []
    n_seen = 0
    for start in range(0, len(order), classifier.batch_size):
        batch = order[start : start + classifier.batch_size]
        if len(batch) < 2 and len(order) > 1:
            continue  # BatchNorm cannot train on a single image; it is reshuffled next epoch
        x = x_train[batch].to(device).float().div_(255)
        if classifier.augment:
            x = _augment(x, generator)
        logits = model(_normalise(x, normalisation))
        loss = head_loss(logits, y_train[batch].to(device), classifier.head)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        n_seen += len(batch)
    return losses, n_seen


def _save(model: nn.Module, info: dict[str, Any], out_dir: Path) -> None:
    """Weights, then ``classifier.json`` last: its presence marks a complete folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{WEIGHTS}.partial"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, out_dir / WEIGHTS)
    write_json(out_dir / INFO, info)


def train_classifier(
    train: ImageSet,
    classifier: ClassifierConfig,
    seed: int,
    size_per_label: int | None,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Train a classifier on ``size_per_label`` images per label of ``train`` (None = all).

    The validation split (early stopping on AUROC, threshold choice) is carved from these
    training images only, stratified. Writes ``model.safetensors`` + ``classifier.json`` into
    ``out_dir`` and returns the summary (``classifier.json`` without the per-epoch history).
    """
    if len(train) == 0:
        raise ImageSetError(f"{train.root}: empty image set, nothing to train a classifier on")
    y = train.label_indices
    keep = subsample_per_label(y, train.labels, size_per_label, seed, str(train.root))
    images = load_resized(train, keep, classifier.resolution)
    extra = {"train_set": str(train.root), "size_per_label": size_per_label,
             "train_content_hash": train.info.get("content_hash", "")}  # fmt: skip
    return fit(images, y[keep], train.labels, classifier, seed, out_dir, extra, str(train.root))


# --------------------------------------------------------------------------- evaluation


def evaluate_classifier(
    model_dir: str | Path,
    test: ImageSet,
    out_dir: str | Path,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "auto",
) -> dict[str, Any]:
    """Evaluate the classifier in ``model_dir`` on ``test``.

    Writes ``metrics.json`` (accuracy and AUROC overall and per class, bootstrap CI for AUROC,
    ROC curve, confusion matrix, counts; ``resamples`` bootstrap resamples of the test images at
    ``confidence``, seeded by ``seed``) and ``predictions.csv`` (file, label, score per class,
    predicted) into ``out_dir`` and returns the metrics. AUROC is ``nan`` (``null`` in JSON, with
    ``auroc_undefined_reason``) when the test set has one class only.
    """
    clf = Classifier.load(model_dir, str(pick_device(device)))
    check_same_labels(("test set", test), {f"classifier {model_dir}": clf.labels}, ClassifierError)
    if len(test) == 0:
        raise ImageSetError(f"{test.root}: empty image set, nothing to evaluate on")
    scores, ys = [], []
    for images, labels in tqdm(test.iter_batches(batch_size), desc="evaluate", leave=False,
                               total=-(-len(test) // batch_size)):  # fmt: skip
        scores.append(clf.predict_proba(images))
        ys.append(labels)
    score, y = np.concatenate(scores), np.concatenate(ys)
    result = metrics.classification_metrics(
        y, score, clf.labels, clf.threshold,
        bootstrap_resamples=resamples, confidence=confidence, seed=seed,
    )  # fmt: skip
    result.update({"model_dir": str(model_dir), "test_set": str(test.root), "arch": clf.arch,
                   "head": clf.head})  # fmt: skip
    if result["auroc_undefined_reason"]:
        log.warning("AUROC undefined on %s: %s", test.root, result["auroc_undefined_reason"])

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predicted = metrics.predict_labels(score, clf.threshold)
    with open(out_dir / PREDICTIONS, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", *[f"score_{label}" for label in clf.labels], "predicted"])
        for record, row, p in zip(test.records, score, predicted, strict=True):
            writer.writerow([record.file, record.label, *[f"{s:.6f}" for s in row], clf.labels[p]])
    evaluation = Evaluation.from_json(result, str(out_dir / METRICS))
    evaluation.write(out_dir)
    log.info(
        "evaluated %s on %s (n=%d): accuracy %.3f, AUROC %.3f [%.3f, %.3f]",
        model_dir, test.root, len(y), result["accuracy"], result["auroc"],
        result["auroc_ci_low"], result["auroc_ci_high"],
    )  # fmt: skip
    return result


def read_predictions(eval_dir: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(labels, y, scores)`` from an evaluation folder's ``predictions.csv`` (or that file,
    under any name, given directly): ``tgap.artifacts.Predictions``."""
    try:
        found = Predictions.read(eval_dir)
    except ArtifactError as exc:
        raise ClassifierError(str(exc)) from None
    return found.labels, found.y, found.scores
