"""Objects and bytes each stage moves through object storage, and the time that takes.

On a cluster, KFP's launcher downloads every object of a task's input artifacts before the task
runs and uploads every object of its outputs after it, one object at a time, so a task pays a
round trip per object on top of its bytes. ``transfers`` counts, per stage, the objects and bytes
its tasks download and upload; ``format_transfers`` adds an estimated transfer time at
``latency_s`` per object and ``bandwidth`` bytes/s per task (both flags of ``tgap plan``).

The model follows ``pipelines/tgap_pipeline.py``'s wiring. Assumptions: KFP's cache runs the
per-seed tasks (real-trained classifier, R→R) once per seed, as ``tgap.plan`` does; a fine-tuned
model references its base model, which a task that loads it (tune-generation, generate) fetches
through ``tgap.storage``; ingest reads the source one object per image (NIH's PNGs as stored);
the small artifacts' object counts are the files their stages write (``SMALL_OBJECTS``). An
image set is its manifest plus ``ceil(n / shard_size)`` shards (``tgap.imageset``);
``shard_size=1`` models one object per image, the layout before shards (which had ``n + 2``
objects: its CSV manifest beside ``dataset.json``, one fewer than counted here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tgap.config import Config
from tgap.grid import GridRow, WorkItem, class_image_seeds, config_rows, split_rows
from tgap.imageset import SHARD_SIZE

DEFAULT_LATENCY_MS = 20.0  # per object: one GET or PUT round trip inside a cloud region
DEFAULT_BANDWIDTH_MB_S = 100.0  # per task, MB/s (one pod to a bucket in its region)
# Files each stage writes into its small artifacts (weights, descriptions, logs, stage_time.json).
SMALL_OBJECTS = {
    "classifier": 3,  # model.safetensors, classifier.json, stage_time.json
    "embedder": 2,  # per embedder: embeddings.npy, embedder.json
    "base_model": 14,  # diffusers folder: 5 components' configs and weights, tokenizer, index
    "finetuned_model": 5,  # weights, tgap_model.json, training_log.json, complete, stage_time
    "class_images_per_seed": 1,  # class_images.npy
    "tuning": 3,  # tuning.json, tuning_history.png, stage_time.json
    "evaluation": 4,  # metrics.json, predictions.csv, roc, stage_time.json
    "curve": 2,  # supplementation.json, stage_time.json
    "cell": 16,  # cell.json and its assets (grids, roc, memorisation, logs)
    "report": 20,  # results, html, summary, metrics
    "synthetic_extra": 4,  # beside a generated set: generator files, stage time
}


@dataclass(frozen=True)
class Blob:
    """One artifact as object storage sees it."""

    objects: int
    bytes: float


@dataclass
class StageTransfer:
    name: str
    tasks: int = 0
    down: list[Blob] = field(default_factory=list)
    up: list[Blob] = field(default_factory=list)

    @property
    def down_objects(self) -> int:
        return sum(b.objects for b in self.down)

    @property
    def up_objects(self) -> int:
        return sum(b.objects for b in self.up)

    @property
    def down_bytes(self) -> float:
        return sum(b.bytes for b in self.down)

    @property
    def up_bytes(self) -> float:
        return sum(b.bytes for b in self.up)

    def seconds(self, latency_s: float, bandwidth: float) -> float:
        """Transfer time of all its tasks, summed (task-seconds, not wall time)."""
        objects = self.down_objects + self.up_objects
        return objects * latency_s + (self.down_bytes + self.up_bytes) / bandwidth


def image_set(n: float, side: int, shard_size: int, extra: int = 0) -> Blob:
    """An image set of ``n`` images at ``side`` px: manifest + shards (+ ``extra`` files)."""
    from tgap.plan import PNG_BYTES_PER_PIXEL

    shards = math.ceil(n / shard_size)
    return Blob(1 + shards + extra, n * PNG_BYTES_PER_PIXEL * side**2)


def small(kind: str, bytes_: float = 1e5, count: int = 1) -> Blob:
    return Blob(SMALL_OBJECTS[kind] * count, bytes_)


def transfers(config: Config, shard_size: int = SHARD_SIZE) -> list[StageTransfer]:
    """Per stage: the artifacts its tasks download and upload (see the module docstring)."""
    # tgap.plan imports scipy (seconds): imported here, so the CLI reads the defaults cheaply.
    from tgap.plan import STAGE_ORDER

    if shard_size < 1:
        raise ValueError(f"shard size {shard_size}: expected at least 1 image per shard")
    a = _artifacts(config, shard_size)
    rows = config_rows(config)
    kinds = split_rows(rows)
    tally = _Tally()
    _shared_tasks(tally, config, a, bool(kinds["finetune"]))
    cells = []
    for kind in ("finetune", "no-finetune", "retrieval"):
        for item in kinds[kind]:
            cells += _item_tasks(tally, config, a, kind, item, shard_size)
    tally.task("learning-curve", [a.real_train, a.real_test], [a.curve])  # real-curves: once
    for _ in sorted({r.seed for r in rows}):  # through KFP's cache: once per seed
        tally.task("train-classifier", [a.real_train], [a.classifier])
        tally.task("evaluate-classifier", [a.classifier, a.real_test], [a.evaluation])  # R→R
    tally.task(
        "report",
        [a.pool, a.embeddings, a.base, a.classifier, small("cell", 2e6 * len(cells), len(cells))],
        [small("report", 20e6)],
    )
    return [tally.stages[name] for name in STAGE_ORDER if name in tally.stages]


@dataclass
class _Tally:
    """The stages counted so far."""

    stages: dict[str, StageTransfer] = field(default_factory=dict)

    def task(self, name: str, down: list[Blob], up: list[Blob]) -> None:
        stage = self.stages.setdefault(name, StageTransfer(name))
        stage.tasks += 1
        stage.down += down
        stage.up += up


@dataclass(frozen=True)
class _Artifacts:
    """The artifacts of a run, as stored; ``class_seeds``: the seeds that get class images."""

    source: Blob
    pool: Blob
    real_train: Blob
    real_val: Blob
    real_test: Blob
    embeddings: Blob
    classifier: Blob
    base: Blob
    tuned: Blob
    class_images: Blob
    class_seeds: list
    synthetic: Blob
    evaluation: Blob
    curve: Blob
    empty_set: Blob


def _artifacts(config: Config, shard_size: int) -> _Artifacts:
    from tgap.plan import (
        CLASSIFIER_PARAMS,
        embedding_dims,
        generator_shapes,
        model_bytes,
        split_sizes,
    )

    data, ft = config.data, config.finetune
    labels = len(data.labels)
    n_source, n_pool, n_train, n_val, n_test = split_sizes(config)
    side, gen_side = data.resolution, config.diffusion.sample_size
    shapes = generator_shapes(config)
    embedders = 2 + (1 if config.select.clip_weights else 0)  # pixel, classifier (+ clip)
    class_seeds = class_image_seeds(config_rows(config)) if ft.with_prior_preservation else []
    source = image_set(n_source, side, shard_size=1)  # as stored: one object per image
    return _Artifacts(
        source=Blob(source.objects - 1, source.bytes),
        pool=image_set(n_pool, side, shard_size),
        real_train=image_set(n_train, side, shard_size),
        real_val=image_set(n_val, side, shard_size),
        real_test=image_set(n_test, side, shard_size, extra=labels),  # + real_grid_*.png
        embeddings=small("embedder", 4 * embedding_dims(config) * n_pool, embedders),
        classifier=small("classifier", 4 * CLASSIFIER_PARAMS[config.classifier.arch]),
        base=small("base_model", 4 * sum(shapes.params.values())),
        tuned=small("finetuned_model", model_bytes(config, shapes)),
        class_images=small(
            "class_images_per_seed",
            ft.num_class_images * len(class_seeds) * gen_side**2,
            len(class_seeds),
        ),
        class_seeds=class_seeds,
        synthetic=image_set(
            config.generate.n_per_label * labels,
            gen_side,
            shard_size,
            extra=labels + SMALL_OBJECTS["synthetic_extra"],
        ),  # fmt: skip
        evaluation=small("evaluation"),
        curve=small("curve"),
        empty_set=image_set(0, gen_side, shard_size),
    )


def _shared_tasks(tally: _Tally, config: Config, a: _Artifacts, finetunes: bool) -> None:
    """The tasks outside the loops, before them: ingest to class images."""
    tally.task("ingest", [a.source], [a.pool, a.real_train, a.real_val, a.real_test])
    base_source = [a.base] if config.diffusion.base_model != "tiny-pixel" else []
    tally.task("prepare-base-model", [a.pool, *base_source], [a.base])
    tally.task("train-classifier", [a.real_train], [a.classifier])
    clip_weights = [Blob(1, 4 * 88e6)] if config.select.clip_weights else []
    tally.task("embed", [a.pool, a.classifier, *clip_weights], [a.embeddings])
    tally.task("validate-run", [a.pool, a.real_train, a.base], [])
    if finetunes and a.class_seeds:
        tally.task("class-images", [a.base], [a.class_images])


def _item_tasks(
    tally: _Tally, config: Config, a: _Artifacts, kind: str, item: WorkItem, shard_size: int
) -> list[GridRow]:
    """One work item's tasks, select to compute-fter; returns its cells."""
    labels, side = len(config.data.labels), config.data.resolution
    n_syn = config.generate.n_per_label * labels
    tuned_spec = config.generate.tune.trials > 0
    item_cells = list(item.rows)
    tuning_sets = [image_set(r.size * labels, side, shard_size) for r in item_cells]
    retrieved = image_set(n_syn, side, shard_size) if kind == "retrieval" else a.empty_set
    tally.task("select", [a.pool, a.embeddings, a.classifier], [*tuning_sets, retrieved])
    generator = [a.base]
    if kind == "finetune":
        tally.task("fine-tune", [a.base, *tuning_sets, a.classifier, a.class_images], [a.tuned])
        # The fine-tuned model references its base: loading it fetches both.
        generator = [a.tuned, a.base]
        if tuned_spec:  # compiled with trials only (pipelines/tgap_pipeline.py)
            tally.task("tune-generation", [*generator, a.real_val], [small("tuning")])
    item_synthetic = retrieved
    if kind != "retrieval":
        tuning = [small("tuning")] if kind == "finetune" and tuned_spec else []
        tally.task("generate", [*generator, *tuning], [a.synthetic])
        item_synthetic = a.synthetic
    tally.task("train-classifier", [item_synthetic], [a.classifier])
    tally.task("evaluate-classifier", [a.classifier, a.real_test], [a.evaluation])  # S→R
    tally.task("evaluate-classifier", [a.classifier, item_synthetic], [a.evaluation])  # R→S
    tally.task("supplementation", [a.real_train, item_synthetic, a.real_test], [a.curve])
    tally.task("learning-curve", [item_synthetic, a.real_test], [a.curve])  # synthetic-curve
    tally.task(
        "compute-fter",
        [a.evaluation] * 3
        + [a.curve] * 3  # supplementation, the real curves, this item's synthetic curve
        + [item_synthetic, a.real_test, *tuning_sets, a.classifier],
        [small("cell", 2e6, len(item_cells))],
    )
    return item_cells


