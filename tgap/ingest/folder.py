"""``image-folder``: one subfolder per source label, any nesting below it (optionally below
``data.split_folders``); and the image-file helpers the curated source (``tgap.select``) shares."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import numpy as np

from tgap import storage
from tgap.config import DataConfig
from tgap.imageset import ImageSetError, decode_png, to_grey_square
from tgap.ingest.rows import (
    IMAGE_SUFFIXES,
    IngestError,
    Row,
    _list,
    _read,
    is_image_name,
    map_labels,
)
from tgap.ingest.splits import _split_of


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
