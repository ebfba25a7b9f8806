"""The artifacts that pass between stages and the report, and how they are written.

One definition per artifact, used by the stage that writes it and by every reader:

- :class:`Evaluation` — ``metrics.json`` of evaluate-classifier (one direction: S→R, R→S, R→R);
- :class:`Predictions` — its ``predictions.csv`` (a cell keeps S→R's as ``s2r_predictions.csv``);
- :class:`SelectionReport` — ``selection.json`` of select, beside the tuning set;
- :class:`TrainingLog` — ``training_log.json`` of fine-tune;
- :class:`CellArtifact` — ``cell.json`` of compute-FTER, the report's input.

Each has ``to_json()`` (the dict written) and ``from_json(dict)`` (checks the keys every reader
needs, names the file on a problem). Every JSON file is written through :func:`write_json`:
atomically (a temp file, then a rename, so a killed stage never leaves half a file) and
strict (NaN and inf as ``null``, numpy as Python).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class ArtifactError(ValueError):
    """An artifact file is missing or malformed; the message names the file and the key."""


# --------------------------------------------------------------------------- writing


def json_safe(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python and non-finite floats into None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` via a temp file and a rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | Path, value: Any, indent: int | None = 2, **dumps: Any) -> None:
    """``value`` as strict JSON (``json_safe``) plus a newline, written atomically."""
    write_text(path, json.dumps(json_safe(value), indent=indent, **dumps) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file; ArtifactError naming it when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None


# --------------------------------------------------------------------------- file names

EVALUATION = "metrics.json"  # evaluate-classifier's output folder
PREDICTIONS = "predictions.csv"  # beside it: file, label, score_<label>..., predicted
S2R_PREDICTIONS = "s2r_predictions.csv"  # a cell's assets/: its S→R evaluation's PREDICTIONS
SELECTION = "selection.json"  # beside the tuning set
TRAINING_LOG = "training_log.json"  # in the fine-tuned model folder
CELL = "cell.json"  # compute-FTER's output folder, with its assets/
ASSETS = "assets"
CLASSIFIER_INFO = "classifier.json"  # a trained classifier's folder
EMBEDDER_INFO = "embedder.json"  # each embedder's folder of the embeddings artifact
MODEL_INFO = "tgap_model.json"  # a diffusion model folder (tgap.diffusion.build.MODEL_INFO)


def _number(value: Any) -> float | None:
    """A JSON number (null -> NaN) as float; None for anything that is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _require(data: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ArtifactError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ArtifactError(f"{where}: missing required key(s) {', '.join(missing)}")
    return data


def _integer(value: Any, key: str, where: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # KFP Structs turn ints into floats
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArtifactError(f"{where}: {key} must be an integer, got {value!r}")
    return value


class _Stored:
    """``read``/``write`` for an artifact kept in one JSON file (``FILE``) in its stage's folder."""

    FILE: ClassVar[str]

    @classmethod
    def read(cls, path: str | Path):
        """From the file itself or the folder holding it."""
        path = Path(path)
        path = path / cls.FILE if path.is_dir() else path
        return cls.from_json(read_json(path), str(path))  # type: ignore[attr-defined]

    def write(self, folder: str | Path) -> None:
        write_json(Path(folder) / self.FILE, self.to_json())  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- evaluation


@dataclass
class RocCurve:
    """The ROC curve of one evaluation: binary, the positive class's; with more labels, the
    macro average (``per_class`` holds each one-vs-rest curve, as ``metrics.roc_points`` writes
    them). Empty when AUROC is undefined."""

    fpr: list[float] = field(default_factory=list)
    tpr: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    # Multi-class: label -> its one-vs-rest curve, and "macro".
    per_class: dict[str, RocCurve] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        if self.per_class:
            return {name: curve.to_json() for name, curve in self.per_class.items()}
        return {"fpr": self.fpr, "tpr": self.tpr, "thresholds": self.thresholds}

    @classmethod
    def from_json(cls, data: Any, where: str) -> RocCurve:
        if isinstance(data, dict) and "fpr" not in data and data:
            per_class = {str(k): cls.from_json(v, f"{where}.{k}") for k, v in data.items()}
            macro = per_class.get("macro", cls())
            return cls(macro.fpr, macro.tpr, macro.thresholds, per_class)
        data = _require(data, ("fpr", "tpr"), where)
        if len(data["fpr"]) != len(data["tpr"]):
            raise ArtifactError(f"{where}: fpr and tpr differ in length")
        return cls(list(data["fpr"]), list(data["tpr"]), list(data.get("thresholds", [])))

    @property
    def drawable(self) -> bool:
        return len(self.fpr) > 1

    @classmethod
    def read(cls, path: str | Path) -> RocCurve:
        return cls.from_json(read_json(path), str(path))


EVALUATION_KEYS = ("labels", "n", "accuracy", "auroc", "auroc_ci_low", "auroc_ci_high")


@dataclass
class Evaluation(_Stored):
    """``metrics.json``: one trained classifier scored on one test set (one direction).

    ``metrics`` holds every number as written (overall, per class as ``accuracy_<label>`` /
    ``auroc_<label>``, the CI bounds); undefined ones are NaN (``null`` in the file).
    """

    FILE: ClassVar[str] = EVALUATION

    labels: list[str]
    metrics: dict[str, float]
    roc: RocCurve
    confusion_matrix: list[list[int]]
    auroc_undefined_reason: str = ""
    # Descriptive entries (n_per_class, threshold, bootstrap, model_dir, test_set, arch, head).
    info: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def get(self, key: str, default: float = math.nan) -> float:
        return self.metrics.get(key, default)

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            **self.metrics,
            "auroc_undefined_reason": self.auroc_undefined_reason,
            "confusion_matrix": self.confusion_matrix,
            "roc": self.roc.to_json(),
            **self.info,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Evaluation:
        data = _require(data, EVALUATION_KEYS, where)
        metrics, info = {}, {}
        for key, value in data.items():
            if key in ("labels", "roc", "confusion_matrix", "auroc_undefined_reason"):
                continue
            number = _number(value)
            if number is None:
                info[key] = value
            else:
                metrics[key] = number
        return cls(
            labels=list(data["labels"]),
            metrics=metrics,
            roc=RocCurve.from_json(data.get("roc", {"fpr": [], "tpr": []}), f"{where}: roc"),
            confusion_matrix=[list(r) for r in data.get("confusion_matrix") or []],
            auroc_undefined_reason=data.get("auroc_undefined_reason") or "",
            info=info,
        )


@dataclass
class Predictions:
    """``predictions.csv`` of evaluate-classifier, one row per test image (``file, label,
    score_<label>..., predicted``): the labels in score-column order, each row's file, its label
    index and its scores. Read without torch, so the report can pair cells on it."""

    labels: list[str]
    files: list[str]
    y: np.ndarray
    scores: np.ndarray

    @classmethod
    def read(cls, path: str | Path) -> Predictions:
        """From the file itself (any name) or the evaluation folder holding ``PREDICTIONS``."""
        path = Path(path)
        path = path / PREDICTIONS if path.is_dir() else path
        if not path.is_file():
            raise ArtifactError(f"{path}: no such file")
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c for c in reader.fieldnames or [] if c.startswith("score_")]
            rows = list(reader)
        labels = [c.removeprefix("score_") for c in columns]
        if not labels:
            raise ArtifactError(f"{path}: no score_<label> columns")
        index = {label: i for i, label in enumerate(labels)}
        try:
            y = np.array([index[r["label"]] for r in rows], dtype=np.int64)
            scores = np.array([[float(r[c]) for c in columns] for r in rows], dtype=np.float64)
            files = [r["file"] for r in rows]
        except KeyError as exc:
            raise ArtifactError(
                f"{path}: label or column {exc} missing (score columns: {labels})"
            ) from None
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: a score is not a number ({exc})") from None
        return cls(labels, files, y, scores.reshape(len(rows), len(labels)))


# --------------------------------------------------------------------------- selection


@dataclass
class ClusterShare:
    """One cluster of one label: pool images in it, picks asked (share), distinct picks, repeats."""

    cluster: int
    size: int
    share: int
    unique: int
    duplicates: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class LabelSelection:
    """What one label's part of the tuning set is made of."""

    picked: int
    unique: int
    duplicates: int
    pool_count: int | None = None  # pool methods: the label's pool images
    clusters: list[ClusterShare] | None = None  # clustered methods
    short: int | None = None  # curated: asked minus picked
    mean_confidence: float | None = None  # curated: of the picks' pseudo-labels

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.pool_count is not None:
            out["pool_count"] = self.pool_count
        if self.clusters is not None:
            out["clusters"] = [c.to_json() for c in self.clusters]
        out.update(picked=self.picked, unique=self.unique, duplicates=self.duplicates)
        if self.short is not None:
            out["short"] = self.short
        if self.mean_confidence is not None:
            out["mean_confidence"] = self.mean_confidence
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> LabelSelection:
        data = _require(data, ("picked", "unique", "duplicates"), where)
        clusters = data.get("clusters")
        return cls(
            picked=int(data["picked"]),
            unique=int(data["unique"]),
            duplicates=int(data["duplicates"]),
            pool_count=data.get("pool_count"),
            clusters=None if clusters is None else [ClusterShare(**c) for c in clusters],
            short=data.get("short"),
            mean_confidence=data.get("mean_confidence"),
        )


@dataclass
class RetrievedLabel:
    retrieved: int
    short: int
    mean_distance: float
    max_distance: float


@dataclass
class Retrieval:
    """Method retrieval's stand-in set: the pool images nearest to the tuning set, per label."""

    embedder: str
    n_per_label: int
    labels: dict[str, RetrievedLabel] = field(default_factory=dict)
    embedder_description: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "embedder": self.embedder,
            "n_per_label": self.n_per_label,
            "labels": {k: asdict(v) for k, v in self.labels.items()},
        }
        if self.embedder_description is not None:
            out["embedder_description"] = self.embedder_description
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Retrieval:
        data = _require(data, ("embedder", "n_per_label", "labels"), where)
        return cls(
            data["embedder"],
            int(data["n_per_label"]),
            {k: RetrievedLabel(**v) for k, v in data["labels"].items()},
            data.get("embedder_description"),
        )


