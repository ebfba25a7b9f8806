"""The image-set artifact every stage reads and writes.

An image set is a folder of a few large objects, sized for object storage (a 20,000-image set
is 21 objects, not 20,002)::

    dataset.json       the manifest: labels, resolution, counts per label, source URI, content
                       hash, extra info, the shard list, and one record per image (file, label,
                       patient_id, source, split, original_id, and where its PNG lies: shard,
                       byte offset, byte size)
    shard-00000.tar    uncompressed tar of up to ``shard_size`` grey 8-bit PNGs (0000000.png,
    shard-00001.tar    0000001.png, ...), all of the same square resolution, in manifest order

Readers stream: ``load``/``load_many`` seek to a record's offset and read its bytes (no tar
scan), ``iter_batches`` decodes one batch at a time. Any ``tar`` lists or extracts a shard. Writers
build the set in a sibling temp folder and rename it into place on success, so a failed stage
never leaves a half-written artifact. A folder in the former per-image layout (``manifest.csv`` +
``images/``) is refused with a message saying to re-make it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

INFO = "dataset.json"
FORMAT = "tgap-image-set/tar-shards-1"
# Images per shard: a shard of 1,000 PNGs is 0.1-100 MB from 32 to 512 px, a size object stores
# move at full bandwidth, and a 20,000-image set is 20 shards.
SHARD_SIZE = 1000
COLUMNS = ("file", "label", "patient_id", "source", "split", "original_id")
WHERE_COLUMNS = ("shard", "offset", "size")  # the record's PNG: shard index, byte offset, bytes
# Manifest keys that describe the layout; a writer's ``info`` cannot use them.
LAYOUT_KEYS = ("image_set_format", "shard_size", "shards", "columns", "records")
OLD_MANIFEST = "manifest.csv"  # the per-image layout before shards (manifest.csv + images/)


class ImageSetError(ValueError):
    """An image set on disk is missing, malformed or inconsistent; the message says where."""


@dataclass(frozen=True)
class ImageRecord:
    """One manifest record. ``file`` is the PNG's member name in its shard (unique in the set)."""

    file: str
    label: str
    patient_id: str = ""
    source: str = ""
    split: str = ""
    original_id: str = ""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.tar"


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
        source = data if isinstance(data, Path) else io.BytesIO(data)
        with Image.open(source) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageSetError(f"{where}: not a readable image ({exc})") from None


def encode_png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG", optimize=False, compress_level=1)
    return out.getvalue()


class _ShardWriter:
    """Appends PNGs to numbered uncompressed tar shards and says where each one's bytes lie."""

    def __init__(self, folder: Path, shard_size: int) -> None:
        self.folder, self.shard_size = folder, shard_size
        self.shards: list[dict[str, Any]] = []  # {"file", "count", "bytes"} per closed shard
        self._file: BinaryIO | None = None
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def add(self, name: str, data: bytes) -> tuple[int, int, int]:
        """Write member ``name``; return (shard index, byte offset of its data, byte size)."""
        if self._tar is None or self._count == self.shard_size:
            self.close()
            self._file = open(self.folder / shard_name(len(self.shards)), "wb")
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
            self._count = 0
        # Fixed metadata: the same images give the same bytes (cache keys, content checks).
        member = tarfile.TarInfo(name)
        member.size, member.mode, member.mtime = len(data), 0o644, 0
        header = member.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")
        offset = self._file.tell() + len(header)
        self._tar.addfile(member, io.BytesIO(data))
        self._count += 1
        return len(self.shards), offset, len(data)

    def close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.close()
        path = self.folder / shard_name(len(self.shards))
        self.shards.append({"file": path.name, "count": self._count, "bytes": path.stat().st_size})
        self._tar = self._file = None


def write_manifest(path: Path, manifest: dict[str, Any], rows: list[list]) -> None:
    """``manifest`` as indented JSON plus ``records`` last, one record per line (readable)."""
    head = json.dumps(manifest, indent=2)  # "{\n  ...\n}"
    lines = ",\n".join("    " + json.dumps(row) for row in rows)
    records = "[\n" + lines + "\n  ]" if rows else "[]"
    path.write_text(head[:-2] + ',\n  "records": ' + records + "\n}\n")


