"""What a run was made of: config, data and model sources, versions, seeds, stage times."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from tgap import artifacts
from tgap.artifacts import write_json
from tgap.config import Config
from tgap.grid import GridRow

PACKAGES = (
    "tgap",
    "kfp",
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "open_clip_torch",
    "scikit-learn",
    "numpy",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


STAGE_TIME = "stage_time.json"
STAGE_SECONDS = "stage_seconds.json"


FAILURE = "failure.json"
TASK_LOG = "task.log"
# Set by local runs: each stage then also writes its whole output to <task folder>/task.log.
TASK_LOG_ENV = "TGAP_TASK_LOGS"


@contextmanager
def _tee_output(path: Path | None) -> Iterator[None]:
    """Copy everything written to file descriptors 1 and 2 (Python, C, subprocesses) to ``path``."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    saved = os.dup(1), os.dup(2)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with open(path, "ab") as log:
            while chunk := os.read(read_end, 65536):
                os.write(saved[0], chunk)
                log.write(chunk)
                log.flush()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        if sys.exc_info()[1] is not None:  # the traceback belongs in the task's log too
            print(traceback.format_exc(), file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)  # closes the pipe's last write ends: the pump sees EOF
        os.dup2(saved[1], 2)
        thread.join()
        os.close(read_end)
        os.close(saved[0])
        os.close(saved[1])


@contextmanager
def timed_stage(stage: str, out_dir: str | Path) -> Iterator[None]:
    """Time a stage and leave ``stage_time.json`` in its output folder (for the report).

    When the stage raises, ``failure.json`` (stage, exception type, message, traceback) goes into
    the task's folder, the parent of ``out_dir``: a local run reads it to end with the task's own
    message instead of kfp.local's "Inner task failed".
    """
    started = time.perf_counter()
    task_dir = Path(out_dir).parent
    log_path = task_dir / TASK_LOG if os.environ.get(TASK_LOG_ENV) else None
    with _tee_output(log_path):
        try:
            yield
        except Exception as exc:
            _record_failure(stage, exc, task_dir)
            raise
    seconds = round(time.perf_counter() - started, 2)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / STAGE_TIME, {"stage": stage, "seconds": seconds}, indent=None)


def _record_failure(stage: str, exc: Exception, task_dir: Path) -> None:
    record = {
        "stage": stage,
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": traceback.format_exc(),
    }
    try:  # never let the record hide the stage's own error
        task_dir.mkdir(parents=True, exist_ok=True)
        (task_dir / FAILURE).write_text(json.dumps(record, indent=2) + "\n")
    except OSError:
        pass


def read_stage_times(folders: dict[str, str | Path]) -> dict[str, float]:
    """``{name: seconds}`` from the ``stage_time.json`` of each folder that has one."""
    times = {}
    for name, folder in folders.items():
        path = Path(folder) / STAGE_TIME
        if path.is_file():
            times[name] = json.loads(path.read_text())["seconds"]
    return times


# The generator's small files, copied beside its synthetic set by generate, so compute-FTER reads
# them there and never downloads the model (weights: megabytes for a LoRA, gigabytes for a base).
GENERATOR_FILES = (artifacts.MODEL_INFO, artifacts.TRAINING_LOG)
GENERATOR_STAGE_TIME = "generator_stage_time.json"  # the model folder's stage_time.json


