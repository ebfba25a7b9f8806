"""Run configuration: typed sections, YAML presets, ``--set key=value`` overrides.

One config describes a whole run. Each section is a dataclass; a preset in
``pipelines/configs/`` only lists what differs from the defaults here (nanoGPT-style override
files). Unknown keys and wrong types are errors that name the key, e.g.
``finetune.stpes: unknown key (known: batch_size, ...)``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names which."""


# --------------------------------------------------------------------------- constraints
#
# sklearn-style: a field's constraint is declared beside it, ``steps: int = param(800, ge=1)``,
# and one walk (``check_constraints``) checks every field of every section when a config loads.
# Relations between keys live in ``validate`` below.


@dataclass(frozen=True)
class Constraint:
    """What a field's value must satisfy; ``describe()`` says it in words for the error.

    For lists, the bounds, ``choices``, ``multiple_of`` and ``check`` apply to every element;
    ``min_len`` and ``unique`` to the list itself.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    # For lists and strings: at least this many elements / characters.
    min_len: int | None = None
    choices: tuple[Any, ...] | None = None
    multiple_of: int | None = None
    # For lists: no value twice (a repeated grid size would run the same branch twice).
    unique: bool = False
    # A custom check: ``check(value)`` returns None when fine, else what was expected (words).
    check: Callable[[Any], str | None] | None = None

    def describe(self) -> str:
        parts = []
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(self, name)
            if bound is not None:
                parts.append(f"{symbol} {bound:g}")
        if self.multiple_of is not None:
            parts.append(f"a multiple of {self.multiple_of}")
        if self.choices is not None:
            parts.append(f"one of {', '.join(map(str, self.choices))}")
        if self.min_len is not None:
            parts.append(f"at least {self.min_len} element(s)")
        if self.unique:
            parts.append("no value twice")
        return " and ".join(parts)

    def check_value(self, value: Any, where: str) -> None:
        if value is None:
            return
        if isinstance(value, list | str):
            if self.min_len is not None and len(value) < self.min_len:
                raise ConfigError(f"{where}: {value!r} is too short (expected {self.describe()})")
        if isinstance(value, list):
            if self.unique and len(set(map(repr, value))) != len(value):
                raise ConfigError(f"{where}: {value!r} repeats a value (expected no value twice)")
            for i, item in enumerate(value):
                self._check_one(item, f"{where}[{i}]")
            return
        self._check_one(value, where)

    def _check_one(self, value: Any, where: str) -> None:
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}"
            )
        if self.check is not None:
            expected = self.check(value)
            if expected:
                raise ConfigError(f"{where}: {value!r} is not valid (expected {expected})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        ok = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
            and (self.multiple_of is None or value % self.multiple_of == 0)
        )
        if not ok:
            raise ConfigError(f"{where}: {value!r} is out of range (expected {self.describe()})")


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    merge: bool = False,
    **constraint: Any,
) -> Any:
    """A dataclass field with its constraint declared beside it: ``param(800, ge=1)``.

    ``merge=True`` (mapping fields): a given mapping is merged into the default one, so a preset
    or ``--set`` changes single entries instead of replacing the whole table."""
    metadata: dict[str, Any] = {"constraint": Constraint(**constraint)} if constraint else {}
    if merge:
        metadata["merge"] = True
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_constraints(obj: Any, where: str = "") -> None:
    """Walk every field of a config (or one section) and check its declared constraint."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            check_constraints(value, path)
            continue
        constraint = f.metadata.get("constraint")
        if constraint is not None:
            constraint.check_value(value, path)


# --------------------------------------------------------------------------- sections
def _names_label(template: str) -> str | None:
    return None if "{label}" in template else "a template containing {label}"


def _storage_uri(value: str) -> str | None:
    """ "" (off), a path, or a file://, s3:// or gs:// URI with a bucket (tgap.storage's forms)."""
    if "://" not in value:
        return None
    scheme, _, rest = value.partition("://")
    if scheme in ("s3", "gs") and rest.split("/", 1)[0]:
        return None
    return None if scheme == "file" else "'', a path, or a file://, s3://bucket or gs://bucket URI"


def _seconds(value: str) -> str | None:
    return None if re.fullmatch(r"\d+s", value) else "a duration in seconds such as '60s'"


# diffusers.optimization.get_scheduler names.
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "piecewise_constant",
)


@dataclass
class SplitConfig:
    """How ingest divides the real images: pool (tuning sets, retrieval), real-train, real-val
    (where every choice is made) and real-test (read only by the tasks that report on it).

    Fractions are of patients where the source has patient IDs, else of images; stratified by
    label; the four sum to 1. A split the source fixes itself (an official test or validation
    split) takes its images from there, and the others are cut from the rest in proportion to
    their fractions. ``val_fraction`` may be 0 only when the source has an official validation
    split (MedMNIST's ``val_*`` arrays, a ``val`` split folder or split value).
    """

    pool_fraction: float = param(0.45, gt=0, lt=1)
    train_fraction: float = param(0.25, gt=0, lt=1)
    val_fraction: float = param(0.1, ge=0, lt=1)
    test_fraction: float = param(0.2, gt=0, lt=1)
    seed: int = param(0, ge=0)
    # Sealed real-test: a patient with an image in real-test has none in pool, real-train or
    # real-val; their other images are dropped there, and the summary counts them.
    drop_test_patients: bool = True

    def fractions(self) -> tuple[float, float, float, float]:
        """The pool, train, val and test fractions (tgap.ingest.splits.SPLITS' order)."""
        return (self.pool_fraction, self.train_fraction, self.val_fraction, self.test_fraction)


