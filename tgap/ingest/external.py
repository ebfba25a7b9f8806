"""External sets: an already generated, labelled set (``select.external_sets``) read through the
same readers as the real data into an image set."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tgap import storage
from tgap.config import DataConfig
from tgap.imageset import ImageSetError, ImageSetWriter, decode_png, to_grey_square
from tgap.ingest.csv_source import _csv_rows
from tgap.ingest.folder import _folder_rows
from tgap.ingest.rows import IngestError, Row, _read
from tgap.ingest.streaming import LOCAL_WORKERS, REMOTE_WORKERS, _stream

log = logging.getLogger(__name__)


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
