"""The whole run: ``Config`` (one of each section), ``validate`` (every constraint, then the
relations between keys), the grid's fan-out and a config rebuilt from pipeline parameters.

``Config.grid_rows`` validates, and ``validate`` takes a ``Config``, so they live together.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from tgap.config.coerce import section
from tgap.config.constraints import check_constraints
from tgap.config.errors import ConfigError
from tgap.config.rules import _validate_data_layout, _validate_split, check_tune
from tgap.config.schema import (
    STAGES,
    ClassifierConfig,
    ClusterConfig,
    DataConfig,
    DiffusionConfig,
    EvaluationConfig,
    FinetuneConfig,
    GenerateConfig,
    GridConfig,
    PromptConfig,
    SelectConfig,
)

if typing.TYPE_CHECKING:
    from tgap.methods import Method


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
    _validate_external_sets(config, methods)


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


def _validate_external_sets(config: Config, methods: list[Method]) -> None:
    """Every ``external:<name>`` grid method names a set in ``select.external_sets``."""
    sets = config.select.external_sets
    for name, uri in sets.items():
        if not name or ":" in name or not str(uri).strip():
            raise ConfigError(
                f"select.external_sets.{name}: expected a name without ':' and a URI, got {uri!r}"
            )
    for i, method in enumerate(methods):
        if method.external_name is not None and method.external_name not in sets:
            raise ConfigError(
                f"grid.methods[{i}]: {method.name!r} names no set in select.external_sets "
                f"(known: {', '.join(sorted(sets)) or 'none'})"
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
