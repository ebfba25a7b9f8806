"""The ingest stage: ``data.source`` (a local folder, ``s3://`` or ``gs://``) into four image sets.

Formats (``data.format``): ``nih-csv`` (``tgap.ingest.nih``), ``image-folder``
(``tgap.ingest.folder``), ``csv`` (``tgap.ingest.csv_source``), ``medmnist-npz``
(``tgap.ingest.medmnist``); how the split is made: ``tgap.ingest.splits``.

Images stream: metadata is read in full (112k NIH rows: benchmarks/ingest.py), images are
fetched and decoded a few at a time by a small thread pool, in source order, and written
straight into the four ``ImageSetWriter``s. Any error leaves no output folder behind.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tgap import storage
from tgap.config import DataConfig
from tgap.imageset import INFO as IMAGE_SET_INFO
from tgap.imageset import ImageSetError, ImageSetWriter, decode_png, to_grey_square
from tgap.ingest.csv_source import _csv_rows
from tgap.ingest.folder import _folder_rows
from tgap.ingest.medmnist import _medmnist_rows
from tgap.ingest.nih import _nih_rows
from tgap.ingest.rows import LISTED_MAX, CorruptImageError, IngestError, Row, _read
from tgap.ingest.splits import (
    SPLITS,
    _assign_splits,
    _drop_test_patients,
    _fractions,
    _limit,
    assign_patients,
)
from tgap.ingest.streaming import LOCAL_WORKERS, REMOTE_WORKERS, _stream
from tgap.ingest.summary import DATASET_KEYS, _summary

log = logging.getLogger(__name__)


def _file_loader(resolution: int) -> Callable[[Row], np.ndarray]:
    def load(row: Row) -> np.ndarray:
        data = _read(row.ref, "image")
        try:
            return to_grey_square(decode_png(data, row.ref), resolution)
        except ImageSetError as exc:
            raise CorruptImageError(str(exc)) from None

    return load


def _check_outputs(dirs: list[Path]) -> list[bool]:
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise IngestError(
            f"pool/train/val/test output folders must differ, got {[str(d) for d in dirs]}"
        )
    existed = []
    for d in dirs:
        if d.exists() and (not d.is_dir() or any(d.iterdir())):
            raise IngestError(f"{d}: output already exists and is not empty")
        existed.append(d.exists())
    return existed


def _skipping(load: Callable[[Row], np.ndarray], on_corrupt: str):
    """``load`` that, with ``on_corrupt: skip``, returns the reason instead of failing."""
    if on_corrupt == "fail":
        return load

    def tolerant(row: Row) -> np.ndarray | str:
        try:
            return load(row)
        except CorruptImageError as exc:
            return str(exc).removeprefix(f"{row.ref}: ")

    return tolerant


def ingest(
    data: DataConfig,
    pool_dir: str | Path,
    train_dir: str | Path,
    val_dir: str | Path,
    test_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
) -> dict:
    """Read ``data.source`` and write the pool, real-train, real-val and real-test image sets.

    Returns the summary: counts per split and label, how the split was made and whether
    patients are known (``shared_patients`` is None when not: never "0 shared" for unknown
    patients), test patients' images dropped from the other splits, patients found in two
    official splits, skipped and filtered rows, the source URI and timing. The same facts go
    into each set's ``dataset.json`` under ``ingest``.
    """
    start = time.perf_counter()
    if not data.source:  # the library names no default data; a cluster run reaches here with ""
        raise IngestError("data.source: not set (expected a folder, file or URI of the images)")
    outs = [Path(pool_dir), Path(train_dir), Path(val_dir), Path(test_dir)]
    existed = _check_outputs(outs)
    _fractions(data.split)
    cache = Path(cache_dir) if cache_dir is not None else None
    rows, info, arrays, patients_info, official = _read_rows(data, cache)
    rows = _limit(rows, data.max_images, data.split.seed)
    fixed = sorted({r.split for r in rows if r.split})
    if fixed and "test" not in fixed:
        raise IngestError(f"{data.source}: no image falls in the official test split")
    rows, dropped = _drop_test_patients(
        rows, patients_info["patients_known"], data.split.drop_test_patients
    )
    _assign_splits(rows, data, fixed)
    _check_planned_splits(rows, data)
    load, workers = _row_loader(data, arrays)

    base_info = {"format": data.format, "split_seed": data.split.seed}
    try:
        with ExitStack() as stack:
            writers = {
                s: stack.enter_context(
                    ImageSetWriter(
                        out, data.labels, data.resolution, data.source, {**base_info, "split": s}
                    )
                )
                for s, out in zip(SPLITS, outs, strict=True)
            }
            bar = stack.enter_context(
                tqdm(total=len(rows), desc="ingest", unit="img", mininterval=2)
            )
            counts, patients, corrupt, n_corrupt = _write_rows(
                rows, load, workers, data, writers, bar
            )
            summary = _summary(
                data, info, patients_info, official, counts, patients, corrupt, n_corrupt, fixed
            )
            summary["test_patients_dropped"] = dropped
            for writer in writers.values():
                writer.info["ingest"] = {k: summary[k] for k in DATASET_KEYS if k in summary}
    except BaseException:
        # A writer that already renamed its set into place must not survive a later failure.
        for out, was_there in zip(outs, existed, strict=True):
            if (out / IMAGE_SET_INFO).exists():
                shutil.rmtree(out, ignore_errors=True)
                if was_there:
                    out.mkdir(parents=True, exist_ok=True)
        raise

    summary["seconds"] = round(time.perf_counter() - start, 3)
    _log_summary(data, summary, dropped)
    return summary


def _read_rows(data: DataConfig, cache: Path | None):
    """The source's rows by ``data.format``: (rows, source info, the arrays of an npz source,
    what is known of patients, which splits the dataset itself fixes)."""
    arrays: dict[str, np.ndarray] = {}
    official = ""  # which splits come from the dataset itself
    if data.format == "nih-csv":
        rows, info = _nih_rows(data, cache)
        patients_info = {"patients_known": True, "patient_ids": "NIH Patient ID"}
    elif data.format in ("image-folder", "csv"):
        rows, info = _folder_rows(data) if data.format == "image-folder" else _csv_rows(data)
        patients_info = assign_patients(rows, data)
        mapping = (
            data.split_folders if data.format == "image-folder" else data.csv_format.split_values
        )
        if mapping:
            what = "split_folders" if data.format == "image-folder" else "csv_format.split_values"
            official = "official splits kept (data.{}: {})".format(
                what, ", ".join(f"{k}={v}" for k, v in mapping.items())
            )
    elif data.format == "medmnist-npz":
        rows, info, arrays = _medmnist_rows(data)
        patients_info = {"patients_known": False, "patient_ids": "none (MedMNIST ships none)"}
        official = "official test and validation splits kept as test and val"
    else:
        raise IngestError(
            f"data.format {data.format!r} is not one of nih-csv, image-folder, csv, medmnist-npz"
        )
    return rows, info, arrays, patients_info, official


def _check_planned_splits(rows: list[Row], data: DataConfig) -> None:
    """Every label has rows in every split, before any image is read."""
    planned = {s: Counter(r.label for r in rows if r.split == s) for s in SPLITS}
    for s in SPLITS:
        for label in data.labels:
            if planned[s][label] == 0:
                raise IngestError(
                    f"label {label!r} has no images in the {s} split "
                    f"({sum(c[label] for c in planned.values())} in total): too few for the "
                    f"requested split; raise data.max_images or change the split fractions, the "
                    f"split folders or the label policy"
                )


def _row_loader(
    data: DataConfig, arrays: dict[str, np.ndarray]
) -> tuple[Callable[[Row], np.ndarray], int]:
    """How a row's image is read (from the npz arrays, or its file), and by how many workers."""
    if data.format == "medmnist-npz":

        def load(row: Row) -> np.ndarray:
            key, i = row.ref.rsplit(":", 1)
            return to_grey_square(arrays[key][int(i)], data.resolution)

        return load, 1
    workers = REMOTE_WORKERS if storage.is_remote(data.source) else LOCAL_WORKERS
    return _file_loader(data.resolution), workers


