"""``tgap plan``: what a run will cost, before anything runs.

One row per stage: tasks (and how many on GPUs), units of work, artifact bytes, host memory of
its largest task, GPU-hours, CPU-hours (pod-hours of CPU-pool tasks) and wall time at
``cluster.parallelism``. A stage whose task would hold more than its pool's
``memory_request`` gets a warning line (``memory_warnings``). Throughputs
come from ``cluster.throughput`` (``cluster.gpu.device`` and ``cluster.cpu.device`` pick the
rows); their defaults in ``tgap.config.throughput`` say where each figure comes from.

Model artifacts are counted in the format a run writes: a LoRA fine-tune stores only its adapter
(``lora_params`` from the rank and the UNet's attention projection shapes), a full fine-tune only
the components it trained, in the storage dtype of its training precision; both reference the
base model, which is stored once.

Assumptions: KFP's cache shares identical tasks (the real-trained classifier once per seed, R→R
once per seed); classifier training runs every epoch (early stopping only shortens it);
throughputs scale with pixel count away from their reference resolutions; stored PNGs take
``PNG_BYTES_PER_PIXEL``; wall time adds each stage's work spread over ``parallelism`` tasks (an
upper bound: sibling loops overlap). Memory counts the arrays a task holds (grey uint8 images,
float32 embeddings, the fp32 base model a diffusion stage loads on the host) plus
``RUNTIME_BYTES``; stages that stream (ingest, evaluate-classifier, report) hold only batches.
``benchmarks/memory.py`` checks the classifier formulas against measured peaks.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tgap import metrics
from tgap.artifacts import ASSETS, CELL, CellArtifact
from tgap.config import Config, ConfigError, DeviceThroughput, quantity_bytes
from tgap.grid import WorkItem, class_image_seeds, config_rows, split_rows
from tgap.methods import parse_method
from tgap.tune import planned_work

# NIH ChestX-ray14 is about 42 GB of 1024x1024 8-bit PNGs for 112,120 images: 0.36 bytes/pixel.
PNG_BYTES_PER_PIXEL = 0.36
DTYPE_BYTES = {"no": 4, "fp16": 2, "bf16": 2}
GB = 1e9

# Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5, diffusers): parameters per component,
# and the UNet's transformer blocks by channel width (down 320/640/1280 x2, mid 1280 x1, up
# 1280/640/320 x3), each with self-attention (q, k, v, out: C -> C) and cross-attention (q, out:
# C -> C; k, v: 768 -> C). LoRA of rank r on a C_in -> C_out projection: r * (C_in + C_out).
SD15_PARAMS = {"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863}
SD15_BLOCKS = {320: 5, 640: 5, 1280: 6}
SD15_CROSS_DIM = 768
SD15_RESOLUTION = 512  # throughputs of the diffusion stages are quoted at this size
CLASSIFIER_RESOLUTION = 224  # and of classifier and embedder stages at this one
CLASSIFIER_PARAMS = {"densenet121": 6_955_906, "small-cnn": 100_000}
EMBED_DIMS = {"pixel": 256, "classifier": 1024, "clip": 512}


# Host memory: what a task holds beyond the Python + torch + libraries runtime, which
# benchmarks/scale.py measures at 0.8-1.2 GB per stage process.
RUNTIME_BYTES = 1.2e9
# scikit-learn's pairwise_distances_chunked(working_memory=256) in the cell's metrics (MB).
CHUNK_BYTES = 256 * 2**20


def classifier_train_bytes(n: float, side: int) -> float:
    """Host bytes ``fit`` holds to train on ``n`` grey images at ``side`` px (uint8): the set
    read at ``side`` in chunks (``load_resized``), its training and validation copies, batches
    converted to float as drawn: 2 n side². benchmarks/memory.py measures it.
    """
    return 2 * n * side**2


def sd15_lora_params(rank: int) -> int:
    """LoRA parameters on every attention projection of SD 1.5's UNet (797,184 at rank 4)."""
    per_block = {c: 8 * c + 6 * c + 2 * SD15_CROSS_DIM for c in SD15_BLOCKS}
    return rank * sum(per_block[c] * n for c, n in SD15_BLOCKS.items())


