"""Splits: patient IDs, the split fractions, the split by patient, official splits, sealed test.

Splits are by patient, stratified by label, seeded by ``data.split.seed``. NIH has ``Patient ID``;
image folders and CSVs get patient IDs from ``data.patient_id_pattern`` (a regex with one group on
the path) or a patient column. Without patient IDs each image is its own patient, and the summary
says in words that the split is by image and leakage is possible. Official splits are kept:
``data.split_folders`` (image folders) and ``data.csv_format.split_column`` (CSVs) fix real-test
(and optionally real-val, pool and real-train); the rest is cut by patient into the splits no
official split fixes, in proportion to their fractions. A test patient's images in the other
splits are dropped (``data.split.drop_test_patients``, counted in the summary); a patient found in
two official splits and kept is reported, as a leak of the dataset itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from tgap.config import DataConfig, SplitConfig
from tgap.ingest.rows import LISTED_MAX, IngestError, Row
from tgap.seeding import derive_seed

SPLITS = ("pool", "train", "val", "test")


def _fractions(split: SplitConfig) -> list[float]:
    """The split's fractions in ``SPLITS`` order, checked."""
    fractions = list(split.fractions())
    if any(f < 0 or f > 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise IngestError(
            f"data.split fractions pool/train/val/test = {fractions} must each be in [0, 1] and "
            "sum to 1"
        )
    return fractions


def _rest_of(split: SplitConfig, fixed: Iterable[str]) -> SplitConfig:
    """The fractions the rows no official split fixes are cut by: the ``fixed`` splits' set to
    0, the others rescaled to sum to 1 (their proportions kept)."""
    fixed = set(fixed)
    kept = {s: f for s, f in zip(SPLITS, _fractions(split), strict=True) if s not in fixed}
    total = sum(kept.values())
    if total <= 0:
        raise IngestError(
            f"data.split: every fraction of the splits left to cut ({sorted(kept)}) is 0"
        )
    return dataclasses.replace(split, **{f"{s}_fraction": kept.get(s, 0.0) / total for s in SPLITS})


def _allocate(n: int, fractions: list[float]) -> list[int]:
    """Split ``n`` patients by ``fractions`` (largest remainder), >= 1 for every non-zero fraction."""
    exact = [n * f for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(fractions)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: counts[j])
            counts[donor] -= 1
            counts[i] += 1
    return counts


def split_by_patient(
    rows: list[Row], split: SplitConfig, labels: list[str], fixed: Iterable[str] = ()
) -> None:
    """Set ``row.split`` so no patient spans two splits, stratified by label, seeded.

    Each patient's stratum is its most frequent label (ties: the earlier of ``labels``); within
    a stratum, patients are shuffled with a seed derived from ``split.seed`` and the stratum,
    then cut by the fractions. Rows whose ``split`` is already in ``fixed`` keep it.
    (scikit-learn has no fraction-based split that is both grouped and stratified:
    StratifiedGroupKFold only makes equal folds.)
    """
    fractions = _fractions(split)
    fixed = set(fixed)
    by_patient: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row.split not in fixed:
            by_patient[row.patient_id][row.label] += 1
    rank = {label: i for i, label in enumerate(labels)}
    strata: dict[str, list[str]] = defaultdict(list)
    for patient, counts in by_patient.items():
        top = max(counts.items(), key=lambda kv: (kv[1], -rank[kv[0]]))[0]
        strata[top].append(patient)
    needed = sum(f > 0 for f in fractions)
    assignment: dict[str, str] = {}
    for label in labels:
        patients = sorted(strata.get(label, []))
        if len(patients) < needed:
            images = sum(by_patient[p][label] for p in by_patient)
            raise IngestError(
                f"label {label!r}: {len(patients)} patients ({images} images) are too few for "
                f"the split pool/train/val/test = {fractions}: every split needs at least one "
                f"patient of every label"
            )
        rng = np.random.default_rng(derive_seed(split.seed, "ingest-split", label))
        order = [patients[i] for i in rng.permutation(len(patients))]
        start = 0
        for name, count in zip(SPLITS, _allocate(len(order), fractions), strict=True):
            for patient in order[start : start + count]:
                assignment[patient] = name
            start += count
    for row in rows:
        if row.split not in fixed:
            row.split = assignment[row.patient_id]


def _limit(rows: list[Row], max_images: int | None, seed: int) -> list[Row]:
    """A seeded subset of whole patients (the last one possibly cut) of at most ``max_images``."""
    if max_images is None or len(rows) <= max_images:
        return rows
    patients = sorted({r.patient_id for r in rows})
    rng = np.random.default_rng(derive_seed(seed, "ingest-max-images"))
    rank = {patients[i]: k for k, i in enumerate(rng.permutation(len(patients)))}
    keep = sorted(range(len(rows)), key=lambda i: (rank[rows[i].patient_id], i))[:max_images]
    return [rows[i] for i in sorted(keep)]


def _split_of(mapping: dict[str, str]) -> dict[str, str]:
    """Run split keys of ``data.split_folders`` / ``split_values`` -> the row's fixed split."""
    # pool_and_train is divided later, by patient, into pool and real-train (and real-val when
    # no official split fixes it).
    return {key: ("" if key == "pool_and_train" else key) for key in mapping}


def assign_patients(rows: list[Row], data: DataConfig) -> dict[str, Any]:
    """Patient IDs from ``data.patient_id_pattern`` (group 1, searched in the relative path).

    A path it does not match is an error, or with ``on_unmatched: own-patient`` its own patient
    (counted and listed). Returns what the summary says about patients.
    """
    if data.format == "csv" and data.csv_format.patient_column:
        return {"patients_known": True, "patient_ids": f"column {data.csv_format.patient_column!r}"}
    if not data.patient_id_pattern:
        return {"patients_known": False, "patient_ids": "none (each image is its own patient)"}
    pattern = re.compile(data.patient_id_pattern)
    unmatched = []
    for row in rows:
        found = pattern.search(row.source)
        if found is None or not found.group(1):
            unmatched.append(row)
            row.patient_id = f"unmatched:{row.source}"
        else:
            row.patient_id = found.group(1)
    if unmatched and data.on_unmatched == "fail":
        raise IngestError(
            f"data.patient_id_pattern {data.patient_id_pattern!r} does not match "
            f"{len(unmatched)} of {len(rows)} paths, first {[r.source for r in unmatched[:5]]} "
            "(fix the pattern, or set data.on_unmatched: own-patient)"
        )
    return {
        "patients_known": True,
        "patient_ids": f"data.patient_id_pattern {data.patient_id_pattern!r} on the path",
        "unmatched_own_patient": len(unmatched),
        "unmatched_files": [r.source for r in unmatched[:LISTED_MAX]],
    }


def _split_statement(data: DataConfig, patients: dict[str, Any], fixed: str) -> dict[str, str]:
    """How the split was made, in words, and the leakage warning when patients are unknown."""
    if patients["patients_known"]:
        how = f"by patient ({patients['patient_ids']}), stratified by label"
        warning = ""
    else:
        how = "by image, stratified by label: no patient IDs"
        hint = (
            "set data.patient_id_pattern"
            if data.format in ("image-folder", "csv")
            else "this format has none"
        )
        warning = (
            "Patients are not known, so the split is by image and leakage is possible: images of "
            "one patient may be in more than one of pool, real-train, real-val and real-test "
            f"({hint})."
        )
    return {"split": f"{fixed}; {how}" if fixed else how, "leakage_warning": warning}


def _drop_test_patients(
    rows: list[Row], patients_known: bool, on: bool
) -> tuple[list[Row], dict[str, Any] | None]:
    """Rows without the images that test patients have outside the official test split.

    Returns the rows kept and what the summary says: None when patients are unknown (nothing
    can be checked), else how many patients and images were dropped, by the split they were in
    (``pool_and_train`` = not yet divided). With ``on`` false nothing is dropped and the count
    is 0 (those patients are then reported as shared between splits).
    """
    if not patients_known:
        return rows, None
    test_patients = {r.patient_id for r in rows if r.split == "test"} if on else set()
    kept: list[Row] = []
    dropped: list[Row] = []
    for r in rows:
        (dropped if r.split != "test" and r.patient_id in test_patients else kept).append(r)
    info = {
        "on": on,
        "patients": len({r.patient_id for r in dropped}),
        "images": len(dropped),
        "by_split": dict(sorted(Counter(r.split or "pool_and_train" for r in dropped).items())),
    }
    return kept, info


def _assign_splits(rows: list[Row], data: DataConfig, fixed: list[str]) -> None:
    """Cut the rows no official split fixes into the splits no official split fixes."""
    if all(r.split for r in rows):
        return
    if "val" not in fixed and data.split.val_fraction == 0:
        raise IngestError(
            f"{data.source}: no official validation split and data.split.val_fraction is 0: "
            "real-val would be empty (set data.split.val_fraction > 0)"
        )
    split_by_patient(rows, _rest_of(data.split, fixed), data.labels, fixed)
