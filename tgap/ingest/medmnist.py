"""``medmnist-npz``: a MedMNIST ``.npz`` (``{train,val,test}_{images,labels}``); source labels are
the class numbers as strings ("0", "1"); and the ``.npz`` helpers the curated source shares.

The official test and validation splits are kept as real-test and real-val, and the official
train split is divided into pool and real-train by ``pool_fraction : train_fraction``: MedMNIST
ships no patient IDs, and PneumoniaMNIST's official test split comes from the source dataset's
own patient-disjoint test set, so it is the only split we can show shares no child with the
others.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from tgap.config import DataConfig
from tgap.ingest.rows import IngestError, Row, _list, _read, map_labels


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