@dataclass
class CsvFormatConfig:
    """``data.format: csv``: which columns of the manifest (``data.csv``) hold what.

    Labels come from one column (``label_column``) or from one-hot finding columns
    (``label_columns``, CheXpert: 1 positive, 0 negative, -1 uncertain, blank not mentioned);
    the positive findings, joined by ``|`` in column order, are the source label that
    ``data.label_policy`` maps (as NIH's ``Finding Labels``).
    """

    path_column: str = param("Path", min_len=1)
    # Folder the paths are relative to, relative to `data.source` ("" = source itself).
    root: str = ""
    label_column: str = ""
    label_columns: list[str] = field(default_factory=list)
    # "" = patient IDs from data.patient_id_pattern on the path (or none).
    patient_column: str = ""
    # Official splits: run split -> value in split_column, keys as data.split_folders.
    split_column: str = ""
    split_values: dict[str, str] = field(default_factory=dict)
    # Rows whose view_column is not in data.view_positions are left out ("" = no filter).
    view_column: str = ""
    # One-hot cells: -1 (uncertain) counts as positive, negative, or drops the row; blank
    # counts as negative or drops the row.
    uncertain: Literal["positive", "negative", "drop"] = "drop"
    blank: Literal["negative", "drop"] = "negative"


@dataclass
class DataConfig:
    """Where the real images come from and how their labels map onto the run's labels."""

    # A folder, file or URI of the real images; no default (the presets name theirs). A local run
    # refuses an empty one at start, naming the key.
    source: str = ""
    format: Literal["medmnist-npz", "nih-csv", "image-folder", "csv"] = "medmnist-npz"
    # nih-csv: metadata CSV and images folder, relative to `source` unless absolute / URIs.
    csv: str = ""
    images_dir: str = "images"
    resolution: int = param(32, ge=8)
    labels: list[str] = param(
        default_factory=lambda: ["No Finding", "Unhealthy"], min_len=2, unique=True
    )
    # Source label -> run label. `default_label` takes every source label not listed ("" = error).
    label_policy: dict[str, str] = field(default_factory=lambda: {"No Finding": "No Finding"})
    default_label: str = "Unhealthy"
    view_positions: list[str] = field(default_factory=list)
    age_min: int | None = param(None, ge=0)
    age_max: int | None = param(None, ge=0)
    max_images: int | None = param(None, ge=1)
    on_missing: Literal["fail", "skip"] = "fail"
    split: SplitConfig = field(default_factory=SplitConfig)
    # Patient IDs: a regex with one group, searched in each image's path relative to `source`
    # (image-folder; csv without patient_column), e.g. person(\d+)_. "" = none known: the split
    # is by image and the summary says leakage is possible.
    patient_id_pattern: str = ""
    # A path the pattern does not match: an error, or its own patient (counted in the summary).
    on_unmatched: Literal["fail", "own-patient"] = "fail"
    # Official splits (image-folder): run split -> subfolder of `source`, e.g.
    # {test: test, pool_and_train: train}; keys test + pool_and_train (+ val), or test + pool +
    # train + val. Without val, real-val is cut by patient from pool_and_train.
    split_folders: dict[str, str] = field(default_factory=dict)
    # An image that does not decode: stop, or leave it out and list it (summary, dataset.json, report).
    on_corrupt: Literal["fail", "skip"] = "fail"
    # format csv: a manifest with one row per image (CheXpert / MIMIC-CXR style).
    csv_format: CsvFormatConfig = field(default_factory=CsvFormatConfig)


@dataclass
class GridConfig:
    """The fan-out: one pipeline branch per (method, size, seed)."""

    # Method names are checked in `validate` (they depend on select.default_embedder).
    methods: list[str] = param(default_factory=lambda: ["random"], min_len=1, unique=True)
    sizes: list[int] = param(default_factory=lambda: [100], min_len=1, ge=1, unique=True)
    seeds: list[int] = param(default_factory=lambda: [0], min_len=1, ge=0, unique=True)


@dataclass
class SelectConfig:
    """Tuning-set selection: embedders and clustering."""

    k: int = param(10, ge=1)
    # Clustered methods: cluster (and pick from) a seeded random sample of this many pool images
    # per label (the thesis: 10,000); 0 = every pool image of the label.
    cluster_images: int = param(0, ge=0)
    pixel_side: int = param(16, ge=1)
    n_neighbors: int = param(10, ge=1)
    # Embedding used by the methods that name none (`active`, `curated` pseudo-labels, retrieval).
    default_embedder: Literal["pixel", "clip", "classifier"] = "classifier"
    clip_model: str = "ViT-B-32"
    clip_weights: str = ""
    curated_source: str = ""
    curated_format: Literal["image-folder", "medmnist-npz", "nih-csv"] = "image-folder"
    curated_threshold: float = param(0.8, ge=0, le=1)
    # Bring your own synthetic sets: grid method `external:<name>` evaluates this image folder
    # (<label>/...) or CSV (path, label columns) of generated images, with no fine-tune or generate.
    external_sets: dict[str, str] = field(default_factory=dict)


