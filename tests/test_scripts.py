"""The README's measured blocks are written by scripts: their parsing on known logs."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# Two concurrent `fine-tune` iterations that end in the other order than they started, a colour
# code as kfp.local writes it, a stray line, an end logged through the root logger (dated), and
# a run that passes midnight.
LOG = """\
23:59:50.000 - INFO - Running pipeline: \x1b[95m'tgap'\x1b[0m
23:59:50.500 - INFO - Executing task \x1b[96m'ingest'\x1b[0m
some stage output without a time
23:59:55.500 - INFO - Task \x1b[96m'ingest'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
23:59:56.000 - INFO - Executing task 'fine-tune'
23:59:58.000 - INFO - Executing task 'fine-tune'
00:00:10.000 - INFO - Task 'fine-tune' finished with status SUCCESS
00:00:30.000 - INFO - Task 'fine-tune' finished with status SUCCESS
00:00:30.000 - INFO - Executing task 'ingest-2'
2026-12-02 00:00:30,500 INFO root: Task 'ingest-2' finished with status SUCCESS
00:00:31.000 - INFO - Pipeline 'tgap' finished with status SUCCESS
"""


def test_stage_times_sum_concurrent_iterations_and_cross_midnight():
    script = _load("stage-times")
    times = script.parse_log(LOG)
    assert times.tasks == {"ingest": 1, "fine-tune": 2, "ingest-2": 1}
    # 14 s + 32 s (or 12 s + 34 s): the sum does not depend on which start meets which end.
    assert times.seconds["ingest"] == pytest.approx(5.0)
    assert times.seconds["fine-tune"] == pytest.approx(46.0)
    assert times.wall_s == pytest.approx(41.0) and times.status == "SUCCESS"
    # A component's later tasks (KFP's NAME-2) are summed under its name.
    grouped = script.by_component(times)
    assert grouped.tasks == {"ingest": 2, "fine-tune": 2}
    assert grouped.seconds["ingest"] == pytest.approx(5.5) and grouped.wall_s == times.wall_s


def test_stage_times_before_after_table_and_readme_block(tmp_path):
    before = tmp_path / "before.log"
    before.write_text(LOG)
    after = tmp_path / "after.log"
    after.write_text(LOG.replace("00:00:30.000", "00:00:10.000").replace("00:00:31", "00:00:11"))
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- stage-times:begin -->\nold\n<!-- stage-times:end -->\ny\n")
    done = subprocess.run(
        [sys.executable, SCRIPTS / "stage-times.py", after, "--before", before, "--readme", readme],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert text.startswith("x\n<!-- stage-times:begin -->\n") and text.endswith("end -->\ny\n")
    assert "| fine-tune | 2 | 46 | 2 | 26 |" in text
    assert "| **wall time** | | **41** | | **21** (ratio 0.512) |" in text


def test_stage_times_refuses_an_unfinished_log(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("\n".join(LOG.splitlines()[:-1]))
    done = subprocess.run([sys.executable, SCRIPTS / "stage-times.py", log],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 2 and "did the run finish?" in done.stderr.strip().splitlines()[-1]


def _run_folder(root: Path, cells: list[dict], seconds: float | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "results.json").write_text(json.dumps({"cells": cells}))
    if seconds is not None:
        (root / "run.json").write_text(json.dumps({"seconds": seconds}))
    return root


def test_readme_tuning_pairs_each_study_with_the_untuned_cell(tmp_path):
    script = _load("readme-tuning")
    cell = {"method": "random", "size": 400, "seed": 0}
    tuned = _run_folder(tmp_path / "tuned", [
        {**cell, "s2r_auroc": 0.903, "r2s_auroc": 0.617},
        {"method": "retrieval", "size": 400, "seed": 0, "s2r_auroc": 0.9, "r2s_auroc": 1.0},
    ], seconds=1755.0)  # fmt: skip
    study = tuned / "artifacts/run-1/for-loop-1-iteration-0/tune-generation/tuning"
    study.mkdir(parents=True)
    drawn = ["generate's own", "random", "random", "tpe"]
    (study / "tuning.json").write_text(json.dumps({
        "tuned": True, "method": "random", "seed": 0, "objective": "s2r-auroc", "n_trials": 4,
        "sampler": "tpe",
        "params": {"guidance_scale": 3.832, "steps": 8, "scheduler": "ddim"},
        "baseline": {"number": 0, "value": 0.798}, "best": {"number": 3, "value": 0.853},
        "trials": [{"number": i, "drawn_by": d} for i, d in enumerate(drawn)],
    }))  # fmt: skip
    # retrieval's task writes {"tuned": false}: no row
    other = tuned / "artifacts/run-1/for-loop-3-iteration-0/tune-generation/tuning"
    other.mkdir(parents=True)
    (other / "tuning.json").write_text(json.dumps({"tuned": False}))
    before = _run_folder(tmp_path / "before", [{**cell, "s2r_auroc": 0.899, "r2s_auroc": 0.956}])
    block = script.tuning_block(tuned, before, "2026-12-03")
    assert "29.2 min" in block and "s2r-auroc" in block
    rows = [line for line in block.splitlines() if line.startswith("| random")]
    assert rows == [
        "| random | 400 | 0 | 3.83 / 8 | 0.798 → 0.853 | 0.899 → 0.903 (+0.004) | 0.956 → 0.617 "
        "| 4 (1) |"
    ]
    assert not any(line.startswith("| retrieval") for line in block.splitlines())
    # an untuned run without the cell: one clear error, nothing written
    empty = _run_folder(tmp_path / "empty", [])
    with pytest.raises(SystemExit, match="no cell random / size 400 / seed 0"):
        script.tuning_block(tuned, empty, "2026-12-03")
    # two sizes and a tuning.json without its size (written before it had one): the script
    # refuses instead of guessing
    two = _run_folder(tmp_path / "two", [cell, {**cell, "size": 800}])
    (two / "artifacts").symlink_to(tuned / "artifacts")
    with pytest.raises(SystemExit, match=r"sizes \[400, 800\]"):
        script.tuning_block(two, before, "2026-12-03")
    # two sizes whose studies name their size: each row gets its own size's study and cell
    grid = _run_folder(tmp_path / "grid", [
        {**cell, "s2r_auroc": 0.80, "r2s_auroc": 0.70},
        {**cell, "size": 800, "s2r_auroc": 0.90, "r2s_auroc": 0.95},
    ])  # fmt: skip
    for i, (size, guidance) in enumerate([(400, 2.0), (800, 9.0)]):
        folder = grid / f"artifacts/run-1/for-loop-1-iteration-{i}/tune-generation/tuning"
        folder.mkdir(parents=True)
        record = json.loads((study / "tuning.json").read_text())
        record["size"], record["params"]["guidance_scale"] = size, guidance
        (folder / "tuning.json").write_text(json.dumps(record))
    grid_before = _run_folder(tmp_path / "grid-before", [
        {**cell, "s2r_auroc": 0.75, "r2s_auroc": 0.9},
        {**cell, "size": 800, "s2r_auroc": 0.85, "r2s_auroc": 0.9},
    ])  # fmt: skip
    rows = [
        line.split(" | ")[:5]
        for line in script.tuning_block(grid, grid_before, "2026-12-03").splitlines()
        if line.startswith("| random")
    ]
    assert rows == [
        ["| random", "400", "0", "2 / 8", "0.798 → 0.853"],
        ["| random", "800", "0", "9 / 8", "0.798 → 0.853"],
    ]