@dataclass
class SelectionReport(_Stored):
    """``selection.json``: how one grid row's tuning set was selected, pool indices included.

    The tuning set's ``dataset.json`` carries :meth:`summary` (the same without per-pick lists).
    """

    FILE: ClassVar[str] = SELECTION

    method: str
    selection: str
    embedder: str | None
    size: int
    seed: int
    labels: dict[str, LabelSelection] = field(default_factory=dict)
    embedder_description: str | None = None
    # k, cluster_images, n_neighbors, clustering (clustered methods)
    clustering: dict[str, Any] | None = None
    curated: dict[str, Any] | None = None  # the curated source's pseudo-labelling
    retrieval: Retrieval | None = None  # method retrieval only
    external: dict[str, Any] | None = None  # method external:<name>: the set's URI, counts, hash
    message: str = ""
    pool_indices: dict[str, list[int]] = field(default_factory=dict)
    pick_clusters: dict[str, list[int]] | None = None
    retrieved_pool_indices: dict[str, list[int]] | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "selection": self.selection,
            "embedder": self.embedder,
            "embedder_description": self.embedder_description,
            "size": self.size,
            "seed": self.seed,
            "labels": {k: v.to_json() for k, v in self.labels.items()},
        }
        out.update(self.clustering or {})
        if self.curated is not None:
            out["curated"] = self.curated
        if self.retrieval is not None:
            out["retrieval"] = self.retrieval.to_json()
        if self.external is not None:
            out["external"] = self.external
        if self.message:
            out["message"] = self.message
        return out

    def to_json(self) -> dict[str, Any]:
        out = self.summary()
        out["pool_indices"] = self.pool_indices
        if self.pick_clusters is not None:
            out["pick_clusters"] = self.pick_clusters
        if self.retrieved_pool_indices is not None:
            out["retrieved_pool_indices"] = self.retrieved_pool_indices
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> SelectionReport:
        data = _require(data, ("method", "selection", "size", "seed", "labels"), where)
        clustering = {
            k: data[k] for k in ("k", "cluster_images", "n_neighbors", "clustering") if k in data
        }
        retrieval = data.get("retrieval")
        return cls(
            method=data["method"],
            selection=data["selection"],
            embedder=data.get("embedder"),
            size=int(data["size"]),
            seed=int(data["seed"]),
            labels={
                k: LabelSelection.from_json(v, f"{where}: labels.{k}")
                for k, v in data["labels"].items()
            },
            embedder_description=data.get("embedder_description"),
            clustering=clustering or None,
            curated=data.get("curated"),
            retrieval=None if retrieval is None else Retrieval.from_json(retrieval, where),
            external=data.get("external"),
            message=data.get("message", ""),
            pool_indices=data.get("pool_indices", {}),
            pick_clusters=data.get("pick_clusters"),
            retrieved_pool_indices=data.get("retrieved_pool_indices"),
        )


