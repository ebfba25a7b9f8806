"""The terminal of `tgap run`: a live view of the DAG from kfp.local's output, everything in run.log."""

import builtins
import io
import json
import logging

import pytest
from kfp.local import logging_utils, status

from tgap.config import load_config
from tgap.grid import config_rows
from tgap.local_run import count_tasks, find_failure, loop_work
from tgap.provenance import FAILURE
from tgap.terminal import Event, LiveView, RunOutput, parse_line, route_output


def _started(task: str) -> str:
    # kfp.local's own wording and colours (task_dispatcher.run_single_task_implementation).
    return f"12:00:00.000 - INFO - Executing task {logging_utils.format_task_name(task)}"


def _finished(task: str, ok: bool = True) -> str:
    state = logging_utils.format_status(status.Status.SUCCESS if ok else status.Status.FAILURE)
    return f"12:00:01.000 - INFO - Task {logging_utils.format_task_name(task)} finished with status {state}"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_kfp_local_lines_become_events_and_task_output_does_not():
    assert parse_line(_started("train-classifier-2")) == Event("started", "train-classifier-2")
    assert parse_line(_finished("ingest")) == Event("done", "ingest")
    assert parse_line(_finished("finetune", ok=False)) == Event("failed", "finetune")
    assert parse_line("12:00 - INFO - Task embed cache hit (key=abc); skipping execution.") == (
        Event("cached", "embed")
    )
    assert parse_line("    x.py:3: UserWarning: slow path") == Event(
        "warning", "UserWarning: slow path"
    )
    assert parse_line("    step 10/180 loss 0.12") is None


def _fake_run(tasks: int, lines_per_task: int, seconds_per_task: float) -> list[str]:
    """kfp.local's output for ``tasks`` tasks, two at a time, each printing ``lines_per_task``."""
    out = []
    for i in range(0, tasks, 2):
        pair = [f"generate-{i}", f"finetune-{i + 1}"][: tasks - i]
        out += [_started(t) for t in pair]
        out.append(f"advance {seconds_per_task * len(pair) / 2}")
        for step in range(lines_per_task):
            out.append(f"    step {step} of {pair[0]}")
            out.append(f"    x.py:3: FutureWarning: the same warning from {len(pair)} tasks")
        out += [_finished(t) for t in pair]
    return out


def test_off_a_terminal_the_view_prints_occasional_lines_and_run_log_gets_everything(tmp_path):
    clock, stream = Clock(), io.StringIO()
    view = LiveView(stream, total=160, tty=False, interval=30, clock=clock)
    output = RunOutput(tmp_path / "run.log", stream, view)
    view.begin(tmp_path / "run.log")
    # 160 tasks of 15 s, two at a time, with 100 lines each: 20 min, 16,000 lines of output.
    for line in _fake_run(160, 100, 15.0):
        if line.startswith("advance "):
            clock.now += float(line.split()[1])
            view.tick()
        else:
            print(line, file=output)
    output.close()
    view.end(ok=True)
    shown = stream.getvalue().splitlines()
    assert len(shown) <= 2 + 1200 / 30 + 1  # begin, end, one warning, a line per 30 s at most
    assert len(shown) > 30
    assert shown[0].startswith("tgap run: 160 tasks;")
    assert shown[-1] == "[20m00s] 160/160 tasks done; finished"
    assert sum("FutureWarning" in line for line in shown) == 1  # each warning once
    assert "running: finetune, generate" in shown[2]  # the stage, not kfp's -<n> suffix
    logged = (tmp_path / "run.log").read_text().splitlines()
    assert len(logged) == 160 * 2 + 80 * 100 * 2  # every line, in full


def test_on_a_terminal_one_status_line_is_rewritten_in_place(tmp_path):
    clock, stream = Clock(), io.StringIO()
    view = LiveView(stream, total=4, tty=True, clock=clock)
    output = RunOutput(tmp_path / "run.log", stream, view)
    for line in [_started("ingest"), "    reading", _finished("ingest"), _started("embed")]:
        print(line, file=output)
    clock.now = 75
    view.tick()
    assert stream.getvalue().rsplit("\r\x1b[K", 1)[-1] == "[1m15s] 1/4 tasks done; running: embed"
    print(_finished("embed", ok=False), file=output)
    view.end(ok=False)
    text = stream.getvalue()
    assert text.count("\n") == 2  # the failed task, then the last status
    assert text.endswith("[1m15s] 1/4 tasks done; stopped: embed failed\n")


