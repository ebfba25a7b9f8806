"""The report's tune-generation section: chosen parameters per cell, trial tables, history plots.

Reads each cell's ``tuning.json`` asset (copied there by generate when the study tuned). Scores
are on real-val (ingest's validation split), never on real-test: the S→R tables above are the
real-test numbers.
"""

from __future__ import annotations

import json
from typing import Any

from tgap.report import html as h
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


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def tuning_section(cells: list[Cell], budget: ImageBudget, trials_configured: int) -> str:
    """HTML: a table of every tuned cell, its trial table (folded) and a history plot per method."""
    tuned = [(c, t) for c in cells if (t := _tuning(c)) is not None]
    if not tuned:
        why = (
            "generate.tune.trials is 0: generate used its own parameters (no study ran)."
            if trials_configured == 0
            else "No cell has tuning.json (the retrieval method generates nothing to tune)."
        )
        return h.absent(why)
    head = (
        "<tr><th class='text'>method</th><th>size</th><th>seed</th><th>trials</th>"
        "<th>objective</th><th>generate's own (trial 0)</th><th>best</th><th>best trial</th>"
        "<th>guidance</th><th>steps</th><th>scheduler</th><th>study seed</th></tr>"
    )
    rows = []
    for cell, t in tuned:
        baseline = t.get("baseline") or {}
        p = t["params"]
        rows.append(
            _row(
                [
                    f"<td class='text'>{h.esc(cell.method)}</td>",
                    f"<td>{cell.size}</td>",
                    f"<td>{cell.seed}</td>",
                    f"<td>{t['n_trials']}</td>",
                    f"<td>{h.esc(t['objective'])}</td>",
                    f"<td>{h.fmt(baseline.get('value'))}</td>",
                    f"<td>{h.fmt(t['best']['value'])}</td>",
                    f"<td>{t['best']['number']}</td>",
                    f"<td>{p['guidance_scale']:.3g}</td>",
                    f"<td>{p['steps']}</td>",
                    f"<td>{h.esc(p['scheduler'])}</td>",
                    f"<td>{t['study_seed']}</td>",
                ]
            )  # fmt: skip
        )
    parts = [
        f'<p class="note">{len(tuned)} cell(s) tuned. Scores are on real-val (ingest\'s '
        "validation split), never on real-test; generate then used the best "
        "trial's parameters, so the S→R tables above are after tuning.</p>",
        f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>',
    ]
    for cell, t in tuned:
        trial_head = (
            "<tr><th>#</th><th>state</th><th>value</th><th>CAS accuracy</th><th>S→R AUROC</th>"
            "<th>guidance</th><th>steps</th><th>scheduler</th><th class='text'>drawn by</th>"
            "<th>s</th></tr>"
        )
        trial_rows = "".join(
            _row(
                [
                    f"<td>{r['number']}</td>",
                    f"<td>{h.esc(r['state'])}</td>",
                    f"<td>{h.fmt(r.get('value'))}</td>",
                    f"<td>{h.fmt(r.get('cas_accuracy'))}</td>",
                    f"<td>{h.fmt(r.get('s2r_auroc'))}</td>",
                    f"<td>{h.fmt(r.get('guidance_scale'), 3)}</td>",
                    f"<td>{r.get('steps', '')}</td>",
                    f"<td>{h.esc(r.get('scheduler', ''))}</td>",
                    f"<td class='text'>{h.esc(r.get('drawn_by', ''))}</td>",
                    f"<td>{h.fmt(r.get('seconds'), 1)}</td>",
                ]
            )  # fmt: skip
            for r in t["trials"]
        )
        parts.append(
            f"<details><summary>Trials: {h.esc(cell.method)}, size {cell.size}, seed {cell.seed}"
            f"</summary><table>{trial_head}{trial_rows}</table></details>"
        )
    # One history plot per method: its first tuned cell (smallest size, then seed).
    shown: set[str] = set()
    figures = []
    for cell, _ in sorted(tuned, key=lambda ct: (ct[0].size, ct[0].seed)):
        path = cell.assets.get("tuning_history.png")
        if cell.method in shown or path is None:
            continue
        shown.add(cell.method)
        caption = (
            f"{h.esc(cell.method)} (size {cell.size}, seed {cell.seed}): each trial's score and "
            "the best so far."
        )
        figures.append(h.figure(budget.take(shrink_png(path)), caption, f"tuning {cell.method}"))
    parts.append('<div class="gallery">' + "".join(figures) + "</div>")
    return "".join(parts)


def conditioning_note(conditioning: str) -> str:
    """A statement for class-encoder runs: the prompt template did not condition the model."""
    if conditioning != "class-encoder":
        return ""
    return (
        '<div class="ok">Conditioning: a learned class encoder (one embedding per label, trained '
        "with the UNet in fine-tune) replaced the text encoder; prompt.template and prompt.words "
        "were unused for conditioning (the no-finetune control conditions on text).</div>"
    )