def format_transfers(
    stages: list[StageTransfer],
    shard_size: int,
    latency_ms: float = DEFAULT_LATENCY_MS,
    bandwidth_mb_s: float = DEFAULT_BANDWIDTH_MB_S,
) -> str:
    """A table of objects, bytes and transfer hours per stage, then one ``transfer`` total line."""
    if latency_ms < 0 or bandwidth_mb_s <= 0:
        raise ValueError(
            f"object latency {latency_ms} ms, bandwidth {bandwidth_mb_s} MB/s: expected "
            "latency >= 0 and bandwidth > 0"
        )
    latency_s, bandwidth = latency_ms / 1000, bandwidth_mb_s * 1e6
    header = ("stage", "tasks", "down_objects", "up_objects", "down_gb", "up_gb", "transfer_h")
    lines = [header]
    for s in stages:
        lines.append((
            s.name, str(s.tasks), f"{s.down_objects:,}", f"{s.up_objects:,}",
            f"{s.down_bytes / 1e9:.1f}", f"{s.up_bytes / 1e9:.1f}",
            f"{s.seconds(latency_s, bandwidth) / 3600:.1f}",
        ))  # fmt: skip
    from tgap.plan import aligned

    text = aligned(lines)
    total = (
        f"transfer shard_size={shard_size} latency_ms={latency_ms:g} "
        f"bandwidth_mb_s={bandwidth_mb_s:g} "
        f"down_objects={sum(s.down_objects for s in stages)} "
        f"up_objects={sum(s.up_objects for s in stages)} "
        f"down_gb={sum(s.down_bytes for s in stages) / 1e9:.1f} "
        f"up_gb={sum(s.up_bytes for s in stages) / 1e9:.1f} "
        f"transfer_hours={sum(s.seconds(latency_s, bandwidth) for s in stages) / 3600:.1f}"
    )
    return "\n".join([*text, total])
