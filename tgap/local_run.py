"""Run the whole pipeline on this machine through kfp.local (the embedded default's path)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from tgap import storage
from tgap.artifacts import write_json
from tgap.checkout import pipeline_module
from tgap.config import Config, ConfigError
from tgap.grid import GridRow, WorkItem, config_rows, split_rows
from tgap.provenance import FAILURE, TASK_LOG, TASK_LOG_ENV
from tgap.terminal import ANSI, route_output

log = logging.getLogger("tgap")

REPORT_FILES = ("results.csv", "results.json", "report.html", "summary.md", "metrics.json")
RUN_LOG = "run.log"


class TaskFailed(RuntimeError):
    """A pipeline task failed; the message is the task's own, ``lines()`` what the CLI ends with."""

    def __init__(self, task: str, row: WorkItem | None, message: str, log: Path | None):
        self.task, self.row, self.message, self.log = task, row, message, log
        super().__init__(message)

    def where(self) -> str:
        if self.row is None:
            return f"task {self.task}"
        # A loop's work item: a grid row, or a per-seed item that stands for several sizes.
        return f"task {self.task} (grid row {self.row.label})"

    def lines(self) -> list[str]:
        log = f"; its full log: {self.log}" if self.log else ""
        return [f"{self.where()} failed{log}", *self.message.splitlines()]

    def last_output(self, count: int = 8) -> list[str]:
        """The task's last lines of output before its traceback (its own log only)."""
        if self.log is None or self.log.name != TASK_LOG or not self.log.is_file():
            return []
        text = self.log.read_text(errors="replace")
        text = text.rsplit("Traceback (most recent call last):", 1)[0]
        return [line for line in text.splitlines() if line.strip()][-count:]


def find_failure(
    run_dir: Path, loops: dict[str, list[WorkItem]] | None, kfp_message: str = "", run_log: str = ""
) -> TaskFailed:
    """The failed task of a kfp.local run folder: its name, work item (``loops``, from
    :func:`loop_work`: iteration ``i`` of ``for-loop-<n>`` is ``loops["for-loop-<n>"][i]``), own
    message and log.

    Stages leave ``failure.json`` in their task folder (``tgap.provenance.timed_stage``); a task
    that failed before its stage began is the one folder without kfp's ``executor_output.json``.
    """
    records = sorted(run_dir.glob(f"**/{FAILURE}"), key=lambda p: p.stat().st_mtime)
    if records:
        task_dir = records[-1].parent
        message = json.loads(records[-1].read_text())["message"]
    else:
        tasks = [d for d in run_dir.iterdir() if d.is_dir() and not d.name.startswith("for-loop-")]
        tasks += [d for it in run_dir.glob("for-loop-*") for d in it.iterdir() if d.is_dir()]
        unfinished = [d for d in tasks if not (d / "executor_output.json").exists()]
        task_dir = max(unfinished, key=lambda p: p.stat().st_mtime) if unfinished else None
        # The last exception line the task printed (its traceback is in the run's log).
        raised = re.findall(r"^\s*[\w.]*(?:Error|Exception): (.+)$", run_log, re.MULTILINE)
        message = raised[-1] if raised else "no message recorded; the task's error is in the log"
        if task_dir is None:  # kfp.local's own words: "Inner task failed: 'name' inside ..."
            named = re.search(r"Inner task failed: '([^']+)'", kfp_message)
            return TaskFailed(named.group(1) if named else "?", None, message, None)
    row = None
    match = re.fullmatch(r"(for-loop-\d+)-iteration-(\d+)", task_dir.parent.name)
    items = (loops or {}).get(match.group(1), []) if match else []
    if match and int(match.group(2)) < len(items):
        row = items[int(match.group(2))]
    log = task_dir / TASK_LOG
    return TaskFailed(
        task_dir.name, row, message, log if log.is_file() else run_dir.parent.parent / RUN_LOG
    )


