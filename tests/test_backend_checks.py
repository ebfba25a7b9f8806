"""Offline stand-ins for the KFP backend (pipelines.backend_checks) on the shipped spec."""

import copy
import re
from pathlib import Path

import pytest
from google.protobuf import json_format

from pipelines.backend_checks import (
    collected_loop_problems,
    load_spec,
    parse_strictly,
    retried_loop_tasks,
)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "pipelines" / "compiled" / "tgap.yaml"


@pytest.fixture(scope="module")
def shipped():
    return load_spec(SPEC)


def test_the_shipped_spec_parses_strictly_with_the_pipeline_spec_protos(shipped):
    spec, platform = shipped
    parse_strictly(spec, platform)
    # An unknown field is an error, in the spec and in an executor's Kubernetes config.
    bad = copy.deepcopy(spec)
    bad["root"]["dag"]["tasks"]["report"]["retryPolicyy"] = {}
    with pytest.raises(json_format.ParseError, match="retryPolicyy"):
        parse_strictly(bad, platform)
    bad_platform = copy.deepcopy(platform)
    executors = bad_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    label = next(iter(executors))
    executors[label]["nodeSelectorr"] = {}
    with pytest.raises(json_format.ParseError, match=f"executor {label}: .*nodeSelectorr"):
        parse_strictly(spec, bad_platform)


def test_every_collected_loop_of_the_shipped_spec_is_one_expand_grid_keeps_non_empty(shipped):
    spec, _ = shipped
    assert collected_loop_problems(spec) == []
    # Without its kind in compiled_kinds, expand-grid no longer guarantees the loop has items.
    bad = copy.deepcopy(spec)
    kinds = bad["root"]["dag"]["tasks"]["expand-grid"]["inputs"]["parameters"]["compiled_kinds"]
    dropped = kinds["runtimeValue"]["constant"].pop()
    [problem] = collected_loop_problems(bad)
    assert f"(kind {dropped!r}), not one of expand-grid's compiled_kinds" in problem
    # A loop over an empty constant list.
    bad = copy.deepcopy(spec)
    loop = next(t for t in bad["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    loop["parameterIterator"]["items"] = {"raw": "[]"}
    [problem] = collected_loop_problems(bad)
    assert problem.endswith("loops over an empty constant list")


def test_docs_name_every_stage_retried_inside_a_loop(shipped):
    # The backend ignores a retry policy inside a ParallelFor (kubeflow/pipelines#12389).
    spec, _ = shipped
    retried = retried_loop_tasks(spec)
    assert "finetune" in retried and "generate" in retried
    docs = (ROOT / "docs" / "cluster.md").read_text()
    [line] = [s for s in docs.split("\n\n") if "kubeflow/pipelines#12389" in s]
    # The list itself (the paragraph also names stages retried outside the loops).
    listed = re.search(r"retry policy that the backend ignores: ([^(]+)\(", line)
    assert listed, "docs/cluster.md: the list of loop tasks whose retry policy is ignored"
    assert sorted(re.findall(r"`([a-z-]+)`", listed.group(1))) == retried
