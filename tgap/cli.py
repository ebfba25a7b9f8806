"""The ``tgap`` command: run locally, compile for Kubeflow, submit and schedule on a cluster."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path

from tgap import kube
from tgap.checkout import pipeline_module
from tgap.config import ConfigError, load_config

RESULT_COLUMNS = (
    "method",
    "size",
    "seed",
    "s2r_auroc",
    "r2s_auroc",
    "fter",
    "s2r_accuracy",
    "r2s_accuracy",
)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set key=value`` (shared by every subcommand)."""
    parser.add_argument("--config", required=True, type=Path, help="a preset YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set finetune.steps=100 (repeatable)",
    )


def format_results_table(results_csv: Path) -> str:
    """The main columns of results.csv as a fixed-width table."""
    with open(results_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in RESULT_COLUMNS if rows and c in rows[0]]

    def cell(value: str) -> str:
        try:
            return f"{float(value):.3f}" if "." in value or "e" in value.lower() else value
        except ValueError:
            return value

    table = [columns] + [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in table)


def cmd_run(args: argparse.Namespace) -> int:
    from tgap.local_run import run_local

    config = load_config(args.config, args.overrides)
    output = args.output or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    out = run_local(config, output, pipeline_file=args.spec, verbose=args.verbose)
    print(format_results_table(out / "results.csv"))
    print(f"\nreport: {(out / 'report.html').resolve()}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    path = pipeline_module().compile_pipeline(
        config, args.output, allow_floating_tag=args.allow_floating_tag
    )
    print(f"compiled {args.config} -> {path}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from tgap.plan import format_plan, memory_warnings, plan
    from tgap.transfer import format_transfers, transfers

    if args.detect is not None and args.pilot is None:
        raise ConfigError("plan --detect needs --pilot RUN_DIR (the run to estimate from)")
    config = load_config(args.config, args.overrides)
    stages = plan(config)
    warnings = memory_warnings(stages, config)
    print(format_plan(stages, config.cluster.parallelism, warnings))
    print()
    print(format_transfers(transfers(config, args.shard_size), args.shard_size,
                           args.object_latency_ms, args.bandwidth_mb_s))  # fmt: skip
    if args.pilot is not None:
        from tgap.plan import KNOWN_EFFECT_CONTROL, pilot_power, power_line

        gpu_hours = sum(s.hours for s in stages if s.gpu)
        per_seed = gpu_hours / len(config.grid.seeds)
        detect = 0.02 if args.detect is None else args.detect
        print(power_line(pilot_power(args.pilot), detect, per_seed))
        try:  # the known effect, when the pilot ran its control
            known = pilot_power(args.pilot, control=KNOWN_EFFECT_CONTROL)
        except ConfigError:
            return 0
        print(power_line(known, detect, per_seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgap",
        description="tgap: can this synthetic dataset train a model? DreamBooth, two-way "
        "evaluation (S→R, R→S) and FTER as a Kubeflow pipeline.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging; `run`: every task's output"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the whole pipeline on this machine (kfp.local)",
        description="Run the pipeline locally through kfp.local. The output folder receives "
        "results.csv, results.json, report.html, summary.md and artifacts/ (every stage's output).",
    )
    add_config_arguments(run)
    run.add_argument(
        "--output", type=Path, default=None, help="output folder (default runs/<timestamp>)"
    )
    run.add_argument(
        "--spec",
        type=Path,
        default=None,
        help="run this compiled pipeline spec instead of the Python DAG (parameters from --config)",
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # keeps `tgap -v run` working
        help="stream every task's output as kfp.local prints it (default: a live view of the "
        "DAG; every task's output is in run.log either way)",
    )
    run.set_defaults(func=cmd_run)

    comp = sub.add_parser(
        "compile",
        help="compile the pipeline spec for upload in the Kubeflow UI",
        description="Compile the KFP pipeline spec; the config's values become parameter defaults.",
    )
    add_config_arguments(comp)
    comp.add_argument(
        "--output", type=Path, default=Path("pipelines/compiled/tgap.yaml"), help="spec path"
    )
    _floating_tag_argument(comp)
    comp.set_defaults(func=cmd_compile)

    from tgap.imageset import SHARD_SIZE
    from tgap.transfer import DEFAULT_BANDWIDTH_MB_S, DEFAULT_LATENCY_MS

    plan = sub.add_parser(
        "plan",
        help="what a run will cost, before it runs: tasks, GPU-hours, bytes per stage",
        description="Per stage: tasks (on GPUs), units of work, artifact bytes, GPU-hours, "
        "CPU-hours and wall time at cluster.parallelism, from the throughputs in "
        "cluster.throughput, then a total line. Then per stage: objects and bytes downloaded "
        "and uploaded, and the transfer time at a per-object latency and a bandwidth, then a "
        "`transfer` total line.",
    )
    add_config_arguments(plan)
    plan.add_argument(
        "--pilot",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="a finished run folder: from its fine-tuned methods' S→R by seed, print how many "
        "seeds this grid needs to detect --detect with 80%% power, and their GPU-hours",
    )
    plan.add_argument(
        "--detect",
        type=float,
        default=None,
        help="the S→R AUROC difference between two fine-tuned methods to detect (default 0.02)",
    )
    plan.add_argument(
        "--shard-size",
        type=int,
        default=SHARD_SIZE,
        help=f"images per image-set shard (default {SHARD_SIZE}, what runs write; 1 models one "
        "object per image, the layout before shards)",
    )
    plan.add_argument(
        "--object-latency-ms",
        type=float,
        default=DEFAULT_LATENCY_MS,
        help=f"per-object round trip of a download or upload (default {DEFAULT_LATENCY_MS:g})",
    )
    plan.add_argument(
        "--bandwidth-mb-s",
        type=float,
        default=DEFAULT_BANDWIDTH_MB_S,
        help=f"object-store bandwidth of one task, MB/s (default {DEFAULT_BANDWIDTH_MB_S:g})",
    )
    plan.set_defaults(func=cmd_plan)

    _add_cluster_commands(sub)
    return parser


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=None,
        help="KFP API URL, e.g. http://localhost:8080 after `kubectl port-forward "
        "svc/ml-pipeline-ui 8080:80` (default: KF_PIPELINES_ENDPOINT, else in-cluster / kubeconfig)",
    )
    parser.add_argument(
        "--namespace",
        default=None,
        help="namespace of KFP (standalone: kubeflow) or, on multi-user Kubeflow, your profile",
    )
    parser.add_argument(
        "--token",
        "--existing-token",
        dest="token",
        default=None,
        help=f"bearer token for the KFP API (default: env {kube.TOKEN_ENV}); never printed",
    )


def _floating_tag_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-floating-tag",
        action="store_true",
        help="compile (or send a --spec) even when cluster.cpu_image/gpu_image (the spec's "
        "images) carry a tag that does not name the image's content (KFP's cache would reuse "
        "results across rebuilds under that tag)",
    )


