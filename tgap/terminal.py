"""What a person sees while ``tgap run`` works: one live view of the DAG, not every task's output.

kfp.local (2.17.0) writes everything to ``sys.stdout``: its own log records through a root-logger
``StreamHandler(sys.stdout)`` that ``kfp.local.logging_utils.local_logger_context`` installs per
task ("Executing task 'ingest'", "Task 'ingest' finished with status SUCCESS", "Task ingest cache
hit"), and each task subprocess's merged stdout and stderr, line by line, through ``print``.
``route_output`` puts a ``RunOutput`` in ``sys.stdout`` for the run: every line goes to
``run.log``; with ``verbose`` it is also streamed as before, else ``LiveView`` reads kfp.local's
lines as events and shows tasks done / total, what runs now and the elapsed time, updated in
place on a terminal and as an occasional plain line elsewhere (CI, pipes), plus the lines that
matter: warnings (each text once) and failed tasks.
"""

from __future__ import annotations

import builtins
import logging
import re
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own log lines (kfp/local/task_dispatcher.py, orchestrator/task_executor.py).
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (SUCCESS|FAILURE)")
CACHED = re.compile(r"Task (\S+) cache hit")
# A kfp.local log record at WARNING or above, or a Python warning a task printed.
KFP_WARNING = re.compile(r" - (WARNING|ERROR) - (.+)")
TASK_WARNING = re.compile(r"\b(\w*Warning): (.+)")
# kfp.local's own record format (logging_utils.local_logger_context), which KFP_WARNING reads.
KFP_LOG_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"
# Seconds between two progress lines when the output is not a terminal.
PLAIN_INTERVAL_S = 30.0


@dataclass(frozen=True)
class Event:
    """One thing a run's output says: a task started, finished (done/failed/cached), a warning."""

    kind: str  # "started" | "done" | "cached" | "failed" | "warning"
    text: str  # the task's name, or the warning


def parse_line(line: str) -> Event | None:
    """The event a line of kfp.local's output stands for; None for a task's ordinary output."""
    line = ANSI.sub("", line).strip()
    if match := STARTED.search(line):
        return Event("started", match.group(1))
    if match := FINISHED.search(line):
        return Event("done" if match.group(2) == "SUCCESS" else "failed", match.group(1))
    if match := CACHED.search(line):
        return Event("cached", match.group(1))
    if match := KFP_WARNING.search(line):
        return Event("warning", match.group(2).strip())
    if match := TASK_WARNING.search(line):
        return Event("warning", f"{match.group(1)}: {match.group(2).strip()}")
    return None


def stage_of(task: str) -> str:
    """kfp.local names a pipeline's second use of a component ``train-classifier-2``."""
    return re.sub(r"-\d+$", "", task)