@dataclass
class Model:
    """Parameter counts of the generator, and its LoRA adapter size per rank."""

    params: dict[str, int]
    lora_per_rank: int
    description: str


def split_sizes(config: Config) -> tuple[int, int, int, int, int]:
    """Images in the source (``cluster.source_images``, else ``data.max_images``, else 0) and
    in the pool, real-train, real-val and real-test splits cut from it."""
    n_source = config.cluster.source_images or config.data.max_images or 0
    split = config.data.split
    fractions = (split.pool_fraction, split.train_fraction, split.val_fraction, split.test_fraction)
    n_pool, n_train, n_val, n_test = (round(n_source * f) for f in fractions)
    return n_source, n_pool, n_train, n_val, n_test


def embedding_dims(config: Config) -> int:
    """Floats per pool image that embed stores: pixel and classifier (and CLIP with weights)."""
    clip = EMBED_DIMS["clip"] if config.select.clip_weights else 0
    return EMBED_DIMS["pixel"] + EMBED_DIMS["classifier"] + clip


def generator_shapes(config: Config) -> Model:
    """SD 1.5's stated sizes for a Stable Diffusion URI; the tiny preset is built and counted."""
    if config.diffusion.base_model != "tiny-pixel":
        return Model(dict(SD15_PARAMS), sd15_lora_params(1), "Stable Diffusion 1.5 sizes")
    import torch

    from tgap.diffusion.build import build_tiny_pixel, count_parameters

    unet, text_encoder, _, _ = build_tiny_pixel(config.diffusion)
    per_rank = sum(
        m.in_features + m.out_features
        for name, m in unet.named_modules()
        if isinstance(m, torch.nn.Linear)
        and name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v")
        or (isinstance(m, torch.nn.Linear) and name.endswith("to_out.0"))
    )
    params = {"unet": count_parameters(unet), "text_encoder": count_parameters(text_encoder)}
    return Model(params, per_rank, "tiny-pixel, built from config and counted")


def model_bytes(config: Config, shapes: Model) -> int:
    """Bytes of one fine-tuned model artifact: the LoRA adapter (fp32), or the trained
    components in the training precision's storage dtype."""
    ft = config.finetune
    if ft.lora_rank > 0:
        return 4 * ft.lora_rank * shapes.lora_per_rank
    trained = shapes.params["unet"] + (
        shapes.params["text_encoder"] if ft.train_text_encoder else 0
    )
    return DTYPE_BYTES[config.diffusion.mixed_precision] * trained


@dataclass
class Stage:
    name: str
    gpu: bool
    tasks: int = 0
    units: dict[str, float] = field(default_factory=dict)
    artifact_bytes: float = 0.0
    model_bytes: float = 0.0
    hours: float = 0.0  # device-hours of all its tasks
    # Host memory of its largest task: the arrays it holds (RUNTIME_BYTES on top of that).
    memory_bytes: float = 0.0

    def add(self, tasks: int, seconds: float = 0.0, artifact: float = 0.0, model: float = 0.0,
            memory: float = 0.0, **units: float) -> None:  # fmt: skip
        self.tasks += tasks
        self.hours += seconds / 3600
        self.memory_bytes = max(self.memory_bytes, memory)
        self.artifact_bytes += artifact + model
        self.model_bytes += model
        for key, value in units.items():
            self.units[key] = self.units.get(key, 0) + value


def _rate(figures: DeviceThroughput, key: str, device: str) -> float:
    value = getattr(figures, key)
    if value <= 0:
        raise ConfigError(f"cluster.throughput.{device}.{key}: not set (needed by tgap plan)")
    return value