def _write_rows(rows: list[Row], load, workers: int, data: DataConfig, writers: dict, bar):
    """Read every row and add its image to its split's writer, skipping unreadable files as
    ``data.on_corrupt`` says. Returns (counts per split and label, patients per split, the
    first LISTED_MAX unreadable files, how many were unreadable)."""
    counts = {s: {label: 0 for label in data.labels} for s in SPLITS}
    patients: dict[str, set[str]] = {s: set() for s in SPLITS}
    corrupt: list[dict[str, str]] = []
    n_corrupt = 0
    for row, image in _stream(rows, _skipping(load, data.on_corrupt), workers):
        bar.update()
        if isinstance(image, str):
            n_corrupt += 1
            if len(corrupt) < LISTED_MAX:
                corrupt.append({"file": row.source, "reason": image})
            continue
        writers[row.split].add(
            image, row.label, row.patient_id, row.source, row.split, row.original_id
        )
        counts[row.split][row.label] += 1
        patients[row.split].add(row.patient_id)
    for s in SPLITS:
        for label in data.labels:
            if counts[s][label] == 0:
                raise IngestError(
                    f"label {label!r} has no readable images left in the {s} split "
                    f"after skipping {n_corrupt} unreadable file(s): {corrupt[:5]}"
                )
    return counts, patients, corrupt, n_corrupt


def _log_summary(data: DataConfig, summary: dict, dropped: dict | None) -> None:
    """Warnings for leaks and dropped images, and one line of what was ingested."""
    if summary["leakage_warning"]:
        log.warning("ingest: %s", summary["leakage_warning"])
    if summary.get("cross_split_patients_total"):
        log.warning(
            "ingest: %d patients are in more than one official split (a leak in the dataset "
            "itself): %s",
            summary["cross_split_patients_total"],
            summary["cross_split_patients"],
        )
    if dropped and dropped["images"]:
        log.warning(
            "ingest: dropped %d images of %d test patients from %s (data.split.drop_test_patients)",
            dropped["images"], dropped["patients"], dropped["by_split"],
        )  # fmt: skip
    log.info(
        "ingest %s (%s): %s images, pool/train/val/test %s, patients shared %s, %d skipped, %.1fs",
        data.source,
        data.format,
        sum(summary["totals"].values()),
        "/".join(str(summary["totals"][s]) for s in SPLITS),
        "unknown" if summary["shared_patients_total"] is None else summary["shared_patients_total"],
        summary["skipped_missing"] + summary["skipped_corrupt"],
        summary["seconds"],
    )