# --------------------------------------------------------------------------- training log


@dataclass
class ActiveStep:
    """One active-selection probe: batch ``batch`` of the seeded batch plan, probed before
    optimizer update ``update`` (a skipped batch is replaced by the next, so the two differ),
    and its similarity to images generated for it."""

    batch: int
    update: int
    epoch: int
    similarity: float
    skipped: bool


@dataclass
class ActiveSummary:
    skip_fraction_per_epoch: dict[str, float]  # epoch (as text: a JSON key) -> fraction
    skipped: int
    evaluated: int
    similarity_min: float | None
    similarity_max: float | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class TrainingLog(_Stored):
    """``training_log.json`` of fine-tune (methods that do not fine-tune: ``fine_tuned`` false
    and no per-step lists). ``loss`` has one entry per step, None where active selection
    skipped the batch."""

    FILE: ClassVar[str] = TRAINING_LOG

    method: str
    fine_tuned: bool
    message: str = ""
    loss: list[float | None] = field(default_factory=list)
    active: list[ActiveStep] = field(default_factory=list)
    active_config: dict[str, Any] | None = None
    active_summary: ActiveSummary | None = None
    # Everything else the stage records (settings, prompts, counts, timings), as written.
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def did_not_train_reason(self) -> str:
        """Fine-tune's own reason that it did not train ('' when it trained): active selection
        skipped more than ``active.min_trained_fraction`` allows, with ``on_untrained: flag``."""
        if self.info.get("did_not_train"):
            return str(self.info.get("did_not_train_reason") or "did not train")
        return ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "fine_tuned": self.fine_tuned,
            "message": self.message,
            **self.info,
        }
        if self.fine_tuned:
            out["loss"] = self.loss
            out["active"] = [asdict(a) for a in self.active]
        if self.active_config is not None:
            out["active_config"] = self.active_config
        if self.active_summary is not None:
            out["active_summary"] = asdict(self.active_summary)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> TrainingLog:
        data = _require(data, ("method", "fine_tuned"), where)
        typed = ("method", "fine_tuned", "message", "loss", "active", "active_config")
        summary = data.get("active_summary")
        return cls(
            method=data["method"],
            fine_tuned=bool(data["fine_tuned"]),
            message=data.get("message", ""),
            loss=list(data.get("loss") or []),
            active=[ActiveStep(**a) for a in data.get("active") or []],
            active_config=data.get("active_config"),
            active_summary=None if summary is None else ActiveSummary(**summary),
            info={k: v for k, v in data.items() if k not in (*typed, "active_summary")},
        )


