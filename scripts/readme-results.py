#!/usr/bin/env python3
"""Write the README's demo result tables from a run folder, so the README cannot drift.

    python scripts/readme-results.py runs/demo [--readme README.md] [--command "make demo"]

Reads ``results.json`` and ``run.json`` of a ``tgap run`` output folder and replaces the text
between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in the README with: the command
and the date it was written, the wall time, which data chose the run's settings, per method ×
size the mean over seeds with its interval (inside [0, 1]) for the fine-tuned methods and,
apart, the controls, FTER as the ratio of mean AUROCs, utility and fidelity, every seed's
value, the comparisons with their Holm-adjusted p and the smallest difference each could
detect, and the real-equivalent sizes. Nothing in the block is typed by hand. Per-stage times
are not in it (the run's report and ``results.json`` carry them under provenance; dated timings:
docs/results.md).
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
MARKS = {"seeds+images": "", "seeds": "†", "images": "‡"}
SIDES = {"r2s_below_r2r": "below", "r2s_above_r2r": "above"}
NAMES = {"s2r_auroc": "S→R AUROC", "r2s_auroc": "R→S AUROC"}
HEAD = [
    "| method | size | S→R AUROC | R→S AUROC | FTER | utility | fidelity | S→R acc | R→S acc |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _stat(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "—"
    if m.get("ci_low") is None:
        return _num(m["mean"])
    mark = MARKS.get(m.get("ci_kind", ""), "")
    return f"{_num(m['mean'])} [{_num(m['ci_low'])}, {_num(m['ci_high'])}]{mark}"


def _detectable(mdd: float | None) -> str:
    """The smallest detectable difference; above 1 no difference of AUROCs can reach it."""
    return f"none (needs {mdd:.3f})" if mdd is not None and mdd > 1 else _num(mdd)


def _per_seed(m: dict | None) -> str:
    return "—" if not m else " / ".join(_num(v) for v in m.get("values", []))


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _row(agg: dict, best: dict, flags: dict, untrained: set) -> str:
    method, size, m = agg["method"], agg["size"], agg["metrics"]
    name = method + (" (did not train)" if method in untrained else "")
    name += " ★" if method in best.get(str(size), []) else ""
    flag = flags.get((method, size))
    fter = _stat(m.get("fter")) + (f" ⚑ {SIDES[flag]}" if flag else "")
    return (
        f"| {name} | {size} | {_stat(m.get('s2r_auroc'))} | {_stat(m.get('r2s_auroc'))} | "
        f"{fter} | {_num((m.get('utility') or {}).get('mean'))} | "
        f"{_num((m.get('fidelity') or {}).get('mean'))} | {_stat(m.get('s2r_accuracy'))} | "
        f"{_stat(m.get('r2s_accuracy'))} |"
    )


def tables(results: dict) -> list[str]:
    """Fine-tuned methods with R→R, then the controls, then every seed's value."""
    flags = {(f["method"], f["size"]): f["flag"] for f in results.get("fter_flags", [])}
    untrained = set(results.get("did_not_train", []))
    best = results.get("best", {}).get("s2r_auroc", {})
    aggregate = results["aggregate"]
    tuned = [a for a in aggregate if not a.get("control")]
    controls = [a for a in aggregate if a.get("control")]
    lines = [*HEAD, *(_row(a, best, flags, untrained) for a in tuned)]
    references = results.get("reference", {})
    for size, ref in sorted(references.get("r2r_auroc", {}).items(), key=lambda i: int(i[0])):
        acc = references.get("r2r_accuracy", {}).get(size)
        lines.append(f"| R→R reference | {size} | {_stat(ref)} | | | | | {_stat(acc)} | |")
    if controls:
        lines += ["", "Controls (not fine-tuned, never ranked):", "", *HEAD]
        lines += [_row(a, {}, flags, untrained) for a in controls]
    seeds = ", ".join(map(str, results.get("seeds", [])))
    lines += [
        "",
        f"Every seed's value (seeds {seeds} in order):",
        "",
        "| method | size | S→R AUROC | R→S AUROC | FTER |",
        "|---|---:|---|---|---|",
    ]
    for a in aggregate:
        m = a["metrics"]
        lines.append(
            f"| {a['method']} | {a['size']} | {_per_seed(m.get('s2r_auroc'))} | "
            f"{_per_seed(m.get('r2s_auroc'))} | {_per_seed(m.get('fter'))} |"
        )
    for size, ref in sorted(references.get("r2r_auroc", {}).items(), key=lambda i: int(i[0])):
        lines.append(f"| R→R | {size} | {_per_seed(ref)} | | |")
    return lines


