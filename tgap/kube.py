"""``tgap submit``, ``tgap schedule`` and ``tgap runs``: the pipeline on a Kubeflow Pipelines server.

Each command compiles the pipeline from the config (or takes a compiled spec, ``--spec``: what
the in-cluster schedule Job does, from an installed wheel with no checkout), builds the exact
request (the keyword arguments of a ``kfp.Client`` method: see :func:`run_request`,
:func:`recurring_run_request`), then sends it. Every pipeline parameter is sent explicitly
(``tgap.parameters``), so the UI's compare view shows all of them, even those equal to their
defaults.

Authentication is whatever ``kfp.Client`` supports: ``--token`` (or env ``TGAP_KFP_TOKEN``) as a
bearer token; with no ``--host`` (and no ``KF_PIPELINES_ENDPOINT``) inside a pod, the pod's
service-account token for the ``pipelines.kubeflow.org`` audience; else the local kubeconfig
through the API-server proxy. The token is never printed.

Before sending anything, ``submit`` and ``schedule`` read the server's release from
``GET /apis/v2beta1/healthz`` and refuse one older than :data:`MIN_BACKEND`. They upload the
compiled spec as a version of a named pipeline (:func:`pipeline_version_name`: the commit and a
config hash) and run that version; ``schedule`` replaces the recurring run of the same name.

The command line of these commands is defined in ``tgap.cli``; this module builds and sends
the requests, so the dependency runs one way (cli -> kube).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tgap.checkout import ROOT, pipeline_module
from tgap.config import Config, load_config
from tgap.parameters import pipeline_arguments

TOKEN_ENV = "TGAP_KFP_TOKEN"
DEFAULT_CRON = "0 0 3 * * 1"  # Mondays 03:00:00 (KFP cron has a leading seconds field)
FTER_NOT_REACHABLE = (
    "FTER: not in the KFP API. KFP v2 keeps a run's Metrics in ML Metadata and its v2beta1 REST "
    "API returns only artifact ids, so open the run in the UI (report step > Visualizations, or "
    "Compare runs) or read results.json under the run's pipeline root."
)


# The report fans in three `dsl.Collected` loop outputs. The backend collects parameters and
# artifacts from a ParallelFor from 2.14.0 on (kubeflow/pipelines CHANGELOG, 2.14.0: "backend/sdk:
# enable dsl.Collected for parameters & artifacts", #11725, commit ed828b5).
MIN_BACKEND = (2, 14, 0)
MIN_BACKEND_WHY = (
    "the report collects the grid loops' outputs with dsl.Collected, which the backend supports "
    "from 2.14.0 on (kubeflow/pipelines#11725)"
)
DEFAULT_PIPELINE = "tgap"


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


# --------------------------------------------------------------------------- the server


def backend_tag(client: Any) -> str:
    """The server's release tag (``tag_name`` of ``GET /apis/v2beta1/healthz``, served by the API
    server's ``buildHTTPRouter`` in ``backend/src/apiserver/main.go``). kfp_server_api's
    response model keeps only ``multi_user`` and ``pipeline_store``, so the raw body is read."""
    with _api_call("reading the KFP server's version (GET /apis/v2beta1/healthz)"):
        response = client.healthzs.healthz_service_get_healthz(_preload_content=False)
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        body = {}
    return str(body.get("tag_name") or "unknown")


def check_backend(tag: str) -> None:
    """Refuse a server older than :data:`MIN_BACKEND`, or one whose release is unknown."""
    minimum = ".".join(map(str, MIN_BACKEND))
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+.].*)?", tag.strip())
    if match is None:
        raise KfpApiError(
            f"the KFP server does not name its release (healthz tag_name {tag!r}); tgap needs "
            f"{minimum} or newer because {MIN_BACKEND_WHY}. If you know it is newer, pass "
            "--skip-version-check"
        )
    if tuple(map(int, match.groups())) < MIN_BACKEND:
        raise KfpApiError(
            f"the KFP server is release {tag}, older than {minimum}: tgap needs {minimum} or "
            f"newer because {MIN_BACKEND_WHY}; upgrade Kubeflow Pipelines"
        )


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_commit() -> str | None:
    """The checkout's commit, or None when there is no git checkout or it has changes (then a
    commit does not name the code that compiled the spec)."""
    commit = _git("rev-parse", "HEAD")
    if not commit or _git("status", "--porcelain", "--untracked-files=no") != "":
        return None
    return commit


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec_digest(package_path: str | Path) -> str:
    """SHA-256 of a compiled spec's content (its YAML documents as sorted JSON), not of its
    bytes: the compiler's header comment lists the parameters' defaults in an order that changes
    from one compile to the next."""
    docs = list(yaml.safe_load_all(Path(package_path).read_text()))
    return _digest(json.dumps(docs, sort_keys=True).encode())


def pipeline_version_name(
    config: Config, package_path: str | Path, compiled_here: bool = True
) -> str:
    """``<config name>-g<commit>-c<config hash>``; without a clean commit (a changed checkout, an
    installed wheel) or for a spec compiled elsewhere (``compiled_here`` false: ``--spec``)
    ``-s<spec hash>`` names the code instead. Equal names mean equal specs, so a version that
    exists under the name is reused."""
    config_hash = _digest(json.dumps(config.to_dict(), sort_keys=True).encode())[:10]
    commit = source_commit() if compiled_here else None
    code = f"g{commit[:12]}" if commit else f"s{spec_digest(package_path)[:12]}"
    name = re.sub(r"[^a-z0-9-]+", "-", config.name.lower()).strip("-") or "tgap"
    return f"{name}-{code}-c{config_hash}"


def _by_name(name: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def upload_version(
    client: Any, pipeline: str, version: str, package_path: str | Path, description: str = ""
) -> tuple[str, str]:
    """``(pipeline_id, version_id)`` of ``version`` of ``pipeline``: the pipeline is created when
    missing, the version uploaded when missing, else reused (its name fixes its spec)."""
    import kfp_server_api

    with _api_call(f"finding pipeline {pipeline!r}"):
        pipeline_id = client.get_pipeline_id(pipeline)
    if pipeline_id is None:
        with _api_call(f"creating pipeline {pipeline!r}"):
            created = client.pipelines.pipeline_service_create_pipeline(
                pipeline=kfp_server_api.V2beta1Pipeline(
                    display_name=pipeline,
                    description="tgap: can this synthetic dataset train a model?",
                )
            )
        pipeline_id = created.pipeline_id
    with _api_call(f"listing versions of pipeline {pipeline!r}"):
        found = client.list_pipeline_versions(pipeline_id, filter=_by_name(version))
    existing = list(found.pipeline_versions or [])
    if existing:
        return pipeline_id, existing[0].pipeline_version_id
    with _api_call(f"uploading version {version!r} of pipeline {pipeline!r}"):
        uploaded = client.upload_pipeline_version(
            str(package_path), version, pipeline_id=pipeline_id, description=description or None
        )
    return pipeline_id, uploaded.pipeline_version_id


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


# What `tgap compile` names an image by (pipelines.images, not in the wheel): a digest, or the
# content tag <version>-<12 hex digits>.
PINNED_IMAGE = re.compile(r"(@sha256:[0-9a-f]{64}|:[^:/@]+-[0-9a-f]{12})$")


def check_spec_images(package_path: str | Path) -> None:
    """Refuse a compiled spec whose images carry a tag that does not name their content (KFP's
    cache would reuse results across rebuilds under it), as ``tgap compile`` does."""
    doc = next(yaml.safe_load_all(Path(package_path).read_text()))
    executors = doc.get("deploymentSpec", {}).get("executors", {}).values()
    images = {e["container"]["image"] for e in executors if "container" in e}
    floating = sorted(i for i in images if not PINNED_IMAGE.search(i))
    if floating:
        raise ValueError(
            f"{package_path}: names {', '.join(floating)}, a tag that does not name the image's "
            "content (KFP's cache would reuse results across rebuilds under it); compile the "
            "spec again with tgap compile, which names content tags or digests, or pass "
            "--allow-floating-tag"
        )


def run_request(
    config: Config,
    package_path: str | Path,
    experiment_id: str,
    version: tuple[str, str],
    run_name: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``kfp.Client.run_pipeline``: a run of pipeline version ``version``
    (``(pipeline_id, version_id)``) with every parameter of the spec at ``package_path``."""
    arguments = run_arguments(config, package_path)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "experiment_id": experiment_id,
        "job_name": run_name or f"{config.name} {stamp}",
        "params": arguments,
        "pipeline_id": version[0],
        "version_id": version[1],
        "pipeline_root": config.cluster.pipeline_root or None,
        "service_account": config.cluster.service_account or None,
    }