@dataclass
class DiffusionConfig:
    """The base generator: a diffusers Stable Diffusion folder/URI, or a preset built from config."""

    base_model: str = "tiny-pixel"
    # tiny-pixel only: a CLIP tokenizer folder (vocab.json, merges.txt); the presets name theirs.
    tokenizer: str = ""
    sample_size: int = param(32, ge=8)
    block_out_channels: list[int] = param(default_factory=lambda: [32, 64, 64], min_len=1, ge=1)
    layers_per_block: int = param(1, ge=1)
    cross_attention_dim: int = param(64, ge=1)
    text_hidden_size: int = param(64, ge=1)
    text_layers: int = param(2, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    attention: Literal["sdpa", "default"] = "sdpa"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # tiny-pixel only: what the denoiser predicts, and the training noise schedule (pixel space
    # needs the DDPM "linear" schedule: SD's "scaled_linear" leaves visible signal at t=T).
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    # Seed of the random initial weights and of the pretraining run.
    seed: int = param(0, ge=0)
    # tiny-pixel only: pretrain on the real pool with the class prompt alone (label-free), a
    # stand-in for Stable Diffusion's pretraining, so DreamBooth is a real fine-tune. 0 = off.
    pretrain_steps: int = param(0, ge=0)
    pretrain_batch_size: int = param(32, ge=1)
    pretrain_learning_rate: float = param(1e-3, gt=0)
    # What the UNet attends to: the text encoder's states of the prompt, or a learned embedding
    # per label trained with the UNet in fine-tune (tgap.diffusion.class_encoder; the prompt
    # template is then unused).
    conditioning: Literal["text", "class-encoder"] = "text"


@dataclass
class PromptConfig:
    """Prompts shared by fine-tuning and generation."""

    template: str = param("an image of {label} chest X-ray", check=_names_label)
    # Run label -> word used in prompts (the thesis prompts `Healthy` for `No Finding`).
    words: dict[str, str] = field(default_factory=lambda: {"No Finding": "Healthy"})
    identifier: str = ""
    class_prompt: str = "an image of chest X-ray"


@dataclass
class ActiveConfig:
    """Active data selection inside DreamBooth (the thesis's Algorithm 1)."""

    # A cosine similarity in [-1, 1], or "auto": measured on the base model before training
    # (``calibration_batches`` batches) and set at the quantile that skips ``target_skip``.
    threshold: float | Literal["auto"] = param(0.3, ge=-1.0, le=1.0)
    n_generate: int = param(4, ge=1)
    sampler_steps: int = param(10, ge=1)
    embedder: Literal["pixel", "clip", "classifier"] = "pixel"
    similarity: Literal["mean-embedding", "mean-pairwise"] = "mean-embedding"
    target_skip: float = param(0.5, ge=0.0, le=1.0)
    calibration_batches: int = param(8, ge=1)
    # A fine-tune that trained fewer than this fraction of its steps did not train: "fail" stops
    # the stage with the threshold and similarities seen; "flag" goes on, and the report marks
    # the cell "did not train" and never ranks it.
    min_trained_fraction: float = param(0.1, ge=0.0, le=1.0)
    on_untrained: Literal["fail", "flag"] = "fail"
    # A skipped batch is replaced by the next one, so ``finetune.steps`` counts optimizer updates
    # for every method. The skips of a run are capped at this fraction of the batches probed,
    # i.e. steps x f / (1 - f) skips (4 x steps at 0.8); at the cap the probe stops and the
    # remaining updates train the next batches unprobed (logged as skip_budget_spent_at).
    max_skip_fraction: float = param(0.8, ge=0.0, lt=1.0)


@dataclass
class FinetuneConfig:
    """DreamBooth fine-tuning."""

    steps: int = param(800, ge=1)
    batch_size: int = param(32, ge=1)
    learning_rate: float = param(1e-3, gt=0)
    lr_warmup_steps: int = param(50, ge=0)
    with_prior_preservation: bool = False
    num_class_images: int = param(100, ge=1)
    prior_loss_weight: float = param(1.0, ge=0)
    train_text_encoder: bool = False
    lora_rank: int = param(0, ge=0)
    checkpoint_every: int = param(100, ge=1)
    # Object-storage prefix (s3://, gs://, file:// or a path) the checkpoints are copied to, so a
    # retried or restarted task resumes on another node; "" = the task's local folder only.
    # Under it each fine-tune has its own key, derived from its inputs (checkpoint_store.py).
    checkpoint_uri: str = param("", check=_storage_uri)
    # diffusers.optimization.get_scheduler name (constant_with_warmup, cosine, linear, ...).
    lr_scheduler: str = param("constant_with_warmup", choices=LR_SCHEDULERS)
    # Sampler steps (DDIM) for the class images of prior preservation.
    class_sampler_steps: int = param(25, ge=1)
    active: ActiveConfig = field(default_factory=ActiveConfig)


@dataclass
class TuneSpaceConfig:
    """What the tune-generation study searches: ``[low, high]`` ranges, ``[]`` = not searched.

    A parameter not searched keeps the value of its ``generate`` key.
    """

    guidance_scale: list[float] = param(default_factory=lambda: [1.0, 6.0], ge=0.0)
    steps: list[int] = param(default_factory=lambda: [8, 40], ge=1)
    # Sample the guidance scale on a log scale (needs low > 0).
    guidance_log: bool = False
    # Scheduler choices (categorical); [] = keep generate.scheduler.
    schedulers: list[Literal["ddim", "ddpm", "dpm-solver++", "euler", "pndm"]] = field(
        default_factory=list
    )


@dataclass
class TuneConfig:
    """The optional tune-generation stage: Bayesian optimisation of sampling parameters.

    Each trial generates ``n_per_label`` images per label with the fine-tuned model, trains the
    run's classifier on them and scores it on real-val (ingest's validation split, disjoint
    from real-train and, by patient, from real-test); real-test is never seen. Generate then
    uses the best trial's parameters.
    """

    # 0 = off: generate uses its own keys and the stage does nothing.
    trials: int = param(0, ge=0)
    sampler: Literal["tpe", "gp"] = "tpe"
    # Trials drawn at random before the sampler's model is used (trial 0, generate's own setting,
    # counts as one). Optuna's own default is 10, so a budget of 8 would be random search only.
    startup_trials: int = param(3, ge=1)
    seed: int = 0
    n_per_label: int = param(64, ge=2)
    objective: Literal["cas-accuracy", "s2r-auroc"] = "s2r-auroc"
    space: TuneSpaceConfig = field(default_factory=TuneSpaceConfig)


@dataclass
class GenerateConfig:
    """Sampling the synthetic set."""

    # At least 2: the synthetic-trained classifier keeps one image per label to validate on.
    n_per_label: int = param(500, ge=2)
    batch_size: int = param(64, ge=1)
    scheduler: Literal["ddim", "ddpm", "dpm-solver++", "euler", "pndm"] = "ddim"
    steps: int = param(50, ge=1)
    guidance_scale: float = param(1.0, ge=0)
    # Prompt of the "unconditional" half of classifier-free guidance. "" is the usual choice for
    # Stable Diffusion; the DreamBooth class prompt (e.g. "an image of chest X-ray") steers away
    # from the label-free prior, which prior preservation keeps trained. Unused at guidance 1.
    negative_prompt: str = ""
    grid_images: int = param(16, ge=0)
    tune: TuneConfig = field(default_factory=TuneConfig)


@dataclass
class ClassifierConfig:
    """The classifier of the two-way evaluation (CheXNet = densenet121)."""

    arch: Literal["small-cnn", "densenet121"] = "small-cnn"
    # softmax: one distribution over the labels (cross-entropy); with two labels one score is
    # 1 - the other, so both per-class AUROCs are one number. sigmoid: an independent logistic
    # output per label (one-vs-rest binary cross-entropy, CheXNet's head), so each label's AUROC
    # ranks its own output.
    head: Literal["softmax", "sigmoid"] = "softmax"
    weights: str = ""
    resolution: int = param(32, ge=8)
    epochs: int = param(15, ge=1)
    batch_size: int = param(64, ge=1)
    learning_rate: float = param(1e-3, gt=0)
    val_fraction: float = param(0.15, gt=0, lt=1)
    augment: bool = True
    patience: int = param(4, ge=1)
    # Training device: auto = CUDA when present (seeded runs are bit-identical on the CPU only).
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass
class EvaluationConfig:
    """Statistics around the two-way evaluation."""

    bootstrap_resamples: int = param(1000, ge=1)
    confidence: float = param(0.95, gt=0, lt=1)
    # Paired comparisons: every method against this one on the same seeds and sizes (mean paired
    # difference, t-interval, scipy's paired t-test). Absent from the grid = no paired table.
    reference_method: str = "random"
    supplementation_ratios: list[float] = param(default_factory=list, ge=0)
    # Real learning curve (docs/evaluation.md, tgap.curves): real-train images per label of its
    # classifiers, one curve per seed shared by every method. A size above what real-train holds
    # for its smallest label becomes that count at run time, so the default doubles from 25 up to
    # all of real-train. [] = no curve (no real-equivalent size).
    real_curve_sizes: list[int] = param(
        default_factory=lambda: [25 * 2**k for k in range(12)], ge=2, unique=True
    )
    # Synthetic learning curve: S→R at these fractions of each generated set (nested subsets;
    # 1.0 is the cell's S→R itself), for the saturation test. [] = none.
    synthetic_curve_fractions: list[float] = param(
        default_factory=lambda: [0.25, 0.5, 1.0], gt=0, le=1, unique=True
    )
    distribution_embedder: Literal["pixel", "clip", "classifier"] = "classifier"
    near_copy_quantile: float = param(0.01, gt=0, lt=1)
    # k of the k-nearest-neighbour balls of precision/recall/density/coverage (Naeem et al. use 5).
    prdc_k: int = param(5, ge=1)
    # KID: mean of the unbiased MMD² over this many random subsets of at most kid_subset_size.
    kid_subsets: int = param(100, ge=1)
    kid_subset_size: int = param(1000, ge=2)
    # Memorisation distances: "pixels" (images at min(resolutions, 64) px, scaled to [0, 1]; what
    # "a copy" means to a reader) or "embedder" (the distribution embedder's space).
    memorisation_space: Literal["pixels", "embedder"] = "pixels"
    closest_pairs: int = param(8, ge=0)


@dataclass
class GpuConfig:
    """Resources for the stages in `cluster.gpu_stages` on a cluster."""

    accelerator: str = "nvidia.com/gpu"
    accelerator_type: str = ""
    limit: int = param(1, ge=0)
    cpu_request: str = "4"
    memory_request: str = "16G"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    # Node label that `accelerator_type` selects on (GKE's; e.g. `nvidia.com/gpu.product` with
    # NVIDIA's GPU feature discovery). Only used when `accelerator_type` is set.
    accelerator_node_label: str = "cloud.google.com/gke-accelerator"
    # The row of `cluster.throughput` that `tgap plan` prices GPU stages with.
    device: str = "nvidia-a100"


# Every stage (component) of the pipeline, by the name `cluster.gpu_stages` uses.
STAGES = (
    "fingerprint",
    "ingest",
    "prepare-base-model",
    "train-classifier",
    "embed",
    "select",
    "class-images",
    "fine-tune",
    "tune-generation",
    "generate",
    "evaluate-classifier",
    "supplementation",
    "learning-curve",
    "compute-fter",
    "report",
    "expand-grid",
    "grid-items",
    "validate-run",
)
# The stages that compute with a configured `device` key, and which key: a stage that says
# `cuda` there must be placed on the GPU pool (checked by `check_placement`).
STAGE_DEVICE_KEYS = {
    "class-images": "diffusion.device",
    "fine-tune": "diffusion.device",
    "tune-generation": "diffusion.device",
    "generate": "diffusion.device",
    "train-classifier": "classifier.device",
    "evaluate-classifier": "classifier.device",
    "supplementation": "classifier.device",
    "learning-curve": "classifier.device",
}


@dataclass
class CpuConfig:
    """Requests of every stage not in `cluster.gpu_stages` (the CPU pool)."""

    cpu_request: str = "2"
    memory_request: str = "8G"
    # The row of `cluster.throughput` that `tgap plan` prices CPU stages with.
    device: str = "cpu-2-cores"


@dataclass
class DeviceThroughput:
    """What one device does per second: `tgap plan`'s cost model (0 = not known).

    Figures are at the thesis's reference sizes (Stable Diffusion 1.5 at 512 px, DenseNet-121 and
    CLIP ViT-B/32 at 224 px); `tgap plan` scales them by pixel count for other resolutions.
    """

    # DreamBooth: images through one UNet forward + backward per second (instance + class).
    finetune_images_per_s: float = param(0.0, ge=0)
    # Sampling: UNet evaluations per second, one per image per sampler step (guidance: two).
    sample_unet_evals_per_s: float = param(0.0, ge=0)
    # Classifier training: image-epochs per second.
    classifier_train_images_per_s: float = param(0.0, ge=0)
    # Classifier / embedder inference: images per second.
    classifier_eval_images_per_s: float = param(0.0, ge=0)
    embed_images_per_s: float = param(0.0, ge=0)
    # Ingest: images read, decoded, resized and written per second.
    ingest_images_per_s: float = param(0.0, ge=0)
    # Where the figures come from (a published benchmark, or the benchmark that measured them).
    source: str = ""


def _default_throughput() -> dict[str, DeviceThroughput]:
    # Published figures, and how each number is derived from one, so a reader can check them.
    # Override any entry with what `benchmarks/*.py` measured on your own nodes.
    a100_note = (
        "sampling: fal-ai/stable-diffusion-benchmarks, SD 1.5 on an A100 80G, diffusers + torch "
        "2.1 SDPA, batch 1 with guidance: 31.19 it/s = 62 UNet evaluations/s. fine-tune: that "
        "figure / 3 (forward + backward = 3 forwards, Kaplan et al. 2020) = 20 images/s. "
        "classifier: NVIDIA DeepLearningExamples ResNet-50 v1.5 AMP training on one A100 "
        "(about 2,700 img/s), halved for DenseNet-121 (concatenations are memory-bound) = 1,350; "
        "inference 3x training. CLIP ViT-B/32: 4.4 GFLOPs per image against ResNet-50's 4.1 "
        "GFLOPs, taken at ResNet-50's training rate (a conservative stand-in for inference). ingest: docs/ingest.md (S3, measured)."
    )
    cpu_note = (
        "measured on this project's 2-core machine: DenseNet-121 at 224 px trains at 3.2 img/s "
        "per core (docs/evaluation.md, benchmarks/classify.py) = 7 img/s on 2 cores; inference "
        "3x that; CLIP ViT-B/32 at the same FLOPs rate; ingest 1,015 img/s from S3 "
        "(docs/ingest.md). Stable Diffusion on a CPU: 0.5 UNet evaluations/s at 512 px (the "
        "UNet's ~0.8 TFLOPs per evaluation at ~0.4 TFLOP/s), fine-tune a third of that."
    )
    return {
        "nvidia-a100": DeviceThroughput(20.0, 62.0, 1350.0, 4000.0, 2700.0, 1015.0, a100_note),
        "cpu-2-cores": DeviceThroughput(0.17, 0.5, 7.0, 21.0, 20.0, 1015.0, cpu_note),
    }


@dataclass
class ClusterConfig:
    """How the pipeline runs on Kubeflow (ignored by local runs)."""

    # Image repositories: the compiled spec names `<repository>@sha256:...` recorded by `make
    # images`, else `<repository>:<version>-<content digest>` (pipelines/images.py). A digest may
    # be given here; any other tag is refused at compile time unless --allow-floating-tag.
    cpu_image: str = "ghcr.io/tgap/tgap-cpu"
    gpu_image: str = "ghcr.io/tgap/tgap-cuda"
    gpu: GpuConfig = field(default_factory=GpuConfig)
    # Stages placed on the GPU pool (CUDA image, `gpu` accelerator, node selector, tolerations,
    # requests); every other stage runs on the CPU image with `cpu`'s requests. Names: STAGES.
    gpu_stages: list[str] = field(
        default_factory=lambda: ["class-images", "fine-tune", "tune-generation", "generate"]
    )
    cpu: CpuConfig = field(default_factory=CpuConfig)
    # `tgap plan`'s cost model: device name -> throughputs. `gpu.device` and `cpu.device` pick
    # the rows; a preset or --set changes single figures (merged into these defaults).
    throughput: dict[str, DeviceThroughput] = param(default_factory=_default_throughput, merge=True)
    # `tgap plan`: images in `data.source` (0 = `data.max_images`); NIH ChestX-ray14 has 112,120.
    source_images: int = param(0, ge=0)
    object_store_secret: str = ""
    retries: int = param(2, ge=0)
    parallelism: int = param(4, ge=1)
    # Threads of each task inside the loop, fixed so that results do not depend on how many
    # branches run at once (float reductions depend on the thread count). Local runs set
    # OMP_NUM_THREADS from it; 0 = leave the thread count to torch (every core: not reproducible
    # across parallelism settings or machines).
    threads_per_task: int = param(1, ge=0)
    # Threads of the once-per-run stages (ingest, reference classifier, embed, base model,
    # report); 0 = every core of the machine.
    threads_per_stage: int = param(0, ge=0)
    model_cache_pvc: str = ""
    # Object-store secret: secret data key -> environment variable (the names tgap.storage reads).
    # Drop keys your secret lacks: a missing key stops the pod from starting.
    object_store_keys: dict[str, str] = field(
        default_factory=lambda: {
            "TGAP_S3_ENDPOINT": "TGAP_S3_ENDPOINT",
            "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION": "AWS_REGION",
        }
    )
    # A secret holding a GCS service-account key as `key.json` (not needed with Workload Identity):
    # mounted read-only, GOOGLE_APPLICATION_CREDENTIALS points at it.
    gcs_credentials_secret: str = ""
    # Retry backoff for the GPU stages (preemptible nodes): first wait, growth factor, give-up time.
    retry_backoff: str = param("60s", check=_seconds)
    retry_backoff_factor: float = param(2.0, ge=1)
    retry_backoff_max: str = param("3600s", check=_seconds)
    # Model cache of the GPU stages, exported as TGAP_CACHE; "" = no cache volume. Backed by the
    # PVC `model_cache_pvc` when set, else by an emptyDir of at most `model_cache_size` ("" = no cap).
    model_cache_path: str = ""
    model_cache_size: str = ""
    # Secret of type kubernetes.io/dockerconfigjson for a private registry ("" = public images).
    image_pull_secret: str = ""
    # Kubernetes service account the run's pods use ("" = KFP's default, pipeline-runner).
    service_account: str = ""
    # Where the run's artifacts go, e.g. gs://bucket/tgap-runs ("" = KFP's default store).
    pipeline_root: str = ""


@dataclass
class Config:
    """A whole tgap run."""

    name: str = "tgap"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def grid_rows(self) -> list[dict[str, Any]]:
        """The flat fan-out: one dict per (method, size, seed), in a stable order."""
        return expand_grid(self.grid.methods, self.grid.sizes, self.grid.seeds, self)


# --------------------------------------------------------------------------- loading

T = typing.TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, struct_numbers: bool = False) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted as floats).

    ``struct_numbers``: integral floats are accepted as ints (values that came through a KFP
    Struct, see ``section``)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where, struct_numbers)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, struct_numbers)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]", struct_numbers) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _coerce(
                k if not isinstance(k, int | float) else str(k), args[0], f"{where} key"
            ): _coerce(v, args[1], f"{where}.{k}", struct_numbers)
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        # KFP passes dict parameters as protobuf Structs, which turn every number into a float.
        if isinstance(value, float) and value.is_integer() and struct_numbers:
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def from_dict(
    cls: type[T], values: dict[str, Any], where: str = "", struct_numbers: bool = False
) -> T:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(names)})")
        if fields[key].metadata.get("merge") and isinstance(value, dict):
            default = json.loads(json.dumps(fields[key].default_factory(), default=_plain))
            value = _merge(default, value)
        kwargs[key] = _coerce(value, hints[key], path, struct_numbers)
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(assignment: str) -> dict[str, Any]:
    """``finetune.steps=100`` -> ``{"finetune": {"steps": 100}}`` (value parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. finetune.steps=100")
    key, raw = assignment.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {key}: value {raw!r} is not valid YAML ({_yaml_problem(exc)})"
        ) from None
    out: dict[str, Any] = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: where and what (PyYAML's own message spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _read_preset(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's values, with ``extends: <file>`` (relative to this file) merged underneath.

    A small override file, nanoGPT-style: ``demo-tuned.yaml`` says ``extends: demo.yaml`` and
    only what differs. Chains are allowed; a cycle is an error naming the files.
    """
    if not path.is_file():
        where = f"{seen[-1]}: extends: " if seen else "config file "
        raise ConfigError(f"{where}{path} does not exist")
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"{path}: extends itself ({chain})")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{path}: extends: expected a file name, got {parent!r}")
    base = _read_preset(path.parent / parent, (*seen, path.resolve()))
    return _merge(base, loaded)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a preset YAML file (or the defaults when ``path`` is None) and apply ``overrides``.

    A preset may start with ``extends: other.yaml`` (a path relative to the preset): the other
    file's values are read first and this file's are merged on top, section by section.
    Relative data paths inside a preset stay relative to the working directory, the way the
    README's commands run them from the repository root.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        values = _read_preset(path)
    for assignment in overrides or []:
        values = _merge(values, parse_override(assignment))
    where = f"{path}: " if path is not None else ""
    try:
        config = from_dict(Config, values)
        validate(config)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return config