def generation_hours(config: Config, n_per_label: int) -> float:
    """Device-hours of one generate task making ``n_per_label`` images per label, at the rate
    of the pool ``cluster.gpu_stages`` puts generate on (the figure ``plan`` counts)."""
    cluster = config.cluster
    device = (cluster.gpu if "generate" in cluster.gpu_stages else cluster.cpu).device
    guidance = 2 if config.generate.guidance_scale != 1 else 1
    evals = n_per_label * len(config.data.labels) * config.generate.steps * guidance
    scale = (config.diffusion.sample_size / SD15_RESOLUTION) ** 2
    rate = _rate(cluster.throughput[device], "sample_unet_evals_per_s", device)
    return evals * scale / rate / 3600


def plan(config: Config) -> list[Stage]:
    """The cost of ``config``'s run, per stage."""
    costing = _Costing(config)
    costing.once_per_run()
    costing.per_work_item()
    costing.per_seed()
    costing.stage("report").add(1, 60, artifact=20e6, cells=len(costing.rows))
    return [costing.stages[name] for name in STAGE_ORDER if name in costing.stages]


def _check_plannable(config: Config) -> None:
    """The throughput rows the pools name, and a source size: what every figure needs."""
    cluster = config.cluster
    for key in ("gpu", "cpu"):
        device = getattr(cluster, key).device
        if device not in cluster.throughput:
            raise ConfigError(
                f"cluster.{key}.device: {device!r} has no row in cluster.throughput "
                f"(known: {', '.join(cluster.throughput)})"
            )
    if split_sizes(config)[0] <= 0:
        raise ConfigError(
            "cluster.source_images: 0 and data.max_images is unset: say how many images "
            "data.source holds"
        )


