"""Run configuration: typed sections, YAML presets, ``--set key=value`` overrides.

One config describes a whole run. Each section is a dataclass; a preset in
``pipelines/configs/`` only lists what differs from the defaults here (nanoGPT-style override
files). Unknown keys and wrong types are errors that name the key, e.g.
``finetune.stpes: unknown key (known: batch_size, ...)``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
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
    """What a field's value must satisfy; ``describe()`` says it in words for the error."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    # For lists and strings: at least this many elements / characters.
    min_len: int | None = None
    # For lists: the bounds apply to every element.

    def describe(self) -> str:
        parts = []
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(self, name)
            if bound is not None:
                parts.append(f"{symbol} {bound:g}")
        if self.min_len is not None:
            parts.append(f"at least {self.min_len} element(s)")
        return " and ".join(parts)

    def check(self, value: Any, where: str) -> None:
        if value is None:
            return
        if isinstance(value, list | str):
            if self.min_len is not None and len(value) < self.min_len:
                raise ConfigError(f"{where}: {value!r} is too short (expected {self.describe()})")
            if isinstance(value, list):
                for i, item in enumerate(value):
                    self._check_number(item, f"{where}[{i}]")
            return
        self._check_number(value, where)

    def _check_number(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        ok = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        if not ok:
            raise ConfigError(f"{where}: {value!r} is out of range (expected {self.describe()})")


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    **constraint: Any,
) -> Any:
    """A dataclass field with its constraint declared beside it: ``param(800, ge=1)``."""
    metadata = {"constraint": Constraint(**constraint)} if constraint else {}
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
            constraint.check(value, path)


# --------------------------------------------------------------------------- sections


@dataclass
class SplitConfig:
    """How ingest divides the real images: pool (tuning sets, retrieval), real-train, real-test.

    Fractions are of patients where the source has patient IDs, else of images; stratified by label.
    """

    pool_fraction: float = 0.5
    train_fraction: float = 0.3
    test_fraction: float = 0.2
    seed: int = 0


@dataclass
class DataConfig:
    """Where the real images come from and how their labels map onto the run's labels."""

    source: str = "../shared/data/pneumoniamnist"
    format: Literal["medmnist-npz", "nih-csv", "image-folder"] = "medmnist-npz"
    # nih-csv: metadata CSV and images folder, relative to `source` unless absolute / URIs.
    csv: str = ""
    images_dir: str = "images"
    resolution: int = 32
    labels: list[str] = field(default_factory=lambda: ["No Finding", "Unhealthy"])
    # Source label -> run label. `default_label` takes every source label not listed ("" = error).
    label_policy: dict[str, str] = field(default_factory=lambda: {"No Finding": "No Finding"})
    default_label: str = "Unhealthy"
    view_positions: list[str] = field(default_factory=list)
    age_min: int | None = None
    age_max: int | None = None
    max_images: int | None = None
    on_missing: Literal["fail", "skip"] = "fail"
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class GridConfig:
    """The fan-out: one pipeline branch per (method, size, seed)."""

    methods: list[str] = field(default_factory=lambda: ["random"])
    sizes: list[int] = field(default_factory=lambda: [100])
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class SelectConfig:
    """Tuning-set selection: embedders and clustering."""

    k: int = 10
    pixel_side: int = 16
    n_neighbors: int = 10
    # Embedding used by the methods that name none (`active`, `curated` pseudo-labels, retrieval).
    default_embedder: Literal["pixel", "clip", "classifier"] = "classifier"
    clip_model: str = "ViT-B-32"
    clip_weights: str = ""
    curated_source: str = ""
    curated_format: Literal["image-folder", "medmnist-npz", "nih-csv"] = "image-folder"
    curated_threshold: float = 0.8


