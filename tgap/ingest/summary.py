"""The ingest summary: counts, patients, the split in words, what was skipped; what each image
set's ``dataset.json`` carries of it; and its Markdown for KFP's viewer."""

from __future__ import annotations

import json
from typing import Any

from tgap.config import DataConfig
from tgap.ingest.splits import SPLITS, _split_statement

# What each image set's dataset.json carries of the summary (under "ingest"): the report reads it.
DATASET_KEYS = (
    "split",
    "leakage_warning",
    "patients_known",
    "patient_ids",
    "patients",
    "shared_patients",
    "shared_patients_total",
    "cross_split_patients",
    "cross_split_patients_total",
    "test_patients_dropped",
    "unmatched_own_patient",
    "unmatched_files",
    "skipped_missing",
    "skipped_files",
    "skipped_corrupt",
    "corrupt_files",
    "on_corrupt",
    "csv_rows_left_out",
    "uncertain_policy",
    "outside_split_folders",
)


def _summary(
    data: DataConfig,
    info: dict[str, Any],
    patients_info: dict[str, Any],
    official: str,
    counts: dict[str, dict[str, int]],
    patients: dict[str, set[str]],
    corrupt: list[dict[str, str]],
    n_corrupt: int,
    fixed: list[str],
) -> dict[str, Any]:
    known = patients_info["patients_known"]
    pairs = [(a, b) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1 :]]
    shared = {f"{a}-{b}": len(patients[a] & patients[b]) for a, b in pairs} if known else None
    summary: dict[str, Any] = {
        "source": data.source,
        "format": data.format,
        "resolution": data.resolution,
        **_split_statement(data, patients_info, official),
        "split_seed": data.split.seed,
        "counts": counts,
        "totals": {s: sum(counts[s].values()) for s in SPLITS},
        **patients_info,
        "patients": {s: len(patients[s]) for s in SPLITS} if known else None,
        "shared_patients": shared,
        "shared_patients_total": sum(shared.values()) if known else None,
        "rows_read": info.get("rows_read", 0),
        "filtered_out": info.get("filtered_out", 0),
        "skipped_missing": info.get("skipped_missing", 0),
        "skipped_files": info.get("skipped_files", []),
        "on_corrupt": data.on_corrupt,
        "skipped_corrupt": n_corrupt,
        "corrupt_files": corrupt,
    }
    for key in ("csv_rows_left_out", "uncertain_policy", "outside_split_folders"):
        if key in info:
            summary[key] = info[key]
    if known:
        # Pairs the split made itself share no patient (split_by_patient); pairs fixed by the
        # dataset's own folders or split column may, and that is the dataset's leak, reported.
        cross = {
            f"{a}-{b}": n
            for (a, b), n in zip(pairs, shared.values(), strict=True)
            if n and (a in fixed or b in fixed)
        }
        made = {k: n for k, n in shared.items() if n and k not in cross}
        if made:  # split_by_patient guarantees this; a bug if not
            raise AssertionError(f"patients shared between splits: {made}")
        summary["cross_split_patients"] = cross
        summary["cross_split_patients_total"] = len(
            {p for a, b in pairs if f"{a}-{b}" in cross for p in patients[a] & patients[b]}
        )
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The ingest summary for KFP's Markdown viewer: the split in words, then the numbers."""
    lines = ["# Ingest summary", "", f"**Split:** {summary['split']}.", ""]
    if summary.get("leakage_warning"):
        lines += [f"**Warning:** {summary['leakage_warning']}", ""]
    elif summary.get("shared_patients_total") is not None:
        lines += [f"Patients shared between splits: {summary['shared_patients_total']}.", ""]
    dropped = summary.get("test_patients_dropped")
    if dropped and dropped["images"]:
        lines += [
            f"**Sealed real-test:** dropped {dropped['images']} images of {dropped['patients']} "
            f"patients who also have images in real-test (from {dropped['by_split']}; "
            "data.split.drop_test_patients).",
            "",
        ]
    if summary.get("cross_split_patients_total"):
        lines += [
            f"**Leak in the dataset itself:** {summary['cross_split_patients_total']} patients "
            f"are in more than one official split ({summary['cross_split_patients']}).",
            "",
        ]
    if summary.get("unmatched_own_patient"):
        lines += [
            f"{summary['unmatched_own_patient']} paths did not match data.patient_id_pattern; "
            "each is its own patient.",
            "",
        ]
    if summary.get("corrupt_files"):
        lines += [f"Skipped {summary['skipped_corrupt']} unreadable file(s):", ""]
        lines += [f"- `{c['file']}`: {c['reason']}" for c in summary["corrupt_files"]]
        lines.append("")
    lines += ["```json", json.dumps(summary, indent=2), "```", ""]
    return "\n".join(lines)