def validate(config: Config) -> None:
    """Every field's declared constraint, then the relations between keys.

    The one static check of a run: ``load_config`` calls it, and so does the pipeline's first
    task on the parameters a run was started with (``config_from_parameters``).
    """
    from tgap.methods import parse_method

    check_constraints(config)

    methods = []
    for i, name in enumerate(config.grid.methods):
        try:
            methods.append(parse_method(name, config.select.default_embedder))
        except ValueError as exc:
            raise ConfigError(f"grid.methods[{i}]: {exc}") from None
    clustered = [m for m in methods if m.selection in ("spectral", "kmeans")]
    if clustered and min(config.grid.sizes) < config.select.k:
        raise ConfigError(
            f"grid.sizes: {min(config.grid.sizes)} is smaller than select.k={config.select.k} "
            f"clusters, which {clustered[0].name} needs at least one pick from each"
        )
    if clustered and 0 < config.select.cluster_images < max(config.grid.sizes):
        raise ConfigError(
            f"select.cluster_images: {config.select.cluster_images} is below grid.sizes' "
            f"{max(config.grid.sizes)} (expected >= the largest size, or 0: {clustered[0].name} "
            "picks each label's tuning set from that many clustered pool images)"
        )
    if any(m.selection == "curated" for m in methods) and not config.select.curated_source:
        raise ConfigError(
            "select.curated_source: '' but grid.methods has 'curated' (expected a folder, .npz "
            "or URI of unlabelled images)"
        )
    clip_users = [m.name for m in methods if m.embedder == "clip"]
    if "active" in config.grid.methods and config.finetune.active.embedder == "clip":
        clip_users.append("finetune.active.embedder")
    if config.evaluation.distribution_embedder == "clip":
        clip_users.append("evaluation.distribution_embedder")
    if clip_users and not config.select.clip_weights:
        raise ConfigError(
            f"select.clip_weights: '' but {clip_users[0]} uses the clip embedder (expected "
            "open_clip weights, a path or URI; tgap never uses random weights as CLIP)"
        )

    _validate_split(config.data)
    check_tune(config.generate)
    if config.diffusion.conditioning == "class-encoder":
        if config.finetune.train_text_encoder:
            raise ConfigError(
                "finetune.train_text_encoder: true has no effect with diffusion.conditioning "
                "class-encoder (the text encoder is not used); set it to false"
            )
        if config.generate.negative_prompt not in ("", config.prompt.class_prompt):
            raise ConfigError(
                f"generate.negative_prompt {config.generate.negative_prompt!r}: with "
                "diffusion.conditioning class-encoder the unconditional half of guidance is the "
                f"label-free embedding; use '' or prompt.class_prompt ({config.prompt.class_prompt!r})"
            )
    for device, figures in config.cluster.throughput.items():
        check_constraints(figures, f"cluster.throughput.{device}")
    for i, stage in enumerate(config.cluster.gpu_stages):
        if stage not in STAGES:
            raise ConfigError(
                f"cluster.gpu_stages[{i}]: unknown stage {stage!r} (known: {', '.join(STAGES)})"
            )
    data = config.data
    if data.age_min is not None and data.age_max is not None and data.age_min > data.age_max:
        raise ConfigError(
            f"data.age_min: {data.age_min} is above data.age_max={data.age_max} (expected <=)"
        )
    if data.format == "nih-csv" and not data.csv:
        raise ConfigError("data.csv: '' but data.format is nih-csv (expected the metadata CSV)")

    diffusion = config.diffusion
    if diffusion.base_model == "tiny-pixel":
        # The pixel-space preset generates at sample_size and halves it at every level but the last.
        factor = 2 ** (len(diffusion.block_out_channels) - 1)
        if diffusion.sample_size % factor:
            raise ConfigError(
                f"diffusion.sample_size: {diffusion.sample_size} is not a multiple of {factor} "
                f"(expected one: {len(diffusion.block_out_channels)} UNet levels halve it)"
            )
        if data.resolution != diffusion.sample_size:
            raise ConfigError(
                f"data.resolution: {data.resolution} but the tiny-pixel model generates "
                f"{diffusion.sample_size} px (expected data.resolution == diffusion.sample_size)"
            )
    if config.classifier.weights and config.classifier.arch != "densenet121":
        raise ConfigError(
            f"classifier.weights: set but classifier.arch is {config.classifier.arch!r} "
            "(expected densenet121, the only arch with pretrained weights)"
        )
    ratios = config.evaluation.supplementation_ratios
    n = config.generate.n_per_label
    if ratios and max(ratios) > 0 and int(n / max(ratios)) < 2:
        raise ConfigError(
            f"evaluation.supplementation_ratios: ratio {max(ratios):g} leaves "
            f"{int(n / max(ratios))} real images per label with generate.n_per_label={n} "
            f"(expected n_per_label >= {2 * max(ratios):g})"
        )

    _validate_curves(config)
    _validate_data_layout(config.data)
    _validate_external_sets(config)


