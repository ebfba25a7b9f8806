#!/usr/bin/env python3
"""Per-stage time of one or two local runs, from kfp.local's own log lines.

    python scripts/stage-times.py AFTER.log [--before BEFORE.log] [--readme README.md]

kfp.local logs ``HH:MM:SS.mmm - INFO - Executing task 'NAME'`` when a task starts and ``Task
'NAME' finished with status ...`` when it ends (some through the root logger, dated). Loop iterations share their task's name, and
several run at once, so starts and ends cannot be paired one by one; their *sum* can: the
task-seconds of a stage are the sum of its end times minus the sum of its start times, whatever
the pairing. The wall time is the first line's time to the ``Pipeline ... finished`` line.

Rows are components: KFP names a component's second and later tasks ``NAME-2``, ``NAME-3`` (the
real- and synthetic-trained ``train-classifier``, say), and those are summed under ``NAME`` so
that runs whose DAGs differ compare stage by stage (``--by-task`` keeps the task names).

With ``--before`` the table has both runs and their ratio (after / before), which is how the
README's demo timing was measured back to back on one machine; with ``--readme`` it replaces the
text between ``<!-- stage-times:begin -->`` and ``<!-- stage-times:end -->``.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_block import write_block  # noqa: E402  (the scripts' shared helper)

BEGIN, END = "<!-- stage-times:begin -->", "<!-- stage-times:end -->"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own format (``02:26:17.704 - INFO - ...``), and the root logger's when a loop's
# thread logs through it (``2026-12-02 02:44:40,086 INFO root: ...``).
_TIME = r"^(?:\d{4}-\d\d-\d\d )?(\d\d):(\d\d):(\d\d)[.,](\d{3})\b"
_START = re.compile(_TIME + r".*?\bExecuting task '([^']+)'")
_END = re.compile(_TIME + r".*?\bTask '([^']+)' finished with status (\w+)")
_ANY = re.compile(_TIME)
_PIPELINE_END = re.compile(_TIME + r".*?\bPipeline '[^']+' finished with status (\w+)")


@dataclass
class StageTimes:
    """Task-seconds and task count per stage, and the run's wall time (seconds)."""

    seconds: dict[str, float] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    wall_s: float | None = None
    status: str | None = None


def _seconds(match: re.Match, day: int) -> float:
    h, m, s, ms = (int(g) for g in match.groups()[:4])
    return day * 86400 + h * 3600 + m * 60 + s + ms / 1000


def parse_log(text: str) -> StageTimes:
    """Stage times from a kfp.local log (ANSI colours and other lines are ignored)."""
    out = StageTimes()
    first = last = None
    day, previous = 0, -1.0
    for raw in text.splitlines():
        line = _ANSI.sub("", raw)
        stamp = _ANY.match(line)
        if stamp is None:
            continue
        t = _seconds(stamp, day)
        if t < previous - 43200:  # the clock passed midnight
            day += 1
            t += 86400
        previous = t
        first = t if first is None else first
        if m := _START.match(line):
            name = m.group(5)
            out.seconds[name] = out.seconds.get(name, 0.0) - t
            out.tasks[name] = out.tasks.get(name, 0) + 1
        elif m := _END.match(line):
            name = m.group(5)
            out.seconds[name] = out.seconds.get(name, 0.0) + t
        elif m := _PIPELINE_END.match(line):
            last, out.status = t, m.group(5)
    if first is not None and last is not None:
        out.wall_s = last - first
    return out


def by_component(times: StageTimes) -> StageTimes:
    """The same times with ``NAME-2``, ``NAME-3`` ... summed into ``NAME``."""
    out = StageTimes(wall_s=times.wall_s, status=times.status)
    for name, seconds in times.seconds.items():
        component = re.sub(r"-\d+$", "", name)
        out.seconds[component] = out.seconds.get(component, 0.0) + seconds
        out.tasks[component] = out.tasks.get(component, 0) + times.tasks[name]
    return out


def _fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f}"


def table(after: StageTimes, before: StageTimes | None = None) -> str:
    """Markdown: one row per stage in the order the after-run started them, then the wall time."""
    if before is None:
        lines = ["| stage | tasks | task-seconds |", "|---|---:|---:|"]
        for name, s in after.seconds.items():
            lines.append(f"| {name} | {after.tasks[name]} | {_fmt(s)} |")
        lines.append(f"| **wall time** | | **{_fmt(after.wall_s)}** |")
        return "\n".join(lines)
    lines = [
        "| stage | tasks before | task-s before | tasks after | task-s after |",
        "|---|---:|---:|---:|---:|",
    ]
    names = list(after.seconds) + [n for n in before.seconds if n not in after.seconds]
    for name in names:
        lines.append(
            f"| {name} | {before.tasks.get(name, 0)} | {_fmt(before.seconds.get(name))} | "
            f"{after.tasks.get(name, 0)} | {_fmt(after.seconds.get(name))} |"
        )
    ratio = (
        f"{after.wall_s / before.wall_s:.3f}" if after.wall_s is not None and before.wall_s else "—"
    )
    lines.append(
        f"| **wall time** | | **{_fmt(before.wall_s)}** | | **{_fmt(after.wall_s)}** "
        f"(ratio {ratio}) |"
    )
    return "\n".join(lines)


def _read(parser: argparse.ArgumentParser, path: Path) -> StageTimes:
    if not path.is_file():
        parser.error(f"{path}: no such log")
    times = parse_log(path.read_text(errors="replace"))
    if not times.seconds:
        parser.error(f"{path}: no kfp.local 'Executing task' lines (is it a tgap run's log?)")
    if times.wall_s is None:
        parser.error(f"{path}: no 'Pipeline ... finished' line (did the run finish?)")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("after", type=Path, help="the log of a `tgap run` (its run.log or stdout)")
    parser.add_argument("--before", type=Path, help="a second run's log, to compare against")
    parser.add_argument("--readme", type=Path, help="write the table into this README's block")
    parser.add_argument("--by-task", action="store_true", help="one row per task name")
    args = parser.parse_args(argv)
    after = _read(parser, args.after)
    before = _read(parser, args.before) if args.before else None
    if not args.by_task:
        after = by_component(after)
        before = by_component(before) if before is not None else None
    block = table(after, before)
    if args.readme is None:
        print(block)
        return 0
    write_block(parser, args.readme, block, BEGIN, END, args.after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