class _Costing:
    """``plan``'s tally: the stages counted so far, and the sizes every step prices with."""

    def __init__(self, config: Config):
        _check_plannable(config)
        self.config = config
        self.stages: dict[str, Stage] = {}
        self.n_source, self.n_pool, self.n_train, self.n_val, self.n_test = split_sizes(config)
        self.labels = len(config.data.labels)
        self.png = PNG_BYTES_PER_PIXEL * config.data.resolution**2
        self.gen_png = PNG_BYTES_PER_PIXEL * config.diffusion.sample_size**2
        self.diffusion_scale = (config.diffusion.sample_size / SD15_RESOLUTION) ** 2
        self.clf_scale = (config.classifier.resolution / CLASSIFIER_RESOLUTION) ** 2
        self.shapes = generator_shapes(config)
        self.base_bytes = 4 * sum(self.shapes.params.values())
        self.clf_bytes = 4 * CLASSIFIER_PARAMS[config.classifier.arch]
        self.rows = config_rows(config)
        self.seeds = sorted({r.seed for r in self.rows})
        self.n_syn = config.generate.n_per_label * self.labels
        self.dims = embedding_dims(config)

    def stage(self, name: str) -> Stage:
        if name not in self.stages:
            self.stages[name] = Stage(name, name in self.config.cluster.gpu_stages)
        return self.stages[name]

    def seconds(self, name: str, rate_key: str, work: float, scale: float = 1.0) -> float:
        cluster = self.config.cluster
        key = "gpu" if name in cluster.gpu_stages else "cpu"
        device = getattr(cluster, key).device
        return work * scale / _rate(cluster.throughput[device], rate_key, device)

    def train(self, name: str, n: float) -> None:
        """A classifier trained on ``n`` images (``name`` says which; all are train-classifier)."""
        clf = self.config.classifier
        work = n * clf.epochs
        held = classifier_train_bytes(n, clf.resolution)
        self.stage("train-classifier").add(
            1, self.seconds("train-classifier", "classifier_train_images_per_s", work,
                            self.clf_scale),
            model=self.clf_bytes, memory=held, image_epochs=work,
        )  # fmt: skip

    def evaluate(self, n: float) -> None:
        self.stage("evaluate-classifier").add(
            1, self.seconds("evaluate-classifier", "classifier_eval_images_per_s", n,
                            self.clf_scale),
            artifact=40 * n, images_evaluated=n,
        )  # fmt: skip

    def learning_curve(self, sizes: list[int], which: str, tasks: int | None = None) -> None:
        """Classifiers on ``sizes`` images per label, each scored on real-test."""
        clf, n_test = self.config.classifier, self.n_test
        images = sum(sizes) * self.labels
        work = images * clf.epochs
        s = self.seconds("learning-curve", "classifier_train_images_per_s", work, self.clf_scale)
        s += self.seconds(
            "learning-curve", "classifier_eval_images_per_s", len(sizes) * n_test, self.clf_scale
        )
        # The largest subset and fit's copies of it, and real-test held at the classifier's size.
        held = classifier_train_bytes(max(sizes, default=0) * self.labels, clf.resolution)
        held += n_test * clf.resolution**2 if sizes else 0
        self.stage("learning-curve").add(
            1 if tasks is None else tasks, s, memory=held, image_epochs=work,
            **{f"{which}_curve_trainings": len(sizes)},
        )  # fmt: skip

    def once_per_run(self) -> None:
        """Ingest, the base model, the reference classifier, embed and the class images."""
        config, ft, n_source, n_pool = self.config, self.config.finetune, self.n_source, self.n_pool
        self.stage("fingerprint").add(1, sources_listed=5)
        self.stage("ingest").add(
            1, self.seconds("ingest", "ingest_images_per_s", n_source),
            artifact=n_source * self.png, images_read=n_source,
        )  # fmt: skip
        prepare = self.stage("prepare-base-model")
        pretrain = 0.0
        if config.diffusion.base_model == "tiny-pixel" and config.diffusion.pretrain_steps:
            pretrain = config.diffusion.pretrain_steps * config.diffusion.pretrain_batch_size
        # The diffusion stages load the base model in fp32 on the host before moving it to the
        # device.
        prepare.add(
            1, self.seconds("prepare-base-model", "finetune_images_per_s", pretrain,
                            self.diffusion_scale),
            model=self.base_bytes, memory=self.base_bytes, pretrain_image_steps=pretrain,
        )  # fmt: skip
        self.train("train-reference-classifier", self.n_train)
        embedders = 1 + (1 if config.select.clip_weights else 0)
        embed_s = self.seconds("embed", "classifier_eval_images_per_s", n_pool, self.clf_scale)
        if config.select.clip_weights:
            embed_s += self.seconds("embed", "embed_images_per_s", n_pool)
        self.stage("embed").add(
            1, embed_s, artifact=4 * self.dims * n_pool, memory=4 * self.dims * n_pool,
            images_embedded=n_pool * embedders,
        )  # fmt: skip
        class_seeds = class_image_seeds(self.rows)
        if ft.with_prior_preservation and class_seeds:
            count = ft.num_class_images * len(class_seeds)
            evals = count * ft.class_sampler_steps
            self.stage("class-images").add(
                1, self.seconds("class-images", "sample_unet_evals_per_s", evals,
                                self.diffusion_scale),
                artifact=float(count * config.diffusion.sample_size**2), memory=self.base_bytes,
                images_generated=count,
            )  # fmt: skip

    def per_work_item(self) -> None:
        """Each work item of the grid: select, fine-tune, generate and its cells' evaluation."""
        kinds = split_rows(self.rows)
        items = [*kinds["finetune"], *kinds["retrieval"], *kinds["no-finetune"]]
        supplementation = self._supplementation_sizes()
        distribution = self.seconds(
            "compute-fter",
            "embed_images_per_s" if self.config.evaluation.distribution_embedder == "clip"
            else "classifier_eval_images_per_s", self.n_syn + self.n_test,
        )  # fmt: skip
        for item in items:
            self._item_selection_and_generation(item)
            self._item_evaluation(item, supplementation, distribution)

    def _item_selection_and_generation(self, item: WorkItem) -> None:
        """Select (and retrieve), fine-tune, tune generation and generate for one work item."""
        gen, ft, labels, n_syn = self.config.generate, self.config.finetune, self.labels, self.n_syn
        kind = item.kind
        size_images = sum(r.size * labels for r in item.rows)
        retrieved = n_syn if kind == "retrieval" else 0
        self.stage("select").add(
            1, self.seconds("select", "ingest_images_per_s", size_images + retrieved),
            artifact=(size_images + retrieved) * self.png, memory=4 * self.dims * self.n_pool,
            images_selected=size_images + retrieved,
        )  # fmt: skip
        if kind == "finetune":
            images_per_step = ft.batch_size * (2 if ft.with_prior_preservation else 1)
            work = self.seconds(
                "fine-tune", "finetune_images_per_s", ft.steps * images_per_step,
                self.diffusion_scale,
            )  # fmt: skip
            self.stage("fine-tune").add(
                1, work, model=model_bytes(self.config, self.shapes), memory=self.base_bytes,
                steps=ft.steps,
            )  # fmt: skip
            self._tune_generation(item)
        if kind in ("finetune", "no-finetune"):
            guidance = 2 if gen.guidance_scale != 1 else 1
            gen_evals = n_syn * gen.steps * guidance
            self.stage("generate").add(
                1, self.seconds("generate", "sample_unet_evals_per_s", gen_evals,
                                self.diffusion_scale),
                artifact=n_syn * self.gen_png, memory=self.base_bytes, images_generated=n_syn,
            )  # fmt: skip

    def _tune_generation(self, item: dict) -> None:
        """A tune-generation task per fine-tuned cell, in a spec compiled with trials only."""
        clf = self.config.classifier
        work = planned_work(self.config.generate, self.labels, [item])  # a study's one count
        if work["trials_per_cell"] <= 0:
            return
        tune_s = self.seconds(
            "tune-generation", "sample_unet_evals_per_s", work["unet_evaluations"],
            self.diffusion_scale,
        ) + self.seconds(
            "tune-generation", "classifier_train_images_per_s",
            work["images"] * clf.epochs, self.clf_scale,
        )  # fmt: skip
        val = self.n_val * clf.resolution**2  # real-val, held at the classifier's size
        trial = classifier_train_bytes(
            work["images"] / max(1, work["trials_per_cell"]), clf.resolution
        )
        self.stage("tune-generation").add(
            1, tune_s, artifact=1e5, memory=self.base_bytes + val + trial,
            trials=work["trials_per_cell"],
            images_generated=work["images"], image_epochs=work["images"] * clf.epochs,
        )  # fmt: skip

    def _supplementation_sizes(self) -> tuple[float, float]:
        """Images one supplementation task trains on over all its ratios, and the host memory
        of its largest training."""
        gen, labels = self.config.generate, self.labels
        resolution = self.config.classifier.resolution
        ratios = self.config.evaluation.supplementation_ratios
        n_real_supp = gen.n_per_label
        if ratios and max(ratios) > 0:
            n_real_supp = min(n_real_supp, int(gen.n_per_label / max(ratios)))
        supp_images = sum(labels * (n_real_supp + round(r * n_real_supp)) for r in ratios)
        supp_real = labels * n_real_supp
        supp_syn = labels * round(max(ratios, default=0) * n_real_supp)
        # The real part, the largest ratio's synthetic part, their concatenation, fit's copies.
        supp_memory = (supp_real + supp_syn) * resolution**2 + classifier_train_bytes(
            supp_real + supp_syn, resolution
        )
        if not ratios:
            supp_memory = 0.0
        return supp_images, supp_memory

    def _item_evaluation(
        self, item: WorkItem, supplementation: tuple[float, float], distribution: float
    ) -> None:
        """The classifiers, curves and cell metrics of one work item."""
        config, clf, n_syn, n_test = self.config, self.config.classifier, self.n_syn, self.n_test
        cells = item.rows
        ratios = config.evaluation.supplementation_ratios
        supp_images, supp_memory = supplementation
        self.train("train-synthetic-classifier", n_syn)
        self.evaluate(n_test)  # S→R
        self.evaluate(n_syn)  # R→S
        supp_work = supp_images * clf.epochs
        supp_s = self.seconds(
            "supplementation", "classifier_train_images_per_s", supp_work, self.clf_scale
        ) + self.seconds(
            "supplementation", "classifier_eval_images_per_s", len(ratios) * n_test,
            self.clf_scale,
        )  # fmt: skip
        self.stage("supplementation").add(1, supp_s, memory=supp_memory, image_epochs=supp_work)
        fractions = [f for f in config.evaluation.synthetic_curve_fractions if f < 1]
        self.learning_curve(
            [round(f * config.generate.n_per_label) for f in fractions], "synthetic"
        )
        # The cell's metrics: embeddings of both sets and the tuning set, pixel copies at <= 64
        # px for memorisation, and scikit-learn's distance chunks.
        memo_side = min(config.diffusion.sample_size, config.data.resolution, 64)
        embed_dim = EMBED_DIMS[config.evaluation.distribution_embedder]
        tuning = max(r.size for r in cells) * self.labels  # a task computes cells one by one
        cell_memory = (
            4 * embed_dim * (n_syn + n_test + tuning) + 4 * memo_side**2 * (n_syn + tuning)
            + CHUNK_BYTES
        )  # fmt: skip
        self.stage("compute-fter").add(
            1, distribution * len(cells), artifact=len(cells) * 2e6, memory=cell_memory,
            cells=len(cells), images_embedded=(n_syn + n_test) * len(cells),
        )  # fmt: skip

    def per_seed(self) -> None:
        """The real learning curve of every seed (one task), and the real-trained classifier
        and R→R, which KFP's cache shares once per seed."""
        labels, gen = self.labels, self.config.generate
        hold = self.n_train // labels  # per label, as if real-train were balanced (upper bound)
        sizes = sorted({min(s, hold) for s in self.config.evaluation.real_curve_sizes})
        self.learning_curve(sizes * len(self.seeds), "real", tasks=1)
        for _ in self.seeds:
            self.train("train-real-classifier", min(gen.n_per_label * labels, self.n_train))
            self.evaluate(self.n_test)