def _validate_curves(config: Config) -> None:
    """The learning curves' sizes and fractions, and where their classifiers train."""
    evaluation = config.evaluation
    sizes, fractions = evaluation.real_curve_sizes, evaluation.synthetic_curve_fractions
    if sizes != sorted(sizes) or len(sizes) == 1:
        raise ConfigError(
            f"evaluation.real_curve_sizes: {sizes} (expected at least 2 increasing sizes, or [])"
        )
    if fractions and (fractions != sorted(fractions) or fractions[-1] != 1 or len(fractions) < 2):
        raise ConfigError(
            f"evaluation.synthetic_curve_fractions: {fractions} (expected at least 2 increasing "
            "fractions ending at 1.0, or [])"
        )
    n = config.generate.n_per_label
    if fractions and round(fractions[0] * n) < 2:
        raise ConfigError(
            f"evaluation.synthetic_curve_fractions: {fractions[0]:g} x generate.n_per_label {n} "
            "is under 2 images per label (expected a classifier's 1 to train + 1 to validate)"
        )
    below = [round(f * n) for f in fractions if f < 1]  # what each synthetic-curve task trains
    if below != sorted(set(below)) or (below and below[-1] >= n):
        raise ConfigError(
            f"evaluation.synthetic_curve_fractions: {fractions} x generate.n_per_label {n} give "
            f"{below} images per label (expected distinct sizes below {n})"
        )
    gpu = config.cluster.gpu_stages
    if ("train-classifier" in gpu) != ("learning-curve" in gpu):
        raise ConfigError(
            f"cluster.gpu_stages: {gpu}: list both 'train-classifier' and 'learning-curve' or "
            "neither (the learning curves train the same classifiers)"
        )