class ImageSetWriter:
    """Write an image set atomically: ``with ImageSetWriter(path, labels, 32) as w: w.add(...)``.

    ``shard_size`` images go into each tar shard (the last one holds the rest).
    """

    def __init__(
        self,
        root: str | Path,
        labels: Sequence[str],
        resolution: int,
        source_uri: str = "",
        info: dict[str, Any] | None = None,
        shard_size: int = SHARD_SIZE,
    ) -> None:
        if int(shard_size) < 1:
            raise ValueError(f"shard_size {shard_size}: expected at least 1 image per shard")
        self.root = Path(root)
        self.labels = list(labels)
        self.resolution = int(resolution)
        self.source_uri = source_uri
        self.info = dict(info or {})
        taken = set(self.info) & set(LAYOUT_KEYS)
        if taken:
            raise ValueError(f"info keys {sorted(taken)} are the image set's own (layout) keys")
        self.shard_size = int(shard_size)
        self.records: list[ImageRecord] = []
        self._where: list[tuple[int, int, int]] = []
        self._tmp = self.root.parent / f".{self.root.name}.partial-{os.getpid()}"
        self._hash = hashlib.sha256()
        self._shards: _ShardWriter | None = None

    def __enter__(self) -> ImageSetWriter:
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._tmp.mkdir(parents=True)
        self._shards = _ShardWriter(self._tmp, self.shard_size)
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
        if self._shards is None:
            raise RuntimeError("ImageSetWriter.add called outside its `with` block")
        if label not in self.labels:
            raise ImageSetError(f"label {label!r} is not one of the set's labels {self.labels}")
        pixels = to_grey_square(image, self.resolution)
        name = f"{len(self.records):07d}.png"
        self._where.append(self._shards.add(name, encode_png(pixels)))
        self._hash.update(label.encode())
        self._hash.update(pixels.tobytes())
        record = ImageRecord(name, label, str(patient_id), source, split, str(original_id))
        self.records.append(record)
        return record

    def __exit__(self, exc_type, exc, tb) -> None:
        shards, self._shards = self._shards, None
        try:
            shards.close()
            if exc_type is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                return
            write_manifest(self._tmp / INFO, self._manifest(shards.shards), self._rows())
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

    def _manifest(self, shards: list[dict[str, Any]]) -> dict[str, Any]:
        counts = Counter(r.label for r in self.records)
        return {
            "labels": self.labels,
            "resolution": self.resolution,
            "count": len(self.records),
            "counts": {label: counts.get(label, 0) for label in self.labels},
            "source_uri": self.source_uri,
            "content_hash": self._hash.hexdigest(),
            **self.info,
            "image_set_format": FORMAT,
            "shard_size": self.shard_size,
            "shards": shards,
            "columns": [*COLUMNS, *WHERE_COLUMNS],
        }

    def _rows(self) -> list[list]:
        return [[*astuple(r), *w] for r, w in zip(self.records, self._where, strict=True)]


def _old_layout(root: Path) -> ImageSetError:
    return ImageSetError(
        f"{root}: an image set in the per-image layout (manifest.csv + images/), which this "
        f"version no longer reads; re-make it (re-run the pipeline from ingest) to get tar shards"
    )