# --------------------------------------------------------------------------- cell


CELL_REQUIRED = (
    "method",
    "size",
    "seed",
    "s2r_accuracy",
    "s2r_auroc",
    "r2s_accuracy",
    "r2s_auroc",
    "fter",
)
CELL_HEADLINE = CELL_REQUIRED[3:]


@dataclass
class Supplementation:
    """The supplementation curve in the cell: AUROC/accuracy on real test per ratio r."""

    ratios: list[float]
    auroc: list[float | None]
    accuracy: list[float | None]
    real_per_label: dict[str, int]


@dataclass
class CellArtifact(_Stored):
    """``cell.json``: one grid cell's numbers, what they mean, and where its assets are.

    ``metrics`` holds every number (flat names: ``s2r_auroc``, ``fter_ci_low``, ``fid``,
    ``n_synthetic``, ...); undefined ones are NaN (``null`` in the file), with the reason in
    ``notes``. ``text`` holds the descriptions (embedder, memorisation space).
    """

    FILE: ClassVar[str] = CELL

    method: str
    size: int
    seed: int
    metrics: dict[str, float]
    notes: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    supplementation: Supplementation | None = None
    assets: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    # tgap.learning_curve.cell_curves: the seed's real curve, this set's synthetic curve (points
    # with n per label, AUROC, variance, interval) and the real-equivalent size in words.
    learning_curves: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.method, self.size, self.seed)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "size": self.size, "seed": self.seed}
        out.update(self.metrics)
        if self.supplementation is not None:
            out["supplementation"] = asdict(self.supplementation)
        if self.learning_curves is not None:
            out["learning_curves"] = self.learning_curves
        out.update(self.text)
        out.update(notes=self.notes, assets=self.assets, provenance=self.provenance)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> CellArtifact:
        data = _require(data, CELL_REQUIRED, where)
        if not isinstance(data["method"], str) or not data["method"]:
            raise ArtifactError(
                f"{where}: method must be a non-empty string, got {data['method']!r}"
            )
        metrics: dict[str, float] = {}
        text: dict[str, str] = {}
        for key, raw in data.items():
            if key in (
                "method",
                "size",
                "seed",
                "notes",
                "assets",
                "provenance",
                "supplementation",
                "learning_curves",
            ):
                continue
            number = _number(raw)
            if number is not None:
                metrics[key] = number
            elif key in CELL_HEADLINE:
                raise ArtifactError(f"{where}: {key} must be a number, got {raw!r}")
            elif isinstance(raw, str):
                text[key] = raw
            else:
                raise ArtifactError(f"{where}: {key}: expected a number or text, got {raw!r}")
        supplementation = data.get("supplementation")
        return cls(
            method=data["method"],
            size=_integer(data["size"], "size", where),
            seed=_integer(data["seed"], "seed", where),
            metrics=metrics,
            notes=dict(data.get("notes") or {}),
            text=text,
            supplementation=None if supplementation is None else Supplementation(**supplementation),
            assets=dict(data.get("assets") or {}),
            provenance=dict(data.get("provenance") or {}),
            learning_curves=data.get("learning_curves"),
        )