def recurring_run_request(
    config: Config,
    package_path: str | Path,
    experiment_id: str,
    version: tuple[str, str],
    name: str | None = None,
    cron: str = DEFAULT_CRON,
) -> dict[str, Any]:
    """Keyword arguments for ``kfp.Client.create_recurring_run`` of pipeline version ``version``.

    One run at a time (a run of the thesis grid can outlast a week) and no catch-up: after a
    pause only the latest missed slot runs, not a backlog of identical runs.
    """
    return {
        "experiment_id": experiment_id,
        "job_name": name or f"{config.name} weekly",
        "description": config.description or None,
        "cron_expression": check_cron(cron),
        "max_concurrency": 1,
        "no_catchup": True,
        "params": run_arguments(config, package_path),
        "pipeline_id": version[0],
        "version_id": version[1],
        "enabled": True,
        "pipeline_root": config.cluster.pipeline_root or None,
        "service_account": config.cluster.service_account or None,
    }


def run_arguments(config: Config, package_path: str | Path) -> dict[str, Any]:
    """Every parameter of the spec, from ``config``, checked against the spec's parameters."""
    arguments = pipeline_arguments(config)
    check_arguments(package_path, arguments)
    return arguments


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


def connect_checked(args: argparse.Namespace) -> Any:
    """:func:`connect`, then refuse a server older than :data:`MIN_BACKEND` (unless
    ``--skip-version-check``), before anything is compiled or sent."""
    client = connect(args)
    if not args.skip_version_check:
        check_backend(backend_tag(client))
    return client


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


