#!/usr/bin/env python3
"""Write the README's demo result tables from a run folder, so the README cannot drift.

    python scripts/readme-results.py runs/demo [--readme README.md] [--command "make demo"]

Reads ``results.json`` and ``run.json`` of a ``tgap run`` output folder and replaces the text
between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in the README with: the command
and the date it was written, the wall time, the mean over seeds (with the t-interval over
seeds) per method × size, R→R, the paired differences against the reference method, and the
per-stage times. Nothing in the block is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_block import write_block  # noqa: E402  (the scripts' shared helper)

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
CONTROLS = {"no-finetune": "control", "retrieval": "baseline"}
# The demo's own targets, per fine-tuned method, on the mean over seeds (README, issue 17).
TARGETS = {"r2s_auroc": ("R→S AUROC", 0.8), "s2r_auroc": ("S→R AUROC", 0.7)}


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _stat(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "—"
    if m.get("ci_low") is None:
        return _num(m["mean"])
    mark = "" if m.get("ci_kind") == "seeds" else "‡"
    return f"{_num(m['mean'])} [{_num(m['ci_low'])}, {_num(m['ci_high'])}]{mark}"


def results_block(run_dir: Path, command: str, today: str) -> str:
    """The Markdown block for the README from one run folder."""
    results = json.loads((run_dir / "results.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    seeds = results.get("seeds", [])
    seconds = run.get("seconds")
    flagged = {(f["method"], f["size"]) for f in results.get("fter_flags", [])}
    untrained = set(results.get("did_not_train", []))
    best = results.get("best", {}).get("s2r_auroc", {})
    wall = f"{seconds / 60:.1f} min" if isinstance(seconds, int | float) else "unknown"
    lines = [
        f"Written by `python scripts/readme-results.py {run_dir}` on {today} from the run of "
        f"`{command}`: wall time **{wall}**, {len(seeds)} seed(s) ({', '.join(map(str, seeds))}). "
        "Mean over seeds [95% t-interval over seeds; ‡ = one seed, test images only]; "
        "⚑ = R→S below R→R's interval (FTER > 1 there does not mean it trains better); "
        "★ = separated from the runner-up by a paired t-test.",
        "",
        "| method | size | S→R AUROC | R→S AUROC | FTER | S→R acc | R→S acc |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for agg in results["aggregate"]:
        method, size, m = agg["method"], agg["size"], agg["metrics"]
        name = method + (f" ({CONTROLS[method]})" if method in CONTROLS else "")
        name += " (did not train)" if method in untrained else ""
        name += " ★" if method in best.get(str(size), []) else ""
        fter = _stat(m.get("fter")) + (" ⚑" if (method, size) in flagged else "")
        lines.append(
            f"| {name} | {size} | {_stat(m.get('s2r_auroc'))} | {_stat(m.get('r2s_auroc'))} | "
            f"{fter} | {_stat(m.get('s2r_accuracy'))} | {_stat(m.get('r2s_accuracy'))} |"
        )
    for size, ref in sorted(results.get("reference", {}).get("r2r_auroc", {}).items()):
        lines.append(f"| R→R reference | {size} | {_stat(ref)} | | | | |")
    lines += ["", targets_line(results)]
    for metric, why in sorted(results.get("not_separated", {}).get("s2r_auroc", {}).items()):
        lines += ["", f"S→R, size {metric}: {why}."]
    paired = results.get("paired", {})
    if paired.get("rows"):
        lines += [
            "",
            f"Paired differences against `{paired['reference_method']}` (same seeds; mean "
            "[95% t-interval], paired t-test p):",
            "",
            "| method | size | seeds | Δ S→R AUROC | Δ R→S AUROC | Δ FTER |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in paired["rows"]:
            cells = []
            for key in ("s2r_auroc", "r2s_auroc", "fter"):
                d = r[key]
                p = "—" if d.get("p_value") is None else f"{d['p_value']:.3g}"
                mean = "—" if d.get("mean") is None else f"{d['mean']:+.3f}"
                cells.append(f"{mean} [{_num(d.get('ci_low'))}, {_num(d.get('ci_high'))}] p {p}")
            lines.append(
                f"| {r['method']} | {r['size']} | {len(r['seeds'])} | " + " | ".join(cells) + " |"
            )
    provenance = results.get("provenance", {})
    once, per_cell = provenance.get("run_stage_seconds", {}), provenance.get("stage_seconds", {})
    if once or per_cell:
        lines += ["", "| stage | runs | mean s | total s |", "|---|---:|---:|---:|"]
        for stage, s in once.items():
            if isinstance(s, int | float):
                lines.append(f"| {stage} | 1 | {s:.0f} | {s:.0f} |")
        for stage, s in per_cell.items():
            if isinstance(s, dict) and {"cells", "mean_s", "total_s"} <= set(s):
                lines.append(
                    f"| {stage} (per cell) | {s['cells']} | {s['mean_s']:.0f} | {s['total_s']:.0f} |"
                )
    return "\n".join(lines)


def targets_line(results: dict) -> str:
    """Whether each fine-tuned method's mean over seeds meets the demo's targets, said plainly."""
    verdicts = []
    for agg in results["aggregate"]:
        if agg["method"] in CONTROLS:
            continue
        missed = []
        for key, (name, target) in TARGETS.items():
            mean = (agg["metrics"].get(key) or {}).get("mean")
            if mean is None or not math.isfinite(mean) or mean < target:
                missed.append(f"{name} {_num(mean)} < {target}")
        where = f"`{agg['method']}` (size {agg['size']})"
        verdicts.append(f"{where} met" if not missed else f"{where} missed: {', '.join(missed)}")
    wanted = " and ".join(f"{name} ≥ {target}" for name, target in TARGETS.values())
    return f"Targets ({wanted}, means over seeds): " + "; ".join(verdicts) + "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a `tgap run` output folder (results.json)")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--command", default="make demo", help="the command that made the run")
    args = parser.parse_args(argv)
    if not (args.run_dir / "results.json").is_file():
        parser.error(f"{args.run_dir}: no results.json (is it a `tgap run` output folder?)")
    block = results_block(args.run_dir, args.command, datetime.date.today().isoformat())
    write_block(parser, args.readme, block, BEGIN, END, args.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
