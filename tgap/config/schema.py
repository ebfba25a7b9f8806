"""The config's sections: one dataclass per section, every key with its default, its
constraint (``param``) and a comment saying what it does.

The whole run (``Config``, which holds one of each) is in ``tgap.config.run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tgap.config.constraints import param
from tgap.config.throughput import DeviceThroughput, _default_throughput


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


# Choices used by more than one key, or read by the code that implements them
# (tgap.classify.ARCHS and HEADS, tgap.diffusion.generate.SCHEDULERS are these).
ClassifierArch = Literal["small-cnn", "densenet121"]
ClassifierHead = Literal["softmax", "sigmoid"]
Embedder = Literal["pixel", "clip", "classifier"]
Scheduler = Literal["ddim", "ddpm", "dpm-solver++", "euler", "pndm"]
Device = Literal["auto", "cpu", "cuda"]

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
    """Real data: source URI, format, resolution, label policy, patient-level split.

    Where the real images come from and how their labels map onto the run's labels.
    """

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
    """Tuning-set selection: embedders, k clusters, curated source, CLIP weights URI."""

    k: int = param(10, ge=1)
    # Clustered methods: cluster (and pick from) a seeded random sample of this many pool images
    # per label (the thesis: 10,000); 0 = every pool image of the label.
    cluster_images: int = param(0, ge=0)
    pixel_side: int = param(16, ge=1)
    n_neighbors: int = param(10, ge=1)
    # Embedding used by the methods that name none (`active`, `curated` pseudo-labels, retrieval).
    default_embedder: Embedder = "classifier"
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
    """Base generator: Stable Diffusion URI or the tiny preset, precision, device.

    A diffusers Stable Diffusion folder/URI, or a preset built from config (``tiny-pixel``).
    """

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
    device: Device = "auto"
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
    """Prompt template, prompt word per label, identifier token, class prompt.

    Shared by fine-tuning and generation.
    """

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
    embedder: Embedder = "pixel"
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
    """DreamBooth: steps, batch, learning rate, prior preservation, LoRA, active selection."""

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
    schedulers: list[Scheduler] = field(default_factory=list)


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
    """Sampling: images per label, scheduler, steps, guidance scale."""

    # At least 2: the synthetic-trained classifier keeps one image per label to validate on.
    n_per_label: int = param(500, ge=2)
    batch_size: int = param(64, ge=1)
    scheduler: Scheduler = "ddim"
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
    """Two-way evaluation classifier: small-cnn or densenet121 (CheXNet), training."""

    arch: ClassifierArch = "small-cnn"
    # softmax: one distribution over the labels (cross-entropy); with two labels one score is
    # 1 - the other, so both per-class AUROCs are one number. sigmoid: an independent logistic
    # output per label (one-vs-rest binary cross-entropy, CheXNet's head), so each label's AUROC
    # ranks its own output.
    head: ClassifierHead = "softmax"
    weights: str = ""
    resolution: int = param(32, ge=8)
    epochs: int = param(15, ge=1)
    batch_size: int = param(64, ge=1)
    learning_rate: float = param(1e-3, gt=0)
    val_fraction: float = param(0.15, gt=0, lt=1)
    augment: bool = True
    patience: int = param(4, ge=1)
    # Training device: auto = CUDA when present (seeded runs are bit-identical on the CPU only).
    device: Device = "auto"


@dataclass
class EvaluationConfig:
    """Bootstrap intervals, supplementation ratios, distribution-metric embedder.

    Statistics around the two-way evaluation.
    """

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
    distribution_embedder: Embedder = "classifier"
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


@dataclass
class CpuConfig:
    """Requests of every stage not in `cluster.gpu_stages` (the CPU pool)."""

    cpu_request: str = "2"
    memory_request: str = "8G"
    # The row of `cluster.throughput` that `tgap plan` prices CPU stages with.
    device: str = "cpu-2-cores"


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
