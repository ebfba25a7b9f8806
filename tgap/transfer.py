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
from tgap.grid import class_image_seeds, config_rows, split_rows
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
    from tgap.plan import (
        CLASSIFIER_PARAMS,
        STAGE_ORDER,
        embedding_dims,
        generator_shapes,
        model_bytes,
        split_sizes,
    )

    if shard_size < 1:
        raise ValueError(f"shard size {shard_size}: expected at least 1 image per shard")
    data, gen, ft = config.data, config.generate, config.finetune
    labels = len(data.labels)
    n_source, n_pool, n_train, n_val, n_test = split_sizes(config)
    side, gen_side = data.resolution, config.diffusion.sample_size
    n_syn = gen.n_per_label * labels
    rows = config_rows(config)
    kinds = split_rows(rows)
    seeds = sorted({r.seed for r in rows})
    shapes = generator_shapes(config)
    tuned_spec = gen.tune.trials > 0

    pool = image_set(n_pool, side, shard_size)
    real_train = image_set(n_train, side, shard_size)
    real_val = image_set(n_val, side, shard_size)
    real_test = image_set(n_test, side, shard_size, extra=labels)  # + real_grid_*.png
    embedders = 2 + (1 if config.select.clip_weights else 0)  # pixel, classifier (+ clip)
    embeddings = small("embedder", 4 * embedding_dims(config) * n_pool, embedders)
    classifier = small("classifier", 4 * CLASSIFIER_PARAMS[config.classifier.arch])
    base = small("base_model", 4 * sum(shapes.params.values()))
    tuned = small("finetuned_model", model_bytes(config, shapes))
    class_seeds = class_image_seeds(rows) if ft.with_prior_preservation else []
    class_images = small(
        "class_images_per_seed",
        ft.num_class_images * len(class_seeds) * gen_side**2,
        len(class_seeds),
    )
    synthetic = image_set(
        n_syn, gen_side, shard_size, extra=labels + SMALL_OBJECTS["synthetic_extra"]
    )
    evaluation, curve = small("evaluation"), small("curve")
    empty_set = image_set(0, gen_side, shard_size)

    stages: dict[str, StageTransfer] = {}

    def task(name: str, down: list[Blob], up: list[Blob]) -> None:
        stage = stages.setdefault(name, StageTransfer(name))
        stage.tasks += 1
        stage.down += down
        stage.up += up

    source = image_set(n_source, side, shard_size=1)  # as stored: one object per image
    source = Blob(source.objects - 1, source.bytes)
    task("ingest", [source], [pool, real_train, real_val, real_test])
    base_source = [base] if config.diffusion.base_model != "tiny-pixel" else []
    task("prepare-base-model", [pool, *base_source], [base])
    task("train-classifier", [real_train], [classifier])
    clip_weights = [Blob(1, 4 * 88e6)] if config.select.clip_weights else []
    task("embed", [pool, classifier, *clip_weights], [embeddings])
    task("validate-run", [pool, real_train, base], [])
    if kinds["finetune"] and class_seeds:
        task("class-images", [base], [class_images])
    cells = []
    for kind in ("finetune", "no-finetune", "retrieval"):
        for item in kinds[kind]:
            item_cells = item.rows
            cells += item_cells
            tuning_sets = [image_set(r.size * labels, side, shard_size) for r in item_cells]
            retrieved = image_set(n_syn, side, shard_size) if kind == "retrieval" else empty_set
            task("select", [pool, embeddings, classifier], [*tuning_sets, retrieved])
            generator = [base]
            if kind == "finetune":
                task("fine-tune", [base, *tuning_sets, classifier, class_images], [tuned])
                # The fine-tuned model references its base: loading it fetches both.
                generator = [tuned, base]
                if tuned_spec:  # compiled with trials only (pipelines/tgap_pipeline.py)
                    task("tune-generation", [*generator, real_val], [small("tuning")])
            item_synthetic = retrieved
            if kind != "retrieval":
                tuning = [small("tuning")] if kind == "finetune" and tuned_spec else []
                task("generate", [*generator, *tuning], [synthetic])
                item_synthetic = synthetic
            task("train-classifier", [item_synthetic], [classifier])
            task("evaluate-classifier", [classifier, real_test], [evaluation])  # S→R
            task("evaluate-classifier", [classifier, item_synthetic], [evaluation])  # R→S
            task("supplementation", [real_train, item_synthetic, real_test], [curve])
            task("learning-curve", [item_synthetic, real_test], [curve])  # synthetic-curve
            task(
                "compute-fter",
                [evaluation] * 3
                + [curve] * 3  # supplementation, the real curves, this item's synthetic curve
                + [item_synthetic, real_test, *tuning_sets, classifier],
                [small("cell", 2e6, len(item_cells))],
            )
    task("learning-curve", [real_train, real_test], [curve])  # real-curves: every seed, once
    for _ in seeds:  # through KFP's cache: once per seed
        task("train-classifier", [real_train], [classifier])
        task("evaluate-classifier", [classifier, real_test], [evaluation])  # R→R
    task(
        "report",
        [pool, embeddings, base, classifier, small("cell", 2e6 * len(cells), len(cells))],
        [small("report", 20e6)],
    )
    return [stages[name] for name in STAGE_ORDER if name in stages]


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