def expand_grid(
    methods: list[str], sizes: list[int], seeds: list[int], config: Config | None = None
) -> list[dict[str, Any]]:
    """The flat fan-out, one ``{method, size, seed}`` dict per branch in a stable order.

    The same validation as a config file (with ``config``'s other sections): the pipeline's
    first task calls this on the ``methods``, ``sizes`` and ``seeds`` a run was started with
    (numbers may arrive as integral floats from KFP).
    """
    grid = section(
        GridConfig, {"methods": list(methods), "sizes": list(sizes), "seeds": list(seeds)}, "grid"
    )
    validate(dataclasses.replace(config or Config(), grid=grid))
    return [
        {"method": m, "size": int(n), "seed": int(s)}
        for m in grid.methods
        for n in grid.sizes
        for s in grid.seeds
    ]


def config_from_parameters(parameters: dict[str, Any], base: Config | None = None) -> Config:
    """A whole config from pipeline parameters (``run_name``, ``methods``, ``sizes``, ``seeds``
    and one dict per section), validated like a config file; ``base`` gives what a run does not
    pass (``cluster``, ``description``)."""
    base = base or Config()
    values = dict(parameters)
    kwargs: dict[str, Any] = {}
    if "run_name" in values:
        kwargs["name"] = values.pop("run_name")
    grid = {k: values.pop(k) for k in ("methods", "sizes", "seeds") if k in values}
    kwargs["grid"] = section(GridConfig, {**dataclasses.asdict(base.grid), **grid}, "grid")
    hints = typing.get_type_hints(Config)
    for name, value in values.items():
        if name not in hints or not dataclasses.is_dataclass(hints[name]):
            raise ConfigError(f"{name}: not a pipeline parameter of tgap")
        kwargs[name] = section(hints[name], value, name)
    config = dataclasses.replace(base, **kwargs)
    validate(config)
    return config


