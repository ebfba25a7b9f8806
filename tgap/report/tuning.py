"""The report's tune-generation section: chosen parameters per cell, trial tables, history plots.

Reads each cell's ``tuning.json`` asset (copied there by generate when the study tuned). Scores
are on real-val (ingest's validation split), never on real-test: the S→R tables above are the
real-test numbers.
"""

from __future__ import annotations

import json
from typing import Any

from tgap.report.html import Picture
from tgap.report.images import ImageBudget, shrink_png
from tgap.report.tables import Cell


def _tuning(cell: Cell) -> dict[str, Any] | None:
    path = cell.assets.get("tuning.json")
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("tuned") else None


def tuning_section(
    cells: list[Cell], budget: ImageBudget, trials_configured: int
) -> dict[str, Any]:
    """What ``templates/tuning.html`` shows: every tuned cell with its ``tuning.json`` and one
    history plot per method (its first tuned cell: smallest size, then seed)."""
    tuned = [(c, t) for c in cells if (t := _tuning(c)) is not None]
    shown: set[str] = set()
    history = []
    for cell, _ in sorted(tuned, key=lambda ct: (ct[0].size, ct[0].seed)):
        path = cell.assets.get("tuning_history.png")
        if cell.method in shown or path is None:
            continue
        shown.add(cell.method)
        history.append((cell, Picture(budget.take(shrink_png(path)), f"tuning {cell.method}")))
    return {"tuned": tuned, "history": history, "trials_configured": trials_configured}
