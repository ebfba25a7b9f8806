"""Reading a finished local run's folder (results.csv, task artifacts) in the kfp.local tests.
A helper module (like tiny.py and servers.py), so no test module imports another."""

from __future__ import annotations

import csv
from pathlib import Path


def result_rows(run: Path) -> list[dict]:
    """results.csv of the run folder ``run``, one dict per grid cell."""
    with open(run / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def task_outputs(run: Path, task: str, output: str) -> list[Path]:
    """Every ``output`` artifact of the tasks named ``task*`` (all loop iterations), sorted."""
    return sorted((run / "artifacts").glob(f"**/{task}*/{output}"))