def loop_work(spec: Any, rows: list[GridRow]) -> dict[str, list[WorkItem]] | None:
    """Each ``dsl.ParallelFor`` task of ``spec`` (``for-loop-<n>``, also kfp.local's folder name)
    -> the work items it iterates over for grid ``rows`` (``tgap.grid.split_rows``): its
    ``grid-items-<kind>`` producer names the kind. None when the spec has another shape."""
    items = split_rows(rows)
    tasks = spec.root.dag.tasks
    loops = {}
    for name, task in tasks.items():
        if task.WhichOneof("iterator") is None:
            continue
        # Membership tests, not [] on a missing key, which would add an entry to the spec.
        channel = task.parameter_iterator.items.input_parameter
        if channel not in task.inputs.parameters:
            return None
        producer = task.inputs.parameters[channel].task_output_parameter.producer_task
        kind = (
            tasks[producer].task_info.name.removeprefix("grid-items-") if producer in tasks else ""
        )
        if kind not in items:
            return None
        loops[name] = items[kind]
    return loops


def count_tasks(spec: Any, loops: dict[str, list[WorkItem]] | None) -> int | None:
    """The container tasks a run of ``spec`` executes (for the live view): a task outside a loop
    runs once, a loop's tasks once per work item (``loops``, from :func:`loop_work`). None when
    the spec has another shape (the view then shows no total)."""
    if loops is None:
        return None
    total = 0
    for name, task in spec.root.dag.tasks.items():
        if name not in loops:
            total += 1
        elif task.component_ref.name in spec.components:
            total += len(spec.components[task.component_ref.name].dag.tasks) * len(loops[name])
        else:
            return None
    return total


def resolve_local_paths(config: Config) -> Config:
    """Make local paths in the config absolute (kfp.local tasks may run from another folder).

    Fails early, naming the key, when a local path that a stage will read does not exist.
    URIs (s3://, gs://) and preset names (tiny-pixel) are left as they are.
    """

    def local(value: str, key: str, must_exist: bool) -> str:
        if not value or storage.is_remote(value):
            return value
        try:
            path = storage.local_path(value).expanduser()
        except storage.StorageError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if not path.exists():
            if must_exist:
                raise ConfigError(f"{key}: {value} does not exist (looked in {path.resolve()})")
            return value
        return str(path.resolve())

    if not config.data.source:  # the library names no default data
        raise ConfigError("data.source: not set (expected a folder, file or URI of the images)")
    data = dataclasses.replace(config.data, source=local(config.data.source, "data.source", True))
    diffusion = dataclasses.replace(
        config.diffusion,
        tokenizer=local(config.diffusion.tokenizer, "diffusion.tokenizer", False),
        base_model=local(config.diffusion.base_model, "diffusion.base_model", False),
    )
    select = dataclasses.replace(
        config.select,
        clip_weights=local(config.select.clip_weights, "select.clip_weights", True),
        curated_source=local(config.select.curated_source, "select.curated_source", True),
        external_sets={
            name: local(uri, f"select.external_sets.{name}", True)
            for name, uri in config.select.external_sets.items()
        },
    )
    classifier = dataclasses.replace(
        config.classifier, weights=local(config.classifier.weights, "classifier.weights", True)
    )
    return dataclasses.replace(
        config, data=data, diffusion=diffusion, select=select, classifier=classifier
    )


