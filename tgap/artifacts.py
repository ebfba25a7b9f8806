"""The artifacts that pass between stages and the report, and how they are written.

One definition per artifact, used by the stage that writes it and by every reader:

- :class:`Evaluation` — ``metrics.json`` of evaluate-classifier (one direction: S→R, R→S, R→R);
- :class:`SelectionReport` — ``selection.json`` of select, beside the tuning set;
- :class:`TrainingLog` — ``training_log.json`` of fine-tune;
- :class:`CellArtifact` — ``cell.json`` of compute-FTER, the report's input.

Each has ``to_json()`` (the dict written) and ``from_json(dict)`` (checks the keys every reader
needs, names the file on a problem). Every JSON file is written through :func:`write_json`:
atomically (a temp file, then a rename, so a killed stage never leaves half a file) and
strict (NaN and inf as ``null``, numpy as Python).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactError(ValueError):
    """An artifact file is missing or malformed; the message names the file and the key."""


# --------------------------------------------------------------------------- writing


def json_safe(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python and non-finite floats into None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` via a temp file and a rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | Path, value: Any, indent: int | None = 2, **dumps: Any) -> None:
    """``value`` as strict JSON (``json_safe``) plus a newline, written atomically."""
    write_text(path, json.dumps(json_safe(value), indent=indent, **dumps) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file; ArtifactError naming it when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