def _sending_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``submit`` and ``schedule`` share beyond the connection: the spec, the pipeline and
    the check."""
    parser.add_argument(
        "--spec",
        type=Path,
        default=None,
        help="send this compiled spec (from `tgap compile` with the same --config) instead of "
        "compiling: needs no checkout, as in the in-cluster schedule Job",
    )
    _floating_tag_argument(parser)
    parser.add_argument(
        "--pipeline",
        default=kube.DEFAULT_PIPELINE,
        help=f"KFP pipeline the spec is uploaded to as a version (default {kube.DEFAULT_PIPELINE!r})",
    )
    minimum = ".".join(map(str, kube.MIN_BACKEND))
    parser.add_argument(
        "--skip-version-check",
        action="store_true",
        help=f"send even when the server does not report release {minimum} or newer",
    )


def _add_cluster_commands(sub: argparse._SubParsersAction) -> None:
    """``submit``, ``schedule`` and ``runs``: the commands that talk to a KFP server (tgap.kube)."""
    p = sub.add_parser("submit", help="compile and start one run on a KFP server")
    _connection_arguments(p)
    _sending_arguments(p)
    add_config_arguments(p)
    p.add_argument("--experiment", required=True, help="KFP experiment (created if missing)")
    p.add_argument(
        "--run-name", default=None, help="run name (default: '<config name> <UTC time>')"
    )
    p.set_defaults(func=kube.submit)

    p = sub.add_parser(
        "schedule", help="compile and create (or replace) a recurring run on a KFP server"
    )
    _connection_arguments(p)
    _sending_arguments(p)
    add_config_arguments(p)
    p.add_argument("--experiment", required=True, help="KFP experiment (created if missing)")
    p.add_argument(
        "--cron",
        default=kube.DEFAULT_CRON,
        help=f"six-field cron, seconds first (default {kube.DEFAULT_CRON!r}: Mondays 03:00 UTC)",
    )
    p.add_argument(
        "--name", default=None, help="recurring run name (default: '<config name> weekly')"
    )
    p.set_defaults(func=kube.schedule)

    p = sub.add_parser("runs", help="list recent runs on a KFP server")
    _connection_arguments(p)
    p.add_argument("--experiment", default=None, help="only runs of this experiment")
    p.add_argument("--limit", type=int, default=10, help="how many runs (default 10)")
    p.set_defaults(func=kube.runs)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from tgap.local_run import TaskFailed

    try:
        return args.func(args)
    except TaskFailed as exc:
        # Last, where it is seen: which task and row failed, its own message, its full log.
        lines = exc.lines()
        if not args.verbose:  # streamed already with --verbose
            for line in exc.last_output():
                print(f"  | {line}", file=sys.stderr)
        print(f"tgap: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(f"tgap: error: {line}", file=sys.stderr)
        return 1
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"tgap: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        # kfp.local reports a failed task as RuntimeError; the task's own error is logged above.
        print(f"tgap: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