@contextlib.contextmanager
def _package(args: argparse.Namespace, config: Config):
    """The spec to send: ``--spec`` as given (no checkout needed: the Job's case), else the
    pipeline compiled from the checkout for ``config``."""
    if args.spec is not None:
        if not args.spec.is_file():
            raise FileNotFoundError(f"--spec {args.spec}: no such file")
        # Before the spec is uploaded as a version: it takes this config's parameters, and (as
        # `tgap compile` would) names no image by a floating tag.
        check_arguments(args.spec, pipeline_arguments(config))
        if not args.allow_floating_tag:
            check_spec_images(args.spec)
        yield args.spec
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield pipeline_module().compile_pipeline(
            config, Path(tmp) / "tgap.yaml", allow_floating_tag=args.allow_floating_tag
        )


def _version(client: Any, args: argparse.Namespace, config: Config, package: Path):
    version = pipeline_version_name(config, package, compiled_here=args.spec is None)
    ids = upload_version(client, args.pipeline, version, package, config.description)
    print(f"pipeline {args.pipeline!r} version {version!r}")
    return ids


def _experiment(client: Any, name: str) -> str:
    with _api_call(f"getting or creating experiment {name!r}"):
        return client.create_experiment(name=name).experiment_id


def submit(args: argparse.Namespace) -> int:
    """Compile the pipeline for ``--config`` (or take ``--spec``), upload it as a pipeline
    version, run that."""
    config = _load(args)
    client = connect_checked(args)
    with _package(args, config) as package:
        version = _version(client, args, config, package)
        experiment_id = _experiment(client, args.experiment)
        request = run_request(config, package, experiment_id, version, args.run_name)
        with _api_call(f"creating a run in experiment {args.experiment!r}"):
            result = client.run_pipeline(**request)
    print(f"submitted run {result.run_id} to experiment {args.experiment!r}")
    return 0


def schedule(args: argparse.Namespace) -> int:
    """Compile the pipeline for ``--config`` (or take ``--spec``, compiled from that config),
    upload it as a pipeline version, and make the recurring run named ``--name`` run that
    version on ``--cron``: KFP cannot edit a recurring run, so the new one is created first and
    then any older one of that name is deleted (a refused creation leaves the old one running;
    a refused deletion leaves both, and the error says so)."""
    config = _load(args)
    check_cron(args.cron)
    client = connect_checked(args)
    with _package(args, config) as package:
        version = _version(client, args, config, package)
        experiment_id = _experiment(client, args.experiment)
        request = recurring_run_request(
            config, package, experiment_id, version, args.name, args.cron
        )
        name = request["job_name"]
        with _api_call(f"listing recurring runs named {name!r}"):
            found = client.list_recurring_runs(
                experiment_id=experiment_id, filter=_by_name(name), page_size=100
            )
        older = [r.recurring_run_id for r in found.recurring_runs or []]
        with _api_call(f"creating recurring run {name!r}"):
            recurring = client.create_recurring_run(**request)
        new = recurring.recurring_run_id
        for old in older:
            # Both are scheduled now (each with its own max concurrency): say so, and how to
            # end it; scheduling again deletes every older one of the name.
            with _api_call(
                f"created recurring run {new} {name!r}, but deleting the older {old} it replaces "
                f"failed, so both are scheduled until {old} is deleted (run this tgap schedule "
                "again, or delete it in the KFP UI)"
            ):
                client.delete_recurring_run(old)
    replaced = f", replacing {', '.join(older)}" if older else ""
    print(
        f"scheduled recurring run {new} {name!r} ({args.cron!r}, max concurrency 1, no "
        f"catch-up) in experiment {args.experiment!r}{replaced}"
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