@dataclass
class DiffusionConfig:
    """The base generator: a diffusers Stable Diffusion folder/URI, or a preset built from config."""

    base_model: str = "tiny-pixel"
    tokenizer: str = "../shared/data/clip-tokenizer"
    sample_size: int = 32
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    cross_attention_dim: int = 64
    text_hidden_size: int = 64
    text_layers: int = 2
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    attention: Literal["sdpa", "default"] = "sdpa"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # tiny-pixel only: what the denoiser predicts, and the training noise schedule (pixel space
    # needs the DDPM "linear" schedule: SD's "scaled_linear" leaves visible signal at t=T).
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    # Seed of the random initial weights and of the pretraining run.
    seed: int = 0
    # tiny-pixel only: pretrain on the real pool with the class prompt alone (label-free), a
    # stand-in for Stable Diffusion's pretraining, so DreamBooth is a real fine-tune. 0 = off.
    pretrain_steps: int = 0
    pretrain_batch_size: int = 32
    pretrain_learning_rate: float = 1e-3
    # What the UNet attends to: the text encoder's states of the prompt, or a learned embedding
    # per label trained with the UNet in fine-tune (tgap.diffusion.class_encoder; the prompt
    # template is then unused).
    conditioning: Literal["text", "class-encoder"] = "text"


@dataclass
class PromptConfig:
    """Prompts shared by fine-tuning and generation."""

    template: str = "an image of {label} chest X-ray"
    # Run label -> word used in prompts (the thesis prompts `Healthy` for `No Finding`).
    words: dict[str, str] = field(default_factory=lambda: {"No Finding": "Healthy"})
    identifier: str = ""
    class_prompt: str = "an image of chest X-ray"


@dataclass
class ActiveConfig:
    """Active data selection inside DreamBooth (the thesis's Algorithm 1)."""

    threshold: float = param(0.3, ge=-1.0, le=1.0)
    n_generate: int = 4
    sampler_steps: int = 10
    embedder: Literal["pixel", "clip", "classifier"] = "pixel"
    similarity: Literal["mean-embedding", "mean-pairwise"] = "mean-embedding"


