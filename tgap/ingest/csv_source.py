"""``csv``: a manifest with one row per image (CheXpert / MIMIC-CXR style): path, label column or
one-hot finding columns, optional patient, split and view columns."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from tgap import storage
from tgap.config import DataConfig
from tgap.ingest.rows import IngestError, Row, _list, _read_text_csv, map_labels
from tgap.ingest.splits import _split_of


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