SPLIT_KEYS = ("test", "pool_and_train", "pool", "train", "val")


def has_official_val(data: DataConfig) -> bool:
    """Whether the source fixes real-val itself (MedMNIST's ``val_*`` arrays, a ``val`` split
    folder or split value)."""
    return (
        data.format == "medmnist-npz"
        or (data.format == "image-folder" and "val" in data.split_folders)
        or (data.format == "csv" and "val" in data.csv_format.split_values)
    )


def _validate_split(data: DataConfig) -> None:
    """The four fractions sum to 1; real-val has images to come from."""
    split = data.split
    fractions = split.fractions()
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(
            "data.split: pool_fraction, train_fraction, val_fraction and test_fraction must sum "
            "to 1 (got {})".format(" + ".join(f"{f:g}" for f in fractions))
        )
    if split.val_fraction == 0 and not has_official_val(data):
        raise ConfigError(
            f"data.split.val_fraction: 0 but data.format {data.format} has no official validation "
            "split here (expected > 0: real-val is where tuning and sweeps choose, never real-test)"
        )


def _validate_split_map(mapping: dict[str, str], key: str) -> None:
    """``{test, pool_and_train}`` or ``{test, pool, train, val}`` (``val`` optional with
    ``pool_and_train``): run split -> folder/value."""
    if not mapping:
        return
    unknown = sorted(set(mapping) - set(SPLIT_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown split(s) {unknown} (known: {', '.join(SPLIT_KEYS)})")
    keys = set(mapping) - {"val"}
    if keys not in ({"test", "pool_and_train"}, {"test", "pool", "train"}):
        raise ConfigError(
            f"{key}: {sorted(mapping)} must be test + pool_and_train (+ val), or test + pool + "
            "train + val"
        )
    if keys == {"test", "pool", "train"} and "val" not in mapping:
        raise ConfigError(
            f"{key}: test + pool + train fix every image, so real-val has none to be cut from "
            "(expected a val entry too)"
        )
    if any(not str(v).strip() for v in mapping.values()):
        raise ConfigError(f"{key}: empty folder/value in {mapping}")


def _validate_data_layout(data: DataConfig) -> None:
    """Relations between the data keys of patient IDs, official splits and the csv format."""
    import re

    if data.patient_id_pattern:
        try:
            groups = re.compile(data.patient_id_pattern).groups
        except re.error as exc:
            raise ConfigError(
                f"data.patient_id_pattern: {data.patient_id_pattern!r} is not a valid regex ({exc})"
            ) from None
        if groups != 1:
            raise ConfigError(
                f"data.patient_id_pattern: {data.patient_id_pattern!r} has {groups} groups; "
                r"expected exactly one, around the patient ID, e.g. person(\d+)_"
            )
    if data.patient_id_pattern and data.format in ("nih-csv", "medmnist-npz"):
        raise ConfigError(
            f"data.patient_id_pattern: not used by format {data.format} "
            "(nih-csv has Patient ID; medmnist-npz has no paths)"
        )
    _validate_split_map(data.split_folders, "data.split_folders")
    if data.split_folders and data.format != "image-folder":
        raise ConfigError(
            f"data.split_folders: only for format image-folder (got {data.format}; "
            "csv uses data.csv_format.split_column)"
        )
    if data.format != "csv":
        return
    fmt = data.csv_format
    _validate_split_map(fmt.split_values, "data.csv_format.split_values")
    if bool(fmt.label_column) == bool(fmt.label_columns):
        raise ConfigError(
            "data.csv_format: set exactly one of label_column (one column holding the label) "
            "and label_columns (one-hot finding columns)"
        )
    if bool(fmt.split_column) != bool(fmt.split_values):
        raise ConfigError(
            "data.csv_format: split_column and split_values go together (the column, and which "
            "of its values is test / pool_and_train)"
        )
    if fmt.patient_column and data.patient_id_pattern:
        raise ConfigError(
            "data.csv_format.patient_column and data.patient_id_pattern: set one, not both"
        )


def _validate_external_sets(config: Config) -> None:
    """Every ``external:<name>`` grid method names a set in ``select.external_sets``."""
    sets = config.select.external_sets
    for name, uri in sets.items():
        if not name or ":" in name or not str(uri).strip():
            raise ConfigError(
                f"select.external_sets.{name}: expected a name without ':' and a URI, got {uri!r}"
            )
    for i, method in enumerate(config.grid.methods):
        if method.startswith("external:") and method.removeprefix("external:") not in sets:
            raise ConfigError(
                f"grid.methods[{i}]: {method!r} names no set in select.external_sets "
                f"(known: {', '.join(sorted(sets)) or 'none'})"
            )


_QUANTITY_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                   "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}  # fmt: skip


def quantity_bytes(quantity: str, key: str) -> float:
    """A Kubernetes memory quantity (``16G``, ``15Gi``, ``8000M``, ``1e9``) in bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([KMGTPE]i?)?\s*", quantity)
    if m is None:
        raise ConfigError(
            f"{key}: {quantity!r} is not a memory quantity (expected e.g. 16G, 15Gi, 8000M)"
        )
    return float(m.group(1)) * _QUANTITY_UNITS[m.group(2) or ""]


def check_placement(config: Config) -> None:
    """Compile-time check: a stage whose device key says ``cuda`` runs on the GPU pool, and
    the pools' memory requests are quantities Kubernetes reads.

    Only for compiling a cluster spec: local runs ignore placement.
    """
    for pool in ("gpu", "cpu"):
        request = getattr(config.cluster, pool).memory_request
        if request:
            quantity_bytes(request, f"cluster.{pool}.memory_request")
    for stage, key in STAGE_DEVICE_KEYS.items():
        section_name, name = key.split(".")
        if getattr(getattr(config, section_name), name) == "cuda" and (
            stage not in config.cluster.gpu_stages
        ):
            raise ConfigError(
                f"{key} is 'cuda' but stage {stage!r} is not in cluster.gpu_stages "
                f"({config.cluster.gpu_stages}): add it there, or set {key} to auto or cpu"
            )


def check_tune(generate: GenerateConfig) -> None:
    """Relations of ``generate.tune``: a searchable space, ordered ranges, a small enough set."""
    tune, space = generate.tune, generate.tune.space
    where = "generate.tune"
    for key in ("guidance_scale", "steps"):
        bounds = getattr(space, key)
        if len(bounds) not in (0, 2):
            raise ConfigError(
                f"{where}.space.{key}: {bounds!r}: expected [low, high], or [] to keep "
                f"generate.{key}"
            )
        if bounds and bounds[0] > bounds[1]:
            raise ConfigError(f"{where}.space.{key}: low {bounds[0]} > high {bounds[1]}")
    if space.guidance_log and space.guidance_scale and space.guidance_scale[0] <= 0:
        raise ConfigError(
            f"{where}.space.guidance_log: a log scale needs guidance_scale low > 0, "
            f"got {space.guidance_scale[0]}"
        )
    if len(set(space.schedulers)) != len(space.schedulers):
        raise ConfigError(f"{where}.space.schedulers: {space.schedulers} has duplicates")
    if tune.trials == 0:
        return
    searched = [
        f"{key} {bounds}"
        for key, bounds in (("guidance_scale", space.guidance_scale), ("steps", space.steps))
        if bounds and bounds[0] < bounds[1]
    ]
    if len(space.schedulers) > 1:
        searched.append(f"schedulers {space.schedulers}")
    if not searched:
        raise ConfigError(
            f"{where}.space: empty search space with trials={tune.trials} (every range is [] or "
            "a single value and at most one scheduler); give a [low, high] range or set trials: 0"
        )
    if tune.n_per_label > generate.n_per_label:
        raise ConfigError(
            f"{where}.n_per_label: {tune.n_per_label} is larger than generate.n_per_label "
            f"{generate.n_per_label} (a trial generates a small set; at most the final one)"
        )


def section(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Rebuild one config section received as a KFP dict parameter (integral floats -> int)."""
    return from_dict(cls, values, where, struct_numbers=True)
