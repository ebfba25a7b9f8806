"""``tgap submit``, ``tgap schedule`` and ``tgap runs``: the pipeline on a Kubeflow Pipelines server.

Each command compiles the pipeline from the config, builds the exact request (the keyword
arguments of a ``kfp.Client`` method: see :func:`run_request`, :func:`recurring_run_request`),
then sends it. Every pipeline parameter is sent explicitly, so the UI's compare view shows all
of them, even those equal to their defaults.

Authentication is whatever ``kfp.Client`` supports: ``--token`` (or env ``TGAP_KFP_TOKEN``) as a
bearer token; with no ``--host`` (and no ``KF_PIPELINES_ENDPOINT``) inside a pod, the pod's
service-account token for the ``pipelines.kubeflow.org`` audience; else the local kubeconfig
through the API-server proxy. The token is never printed.

The command line of these commands is defined in ``tgap.cli``; this module builds and sends
the requests, so the dependency runs one way (cli -> kube).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tgap.checkout import pipeline_module
from tgap.config import Config, load_config

TOKEN_ENV = "TGAP_KFP_TOKEN"
DEFAULT_CRON = "0 0 3 * * 1"  # Mondays 03:00:00 (KFP cron has a leading seconds field)
FTER_NOT_REACHABLE = (
    "FTER: not in the KFP API. KFP v2 keeps a run's Metrics in ML Metadata and its v2beta1 REST "
    "API returns only artifact ids, so open the run in the UI (report step > Visualizations, or "
    "Compare runs) or read results.json under the run's pipeline root."
)


class KfpApiError(RuntimeError):
    """The KFP API refused a call or could not be reached; the message names the call."""


@contextlib.contextmanager
def _api_call(what: str):
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as exc:
        detail = ""
        try:  # KFP answers errors as JSON {"error"/"message": ...}
            body = json.loads(exc.body or "{}")
            detail = f": {body.get('message') or body.get('error') or ''}".rstrip(": ")
        except (ValueError, TypeError, AttributeError):
            pass
        raise KfpApiError(f"{what}: HTTP {exc.status} {exc.reason}{detail}") from None
    except (TimeoutError, urllib3.exceptions.HTTPError, ConnectionError) as exc:
        raise KfpApiError(f"{what}: cannot reach the KFP API ({exc})") from None


# --------------------------------------------------------------------------- building requests


def client_kwargs(
    host: str | None, namespace: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``kfp.Client``.

    No host and no token: kfp.Client uses ``KF_PIPELINES_ENDPOINT``, else the in-cluster
    service-account token, else the kubeconfig. ``namespace`` is where KFP is installed (in-cluster
    DNS, kube proxy) and, on multi-user Kubeflow, the profile namespace runs go to.
    """
    kwargs: dict[str, Any] = {"host": host or None, "existing_token": token or None}
    if namespace:
        kwargs["namespace"] = namespace
    return kwargs


def check_cron(cron: str) -> str:
    """KFP schedules with robfig/cron: six fields, seconds first."""
    if len(cron.split()) != 6:
        raise ValueError(
            f"--cron {cron!r}: KFP expects 6 fields (second minute hour day-of-month month "
            f"day-of-week), e.g. {DEFAULT_CRON!r} for Mondays at 03:00"
        )
    return cron


def pipeline_parameter_names(package_path: str | Path) -> list[str]:
    """The root parameters of a compiled pipeline spec (the names a run can set)."""
    doc = next(yaml.safe_load_all(Path(package_path).read_text()))
    params = doc.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return sorted(params)


def check_arguments(package_path: str | Path, arguments: dict[str, Any]) -> None:
    """Every parameter of the compiled spec is sent, and nothing it does not declare."""
    names = set(pipeline_parameter_names(package_path))
    missing, unknown = names - set(arguments), set(arguments) - names
    if missing or unknown:
        raise ValueError(
            f"{package_path}: arguments do not match the pipeline's parameters "
            f"(missing: {sorted(missing)}, not in the spec: {sorted(unknown)})"
        )