def elapsed_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class LiveView:
    """Tasks done / total, what runs now and the elapsed time, on ``stream``.

    ``tty``: one status line rewritten in place (carriage return), with notable lines printed
    above it. Otherwise plain lines: one when the run starts, at most one progress line every
    ``interval`` seconds (and only when something changed), one per notable line, one at the end.
    ``total`` may be None when the task count is unknown.
    """

    def __init__(
        self,
        stream: TextIO,
        total: int | None,
        tty: bool,
        interval: float = PLAIN_INTERVAL_S,
        clock: Any = time.monotonic,
    ):
        self.stream, self.total, self.tty, self.interval, self.clock = (
            stream, total, tty, interval, clock
        )  # fmt: skip
        self.started = clock()
        self.running: Counter[str] = Counter()
        self.done = self.cached = 0
        self.failed: list[str] = []
        self.warnings: set[str] = set()
        self.last_plain = self.started
        self.changed = False
        self.lock = threading.Lock()

    def status(self) -> str:
        total = f"/{self.total}" if self.total else ""
        cached = f" ({self.cached} cached)" if self.cached else ""
        running = ", ".join(
            f"{name} x{n}" if n > 1 else name for name, n in sorted(self.running.items())
        )
        return (
            f"[{elapsed_text(self.clock() - self.started)}] {self.done}{total} tasks done{cached}"
            + (f"; running: {running}" if running else "")
        )

    def begin(self, run_log: Path | str) -> None:
        total = f"{self.total} tasks" if self.total else "tasks"
        self._line(f"tgap run: {total}; every task's full output goes to {run_log}")

    def handle(self, event: Event) -> None:
        with self.lock:
            if event.kind == "started":
                self.running[stage_of(event.text)] += 1
            elif event.kind in ("done", "failed"):
                self._finish(stage_of(event.text))
                if event.kind == "failed":
                    self.failed.append(event.text)
                    self._line(f"task {event.text} failed")
                else:
                    self.done += 1
            elif event.kind == "cached":
                self.done += 1
                self.cached += 1
            elif event.kind == "warning" and event.text not in self.warnings:
                self.warnings.add(event.text)
                self._line(f"warning: {event.text}")
            self.changed = True
            self._refresh()

    def tick(self) -> None:
        """Redraw (a terminal's clock) or, off a terminal, print progress when it is due."""
        with self.lock:
            self._refresh()

    def end(self, ok: bool) -> None:
        with self.lock:
            if self.tty:
                self.stream.write("\r\x1b[K")
            if self.failed:
                outcome = f"stopped: {', '.join(self.failed)} failed"
            else:
                outcome = "finished" if ok else "stopped"
            self.stream.write(f"{self.status()}; {outcome}\n")
            self.stream.flush()

    def _finish(self, stage: str) -> None:
        self.running[stage] -= 1
        if self.running[stage] <= 0:
            del self.running[stage]

    def _line(self, text: str) -> None:
        """A line that stays (above the status line on a terminal)."""
        prefix = "\r\x1b[K" if self.tty else ""
        self.stream.write(f"{prefix}{text}\n")
        self.stream.flush()

    def _refresh(self) -> None:
        if self.tty:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            self.stream.write("\r\x1b[K" + self.status()[:width])
            self.stream.flush()
        elif self.changed and self.clock() - self.last_plain >= self.interval:
            self.stream.write(self.status() + "\n")
            self.stream.flush()
            self.last_plain, self.changed = self.clock(), False


class RunOutput:
    """``sys.stdout`` during a run: every line to ``run.log``; to ``stream`` (verbose) or the
    view. Writes after ``close`` (a log handler kfp.local left behind) reach the stream only."""

    def __init__(self, run_log: Path, stream: TextIO, view: LiveView | None):
        self.file: TextIO | None = open(run_log, "a")
        self.stream, self.view = stream, view
        self.pending = ""
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            if self.file is not None:
                self.file.write(text)
            if self.view is None or self.file is None:
                return self.stream.write(text)
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if event := parse_line(line):
                self.view.handle(event)
        return len(text)

    def flush(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.flush()
        self.stream.flush()

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
                self.file = None

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextmanager
def route_output(
    run_log: Path, verbose: bool, total: int | None, stream: TextIO | None = None
) -> Iterator[RunOutput]:
    """For the ``with`` block: ``sys.stdout`` and the root logger into ``run.log`` and the view
    (with ``verbose``: into ``run.log`` and this process's stdout, as kfp.local prints them).

    The root logger's handlers and level, and ``builtins.print``, are restored at the end:
    kfp.local swaps them per task from several threads (``local_logger_context`` and
    ``indented_print`` in its loop's thread pool), and an interleaving can leave its handler,
    which writes to this run's closed log file, installed after the run (the "I/O operation on
    closed file" logging error after "pipeline finished"), and ``print`` indenting every line
    the process prints afterwards (the results table; the next command in the same process).
    """
    stream = stream or sys.stderr
    view = None if verbose else LiveView(stream, total, tty=stream.isatty())
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved_stdout, saved_print = sys.stdout, builtins.print
    output = RunOutput(run_log, saved_stdout if verbose else stream, view)
    sys.stdout = output
    # Records kfp.local logs outside its per-task contexts ("Skipping task ...") go there too.
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter(KFP_LOG_FORMAT))
    root.handlers[:] = [handler]
    root.setLevel(min(level, logging.INFO) or logging.INFO)  # kfp.local's records, or debug
    ticking = threading.Event()
    ticker = None
    if view is not None:
        view.begin(run_log)
        ticker = threading.Thread(target=_tick, args=(view, ticking), daemon=True)
        ticker.start()
    ok = False
    try:
        yield output
        ok = True
    finally:
        ticking.set()
        if ticker is not None:
            ticker.join()
        sys.stdout, builtins.print = saved_stdout, saved_print
        output.flush()
        output.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        if view is not None:
            view.end(ok)


def _tick(view: LiveView, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        view.tick()