def copy_generator_record(model_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Copy ``GENERATOR_FILES`` and the stage time of the model in ``model_dir`` (those it has)
    into ``out_dir``; return the names written."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    pairs = [(name, name) for name in GENERATOR_FILES] + [(STAGE_TIME, GENERATOR_STAGE_TIME)]
    copied = []
    for source, target in pairs:
        if (model_dir / source).is_file():
            shutil.copy2(model_dir / source, out_dir / target)
            copied.append(target)
    return copied


def _stage_seconds(cell_dirs: list[Path]) -> dict[str, dict[str, float]]:
    """Per stage of a grid cell: mean and total seconds over the cells that recorded it."""
    per_stage: dict[str, list[float]] = {}
    for cell in cell_dirs:
        path = cell / "assets" / STAGE_SECONDS
        if path.is_file():
            for stage, seconds in json.loads(path.read_text()).items():
                per_stage.setdefault(stage, []).append(float(seconds))
    return {
        stage: {"mean_s": round(sum(v) / len(v), 1), "total_s": round(sum(v), 1), "cells": len(v)}
        for stage, v in per_stage.items()
    }


# Where each model's description lies: the file the stage that made it writes.
MODEL_INFO = "tgap_model.json"  # tgap.diffusion.build
CLASSIFIER_INFO = "classifier.json"  # tgap.classify
EMBEDDER_INFO = "embedder.json"  # tgap.embed, one per embedder folder


def _model_sources(
    cell_dirs: list[Path],
    base_model_dir: str | Path | None,
    reference_classifier_dir: str | Path | None,
    embeddings_dir: str | Path | None,
) -> dict[str, Any]:
    """Each model's description, read from the folder of the stage that made it.

    ``tgap_model``: the first cell's generator (copied into its assets by compute-FTER);
    ``base_model``, ``reference_classifier`` and ``embedders`` (by name): from those stages'
    own output folders, which the report stage receives.
    """
    sources: dict[str, Any] = {}
    for cell in cell_dirs:
        path = cell / "assets" / MODEL_INFO
        if path.is_file():
            sources["tgap_model"] = json.loads(path.read_text())
            break
    if base_model_dir is not None and (Path(base_model_dir) / MODEL_INFO).is_file():
        sources["base_model"] = json.loads((Path(base_model_dir) / MODEL_INFO).read_text())
    if reference_classifier_dir is not None:
        path = Path(reference_classifier_dir) / CLASSIFIER_INFO
        if path.is_file():
            sources["reference_classifier"] = json.loads(path.read_text())
    if embeddings_dir is not None:
        embedders = {
            p.parent.name: json.loads(p.read_text())
            for p in sorted(Path(embeddings_dir).glob(f"*/{EMBEDDER_INFO}"))
        }
        if embedders:
            sources["embedders"] = embedders
    return sources


# The pipeline tasks (display names) that read ingest's real-val and real-test outputs;
# tests/test_pipeline.py checks these against the compiled spec. Choices are made on real-val;
# real-test is read only by the tasks that report on it.
REAL_VAL_READERS = ("tune-generation",)
REAL_TEST_READERS = (
    "evaluate-S2R",
    "evaluate-R2R",
    "supplementation",
    "real-curves",
    "synthetic-curve",
    "compute-FTER",
)


def choices(config: Config) -> dict[str, dict[str, str]]:
    """Which data chose each setting a run picks by itself (``chosen_on``), for the report.

    A setting the config fixes says so with its value: it was chosen before the run (a
    preset's comment says on which data), not by the run. No choice reads real-test.
    """
    generate, active = config.generate, config.finetune.active
    made = {
        "generation (guidance, steps, scheduler)": {
            "chosen_on": "real-val (generate.tune, per fine-tuned model)"
            if generate.tune.trials
            else f"fixed in config (guidance_scale {generate.guidance_scale:g}, "
            f"{generate.steps} {generate.scheduler} steps)",
        },
        "classifier early stopping and threshold": {
            "chosen_on": "a validation split carved from each classifier's own training images "
            "(classifier.val_fraction)",
        },
        "finetune.active.threshold": {
            "chosen_on": "the tuning set's own batches (from pool), before training"
            if active.threshold == "auto"
            else f"fixed in config ({active.threshold})",
        },
    }
    return {
        **made,
        "real-test": {
            "read_by": ", ".join(REAL_TEST_READERS),
            "chosen_on": "nothing: real-test is read only by the tasks that report on it",
        },
    }


def collect_provenance(
    config: Config,
    grid_rows: list[GridRow],
    cell_dirs: list[Path],
    *,
    base_model_dir: str | Path | None = None,
    reference_classifier_dir: str | Path | None = None,
    embeddings_dir: str | Path | None = None,
) -> dict:
    """The provenance block of the report (the folders: where the models' descriptions are)."""
    return {
        "run_name": config.name,
        "config": config.to_dict(),
        "data_source": config.data.source,
        "models": _model_sources(
            cell_dirs, base_model_dir, reference_classifier_dir, embeddings_dir
        ),
        "base_model": config.diffusion.base_model,
        "classifier": {
            "arch": config.classifier.arch,
            "weights": config.classifier.weights or None,
        },
        "versions": package_versions(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "seeds": sorted({r.seed for r in grid_rows}),
        "grid_rows": len(grid_rows),
        "stage_seconds": _stage_seconds(cell_dirs),
        "choices": choices(config),
    }
