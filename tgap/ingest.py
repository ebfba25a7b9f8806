"""Ingest: real images from a local folder, ``s3://`` or ``gs://`` into four image sets.

Formats (``data.format``)
    ``nih-csv``       NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (``.gz`` too) + an images folder.
                      The images folder may hold the PNGs at any depth (the Kaggle layout
                      ``images_001/images/...`` works) or NIH's ``images_*.tar.gz`` archives,
                      which are extracted once into the download cache.
    ``image-folder``  one subfolder per source label, any nesting below it.
    ``medmnist-npz``  a MedMNIST ``.npz`` (``{train,val,test}_{images,labels}``); source labels are
                      the class numbers as strings ("0", "1").
    ``csv``           a manifest with one row per image (CheXpert / MIMIC-CXR style): path, label
                      column or one-hot finding columns, optional patient, split and view columns.

The four sets are pool (tuning sets, retrieval), real-train, real-val (where every choice is made:
tuning, sweeps) and real-test (sealed: read only by the tasks that report on it).
Splits are by patient, stratified by label, seeded by ``data.split.seed``. NIH has ``Patient ID``;
image folders and CSVs get patient IDs from ``data.patient_id_pattern`` (a regex with one group on
the path) or a patient column. Without patient IDs each image is its own patient, and the summary
says in words that the split is by image and leakage is possible. Official splits are kept:
``data.split_folders`` (image folders) and ``data.csv_format.split_column`` (CSVs) fix real-test
(and optionally real-val, pool and real-train); the rest is cut by patient into the splits no
official split fixes, in proportion to their fractions. A test patient's images in the other
splits are dropped (``data.split.drop_test_patients``, counted in the summary); a patient found in
two official splits and kept is reported, as a leak of the dataset itself. For ``medmnist-npz``
the official test and validation splits are kept as real-test and real-val, and the official
train split is divided into pool and real-train by ``pool_fraction : train_fraction``: MedMNIST
ships no patient IDs, and PneumoniaMNIST's official test split comes from the source dataset's
own patient-disjoint test set, so it is the only split we can show shares no child with the
others.

Images stream: metadata is read in full (112k NIH rows: benchmarks/ingest.py), images are
fetched and decoded a few at a time by a small thread pool, in source order, and written
straight into the four ``ImageSetWriter``s. Any error leaves no output folder behind.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tqdm import tqdm

from tgap import storage
from tgap.config import DataConfig, SplitConfig
from tgap.imageset import INFO as IMAGE_SET_INFO
from tgap.imageset import ImageSetError, ImageSetWriter, decode_png, to_grey_square
from tgap.seeding import derive_seed

log = logging.getLogger(__name__)

SPLITS = ("pool", "train", "val", "test")
NIH_REQUIRED = ("Image Index", "Finding Labels", "Patient ID")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# Operating-system litter beside images (macOS, Windows), never images: ignored silently.
IGNORED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")
LISTED_MAX = 100  # skipped / unmatched files listed by name in the summary and dataset.json
REMOTE_WORKERS = 16  # object GETs are latency-bound: overlap many
LOCAL_WORKERS = 4  # local reads are CPU-bound (PNG decode): about the core count


class IngestError(ValueError):
    """The source data cannot be ingested as configured; the message names what and where."""


class CorruptImageError(IngestError):
    """One image does not decode (``data.on_corrupt: skip`` leaves it out and lists it)."""


def is_image_name(path: str) -> bool:
    """An image file by name: a known suffix, not OS litter (``.DS_Store``, ``._x.png``)."""
    name = PurePosixPath(path).name
    if name in IGNORED_NAMES or name.startswith("._"):
        return False
    return name.lower().endswith(IMAGE_SUFFIXES)


@dataclass
class Row:
    """One source image, before it is decoded."""

    ref: str  # where to read it: a URI/path, or "<npz key>:<index>"
    source: str  # location-independent name, stored in the manifest's `source` column
    source_label: str
    patient_id: str
    original_id: str
    label: str = ""
    split: str = ""


# --------------------------------------------------------------------------- labels and splits


def map_labels(rows: list[Row], data: DataConfig, where: str) -> None:
    """Set ``row.label`` from ``data.label_policy`` / ``data.default_label``; unknown -> error.

    Identity: when the source labels are exactly ``data.labels`` and the policy maps none of them
    elsewhere (an empty policy, say), each maps to itself; ``default_label`` is not used.
    """
    sources = {row.source_label for row in rows}
    if sources == set(data.labels) and all(data.label_policy.get(s, s) == s for s in sources):
        for row in rows:
            row.label = row.source_label
        log.info("%s: source labels are data.labels; each maps to itself", where)
        return
    unknown: Counter[str] = Counter()
    for row in rows:
        label = data.label_policy.get(row.source_label, data.default_label)
        if not label:
            unknown[row.source_label] += 1
        row.label = label
    if unknown:
        listed = ", ".join(f"{k!r} ({n})" for k, n in unknown.most_common(10))
        raise IngestError(
            f"{where}: {sum(unknown.values())} images have source labels not covered by "
            f"data.label_policy and data.default_label is empty: {listed}"
            f"{' ...' if len(unknown) > 10 else ''}; add them to label_policy or set default_label"
        )
    produced = {row.label for row in rows}
    stray = sorted(produced - set(data.labels))
    if stray:
        raise IngestError(
            f"data.label_policy/default_label produce {stray}, which are not in data.labels {data.labels}"
        )


def _fractions(split: SplitConfig) -> list[float]:
    """The split's fractions in ``SPLITS`` order, checked."""
    fractions = list(split.fractions())
    if any(f < 0 or f > 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise IngestError(
            f"data.split fractions pool/train/val/test = {fractions} must each be in [0, 1] and "
            "sum to 1"
        )
    return fractions


def _rest_of(split: SplitConfig, fixed: Iterable[str]) -> SplitConfig:
    """The fractions the rows no official split fixes are cut by: the ``fixed`` splits' set to
    0, the others rescaled to sum to 1 (their proportions kept)."""
    fixed = set(fixed)
    kept = {s: f for s, f in zip(SPLITS, _fractions(split), strict=True) if s not in fixed}
    total = sum(kept.values())
    if total <= 0:
        raise IngestError(
            f"data.split: every fraction of the splits left to cut ({sorted(kept)}) is 0"
        )
    return dataclasses.replace(split, **{f"{s}_fraction": kept.get(s, 0.0) / total for s in SPLITS})


def _allocate(n: int, fractions: list[float]) -> list[int]:
    """Split ``n`` patients by ``fractions`` (largest remainder), >= 1 for every non-zero fraction."""
    exact = [n * f for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(fractions)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: counts[j])
            counts[donor] -= 1
            counts[i] += 1
    return counts


def split_by_patient(
    rows: list[Row], split: SplitConfig, labels: list[str], fixed: Iterable[str] = ()
) -> None:
    """Set ``row.split`` so no patient spans two splits, stratified by label, seeded.

    Each patient's stratum is its most frequent label (ties: the earlier of ``labels``); within
    a stratum, patients are shuffled with a seed derived from ``split.seed`` and the stratum,
    then cut by the fractions. Rows whose ``split`` is already in ``fixed`` keep it.
    (scikit-learn has no fraction-based split that is both grouped and stratified:
    StratifiedGroupKFold only makes equal folds.)
    """
    fractions = _fractions(split)
    fixed = set(fixed)
    by_patient: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row.split not in fixed:
            by_patient[row.patient_id][row.label] += 1
    rank = {label: i for i, label in enumerate(labels)}
    strata: dict[str, list[str]] = defaultdict(list)
    for patient, counts in by_patient.items():
        top = max(counts.items(), key=lambda kv: (kv[1], -rank[kv[0]]))[0]
        strata[top].append(patient)
    needed = sum(f > 0 for f in fractions)
    assignment: dict[str, str] = {}
    for label in labels:
        patients = sorted(strata.get(label, []))
        if len(patients) < needed:
            images = sum(by_patient[p][label] for p in by_patient)
            raise IngestError(
                f"label {label!r}: {len(patients)} patients ({images} images) are too few for "
                f"the split pool/train/val/test = {fractions}: every split needs at least one "
                f"patient of every label"
            )
        rng = np.random.default_rng(derive_seed(split.seed, "ingest-split", label))
        order = [patients[i] for i in rng.permutation(len(patients))]
        start = 0
        for name, count in zip(SPLITS, _allocate(len(order), fractions), strict=True):
            for patient in order[start : start + count]:
                assignment[patient] = name
            start += count
    for row in rows:
        if row.split not in fixed:
            row.split = assignment[row.patient_id]


def _limit(rows: list[Row], max_images: int | None, seed: int) -> list[Row]:
    """A seeded subset of whole patients (the last one possibly cut) of at most ``max_images``."""
    if max_images is None or len(rows) <= max_images:
        return rows
    patients = sorted({r.patient_id for r in rows})
    rng = np.random.default_rng(derive_seed(seed, "ingest-max-images"))
    rank = {patients[i]: k for k, i in enumerate(rng.permutation(len(patients)))}
    keep = sorted(range(len(rows)), key=lambda i: (rank[rows[i].patient_id], i))[:max_images]
    return [rows[i] for i in sorted(keep)]


# --------------------------------------------------------------------------- NIH


def _find_csv(data: DataConfig) -> str:
    if data.csv:
        return storage.join(data.source, data.csv)
    if data.source.endswith((".csv", ".csv.gz")):
        return data.source
    candidates = [
        u
        for u in _list(data.source, "data.source")
        if PurePosixPath(u).name.startswith("Data_Entry_2017")
        and u.endswith((".csv", ".csv.gz"))
        and storage.join(data.source, PurePosixPath(u).name) == u
    ]
    if len(candidates) != 1:
        raise IngestError(
            f"{data.source}: expected one Data_Entry_2017*.csv, found {len(candidates)} "
            f"({[PurePosixPath(c).name for c in candidates]}); set data.csv"
        )
    return candidates[0]


def _list(uri: str, what: str) -> list[str]:
    try:
        uris = storage.list_uris(uri)
    except storage.StorageError as exc:
        raise IngestError(f"{what}: {exc}") from None
    if not uris:
        raise IngestError(f"{what}: {uri} is empty (no objects under this prefix)")
    return uris


def _read(uri: str, what: str) -> bytes:
    try:
        return storage.read_bytes(uri)
    except storage.StorageError as exc:
        raise IngestError(f"{what}: {exc}") from None


def _age(raw: str, where: str) -> int:
    text = raw.strip().upper().removesuffix("Y")  # older NIH files write "058Y"
    if not text.isdigit():
        raise IngestError(f"{where}: Patient Age {raw!r} is not a whole number of years")
    return int(text)


def load_nih_metadata(data: DataConfig) -> tuple[list[Row], dict[str, Any]]:
    """Read and validate NIH's CSV, apply the view/age filters and the label policy.

    Returns rows with ``ref`` = the image's file name (resolved against the images folder
    later) and counts of what was read and filtered. No image is touched.
    """
    csv_uri = _find_csv(data)
    raw = _read(csv_uri, "data.csv")
    if csv_uri.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IngestError(f"{csv_uri}: not a readable gzip file ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{csv_uri}: not UTF-8 text ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    required = list(NIH_REQUIRED)
    if data.view_positions:
        required.append("View Position")
    if data.age_min is not None or data.age_max is not None:
        required.append("Patient Age")
    missing = [c for c in required if c not in columns]
    if missing:
        raise IngestError(f"{csv_uri}: missing required column(s) {missing} (found: {columns})")
    views = set(data.view_positions)
    rows: list[Row] = []
    seen: set[str] = set()
    read = filtered = 0
    for line, rec in enumerate(reader, start=2):
        read += 1
        name, labels, patient = rec["Image Index"], rec["Finding Labels"], rec["Patient ID"]
        where = f"{csv_uri} line {line}"
        if not name or not patient or labels is None or not labels.strip():
            raise IngestError(f"{where}: empty Image Index, Patient ID or Finding Labels")
        if name in seen:
            raise IngestError(f"{where}: Image Index {name!r} is listed twice")
        seen.add(name)
        if views and rec["View Position"] not in views:
            filtered += 1
            continue
        if data.age_min is not None or data.age_max is not None:
            age = _age(rec["Patient Age"] or "", where)
            if (data.age_min is not None and age < data.age_min) or (
                data.age_max is not None and age > data.age_max
            ):
                filtered += 1
                continue
        rows.append(Row(name, "", labels.strip(), patient.strip(), name))
    if read == 0:
        raise IngestError(f"{csv_uri}: no data rows")
    if not rows:
        raise IngestError(f"{csv_uri}: all {read} rows removed by the view/age filters")
    map_labels(rows, data, csv_uri)
    return rows, {"csv": csv_uri, "rows_read": read, "filtered_out": filtered}


def _extract_archives(archives: list[str], cache_dir: Path) -> Path:
    """Extract tar/zip archives once into the cache, refusing entries that escape it."""
    digest = hashlib.sha256()
    locals_ = []
    for uri in archives:
        try:
            path = storage.download_to_cache(uri, cache_dir)
        except storage.StorageError as exc:
            raise IngestError(f"data.images_dir: {exc}") from None
        st = path.stat()
        digest.update(f"{uri}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        locals_.append((uri, path))
    target = cache_dir / f"extracted-{digest.hexdigest()[:20]}"
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{target.name}.partial-"))
    try:
        for uri, path in locals_:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as zf:
                    for name in zf.namelist():
                        _check_entry(uri, name, is_link=False)
                    zf.extractall(tmp)
            else:
                try:
                    with tarfile.open(path) as tf:
                        members = tf.getmembers()
                        for m in members:
                            _check_entry(uri, m.name, is_link=m.issym() or m.islnk())
                        tf.extractall(tmp, members=members, filter="data")
                except tarfile.TarError as exc:
                    raise IngestError(f"{uri}: not a readable archive ({exc})") from None
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_entry(archive: str, name: str, is_link: bool) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]) or is_link:
        raise IngestError(
            f"{archive}: archive entry {name!r} points outside the extraction folder "
            f"(absolute path, '..' or link); refusing to extract this archive"
        )


def _image_index(images_uri: str, cache_dir: Path | None) -> tuple[str, dict[str, str]]:
    """``(root, {file name: path relative to root})`` for every image under ``images_uri``."""
    uris = _list(images_uri, "data.images_dir")
    archives = [u for u in uris if u.lower().endswith(ARCHIVE_SUFFIXES)]
    images = [u for u in uris if u.lower().endswith(IMAGE_SUFFIXES)]
    root = images_uri
    if archives and not images:
        extracted = _extract_archives(archives, cache_dir or storage.default_cache_dir())
        root = str(extracted)
        images = [
            str(p) for p in sorted(extracted.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
        ]
    prefix = root.rstrip("/") + "/"
    index: dict[str, str] = {}
    for uri in images:
        rel = uri[len(prefix) :] if uri.startswith(prefix) else PurePosixPath(uri).name
        name = PurePosixPath(rel).name
        if name in index:
            raise IngestError(f"{root}: image name {name!r} occurs twice ({index[name]}, {rel})")
        index[name] = rel
    return root, index


def _nih_rows(data: DataConfig, cache_dir: Path | None) -> tuple[list[Row], dict[str, Any]]:
    rows, info = load_nih_metadata(data)
    images_uri = storage.join(data.source, data.images_dir)
    root, index = _image_index(images_uri, cache_dir)
    missing = [r.original_id for r in rows if r.original_id not in index]
    info["skipped_missing"] = 0
    info["skipped_files"] = []
    if missing:
        if data.on_missing == "fail":
            raise IngestError(
                f"{len(missing)} of {len(rows)} images listed in {info['csv']} are missing under "
                f"{images_uri}: first {missing[:5]} (set data.on_missing: skip to leave them out)"
            )
        absent = set(missing)
        rows = [r for r in rows if r.original_id not in absent]
        info["skipped_missing"] = len(missing)
        info["skipped_files"] = missing[:20]
        if not rows:
            raise IngestError(f"{images_uri}: none of the {len(missing)} listed images exist")
    images_rel = data.images_dir.strip("/")
    for row in rows:
        rel = index[row.original_id]
        row.ref = storage.join(root, rel)
        row.source = f"{images_rel}/{rel}" if images_rel else rel
    return rows, info


# --------------------------------------------------------------------------- image folder, MedMNIST


def image_uris(source: str, what: str) -> list[str]:
    """Every image file (``IMAGE_SUFFIXES``) below the folder or prefix ``source``, sorted.

    The image-folder reader of ingest and of the curated source (``tgap.select``).
    """
    try:
        uris = storage.list_uris(source)
    except storage.StorageError as exc:
        raise IngestError(f"{what}: {exc}") from None
    return [u for u in uris if u.lower().endswith(IMAGE_SUFFIXES)]


def load_image(uri: str, resolution: int) -> np.ndarray:
    """One image file (path or URI) as uint8 greyscale ``resolution`` x ``resolution``."""
    try:
        return to_grey_square(decode_png(_read(uri, "image"), uri), resolution)
    except ImageSetError as exc:
        raise IngestError(str(exc)) from None


def find_npz(source: str, what: str) -> str:
    """``source`` itself when it is a ``.npz``, else the one ``.npz`` file below it."""
    if source.endswith(".npz"):
        return source
    found = [u for u in _list(source, what) if u.endswith(".npz")]
    if len(found) != 1:
        raise IngestError(f"{source}: expected exactly one .npz file, found {len(found)}")
    return found[0]


def read_npz(uri: str, what: str) -> np.lib.npyio.NpzFile:
    """The arrays of a ``.npz`` file (path or URI); the MedMNIST reader of ingest and of the
    curated source. Use as a context manager."""
    raw = _read(uri, what)
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise IngestError(f"{uri}: not a readable .npz file ({exc})") from None


def _split_of(mapping: dict[str, str]) -> dict[str, str]:
    """Run split keys of ``data.split_folders`` / ``split_values`` -> the row's fixed split."""
    # pool_and_train is divided later, by patient, into pool and real-train (and real-val when
    # no official split fixes it).
    return {key: ("" if key == "pool_and_train" else key) for key in mapping}


def _folder_rows(data: DataConfig, label: bool = True) -> tuple[list[Row], dict[str, Any]]:
    """``<source>/[<split folder>/]<label>/**/<image>``; a missing split folder is an error."""
    prefix = data.source.rstrip("/") + "/"
    uris = [u for u in _list(data.source, "data.source") if is_image_name(u)]
    folders = {key: folder.strip("/") for key, folder in data.split_folders.items()}
    splits = _split_of(folders)
    rows = []
    outside = 0
    for key, folder in folders.items() if folders else [("", "")]:
        base = f"{folder}/" if folder else ""
        found = 0
        for uri in uris:
            rel = uri[len(prefix) :]
            if not rel.startswith(base):
                continue
            parts = PurePosixPath(rel[len(base) :]).parts
            if len(parts) < 2:
                raise IngestError(
                    f"{uri}: image is not inside a label folder (expected {base}<label>/.../file)"
                )
            row = Row(uri, rel, parts[0], rel, rel)
            row.split = splits.get(key, "")
            rows.append(row)
            found += 1
        if folders and found == 0:
            present = sorted(
                {u[len(prefix) :].split("/", 1)[0] for u in uris if "/" in u[len(prefix) :]}
            )
            raise IngestError(
                f"data.split_folders.{key}: folder {folder!r} is missing or holds no images "
                f"under {data.source} (top-level folders with images: {present})"
            )
    if folders:
        inside = tuple(f"{f}/" for f in folders.values())
        outside = sum(not u[len(prefix) :].startswith(inside) for u in uris)
    if not rows:
        raise IngestError(
            f"{data.source}: no images ({', '.join(IMAGE_SUFFIXES)}) in label folders"
        )
    if label:
        map_labels(rows, data, data.source)
    return rows, {"rows_read": len(rows), "filtered_out": 0, "outside_split_folders": outside}


def _csv_uri(data: DataConfig) -> tuple[str, str]:
    """``(manifest URI, folder its paths are relative to)`` for ``format: csv``."""
    if data.csv:
        uri = storage.join(data.source, data.csv)
        base = data.source
    elif data.source.endswith((".csv", ".csv.gz")):
        uri, base = data.source, data.source.rsplit("/", 1)[0] if "/" in data.source else "."
    else:
        found = [
            u
            for u in _list(data.source, "data.source")
            if u.endswith((".csv", ".csv.gz"))
            and storage.join(data.source, PurePosixPath(u).name) == u
        ]
        if len(found) != 1:
            raise IngestError(
                f"{data.source}: expected one .csv manifest, found {len(found)} "
                f"({[PurePosixPath(u).name for u in found]}); set data.csv"
            )
        uri, base = found[0], data.source
    fmt = data.csv_format
    return uri, storage.join(base, fmt.root) if fmt.root else base


def _read_text_csv(uri: str, what: str) -> csv.DictReader:
    raw = _read(uri, what)
    if uri.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IngestError(f"{uri}: not a readable gzip file ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{uri}: not UTF-8 text ({exc})") from None
    return csv.DictReader(io.StringIO(text))


def _one_hot(value: str, where: str) -> str:
    """A CheXpert cell: ``1``/``1.0`` positive, ``0`` negative, ``-1`` uncertain, blank."""
    text = value.strip()
    if not text:
        return "blank"
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if number == 1:
        return "positive"
    if number == 0:
        return "negative"
    if number == -1:
        return "uncertain"
    raise IngestError(f"{where}: {value!r} is not 1, 0, -1 or blank")


def _csv_rows(data: DataConfig, label: bool = True) -> tuple[list[Row], dict[str, Any]]:
    """Rows of a CheXpert/MIMIC-style manifest: views filtered, labels and splits mapped."""
    fmt = data.csv_format
    csv_uri, base = _csv_uri(data)
    reader = _read_text_csv(csv_uri, "data.csv")
    columns = reader.fieldnames or []
    wanted = {
        "data.csv_format.path_column": fmt.path_column,
        "data.csv_format.label_column": fmt.label_column,
        "data.csv_format.patient_column": fmt.patient_column,
        "data.csv_format.split_column": fmt.split_column,
        "data.csv_format.view_column": fmt.view_column,
    }
    wanted.update(
        {f"data.csv_format.label_columns[{i}]": c for i, c in enumerate(fmt.label_columns)}
    )
    for key, column in wanted.items():
        if column and column not in columns:
            raise IngestError(f"{csv_uri}: no column {column!r} ({key}); found: {columns}")
    if data.view_positions and not fmt.view_column:
        raise IngestError("data.view_positions: set data.csv_format.view_column to filter views")
    split_by_value = {
        v: s
        for s, v in zip(
            _split_of(fmt.split_values).values(), fmt.split_values.values(), strict=True
        )
    }
    views = set(data.view_positions)
    counts: Counter[str] = Counter()
    rows: list[Row] = []
    seen: set[str] = set()
    for line, rec in enumerate(reader, start=2):
        counts["read"] += 1
        where = f"{csv_uri} line {line}"
        path = (rec[fmt.path_column] or "").strip()
        if not path:
            raise IngestError(f"{where}: empty {fmt.path_column!r}")
        if path in seen:
            raise IngestError(f"{where}: path {path!r} is listed twice")
        seen.add(path)
        if views and (rec[fmt.view_column] or "").strip() not in views:
            counts["filtered_view"] += 1
            continue
        split = ""
        if fmt.split_column:
            value = (rec[fmt.split_column] or "").strip()
            if value not in split_by_value:
                counts["outside_split_values"] += 1
                continue
            split = split_by_value[value]
        if fmt.label_column:
            source_label = (rec[fmt.label_column] or "").strip()
            if not source_label:
                raise IngestError(f"{where}: empty {fmt.label_column!r}")
        else:
            positives, drop = [], ""
            for column in fmt.label_columns:
                state = _one_hot(rec[column] or "", f"{where} column {column!r}")
                if state == "uncertain":
                    state = fmt.uncertain if fmt.uncertain != "drop" else "drop-uncertain"
                elif state == "blank":
                    state = fmt.blank if fmt.blank != "drop" else "drop-blank"
                if state.startswith("drop"):
                    drop = state
                    break
                if state == "positive":
                    positives.append(column)
            if drop:
                counts["dropped_uncertain" if drop == "drop-uncertain" else "dropped_blank"] += 1
                continue
            if not positives:
                counts["dropped_no_positive"] += 1
                continue
            source_label = "|".join(positives)
        patient = ""
        if fmt.patient_column:
            patient = (rec[fmt.patient_column] or "").strip()
            if not patient:
                raise IngestError(f"{where}: empty {fmt.patient_column!r}")
        row = Row(storage.join(base, path), path, source_label, patient or path, path)
        row.split = split
        rows.append(row)
    if counts["read"] == 0:
        raise IngestError(f"{csv_uri}: no data rows")
    if not rows:
        raise IngestError(
            f"{csv_uri}: all {counts['read']} rows removed by the filters ({dict(counts)})"
        )
    if label:
        map_labels(rows, data, csv_uri)
    info = {
        "csv": csv_uri,
        "rows_read": counts["read"],
        "filtered_out": counts["read"] - len(rows),
        "csv_rows_left_out": {k: v for k, v in counts.items() if k != "read"},
    }
    if fmt.label_columns:
        info["uncertain_policy"] = f"-1 cells: {fmt.uncertain}; blank cells: {fmt.blank}"
    return rows, info


def assign_patients(rows: list[Row], data: DataConfig) -> dict[str, Any]:
    """Patient IDs from ``data.patient_id_pattern`` (group 1, searched in the relative path).

    A path it does not match is an error, or with ``on_unmatched: own-patient`` its own patient
    (counted and listed). Returns what the summary says about patients.
    """
    if data.format == "csv" and data.csv_format.patient_column:
        return {"patients_known": True, "patient_ids": f"column {data.csv_format.patient_column!r}"}
    if not data.patient_id_pattern:
        return {"patients_known": False, "patient_ids": "none (each image is its own patient)"}
    pattern = re.compile(data.patient_id_pattern)
    unmatched = []
    for row in rows:
        found = pattern.search(row.source)
        if found is None or not found.group(1):
            unmatched.append(row)
            row.patient_id = f"unmatched:{row.source}"
        else:
            row.patient_id = found.group(1)
    if unmatched and data.on_unmatched == "fail":
        raise IngestError(
            f"data.patient_id_pattern {data.patient_id_pattern!r} does not match "
            f"{len(unmatched)} of {len(rows)} paths, first {[r.source for r in unmatched[:5]]} "
            "(fix the pattern, or set data.on_unmatched: own-patient)"
        )
    return {
        "patients_known": True,
        "patient_ids": f"data.patient_id_pattern {data.patient_id_pattern!r} on the path",
        "unmatched_own_patient": len(unmatched),
        "unmatched_files": [r.source for r in unmatched[:LISTED_MAX]],
    }


def _medmnist_rows(data: DataConfig) -> tuple[list[Row], dict[str, Any], dict[str, np.ndarray]]:
    uri = find_npz(data.source, "data.source")
    npz = read_npz(uri, "data.source")
    name = PurePosixPath(uri).name
    arrays: dict[str, np.ndarray] = {}
    rows: list[Row] = []
    with npz:
        for split in ("train", "val", "test"):
            keys = (f"{split}_images", f"{split}_labels")
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise IngestError(f"{uri}: missing arrays {missing} (found {npz.files})")
            images, labels = npz[keys[0]], npz[keys[1]]
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
                raise IngestError(
                    f"{uri}: {keys[0]} must be uint8 (n, h, w[, c]) matching {keys[1]}, "
                    f"got {images.dtype} {images.shape} and {labels.shape}"
                )
            labels = labels.reshape(len(labels), -1)
            if labels.shape[1] != 1:
                raise IngestError(
                    f"{uri}: {keys[1]} has {labels.shape[1]} columns; multi-label sets are not supported"
                )
            arrays[keys[0]] = images
            for i, value in enumerate(labels[:, 0]):
                ident = f"{split}/{i}"
                row = Row(
                    f"{keys[0]}:{i}",
                    f"{name}:{keys[0]}[{i}]",
                    str(int(value)),
                    f"{split}-{i}",
                    ident,
                )
                row.split = split if split in ("val", "test") else ""
                rows.append(row)
    map_labels(rows, data, uri)
    return rows, {"npz": uri, "rows_read": len(rows), "filtered_out": 0}, arrays


# --------------------------------------------------------------------------- streaming


def _stream(
    rows: list[Row], load: Callable[[Row], np.ndarray], workers: int
) -> Iterator[tuple[Row, np.ndarray]]:
    """``(row, image)`` in ``rows`` order, with at most ``2 * workers`` images in flight."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending: deque = deque()
        it = iter(rows)
        for row in it:
            pending.append((row, pool.submit(load, row)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            row, future = pending.popleft()
            image = future.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield row, image
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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


# --------------------------------------------------------------------------- the stage


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


def _split_statement(data: DataConfig, patients: dict[str, Any], fixed: str) -> dict[str, str]:
    """How the split was made, in words, and the leakage warning when patients are unknown."""
    if patients["patients_known"]:
        how = f"by patient ({patients['patient_ids']}), stratified by label"
        warning = ""
    else:
        how = "by image, stratified by label: no patient IDs"
        hint = (
            "set data.patient_id_pattern"
            if data.format in ("image-folder", "csv")
            else "this format has none"
        )
        warning = (
            "Patients are not known, so the split is by image and leakage is possible: images of "
            "one patient may be in more than one of pool, real-train, real-val and real-test "
            f"({hint})."
        )
    return {"split": f"{fixed}; {how}" if fixed else how, "leakage_warning": warning}


def _drop_test_patients(
    rows: list[Row], patients_known: bool, on: bool
) -> tuple[list[Row], dict[str, Any] | None]:
    """Rows without the images that test patients have outside the official test split.

    Returns the rows kept and what the summary says: None when patients are unknown (nothing
    can be checked), else how many patients and images were dropped, by the split they were in
    (``pool_and_train`` = not yet divided). With ``on`` false nothing is dropped and the count
    is 0 (those patients are then reported as shared between splits).
    """
    if not patients_known:
        return rows, None
    test_patients = {r.patient_id for r in rows if r.split == "test"} if on else set()
    kept: list[Row] = []
    dropped: list[Row] = []
    for r in rows:
        (dropped if r.split != "test" and r.patient_id in test_patients else kept).append(r)
    info = {
        "on": on,
        "patients": len({r.patient_id for r in dropped}),
        "images": len(dropped),
        "by_split": dict(sorted(Counter(r.split or "pool_and_train" for r in dropped).items())),
    }
    return kept, info


def _assign_splits(rows: list[Row], data: DataConfig, fixed: list[str]) -> None:
    """Cut the rows no official split fixes into the splits no official split fixes."""
    if all(r.split for r in rows):
        return
    if "val" not in fixed and data.split.val_fraction == 0:
        raise IngestError(
            f"{data.source}: no official validation split and data.split.val_fraction is 0: "
            "real-val would be empty (set data.split.val_fraction > 0)"
        )
    split_by_patient(rows, _rest_of(data.split, fixed), data.labels, fixed)


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

    rows = _limit(rows, data.max_images, data.split.seed)
    fixed = sorted({r.split for r in rows if r.split})
    if fixed and "test" not in fixed:
        raise IngestError(f"{data.source}: no image falls in the official test split")
    rows, dropped = _drop_test_patients(
        rows, patients_info["patients_known"], data.split.drop_test_patients
    )
    _assign_splits(rows, data, fixed)
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

    if data.format == "medmnist-npz":

        def load(row: Row) -> np.ndarray:
            key, i = row.ref.rsplit(":", 1)
            return to_grey_square(arrays[key][int(i)], data.resolution)

        workers = 1
    else:
        load = _file_loader(data.resolution)
        workers = REMOTE_WORKERS if storage.is_remote(data.source) else LOCAL_WORKERS

    counts = {s: {label: 0 for label in data.labels} for s in SPLITS}
    patients: dict[str, set[str]] = {s: set() for s in SPLITS}
    corrupt: list[dict[str, str]] = []
    n_corrupt = 0
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
    return summary


# What each image set's dataset.json carries of the summary (under "ingest"): the report reads it.
DATASET_KEYS = (
    "split",
    "leakage_warning",
    "patients_known",
    "patient_ids",
    "patients",
    "shared_patients",
    "shared_patients_total",
    "cross_split_patients",
    "cross_split_patients_total",
    "test_patients_dropped",
    "unmatched_own_patient",
    "unmatched_files",
    "skipped_missing",
    "skipped_files",
    "skipped_corrupt",
    "corrupt_files",
    "on_corrupt",
    "csv_rows_left_out",
    "uncertain_policy",
    "outside_split_folders",
)


def _summary(
    data: DataConfig,
    info: dict[str, Any],
    patients_info: dict[str, Any],
    official: str,
    counts: dict[str, dict[str, int]],
    patients: dict[str, set[str]],
    corrupt: list[dict[str, str]],
    n_corrupt: int,
    fixed: list[str],
) -> dict[str, Any]:
    known = patients_info["patients_known"]
    pairs = [(a, b) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1 :]]
    shared = {f"{a}-{b}": len(patients[a] & patients[b]) for a, b in pairs} if known else None
    summary: dict[str, Any] = {
        "source": data.source,
        "format": data.format,
        "resolution": data.resolution,
        **_split_statement(data, patients_info, official),
        "split_seed": data.split.seed,
        "counts": counts,
        "totals": {s: sum(counts[s].values()) for s in SPLITS},
        **patients_info,
        "patients": {s: len(patients[s]) for s in SPLITS} if known else None,
        "shared_patients": shared,
        "shared_patients_total": sum(shared.values()) if known else None,
        "rows_read": info.get("rows_read", 0),
        "filtered_out": info.get("filtered_out", 0),
        "skipped_missing": info.get("skipped_missing", 0),
        "skipped_files": info.get("skipped_files", []),
        "on_corrupt": data.on_corrupt,
        "skipped_corrupt": n_corrupt,
        "corrupt_files": corrupt,
    }
    for key in ("csv_rows_left_out", "uncertain_policy", "outside_split_folders"):
        if key in info:
            summary[key] = info[key]
    if known:
        # Pairs the split made itself share no patient (split_by_patient); pairs fixed by the
        # dataset's own folders or split column may, and that is the dataset's leak, reported.
        cross = {
            f"{a}-{b}": n
            for (a, b), n in zip(pairs, shared.values(), strict=True)
            if n and (a in fixed or b in fixed)
        }
        made = {k: n for k, n in shared.items() if n and k not in cross}
        if made:  # split_by_patient guarantees this; a bug if not
            raise AssertionError(f"patients shared between splits: {made}")
        summary["cross_split_patients"] = cross
        summary["cross_split_patients_total"] = len(
            {p for a, b in pairs if f"{a}-{b}" in cross for p in patients[a] & patients[b]}
        )
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The ingest summary for KFP's Markdown viewer: the split in words, then the numbers."""
    lines = ["# Ingest summary", "", f"**Split:** {summary['split']}.", ""]
    if summary.get("leakage_warning"):
        lines += [f"**Warning:** {summary['leakage_warning']}", ""]
    elif summary.get("shared_patients_total") is not None:
        lines += [f"Patients shared between splits: {summary['shared_patients_total']}.", ""]
    dropped = summary.get("test_patients_dropped")
    if dropped and dropped["images"]:
        lines += [
            f"**Sealed real-test:** dropped {dropped['images']} images of {dropped['patients']} "
            f"patients who also have images in real-test (from {dropped['by_split']}; "
            "data.split.drop_test_patients).",
            "",
        ]
    if summary.get("cross_split_patients_total"):
        lines += [
            f"**Leak in the dataset itself:** {summary['cross_split_patients_total']} patients "
            f"are in more than one official split ({summary['cross_split_patients']}).",
            "",
        ]
    if summary.get("unmatched_own_patient"):
        lines += [
            f"{summary['unmatched_own_patient']} paths did not match data.patient_id_pattern; "
            "each is its own patient.",
            "",
        ]
    if summary.get("corrupt_files"):
        lines += [f"Skipped {summary['skipped_corrupt']} unreadable file(s):", ""]
        lines += [f"- `{c['file']}`: {c['reason']}" for c in summary["corrupt_files"]]
        lines.append("")
    lines += ["```json", json.dumps(summary, indent=2), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- external sets


def read_external_set(
    name: str, uri: str, labels: list[str], resolution: int, out_dir: str | Path
) -> dict[str, Any]:
    """An already generated, labelled set (``select.external_sets[name]``) as an image set.

    ``uri`` is an image folder (``<label>/**/<image>``) or a CSV with ``path`` and ``label``
    columns (paths relative to the CSV's folder), read through the same readers as the real
    data. Its labels must be exactly ``labels``. ``dataset.json`` records ``external``: the
    name, URI and ``files_sha256``, a hash of every file's path and bytes (sha256 over
    ``"<path>\\t<sha256 of the file>\\n"`` in path order), so a cell names the exact files.
    """
    key = f"select.external_sets.{name}"
    is_csv = uri.endswith((".csv", ".csv.gz"))
    data = DataConfig(
        source=uri,
        format="csv" if is_csv else "image-folder",
        resolution=resolution,
        labels=list(labels),
        label_policy={},
        default_label="",
    )
    if is_csv:
        data.csv_format.path_column, data.csv_format.label_column = "path", "label"
    try:
        rows, _ = _csv_rows(data, label=False) if is_csv else _folder_rows(data, label=False)
    except IngestError as exc:
        raise IngestError(f"{key}: {exc}") from None
    found = sorted({r.source_label for r in rows})
    if set(found) != set(labels):
        raise IngestError(
            f"{key}: {uri} has labels {found}, which differ from data.labels {list(labels)}"
        )
    for row in rows:
        row.label = row.source_label
    rows.sort(key=lambda r: r.source)
    digests: dict[str, str] = {}

    def load(row: Row) -> np.ndarray:
        raw = _read(row.ref, key)
        digests[row.source] = hashlib.sha256(raw).hexdigest()
        try:
            return to_grey_square(decode_png(raw, row.ref), resolution)
        except ImageSetError as exc:
            raise IngestError(f"{key}: {exc}") from None

    workers = REMOTE_WORKERS if storage.is_remote(uri) else LOCAL_WORKERS
    external: dict[str, Any] = {"name": name, "uri": uri, "n_files": len(rows)}
    with ImageSetWriter(out_dir, labels, resolution, uri, {"external": external}) as writer:
        for row, image in _stream(rows, load, workers):
            writer.add(image, row.label, "", row.source, "external", row.original_id)
        total = hashlib.sha256()
        for row in rows:
            total.update(f"{row.source}\t{digests[row.source]}\n".encode())
        external["files_sha256"] = total.hexdigest()
    counts = Counter(r.label for r in rows)
    log.info(
        "external set %s (%s): %s, files sha256 %s",
        name,
        uri,
        dict(counts),
        external["files_sha256"][:12],
    )
    return {**external, "counts": {label: counts[label] for label in labels}}
