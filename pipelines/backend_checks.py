"""Offline checks of a compiled spec that stand in for the KFP backend we cannot run here.

- :func:`parse_strictly`: the spec parsed with the pipeline-spec protos as the backend reads it
  (``json_format.ParseDict`` with unknown fields an error), and every executor's Kubernetes
  config with kfp-kubernetes' ``KubernetesExecutorConfig``.
- :func:`collected_loop_problems`: every ``dsl.Collected`` reads a loop that cannot be empty. The
  backend's driver collects a loop's outputs only when it had iterations
  (``backend/src/v2/driver/resolve.go``, 2.17.0), so a loop over a list that may be empty must
  not feed a Collected input. A loop over a ``grid-items`` task whose kind is one of
  ``expand-grid``'s ``compiled_kinds`` cannot be empty: ``tgap.grid.loop_items`` refuses such a
  run first.
- :func:`retried_loop_tasks`: tasks with a retry policy inside a loop. The backend's Argo
  compiler ignores them there (kubeflow/pipelines#12389, open at 2.17.0), so docs/cluster.md
  must say which they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


def load_spec(path: str | Path) -> tuple[dict, dict]:
    """The pipeline spec and its platform spec (``{}`` when there is none) of a compiled YAML."""
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    return docs[0], (docs[1] if len(docs) > 1 else {})


def parse_strictly(spec: dict, platform: dict) -> None:
    """Raise ``google.protobuf.json_format.ParseError`` on any field the protos do not know."""
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    if not platform:
        return
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for label, config in executors.items():
        try:
            json_format.ParseDict(
                config, k8s_pb2.KubernetesExecutorConfig(), ignore_unknown_fields=False
            )
        except json_format.ParseError as exc:
            raise json_format.ParseError(f"executor {label}: {exc}") from None


def _dags(spec: dict) -> dict[str, dict]:
    """Every DAG of the spec by component name (``root`` for the pipeline's own)."""
    dags = {"root": spec["root"]["dag"]}
    for name, component in spec["components"].items():
        if "dag" in component:
            dags[name] = component["dag"]
    return dags


def _component(task: dict) -> str:
    """The component a task runs, without ``comp-`` and the compiler's ``-<n>`` suffix for a
    component used more than once (``comp-grid-items-2`` -> ``grid-items``)."""
    return re.sub(r"-\d+$", "", task["componentRef"]["name"].removeprefix("comp-"))


def _constant(task: dict, name: str) -> Any:
    value = task.get("inputs", {}).get("parameters", {}).get(name, {})
    return value.get("runtimeValue", {}).get("constant")


def _collected_producers(dag: dict) -> set[str]:
    """Tasks of ``dag`` whose outputs another task of ``dag`` reads (the only way a loop DAG's
    outputs are read is as a Collected list)."""
    producers = set()
    for task in dag["tasks"].values():
        inputs = task.get("inputs", {})
        for spec in [*inputs.get("parameters", {}).values(), *inputs.get("artifacts", {}).values()]:
            for key in ("taskOutputParameter", "taskOutputArtifact"):
                if key in spec:
                    producers.add(spec[key]["producerTask"])
    return producers


def collected_loop_problems(spec: dict) -> list[str]:
    """One line per loop whose outputs are collected although it might run no iteration."""
    problems = []
    for dag_name, dag in _dags(spec).items():
        tasks = dag["tasks"]
        kinds = next(
            (_constant(t, "compiled_kinds") for t in tasks.values()
             if _component(t) == "expand-grid"),
            None,
        )  # fmt: skip
        for name in sorted(_collected_producers(dag)):
            iterator = tasks[name].get("parameterIterator")
            if iterator is None:
                continue
            problem = _loop_problem(tasks, tasks[name], iterator, kinds)
            if problem:
                problems.append(f"{dag_name}/{name}: {problem}")
    return problems


def _loop_problem(tasks: dict, loop: dict, iterator: dict, kinds: list | None) -> str | None:
    items = iterator["items"]
    if "raw" in items:
        return None if yaml.safe_load(items["raw"]) else "loops over an empty constant list"
    source = loop["inputs"]["parameters"][items["inputParameter"]]
    producer = source.get("taskOutputParameter", {}).get("producerTask")
    if producer is None:
        return f"loops over {items['inputParameter']}, which nothing guarantees non-empty"
    task = tasks[producer]
    if _component(task) != "grid-items":
        return f"loops over the output of {producer}, which nothing guarantees non-empty"
    kind = _constant(task, "kind")
    if kinds is None or kind not in kinds:
        return f"loops over {producer} (kind {kind!r}), not one of expand-grid's compiled_kinds"
    return None


def retried_loop_tasks(spec: dict) -> list[str]:
    """Components (``_component``) of the tasks with a retry policy inside a loop's body."""
    loop_bodies = {
        task["componentRef"]["name"]
        for dag in _dags(spec).values()
        for task in dag["tasks"].values()
        if "parameterIterator" in task or "artifactIterator" in task
    }
    retried = set()
    pending = list(loop_bodies)
    seen = set()
    while pending:  # loop bodies and the DAGs nested in them
        body = pending.pop()
        if body in seen or "dag" not in spec["components"].get(body, {}):
            continue
        seen.add(body)
        for task in spec["components"][body]["dag"]["tasks"].values():
            if "retryPolicy" in task:
                retried.add(_component(task))
            pending.append(task["componentRef"]["name"])
    return sorted(retried)