def find_report_folder(pipeline_root: Path, cache_dir: Path | None = None) -> Path:
    """The report task's `results` artifact inside a kfp.local pipeline root, or (when the
    report was a cache hit) the one a cache entry in ``cache_dir`` points at."""
    found = sorted(
        pipeline_root.glob("**/report/results"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if not found and cache_dir is not None:
        entries = sorted(Path(cache_dir).glob("*.json"), key=lambda p: p.stat().st_mtime)
        for entry in reversed(entries):
            for uri in re.findall(r'"([^"]*/report/results)"', entry.read_text()):
                if Path(uri).is_dir():
                    found.append(Path(uri))
    if not found:
        raise RuntimeError(f"{pipeline_root}: the pipeline finished but wrote no report artifact")
    return found[0]


def run_local(
    config: Config,
    output_dir: str | Path,
    pipeline_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
    verbose: bool = False,
) -> Path:
    """Run the pipeline for ``config`` with kfp.local; copy the report files into ``output_dir``.

    Every stage runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), the
    same component code a cluster runs in containers. Per-stage artifacts stay under
    ``output_dir/artifacts``. With ``pipeline_file``, the compiled spec is loaded and run instead
    of the Python DAG (what a cluster runs), with every parameter taken from ``config``.
    ``cache_dir``: kfp.local's task cache (default: inside this run's folder, so nothing is
    reused across runs); give two runs the same one and the second reuses unchanged tasks.
    Every task's output goes to ``output_dir/run.log``; the terminal shows a live view of the
    DAG (``tgap.terminal``), or with ``verbose`` every task's output as kfp.local streams it.
    """
    from kfp import components

    dag = pipeline_module()
    config = resolve_local_paths(config)
    output_dir = Path(output_dir)
    for name in REPORT_FILES:
        if (output_dir / name).exists():
            raise FileExistsError(
                f"{output_dir} already holds a run ({name}); choose another --output or remove it"
            )
    pipeline_root = output_dir / "artifacts"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "config.json", config.to_dict())

    _init_kfp_local(pipeline_root, cache_dir)
    if pipeline_file is None:
        # Local tasks run in this Python, not in the images: any tag will do.
        pipeline = dag.build_pipeline(config, allow_floating_tag=True)
    else:
        pipeline = components.load_component_from_file(str(pipeline_file))
    started = time.perf_counter()
    before = set(pipeline_root.iterdir())
    loops = loop_work(pipeline.pipeline_spec, config_rows(config))
    try:
        with (
            _task_logs_on(),
            route_output(output_dir / RUN_LOG, verbose, count_tasks(pipeline.pipeline_spec, loops)),
        ):
            pipeline(**dag.pipeline_arguments(config))
    except RuntimeError as exc:
        raise _record_failure(exc, output_dir, pipeline_root, before, loops, started) from None
    elapsed = time.perf_counter() - started

    report_dir = find_report_folder(pipeline_root, Path(cache_dir) if cache_dir else None)
    for name in REPORT_FILES:
        if (report_dir / name).exists():
            shutil.copyfile(report_dir / name, output_dir / name)
    write_json(
        output_dir / "run.json",
        {"status": "succeeded", "seconds": round(elapsed, 1), "report_artifact": str(report_dir)},
    )
    log.info("pipeline finished in %.0f s; report in %s", elapsed, output_dir / "report.html")
    return output_dir


def _init_kfp_local(pipeline_root: Path, cache_dir: str | Path | None) -> None:
    """kfp.local with every task a subprocess of this Python, errors raised, and its task
    cache (``cache_dir``, else inside this run's folder)."""
    import warnings

    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root.resolve()),
        raise_on_error=True,
        # The cache lives inside this run's folder: within a run, the real-trained classifier
        # (same inputs in every branch of a seed) is trained once; across runs nothing is reused.
        enable_caching=True,
        cache_root=str(Path(cache_dir).resolve()) if cache_dir else None,
    )
    # Expected here, and said once instead: the tasks name the project's images, and resource
    # and accelerator requests only mean something on a cluster.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    log.info("kfp.local: running every task in this Python; images and GPU requests are ignored")


@contextlib.contextmanager
def _task_logs_on():
    """Set TASK_LOG_ENV for the tasks this Python starts; restore it after."""
    env = os.environ.get(TASK_LOG_ENV)
    os.environ[TASK_LOG_ENV] = "1"
    try:
        yield
    finally:
        if env is None:
            os.environ.pop(TASK_LOG_ENV, None)
        else:
            os.environ[TASK_LOG_ENV] = env


def _record_failure(
    exc: RuntimeError,
    output_dir: Path,
    pipeline_root: Path,
    before: set[Path],
    loops: dict[str, list[dict]] | None,
    started: float,
) -> Exception:
    """Write the failed run's ``run.json`` (the failing task, its row and log) and return the
    error that names them."""
    # This run's folder (not kfp.local's .kfp_cache, which is also new on a first run).
    new = [
        d
        for d in pipeline_root.iterdir()
        if d.is_dir() and d not in before and not d.name.startswith(".")
    ]
    run_dir = max(new, key=lambda p: p.stat().st_mtime) if new else pipeline_root
    kfp_message = ANSI.sub("", str(exc))
    run_log = (output_dir / RUN_LOG).read_text(errors="replace")
    failure = find_failure(run_dir, loops, kfp_message, run_log)
    record = {
        "status": "failed",
        "task": failure.task,
        "row": failure.row.to_item() if failure.row is not None else None,
        "message": failure.message,
        "log": str(failure.log) if failure.log else str(output_dir / RUN_LOG),
        "kfp": kfp_message,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (output_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return failure
