"""``nih-csv``: NIH ChestX-ray14, ``Data_Entry_2017*.csv`` (``.gz`` too) + an images folder.

The images folder may hold the PNGs at any depth (the Kaggle layout ``images_001/images/...``
works) or NIH's ``images_*.tar.gz`` archives, which are extracted once into the download cache.
Patients are NIH's ``Patient ID``. The metadata is read in full (112k rows:
benchmarks/ingest.py); no image is touched before the split.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from tgap import storage
from tgap.config import DataConfig
from tgap.ingest.rows import (
    IMAGE_SUFFIXES,
    IngestError,
    Row,
    _list,
    _read_text_csv,
    map_labels,
)

NIH_REQUIRED = ("Image Index", "Finding Labels", "Patient ID")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


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
    reader = _read_text_csv(csv_uri, "data.csv")
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
