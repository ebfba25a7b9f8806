"""What the format readers share: the errors, one source image (``Row``), which file names are
images, the label mapping, and reading or listing a URI with the error naming the config key."""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

from tgap import storage
from tgap.config import DataConfig

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Operating-system litter beside images (macOS, Windows), never images: ignored silently.
IGNORED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")
LISTED_MAX = 100  # skipped / unmatched files listed by name in the summary and dataset.json


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


def _read_text_csv(uri: str, what: str) -> csv.DictReader:
    """A CSV file (gzipped when its name ends in .gz, UTF-8 with or without a BOM) as rows."""
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