@dataclass
class FinetuneConfig:
    """DreamBooth fine-tuning."""

    steps: int = param(800, ge=1)
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_warmup_steps: int = 50
    with_prior_preservation: bool = False
    num_class_images: int = 100
    prior_loss_weight: float = 1.0
    train_text_encoder: bool = False
    lora_rank: int = 0
    checkpoint_every: int = 100
    # diffusers.optimization.get_scheduler name (constant_with_warmup, cosine, linear, ...).
    lr_scheduler: str = "constant_with_warmup"
    # Sampler steps (DDIM) for the class images of prior preservation.
    class_sampler_steps: int = 25
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
    run's classifier on them and scores it on a validation split carved from real-train (by
    patient where the source has patient IDs); real-test is never seen. Generate then uses the
    best trial's parameters.
    """

    # 0 = off: generate uses its own keys and the stage does nothing.
    trials: int = param(0, ge=0)
    sampler: Literal["tpe", "gp"] = "tpe"
    seed: int = 0
    n_per_label: int = param(64, ge=2)
    objective: Literal["cas-accuracy", "s2r-auroc"] = "s2r-auroc"
    # Fraction of real-train (of its patients where it has patient IDs) scored on.
    val_fraction: float = param(0.2, gt=0.0, lt=1.0)
    space: TuneSpaceConfig = field(default_factory=TuneSpaceConfig)


@dataclass
class GenerateConfig:
    """Sampling the synthetic set."""

    n_per_label: int = param(500, ge=1)
    batch_size: int = 64
    scheduler: Literal["ddim", "ddpm", "dpm-solver++", "euler", "pndm"] = "ddim"
    steps: int = param(50, ge=1)
    guidance_scale: float = 1.0
    # Prompt of the "unconditional" half of classifier-free guidance. "" is the usual choice for
    # Stable Diffusion; the DreamBooth class prompt (e.g. "an image of chest X-ray") steers away
    # from the label-free prior, which prior preservation keeps trained. Unused at guidance 1.
    negative_prompt: str = ""
    grid_images: int = 16
    tune: TuneConfig = field(default_factory=TuneConfig)


@dataclass
class ClassifierConfig:
    """The classifier of the two-way evaluation (CheXNet = densenet121)."""

    arch: Literal["small-cnn", "densenet121"] = "small-cnn"
    weights: str = ""
    resolution: int = 32
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    val_fraction: float = 0.15
    augment: bool = True
    patience: int = 4
    # Training device: auto = CUDA when present (seeded runs are bit-identical on the CPU only).
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass
class EvaluationConfig:
    """Statistics around the two-way evaluation."""

    bootstrap_resamples: int = param(1000, ge=1)
    confidence: float = 0.95
    supplementation_ratios: list[float] = field(default_factory=list)
    distribution_embedder: Literal["pixel", "clip", "classifier"] = "classifier"
    near_copy_quantile: float = 0.01
    # k of the k-nearest-neighbour balls of precision/recall/density/coverage (Naeem et al. use 5).
    prdc_k: int = 5
    # KID: mean of the unbiased MMD² over this many random subsets of at most kid_subset_size.
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    # Memorisation distances: "pixels" (images at min(resolutions, 64) px, scaled to [0, 1]; what
    # "a copy" means to a reader) or "embedder" (the distribution embedder's space).
    memorisation_space: Literal["pixels", "embedder"] = "pixels"
    closest_pairs: int = 8


@dataclass
class GpuConfig:
    """Resources for the GPU stages (fine-tune, generate) on a cluster."""

    accelerator: str = "nvidia.com/gpu"
    accelerator_type: str = ""
    limit: int = 1
    cpu_request: str = "4"
    memory_request: str = "16G"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    # Node label that `accelerator_type` selects on (GKE's; e.g. `nvidia.com/gpu.product` with
    # NVIDIA's GPU feature discovery). Only used when `accelerator_type` is set.
    accelerator_node_label: str = "cloud.google.com/gke-accelerator"


@dataclass
class ClusterConfig:
    """How the pipeline runs on Kubeflow (ignored by local runs)."""

    cpu_image: str = "ghcr.io/tgap/tgap-cpu:0.1.0"
    gpu_image: str = "ghcr.io/tgap/tgap-cuda:0.1.0"
    gpu: GpuConfig = field(default_factory=GpuConfig)
    object_store_secret: str = ""
    retries: int = 2
    parallelism: int = 4
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
    retry_backoff: str = "60s"
    retry_backoff_factor: float = 2.0
    retry_backoff_max: str = "3600s"
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
        return [
            {"method": m, "size": int(n), "seed": int(s)}
            for m in self.grid.methods
            for n in self.grid.sizes
            for s in self.grid.seeds
        ]


# --------------------------------------------------------------------------- loading

T = typing.TypeVar("T")
_STRUCT_NUMBERS = False


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted as floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
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
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _coerce(
                k if not isinstance(k, int | float) else str(k), args[0], f"{where} key"
            ): _coerce(v, args[1], f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        # KFP passes dict parameters as protobuf Structs, which turn every number into a float.
        if isinstance(value, float) and value.is_integer() and _STRUCT_NUMBERS:
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


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


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
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc})") from None
    out: dict[str, Any] = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a preset YAML file (or the defaults when ``path`` is None) and apply ``overrides``.

    Relative data paths inside a preset stay relative to the working directory, the way the
    README's commands run them from the repository root.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = loaded
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
    """Every field's declared constraint, then the relations between keys."""
    from tgap.methods import parse_method

    check_constraints(config)

    grid = config.grid
    for key in ("methods", "sizes", "seeds"):
        if not getattr(grid, key):
            raise ConfigError(f"grid.{key}: empty; the grid needs at least one value")
    for i, name in enumerate(grid.methods):
        try:
            parse_method(name, config.select.default_embedder)
        except ValueError as exc:
            raise ConfigError(f"grid.methods[{i}]: {exc}") from None
    for i, size in enumerate(grid.sizes):
        if size <= 0:
            raise ConfigError(
                f"grid.sizes[{i}]: {size} is not a positive number of images per label"
            )
    split = config.data.split
    total = split.pool_fraction + split.train_fraction + split.test_fraction
    if (
        abs(total - 1.0) > 1e-6
        or min(split.pool_fraction, split.train_fraction, split.test_fraction) <= 0
    ):
        raise ConfigError(
            "data.split: pool_fraction, train_fraction and test_fraction must be positive and sum "
            f"to 1 (got {split.pool_fraction} + {split.train_fraction} + {split.test_fraction})"
        )
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
    if len(set(config.data.labels)) != len(config.data.labels) or len(config.data.labels) < 2:
        raise ConfigError(
            f"data.labels: need at least two distinct labels, got {config.data.labels}"
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
    global _STRUCT_NUMBERS
    _STRUCT_NUMBERS = True
    try:
        return from_dict(cls, values, where)
    finally:
        _STRUCT_NUMBERS = False


def config_from_json(text: str) -> Config:
    """The inverse of ``config_to_json``: how components receive the run config."""
    return from_dict(Config, json.loads(text))


def config_to_json(config: Config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)