# The order of the stages in plan's and transfer's tables (each lists those it counts).
STAGE_ORDER = (
    "fingerprint", "ingest", "prepare-base-model", "train-classifier", "embed", "validate-run",
    "select", "class-images", "fine-tune", "tune-generation", "generate", "evaluate-classifier",
    "supplementation", "learning-curve", "compute-fter", "report",
)  # fmt: skip


def aligned(rows: list[tuple[str, ...]], free_last: bool = False) -> list[str]:
    """Table rows as lines: first column left-aligned, the others right-aligned, two spaces
    apart; with ``free_last`` the last column is free text, not padded."""
    padded = len(rows[0]) - (1 if free_last else 0)
    widths = [max(len(r[i]) for r in rows) for i in range(padded)]
    return [
        "  ".join(
            [
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=False))
            ]
            + list(r[padded:])
        )
        for r in rows
    ]


def _units(units: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:,.0f}" for k, v in units.items()) or "-"


def memory_warnings(stages: list[Stage], config: Config) -> list[str]:
    """One line per stage whose largest task would hold more than its pool's memory request."""
    out = []
    for s in stages:
        pool = "gpu" if s.gpu else "cpu"
        request = getattr(config.cluster, pool).memory_request
        if not request:
            continue
        need = RUNTIME_BYTES + s.memory_bytes
        have = quantity_bytes(request, f"cluster.{pool}.memory_request")
        if need > have:
            out.append(
                f"memory: {s.name} holds ~{need / GB:.1f} GB per task, above "
                f"cluster.{pool}.memory_request {request}: raise it (the pod may be evicted or "
                "OOM-killed)"
            )
    return out