def comparison_lines(results: dict) -> list[str]:
    """Every comparison of the report, Holm-adjusted together, with what it could detect."""
    compared = results.get("comparisons", {})
    rows = compared.get("rows", [])
    if not rows:
        return []
    power = compared.get("power", 0.8)
    lines = [
        "",
        f"Comparisons ({compared.get('family_size', len(rows))} with a p-value, Holm-adjusted "
        "together, S→R and R→S; S→R paired on the same real-test images within each seed where the cells "
        f"store their predictions). {compared.get('r2s_note', '')} **Bold**: separated after "
        f"Holm; power: the smallest difference each could detect with {power:.0%} power.",
        "",
        "| metric | size | method − against | paired by | difference [CI] | p | Holm p | "
        "could detect ≥ |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        diff = "—" if r.get("diff") is None else f"{r['diff']:+.3f}"
        diff += f" [{_num(r.get('ci_low'))}, {_num(r.get('ci_high'))}]"
        if r.get("separated"):
            diff = f"**{diff}**"
        lines.append(
            f"| {NAMES.get(r['metric'], r['metric'])} | {r['size']} | {r['method']} − "
            f"{r['against']} | {r.get('paired_by') or '—'} | {diff} | {_p(r.get('p'))} | "
            f"{_p(r.get('p_holm'))} | {_detectable(r.get('mdd'))} ({len(r['seeds'])} seeds) |"
        )
    return lines


def known_effect_line(results: dict) -> str:
    """Whether each fine-tuned method is separated from no-finetune on S→R, said plainly: the
    effect the demo is known to have, so it shows whether tgap can detect one."""
    rows = [
        r
        for r in results.get("comparisons", {}).get("rows", [])
        if r["metric"] == "s2r_auroc" and r["against"] == "no-finetune"
    ]
    if not rows:
        return ""
    verdicts = [
        f"`{r['method']}` (size {r['size']}) {'separated' if r.get('separated') else 'not separated'}"
        f" ({_num(r.get('diff'))}, Holm p {_p(r.get('p_holm'))})"
        for r in rows
    ]
    return "Fine-tuned vs `no-finetune` on S→R: " + "; ".join(verdicts) + "."


def real_equivalent_lines(results: dict, run_dir: Path) -> list[str]:
    """The real-equivalent size of each method (results.json) and summary.md's saturation line."""
    entries = results.get("real_equivalent") or []
    if not entries:
        return []
    lines = [
        "",
        "Real-equivalent size (real-train images per label whose classifier scores the set's "
        "mean S→R, read off the mean real learning curve):",
        "",
        "| method | size | S→R AUROC | real-equivalent per label | synthetic per real |",
        "|---|---:|---:|---|---:|",
    ]
    for e in entries:
        rate = e.get("exchange_rate")
        rate = f"{rate:.1f}" if isinstance(rate, int | float) and rate == rate else "–"
        lines.append(f"| {e['method']} | {e['size']} | {_num(e.get('s2r_auroc'))} | "
                     f"{e.get('text', '–')} | {rate} |")  # fmt: skip
    summary = run_dir / "summary.md"
    saturation = [
        line for line in (summary.read_text().splitlines() if summary.is_file() else [])
        if line.startswith("Synthetic curves")
    ]  # fmt: skip
    return [*lines, *(["", saturation[0]] if saturation else [])]


def results_block(run_dir: Path, command: str, today: str) -> str:
    """The Markdown block for the README from one run folder."""
    results = json.loads((run_dir / "results.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    seeds = results.get("seeds", [])
    confidence = results.get("comparisons", {}).get("confidence", 0.95)
    seconds = run.get("seconds")
    wall = f"{seconds / 60:.1f} min" if isinstance(seconds, int | float) else "unknown"
    lines = [
        f"Written by `python scripts/readme-results.py {run_dir}` on {today} from the run of "
        f"`{command}`: wall time **{wall}**, {len(seeds)} seed(s) ({', '.join(map(str, seeds))}). "
        f"Mean over seeds [{confidence:.0%} interval over seeds and test images, logit scale, "
        "inside [0, 1]; "
        "† seed spread only; ‡ one seed, test images only]. FTER = mean S→R / mean R→S (ratio "
        "of means, log-scale interval); utility = S→R / R→R, fidelity = R→S / R→R. ⚑ below / "
        "above = R→S outside R→R's interval (synthetic harder / easier to classify than real). "
        "★ = best fine-tuned method, separated from the runner-up after Holm.",
    ]
    if results.get("settings_chosen_on"):
        lines += ["", f"Settings chosen on: {results['settings_chosen_on']}."]
    lines += ["", *tables(results)]
    effect = known_effect_line(results)
    if effect:
        lines += ["", effect]
    for size, why in sorted(results.get("not_separated", {}).get("s2r_auroc", {}).items()):
        lines += ["", f"S→R, size {size}: {why}."]
    lines += comparison_lines(results)
    lines += real_equivalent_lines(results, run_dir)
    return "\n".join(lines)


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
