"""The image-set artifact every stage reads and writes.

An image set is a folder::

    manifest.csv   file, label, patient_id, source, split, original_id   (one row per image)
    images/        grey 8-bit PNGs, all of the same square resolution
    dataset.json   labels, resolution, counts per label, source URI, content hash, extra info

It streams (``iter_batches`` decodes one batch at a time), it is inspectable with any CSV
viewer, and it scales to NIH's 112k images. Writers build the set in a sibling temp folder and
rename it into place on success, so a failed stage never leaves a half-written artifact.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

MANIFEST = "manifest.csv"
INFO = "dataset.json"
IMAGES = "images"
COLUMNS = ("file", "label", "patient_id", "source", "split", "original_id")


class ImageSetError(ValueError):
    """An image set on disk is missing, malformed or inconsistent; the message says where."""


@dataclass(frozen=True)
class ImageRecord:
    """One manifest row. ``file`` is relative to the image-set folder."""

    file: str
    label: str
    patient_id: str = ""
    source: str = ""
    split: str = ""
    original_id: str = ""


def grey_image(image: Image.Image) -> Image.Image:
    """One grey ("L") image for any mode, so the same picture gives the same grey.

    RGB uses Pillow's ITU-R 601-2 luma; transparency (RGBA, LA, palette with alpha) is composited
    over black; 16-bit grey (``I;16*``, and 32-bit ``I``, read as 16-bit values) is scaled by
    255/65535; float images are clipped to [0, 255]; CMYK, YCbCr and the rest go through RGB.
    """
    mode = image.mode
    if mode == "L":
        return image
    if mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if mode in ("1",):
        return image.convert("L")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if mode == "RGB":
        return image.convert("L")
    return image.convert("RGB").convert("L")


def to_grey_square(image: Image.Image | np.ndarray, resolution: int) -> np.ndarray:
    """Convert any PIL image or array to a ``resolution``² uint8 grey array (bilinear resize)."""
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            raise ImageSetError(f"expected a uint8 image array, got {array.dtype}")
        image = Image.fromarray(array.squeeze())
    grey = grey_image(image)
    if grey.size != (resolution, resolution):
        grey = grey.resize((resolution, resolution), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def decode_png(data: bytes | Path, where: str) -> Image.Image:
    """Decode an image fully (so truncated files fail here), naming ``where`` on failure."""
    try:
        if isinstance(data, Path):
            with Image.open(data) as im:
                im.load()
                return im.copy()
        import io

        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageSetError(f"{where}: not a readable image ({exc})") from None


class ImageSetWriter:
    """Write an image set atomically: ``with ImageSetWriter(path, labels, 32) as w: w.add(...)``."""

    def __init__(
        self,
        root: str | Path,
        labels: Sequence[str],
        resolution: int,
        source_uri: str = "",
        info: dict[str, Any] | None = None,
    ) -> None:
        self.root = Path(root)
        self.labels = list(labels)
        self.resolution = int(resolution)
        self.source_uri = source_uri
        self.info = dict(info or {})
        self.records: list[ImageRecord] = []
        self._tmp = self.root.parent / f".{self.root.name}.partial-{os.getpid()}"
        self._hash = hashlib.sha256()
        self._open = False

    def __enter__(self) -> ImageSetWriter:
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        (self._tmp / IMAGES).mkdir(parents=True)
        self._open = True
        return self

    def add(
        self,
        image: Image.Image | np.ndarray,
        label: str,
        patient_id: str = "",
        source: str = "",
        split: str = "",
        original_id: str = "",
    ) -> ImageRecord:
        """Add one image (converted to grey at the set's resolution) and return its record."""
        if not self._open:
            raise RuntimeError("ImageSetWriter.add called outside its `with` block")
        if label not in self.labels:
            raise ImageSetError(f"label {label!r} is not one of the set's labels {self.labels}")
        pixels = to_grey_square(image, self.resolution)
        name = f"{IMAGES}/{len(self.records):07d}.png"
        Image.fromarray(pixels, mode="L").save(self._tmp / name, optimize=False, compress_level=1)
        self._hash.update(label.encode())
        self._hash.update(pixels.tobytes())
        record = ImageRecord(name, label, str(patient_id), source, split, str(original_id))
        self.records.append(record)
        return record

    def __exit__(self, exc_type, exc, tb) -> None:
        self._open = False
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        try:
            with open(self._tmp / MANIFEST, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                for record in self.records:
                    writer.writerow(asdict(record))
            counts = Counter(r.label for r in self.records)
            info = {
                "labels": self.labels,
                "resolution": self.resolution,
                "count": len(self.records),
                "counts": {label: counts.get(label, 0) for label in self.labels},
                "source_uri": self.source_uri,
                "content_hash": self._hash.hexdigest(),
                **self.info,
            }
            (self._tmp / INFO).write_text(json.dumps(info, indent=2) + "\n")
            if self.root.exists():
                # KFP may pre-create an empty output folder; anything else we refuse to clobber.
                if self.root.is_dir() and not any(self.root.iterdir()):
                    self.root.rmdir()
                else:
                    raise ImageSetError(f"{self.root}: output already exists and is not empty")
            self.root.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, self.root)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise


class ImageSet:
    """A read-only image set on disk. ``ImageSet(path)`` validates the folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path, manifest_path = self.root / INFO, self.root / MANIFEST
        for path in (info_path, manifest_path):
            if not path.is_file():
                raise ImageSetError(f"{self.root}: not an image set ({path.name} is missing)")
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text())
        except json.JSONDecodeError as exc:
            raise ImageSetError(f"{info_path}: not valid JSON ({exc})") from None
        for key in ("labels", "resolution"):
            if key not in self.info:
                raise ImageSetError(f"{info_path}: missing field {key!r}")
        self.labels: list[str] = list(self.info["labels"])
        self.resolution: int = int(self.info["resolution"])
        with open(manifest_path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise ImageSetError(f"{manifest_path}: missing columns {sorted(missing)}")
            self.records: list[ImageRecord] = [
                ImageRecord(**{c: row[c] for c in COLUMNS}) for row in reader
            ]
        unknown = {r.label for r in self.records} - set(self.labels)
        if unknown:
            raise ImageSetError(f"{manifest_path}: labels {sorted(unknown)} not in {self.labels}")

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"ImageSet({str(self.root)!r}, n={len(self)}, labels={self.labels})"

    @property
    def label_indices(self) -> np.ndarray:
        """Integer label per record (index into ``labels``), manifest order."""
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[r.label] for r in self.records], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        counts = Counter(r.label for r in self.records)
        return {label: counts.get(label, 0) for label in self.labels}

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as a (resolution, resolution) uint8 array."""
        record = self.records[i]
        image = decode_png(self.root / record.file, f"{self.root}/{record.file}")
        return to_grey_square(image, self.resolution)

    def load_many(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Images at ``indices`` as an (n, resolution, resolution) uint8 array."""
        out = np.empty((len(indices), self.resolution, self.resolution), dtype=np.uint8)
        for j, i in enumerate(indices):
            out[j] = self.load(int(i))
        return out

    def load_all(self) -> np.ndarray:
        """Every image at once; for sets known to be small (tuning sets, synthetic sets)."""
        return self.load_many(range(len(self)))

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream ``(images uint8 (b, r, r), label indices (b,))`` in manifest order."""
        labels = self.label_indices
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield self.load_many(idx), labels[idx]


Labelled = Sequence[str] | ImageSet


def check_same_labels(
    reference: tuple[str, Labelled], others: dict[str, Labelled], error=ImageSetError
) -> None:
    """Raise ``error`` naming the first of ``others`` whose label names differ from ``reference``.

    ``reference`` is ``(what, labels)``, ``others`` maps what to labels: label names, or an image
    set (then named with its folder). One check for every stage that pairs two labelled things
    (image sets, classifiers, evaluations). Same names in the same order: label indices mean the
    same label on both sides.
    """

    def named(name: str, value: Labelled) -> tuple[str, list[str]]:
        if isinstance(value, ImageSet):
            return f"{name} {value.root}", list(value.labels)
        return name, list(value)

    ref_name, ref_labels = named(*reference)
    for name, value in others.items():
        name, labels = named(name, value)
        if labels != ref_labels:
            raise error(
                f"label names differ: {name} has {list(labels)}, {ref_name} has "
                f"{list(ref_labels)} (same names in the same order expected)"
            )


def slug(label: str) -> str:
    """``No Finding`` -> ``no-finding``: labels in file names (sample grids)."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "label"


def save_grid(images: np.ndarray, path: str | Path, columns: int = 4, scale: int = 2) -> None:
    """A PNG grid of uint8 (n, r, r) images, upscaled ``scale``x (nearest) for viewing."""
    n, side = len(images), images.shape[1]
    rows = max(1, -(-n // columns))
    canvas = np.zeros((rows * (side + 2), columns * (side + 2)), dtype=np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        top, left = r * (side + 2) + 1, c * (side + 2) + 1
        canvas[top : top + side, left : left + side] = image
    grid = Image.fromarray(canvas, mode="L")
    grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST).save(path)


def write_label_grids(
    images: ImageSet, out_dir: str | Path, prefix: str, n_per_label: int
) -> dict[str, str]:
    """``<prefix>_<label-slug>.png`` of each label's first ``n_per_label`` images (manifest order).

    Returns label -> file name. Generation writes ``grid_*`` of a synthetic set; the FTER cell
    writes ``real_grid_*`` of the real test set, so the report shows them side by side.
    """
    labels = images.label_indices
    names = {}
    for k, label in enumerate(images.labels):
        first = np.flatnonzero(labels == k)[:n_per_label]
        if len(first) == 0:
            continue
        names[label] = f"{prefix}_{slug(label)}.png"
        save_grid(images.load_many(first), Path(out_dir) / names[label])
    return names