def format_plan(stages: list[Stage], parallelism: int, warnings: list[str] = ()) -> str:
    """The table, any ``warnings``, then one total line: ``total tasks=... gpu_tasks=... ...``.

    ``mem_gb`` is the host memory of a stage's largest task: the arrays it holds plus
    ``RUNTIME_BYTES`` of Python, torch and libraries.
    """
    header = ("stage", "tasks", "gpu", "artifact_gb", "mem_gb", "gpu_h", "cpu_h", "wall_h", "units")
    lines = [header]
    wall_total = 0.0
    for s in stages:
        wall = s.hours / max(1, min(parallelism, s.tasks))
        wall_total += wall
        lines.append((
            s.name, str(s.tasks), str(s.tasks if s.gpu else 0), f"{s.artifact_bytes / GB:.2f}",
            f"{(RUNTIME_BYTES + s.memory_bytes) / GB:.1f}",
            f"{s.hours if s.gpu else 0:.1f}", f"{0 if s.gpu else s.hours:.1f}", f"{wall:.1f}",
            _units(s.units),
        ))  # fmt: skip
    text = aligned(lines, free_last=True)
    total = (
        f"total tasks={sum(s.tasks for s in stages)} "
        f"gpu_tasks={sum(s.tasks for s in stages if s.gpu)} "
        f"gpu_hours={sum(s.hours for s in stages if s.gpu):.1f} "
        f"cpu_hours={sum(s.hours for s in stages if not s.gpu):.1f} "
        f"wall_hours={wall_total:.1f} "
        f"artifact_gb={sum(s.artifact_bytes for s in stages) / GB:.1f} "
        f"model_gb={sum(s.model_bytes for s in stages) / GB:.2f} "
        f"max_task_mem_gb={(RUNTIME_BYTES + max(s.memory_bytes for s in stages)) / GB:.1f}"
    )
    return "\n".join([*text, *warnings, total])


