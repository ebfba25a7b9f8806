#!/usr/bin/env python3
"""Write the README's "with and without tuning" table from a tuned run and an untuned one.

    python scripts/readme-tuning.py runs/demo-tuned --before runs/demo [--readme README.md]

Per cell of the tuned run that ran a study (its ``tuning.json`` under ``artifacts/``): the
study's chosen guidance and steps, its score on real-val (ingest's validation split) for
trial 0 (generate's own setting) and for the best trial, and S→R / R→S AUROC on
real-test in the untuned run's cell of the same method, size and seed and in the tuned run's.
The two runs must share their fine-tunes (``demo-tuned.yaml`` extends ``demo.yaml``; tuning sits
between fine-tune and generate), which the script cannot check beyond the cells' identity.
Replaces the text between ``<!-- tuning:begin -->`` and ``<!-- tuning:end -->``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_block import write_block  # noqa: E402  (the scripts' shared helper)

BEGIN, END = "<!-- tuning:begin -->", "<!-- tuning:end -->"


def studies(run_dir: Path) -> dict[tuple[str, int | None, int], dict]:
    """(method, size, seed) -> tuning.json of every study the run finished (``tuned: true``).

    Records written before tuning.json named its size have size None.
    """
    found: dict[tuple[str, int | None, int], dict] = {}
    for path in sorted((run_dir / "artifacts").glob("*/**/tune-generation*/**/tuning.json")):
        record = json.loads(path.read_text())
        if record.get("tuned"):
            size = record.get("size")
            found[(record["method"], None if size is None else int(size), int(record["seed"]))] = (
                record
            )
    return found


def cells(run_dir: Path) -> dict[tuple[str, int, int], dict]:
    results = json.loads((run_dir / "results.json").read_text())
    return {(c["method"], int(c["size"]), int(c["seed"])): c for c in results["cells"]}


def _f(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def tuning_block(tuned_dir: Path, before_dir: Path, today: str) -> str:
    tuned, before, found = cells(tuned_dir), cells(before_dir), studies(tuned_dir)
    sizes = sorted({size for (_, size, _) in tuned})
    if len(sizes) > 1 and any(size is None for (_, size, _) in found):
        # An older tuning.json names its method and seed, not its size: studies of different
        # sizes could not be told apart.
        raise SystemExit(
            f"{tuned_dir}: sizes {sizes}, and a tuning.json without a size; rerun the studies "
            "or make the table from a run of one size"
        )
    run = (
        json.loads((tuned_dir / "run.json").read_text())
        if (tuned_dir / "run.json").is_file()
        else {}
    )
    seconds = run.get("seconds")
    wall = f"{seconds / 60:.1f} min" if isinstance(seconds, int | float) else "unknown"
    rows = []
    for (method, size, seed), cell in sorted(tuned.items(), key=lambda kv: kv[0]):
        study = found.get((method, size, seed)) or found.get((method, None, seed))
        if study is None:
            continue
        old = before.get((method, size, seed))
        if old is None:
            raise SystemExit(
                f"{before_dir}: no cell {method} / size {size} / seed {seed} to compare "
                f"{tuned_dir}'s tuned cell with"
            )
        p, base = study["params"], study.get("baseline") or {}
        model = sum(t.get("drawn_by") == study["sampler"] for t in study["trials"])
        rows.append(
            f"| {method} | {size} | {seed} | {p['guidance_scale']:.3g} / {p['steps']} | "
            f"{_f(base.get('value'))} → {_f(study['best']['value'])} | "
            f"{_f(old['s2r_auroc'])} → {_f(cell['s2r_auroc'])} "
            f"({cell['s2r_auroc'] - old['s2r_auroc']:+.3f}) | "
            f"{_f(old['r2s_auroc'])} → {_f(cell['r2s_auroc'])} | {study['n_trials']} ({model}) |"
        )
    if not rows:
        raise SystemExit(f"{tuned_dir}: no tune-generation study with tuned: true under artifacts/")
    objective = next(iter(found.values()))["objective"]
    return "\n".join(
        [
            f"Written by `python scripts/readme-tuning.py {tuned_dir} --before {before_dir}` on "
            f"{today}: tuned run's wall time **{wall}**. Validation = the study's {objective} on "
            "real-val (trial 0 = generate's own setting → best trial); S→R and "
            "R→S = AUROC on real-test, untuned run → tuned run, same fine-tuned model.",
            "",
            "| method | size | seed | chosen guidance / steps | validation | S→R AUROC | R→S AUROC "
            "| trials (by the sampler's model) |",
            "|---|---:|---:|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tuned", type=Path, help="a tgap run folder with generate.tune.trials > 0")
    parser.add_argument("--before", type=Path, required=True, help="the same grid, untuned")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args()
    for folder in (args.tuned, args.before):
        if not (folder / "results.json").is_file():
            parser.error(f"{folder}: no results.json (not a finished tgap run folder)")
    block = tuning_block(args.tuned, args.before, datetime.date.today().isoformat())
    write_block(parser, args.readme, block, BEGIN, END, f"{args.tuned} and {args.before}")


if __name__ == "__main__":
    main()