class ImageSet:
    """A read-only image set on disk. ``ImageSet(path)`` validates the manifest and the shards'
    sizes (no image is read until asked for)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = self._read_manifest()
        rows = manifest.pop("records")
        self.shards: list[dict[str, Any]] = manifest.pop("shards")
        manifest.pop("columns")
        manifest.pop("image_set_format")
        self.info: dict[str, Any] = manifest
        self.labels: list[str] = list(manifest["labels"])
        self.resolution: int = int(manifest["resolution"])
        self._check_shards()
        self.records, self._where = self._parse_rows(rows)
        unknown = {r.label for r in self.records} - set(self.labels)
        if unknown:
            raise ImageSetError(
                f"{self.root / INFO}: labels {sorted(unknown)} not in {self.labels}"
            )

    def _read_manifest(self) -> dict[str, Any]:
        path = self.root / INFO
        if not path.is_file():
            if (self.root / OLD_MANIFEST).is_file():
                raise _old_layout(self.root)
            raise ImageSetError(f"{self.root}: not an image set ({INFO} is missing)")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ImageSetError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(manifest, dict):
            raise ImageSetError(f"{path}: expected a JSON object")
        found = manifest.get("image_set_format")
        if found != FORMAT:
            if found is None and (self.root / OLD_MANIFEST).is_file():
                raise _old_layout(self.root)
            raise ImageSetError(f"{path}: image_set_format {found!r}, expected {FORMAT!r}")
        for key in ("labels", "resolution", "shards", "columns", "records"):
            if key not in manifest:
                raise ImageSetError(f"{path}: missing field {key!r}")
        if manifest["columns"] != [*COLUMNS, *WHERE_COLUMNS]:
            raise ImageSetError(
                f"{path}: columns {manifest['columns']}, expected {[*COLUMNS, *WHERE_COLUMNS]}"
            )
        return manifest

    def _check_shards(self) -> None:
        """Every listed shard is there with the listed size (a truncated copy fails here)."""
        for k, shard in enumerate(self.shards):
            if not isinstance(shard, dict) or {"file", "bytes"} - set(shard):
                raise ImageSetError(f"{self.root / INFO}: shard {k} needs 'file' and 'bytes'")
            path = self.root / shard["file"]
            if Path(shard["file"]).name != shard["file"]:
                raise ImageSetError(f"{self.root / INFO}: shard file {shard['file']!r} is a path")
            if not path.is_file():
                raise ImageSetError(f"{path}: shard listed in {INFO} is missing")
            if path.stat().st_size != shard["bytes"]:
                raise ImageSetError(
                    f"{path}: {path.stat().st_size} bytes, {INFO} says {shard['bytes']} "
                    "(truncated or replaced)"
                )

    def _parse_rows(self, rows: Any) -> tuple[list[ImageRecord], np.ndarray]:
        where = self.root / INFO
        width = len(COLUMNS) + len(WHERE_COLUMNS)
        if not isinstance(rows, list):
            raise ImageSetError(f"{where}: 'records' is not a list")
        records, places = [], np.zeros((len(rows), 3), dtype=np.int64)
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != width:
                raise ImageSetError(f"{where}: record {i} is not a list of {width} values")
            records.append(ImageRecord(*(str(v) for v in row[: len(COLUMNS)])))
            shard, offset, size = row[len(COLUMNS) :]
            if not all(isinstance(v, int) and v >= 0 for v in (shard, offset, size)):
                raise ImageSetError(
                    f"{where}: record {i}: shard, offset, size must be integers >= 0"
                )
            if shard >= len(self.shards) or offset + size > self.shards[shard]["bytes"]:
                raise ImageSetError(
                    f"{where}: record {i} ({records[-1].file}) lies outside the listed shards"
                )
            places[i] = shard, offset, size
        return records, places

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
        return self.load_many([i])[0]

    def load_many(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Images at ``indices`` as an (n, resolution, resolution) uint8 array.

        Each shard is opened once per call and read in offset order; every read is one seek
        and one read of the PNG's bytes.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"{self.root}: index out of range for {len(self)} images")
        indices = indices % max(1, len(self))
        out = np.empty((len(indices), self.resolution, self.resolution), dtype=np.uint8)
        places = self._where[indices]
        order = np.lexsort((places[:, 1], places[:, 0]))
        fh, open_shard = None, -1
        try:
            for j in order:
                shard, offset, size = (int(v) for v in places[j])
                if shard != open_shard:
                    if fh is not None:
                        fh.close()
                    fh, open_shard = open(self.root / self.shards[shard]["file"], "rb"), shard
                fh.seek(offset)
                out[j] = self._decode(fh.read(size), int(indices[j]), shard)
        finally:
            if fh is not None:
                fh.close()
        return out

    def _decode(self, data: bytes, i: int, shard: int) -> np.ndarray:
        where = f"{self.root / self.shards[shard]['file']}:{self.records[i].file}"
        return to_grey_square(decode_png(data, where), self.resolution)

    def load_all(self) -> np.ndarray:
        """Every image at once: for small sets only (tests, benchmarks). A thesis synthetic set
        is 20,000 images of 512 px, 5.2 GB: stages stream it (``iter_batches``, ``load_many``)."""
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