# --------------------------------------------------------------------------- power from a pilot


# The control every fine-tuned method must beat on S→R: the effect a run is known to hold.
KNOWN_EFFECT_CONTROL = "no-finetune"


@dataclass
class Pilot:
    """What a finished run says about S→R differences between methods.

    ``between_sd``: pooled SD over seeds of the per-seed S→R difference of two methods (same
    size and seed), over every such pair (``pairs``, described by ``what``); ``test_var``: the
    real-test sampling variance of one seed's difference that every seed shares
    (``metrics.seed_covariance`` of the paired differences when the cells carry their S→R
    predictions, else the two cells' ``s2r_auroc_var`` summed: fully shared, conservative);
    ``seeds``: the pilot's seeds; ``family``: how many comparisons the pilot's report
    Holm-adjusted together (1 when its results.json is absent).
    """

    between_sd: float
    test_var: float
    seeds: int
    pairs: int
    test_from: str
    what: str = "fine-tuned method pairs"
    family: int = 1


def _pilot_cells(
    run_dir: Path, control: str | None = None
) -> dict[tuple[str, int], dict[int, tuple[CellArtifact, Path]]]:
    """The run's cells of fine-tuned methods (and of ``control``) with their folders, by
    (method, size) then seed."""
    paths = sorted(run_dir.glob("**/" + CELL))
    if not paths:
        raise ConfigError(f"--pilot {run_dir}: no {CELL} under it; is it a finished run folder?")
    cells: dict[tuple[str, int], dict[int, tuple[CellArtifact, Path]]] = {}
    for path in paths:
        cell = CellArtifact.read(path)
        if parse_method(cell.method).fine_tunes or cell.method == control:
            cells.setdefault((cell.method, cell.size), {})[cell.seed] = (cell, path.parent)
    return cells


def _pilot_pairs(cells, control: str | None):
    """(a, b) keys to compare: every two fine-tuned methods at a size, or (``control`` given)
    each fine-tuned method against the control at its size."""
    for a, b in itertools.product(cells, cells):
        if a[1] != b[1] or a[0] == control:
            continue
        if (b[0] == control) if control else (b[0] != control and b[0] > a[0]):
            yield a, b


def _pilot_family(run_dir: Path) -> int:
    """How many comparisons the pilot's report Holm-adjusted together (its results.json)."""
    results = run_dir / "results.json"
    if not results.is_file():
        return 1
    return int(json.loads(results.read_text()).get("comparisons", {}).get("family_size") or 1)