def run_request(
    config: Config, package_path: str | Path, experiment: str, run_name: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``kfp.Client.create_run_from_pipeline_package``."""
    arguments = pipeline_module().pipeline_arguments(config)
    check_arguments(package_path, arguments)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "pipeline_file": str(package_path),
        "arguments": arguments,
        "run_name": run_name or f"{config.name} {stamp}",
        "experiment_name": experiment,
        "pipeline_root": config.cluster.pipeline_root or None,
        "service_account": config.cluster.service_account or None,
    }


def recurring_run_request(
    config: Config,
    package_path: str | Path,
    experiment_id: str,
    name: str | None = None,
    cron: str = DEFAULT_CRON,
) -> dict[str, Any]:
    """Keyword arguments for ``kfp.Client.create_recurring_run``.

    One run at a time (a run of the thesis grid can outlast a week) and no catch-up: after a
    pause only the latest missed slot runs, not a backlog of identical runs.
    """
    arguments = pipeline_module().pipeline_arguments(config)
    check_arguments(package_path, arguments)
    return {
        "experiment_id": experiment_id,
        "job_name": name or f"{config.name} weekly",
        "description": config.description or None,
        "cron_expression": check_cron(cron),
        "max_concurrency": 1,
        "no_catchup": True,
        "params": arguments,
        "pipeline_package_path": str(package_path),
        "enabled": True,
        "pipeline_root": config.cluster.pipeline_root or None,
        "service_account": config.cluster.service_account or None,
    }


# --------------------------------------------------------------------------- showing runs


def _duration(run: Any) -> str:
    start, end = run.created_at, run.finished_at
    if start is None or end is None or end.year < 2000:  # unfinished runs carry epoch 0
        return "-"
    seconds = int((end - start).total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _grid_size(run: Any) -> str:
    """Grid cells of a run: methods x sizes x seeds (or the rows of an older `grid`)."""
    params = (run.runtime_config.parameters or {}) if run.runtime_config else {}
    axes = [params.get(name) for name in ("methods", "sizes", "seeds")]
    if all(isinstance(axis, list) for axis in axes):
        return str(len(axes[0]) * len(axes[1]) * len(axes[2]))
    grid = params.get("grid")  # runs from before the grid was three parameters
    return str(len(grid)) if isinstance(grid, list) else "?"


def format_runs(runs: list[Any]) -> str:
    """A table of runs (``kfp_server_api.V2beta1Run``) newest first, with the FTER note."""
    header = ("created (UTC)", "state", "took", "cells", "name", "run id")
    rows = [header]
    for run in runs:
        created = run.created_at.strftime("%Y-%m-%d %H:%M") if run.created_at else "-"
        rows.append(
            (
                created,
                str(run.state or "-"),
                _duration(run),
                _grid_size(run),
                run.display_name or "-",
                run.run_id or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if not runs:
        lines.append("(no runs)")
    lines.append(FTER_NOT_REACHABLE)
    return "\n".join(lines)


# --------------------------------------------------------------------------- sending


def connect(args: argparse.Namespace) -> Any:
    """A ``kfp.Client`` from the command line (the token from --token or TGAP_KFP_TOKEN)."""
    import kfp

    token = args.token or os.environ.get(TOKEN_ENV)
    where = args.host or os.environ.get("KF_PIPELINES_ENDPOINT") or "in-cluster/kubeconfig KFP"
    with _api_call(f"connecting to {where}"):
        return kfp.Client(**client_kwargs(args.host, args.namespace, token))


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def submit(args: argparse.Namespace) -> int:
    """Compile the pipeline for ``--config`` and start one run."""
    config = _load(args)
    client = connect(args)
    with tempfile.TemporaryDirectory() as tmp:
        package = pipeline_module().compile_pipeline(config, Path(tmp) / "tgap.yaml")
        request = run_request(config, package, args.experiment, args.run_name)
        with _api_call(f"creating a run in experiment {args.experiment!r}"):
            result = client.create_run_from_pipeline_package(**request)
    print(f"submitted run {result.run_id} to experiment {args.experiment!r}")
    return 0


def schedule(args: argparse.Namespace) -> int:
    """Compile the pipeline for ``--config`` and create a recurring run on ``--cron``."""
    config = _load(args)
    check_cron(args.cron)
    client = connect(args)
    with _api_call(f"getting or creating experiment {args.experiment!r}"):
        experiment = client.create_experiment(name=args.experiment)
    with tempfile.TemporaryDirectory() as tmp:
        package = pipeline_module().compile_pipeline(config, Path(tmp) / "tgap.yaml")
        request = recurring_run_request(
            config, package, experiment.experiment_id, args.name, args.cron
        )
        with _api_call(f"creating recurring run {request['job_name']!r}"):
            recurring = client.create_recurring_run(**request)
    print(
        f"scheduled recurring run {recurring.recurring_run_id} ({args.cron!r}, max concurrency 1, "
        f"no catch-up) in experiment {args.experiment!r}"
    )
    return 0


def runs(args: argparse.Namespace) -> int:
    """List the most recent runs (of ``--experiment`` when given)."""
    client = connect(args)
    experiment_id = None
    with _api_call("listing runs"):
        if args.experiment:
            experiment_id = client.get_experiment(experiment_name=args.experiment).experiment_id
        response = client.list_runs(
            page_size=args.limit, sort_by="created_at desc", experiment_id=experiment_id
        )
    print(format_runs(list(response.runs or [])))
    return 0