def test_a_log_handler_kfp_local_leaves_behind_cannot_break_the_line_after_the_run(
    tmp_path, capsys
):
    root = logging.getLogger()
    before = root.handlers[:]
    with route_output(tmp_path / "run.log", verbose=False, total=None):
        # Two loop threads' kfp.local logger contexts, interleaved: the first to leave restores
        # the root logger's handlers; the second then restores the first one's handler, which
        # writes to this run's stdout, whose log file closes with the run.
        first, second = logging_utils.local_logger_context(), logging_utils.local_logger_context()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
        assert root.handlers != before
        logging.getLogger("kfp").warning("inside the run")
        logging.info("Skipping task embed: upstream task(s) failed.")  # outside its contexts
    assert root.handlers == before
    logging.getLogger("tgap").warning("pipeline finished")
    err = capsys.readouterr().err
    assert "Logging error" not in err and "closed file" not in err
    run_log = (tmp_path / "run.log").read_text()
    assert "inside the run" in run_log and "Skipping task embed" in run_log
    assert "warning: inside the run" in err and "Skipping" not in err


def test_print_indented_by_kfp_local_loop_threads_is_restored_after_the_run(tmp_path, capsys):
    before = builtins.print
    with route_output(tmp_path / "run.log", verbose=False, total=None):
        # Two loop threads' indented_print contexts, interleaved as in the ParallelFor's pool:
        # the second saves the first's indenting print and restores it last.
        first, second = logging_utils.indented_print(), logging_utils.indented_print()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
        assert builtins.print is not before
    assert builtins.print is before
    print("total tasks=1")
    assert capsys.readouterr().out == "total tasks=1\n"


def test_verbose_streams_everything_and_still_logs_it(tmp_path, capsys):
    with route_output(tmp_path / "run.log", verbose=True, total=3):
        print(_started("ingest"))
        print("    every line of a task")
    out = capsys.readouterr()
    assert "every line of a task" in out.out and "tasks done" not in out.err
    assert "every line of a task" in (tmp_path / "run.log").read_text()


@pytest.fixture(scope="module")
def demo():
    from tgap.checkout import pipeline_module

    config = load_config("pipelines/configs/demo.yaml")
    return pipeline_module().build_pipeline(config).pipeline_spec, config


def test_the_task_count_follows_the_grid(demo):
    spec, config = demo
    # 13 once-per-run tasks; 9 fine-tune items x 11 tasks (no tune-generation: demo has
    # generate.tune.trials 0), 3 no-finetune x 10, 3 retrieval x 9.
    assert count_tasks(spec, loop_work(spec, config_rows(config))) == 13 + 9 * 11 + 3 * 10 + 3 * 9
    one_seed = load_config("pipelines/configs/demo.yaml", ["grid.seeds=[0]"])
    assert count_tasks(spec, loop_work(spec, config_rows(one_seed))) == 13 + 3 * 11 + 10 + 9


def test_a_failed_loop_task_is_named_with_its_own_loops_work_item(demo, tmp_path):
    # Iteration i of a loop is item i of that loop's kind, not row i of the whole grid.
    spec, config = demo
    loops = loop_work(spec, config_rows(config))
    kind = {items[0].kind: name for name, items in loops.items()}
    for loop, iteration, where in [
        (kind["retrieval"], 2, "retrieval/400/2"),
        (kind["no-finetune"], 1, "no-finetune/400/1"),  # a per-seed item
    ]:
        task = tmp_path / loop / f"{loop}-iteration-{iteration}" / "evaluate-classifier"
        task.mkdir(parents=True)
        (task / FAILURE).write_text(json.dumps({"message": "boom"}))
        failure = find_failure(tmp_path / loop, loops)
        assert failure.where() == f"task evaluate-classifier (grid row {where})"