def _shared_test_variance(a: list[tuple[CellArtifact, Path]], b: list[tuple[CellArtifact, Path]]):
    """``metrics.seed_covariance`` of the paired S→R differences ``a - b`` from the cells'
    copied predictions; None when a cell has none or they are not on the same images."""
    from tgap.evaluation import S2R_PREDICTIONS, read_s2r_predictions  # imports torch: lazily

    runs = []
    for cell, folder in a + b:
        if f"{ASSETS}/{S2R_PREDICTIONS}" not in cell.assets.values():
            return None
        runs.append(read_s2r_predictions(folder))
    if any(files != runs[0][0] for files, _, _ in runs):
        return None
    k = len(a)
    scores = [r[2] for r in runs]
    return metrics.seed_covariance(runs[0][1], scores[:k], scores[k:])


def pilot_power(run_dir: str | Path, control: str | None = None) -> Pilot:
    """Estimate ``Pilot`` from a finished run folder (its ``cell.json`` files): every pair of
    fine-tuned methods at the same size or, with ``control``, each fine-tuned method against it,
    over the seeds both have."""
    run_dir = Path(run_dir)
    cells = _pilot_cells(run_dir, control)
    squares = dof = 0.0
    tests: list[float] = []
    measured, seeds, pairs = True, set(), 0
    for a, b in _pilot_pairs(cells, control):
        common = sorted(set(cells[a]) & set(cells[b]))
        if len(common) < 2:
            continue
        pa, pb = [cells[a][s] for s in common], [cells[b][s] for s in common]
        diffs = [
            x.metrics["s2r_auroc"] - y.metrics["s2r_auroc"]
            for (x, _), (y, _) in zip(pa, pb, strict=True)
        ]
        squares += float(np.var(diffs, ddof=1)) * (len(common) - 1)
        dof += len(common) - 1
        pairs += 1
        seeds.update(common)
        shared = _shared_test_variance(pa, pb)
        if shared is None:
            measured = False
            shared = float(np.mean([x.metrics["s2r_auroc_var"] + y.metrics["s2r_auroc_var"]
                                    for (x, _), (y, _) in zip(pa, pb, strict=True)]))  # fmt: skip
        tests.append(shared)
    what = f"fine-tuned methods against {control}" if control else "fine-tuned method pairs"
    if not pairs:
        raise ConfigError(f"--pilot {run_dir}: no {what} share a size and 2+ seeds; the power "
                          "line needs them")  # fmt: skip
    return Pilot(
        between_sd=math.sqrt(squares / dof), test_var=max(float(np.mean(tests)), 0.0),
        seeds=len(seeds), pairs=pairs,
        test_from="measured (DeLong covariance across seeds on the shared real-test images)"
        if measured else "assumed fully shared (the cells' S→R variances summed: conservative)",
        what=what, family=_pilot_family(run_dir),
    )  # fmt: skip


def power_line(pilot: Pilot, detect: float, gpu_hours_per_seed: float, power: float = 0.8,
               alpha: float = 0.05, max_seeds: int = 200) -> str:  # fmt: skip
    """One line: seeds the grid needs to detect an S→R difference ``detect`` between the
    pilot's pairs with ``power``, at ``alpha`` divided by the pilot report's Holm family (the
    level Holm holds the smallest p-value to), and their cost."""
    level = alpha / pilot.family
    k = metrics.seeds_needed(pilot.between_sd, pilot.test_var, detect, level, power, max_seeds)
    head = (
        f"power: pilot {pilot.seeds} seeds, {pilot.pairs} {pilot.what}: between-seed "
        f"SD of S→R differences {pilot.between_sd:.4f}, shared test SD {math.sqrt(pilot.test_var):.4f} "
        f"({pilot.test_from}); "
    )
    at = f"alpha {alpha:g}" if pilot.family == 1 else (
        f"alpha {alpha:g}/{pilot.family} (Holm over the pilot report's {pilot.family} comparisons)"
    )  # fmt: skip
    if k > max_seeds:
        return head + (
            f"no number of seeds up to {max_seeds} detects {detect:g} with {power:.0%} power at "
            f"{at}: the shared real-test's sampling error alone hides it; only a larger test set helps"
        )
    return head + (
        f"detecting {detect:g} with {power:.0%} power at {at} needs seeds={k}, "
        f"{gpu_hours_per_seed:.1f} GPU-hours per seed, gpu_hours={k * gpu_hours_per_seed:.1f}"
    )
