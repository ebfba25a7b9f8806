"""Cluster runs without a cluster: the HTTP requests `tgap submit/schedule/runs` send through
kfp.Client (recorded at kfp_server_api's transport), and the cluster settings in the compiled spec.
"""

import json
from pathlib import Path

import kfp
import kfp_server_api
import pytest
import yaml
from kfp import dsl

from pipelines import cluster as kcluster
from pipelines import images
from tgap import kube
from tgap.cli import main
from tgap.config import ConfigError, load_config

tgap_pipeline = pytest.importorskip("pipelines.tgap_pipeline")

ROOT = Path(__file__).resolve().parents[1]
MICRO = str(ROOT / "pipelines" / "configs" / "micro.yaml")
HOST = "http://kfp.test"
TOKEN = "tok-9f8e7d6c"


class FakeResponse:
    def __init__(self, payload: dict, status: int = 200):
        self.status = status
        self.reason = "OK"
        self.data = json.dumps(payload).encode()

    def getheader(self, name, default=None):
        return "application/json" if name.lower() == "content-type" else default

    def getheaders(self):
        return {"content-type": "application/json"}


class FakeKfpServer:
    """Stands in for the KFP API server at the HTTP layer; records every request.

    It keeps pipelines, their versions (an upload's file is kept as its spec) and recurring runs,
    so that a second submit or schedule sees what the first one made.
    """

    def __init__(self, runs: list[dict] | None = None, tag: str = "2.17.0"):
        self.calls: list[dict] = []
        self.runs = runs or []
        self.tag = tag
        self.refuse_runs = False
        self.refuse_deletes = False
        self.pipelines: dict[str, str] = {}  # display name -> id
        self.versions: dict[str, dict] = {}  # version id -> {pipeline_id, display_name, spec}
        self.recurring: dict[str, dict] = {}  # recurring run id -> body

    def __call__(self, api_client, method, url, query_params=None, headers=None, body=None, **kw):
        path = url.removeprefix(HOST)
        query = dict(query_params or [])
        self.calls.append(
            {
                "method": method,
                "path": path,
                "query": query,
                "headers": {k.lower(): v for k, v in (headers or {}).items()},
                "body": body,
                "files": dict(kw.get("post_params") or []),
            }
        )
        if path.endswith("/healthz"):
            return FakeResponse({"commit_sha": "abc123", "tag_name": self.tag, "multi_user": False})
        if path == "/apis/v2beta1/experiments" and method == "GET":
            return FakeResponse({})  # no experiment of that name yet
        if path == "/apis/v2beta1/experiments" and method == "POST":
            return FakeResponse({"experiment_id": "exp-1", "display_name": body["display_name"]})
        if path.startswith("/apis/v2beta1/pipelines"):
            return self._pipelines(method, path, query, body, dict(kw.get("post_params") or []))
        if path == "/apis/v2beta1/runs" and method == "POST" and self.refuse_runs:
            error = kfp_server_api.ApiException(status=400, reason="Bad Request")
            error.body = json.dumps(
                {"error": "x", "message": "Invalid input: pipeline_root"}
            ).encode()
            raise error
        if path == "/apis/v2beta1/runs" and method == "POST":
            return FakeResponse({"run_id": "run-1", "display_name": body["display_name"]})
        if path == "/apis/v2beta1/runs" and method == "GET":
            return FakeResponse({"runs": self.runs, "total_size": len(self.runs)})
        if path.startswith("/apis/v2beta1/recurringruns"):
            return self._recurring(method, path, query, body)
        raise AssertionError(f"unexpected request {method} {path}")

    @staticmethod
    def _named(query: dict) -> str | None:
        if "filter" not in query:
            return None
        [predicate] = json.loads(query["filter"])["predicates"]
        assert predicate["key"] == "display_name" and predicate["operation"] in ("EQUALS", 1)
        return predicate["stringValue"]

    def _pipelines(self, method, path, query, body, files):
        if path == "/apis/v2beta1/pipelines" and method == "GET":
            name = self._named(query)
            found = [{"pipeline_id": i, "display_name": n} for n, i in self.pipelines.items()]
            return FakeResponse({"pipelines": [p for p in found if p["display_name"] == name]})
        if path == "/apis/v2beta1/pipelines" and method == "POST":
            pipeline_id = f"pl-{len(self.pipelines) + 1}"
            self.pipelines[body["display_name"]] = pipeline_id
            return FakeResponse({"pipeline_id": pipeline_id, "display_name": body["display_name"]})
        if path == "/apis/v2beta1/pipelines/upload_version" and method == "POST":
            _, data, _ = files["uploadfile"]
            version_id = f"pv-{len(self.versions) + 1}"
            self.versions[version_id] = {
                "pipeline_id": query["pipelineid"],
                "display_name": query["name"],
                "spec": yaml.safe_load(data),
            }
            return FakeResponse(
                {"pipeline_id": query["pipelineid"], "pipeline_version_id": version_id}
            )
        if path.endswith("/versions") and method == "GET":
            pipeline_id, name = path.split("/")[-2], self._named(query)
            found = [
                {
                    "pipeline_version_id": i,
                    "pipeline_id": v["pipeline_id"],
                    "display_name": v["display_name"],
                }
                for i, v in self.versions.items()
                if v["pipeline_id"] == pipeline_id and v["display_name"] == name
            ]
            return FakeResponse({"pipeline_versions": found})
        raise AssertionError(f"unexpected request {method} {path}")

    def _recurring(self, method, path, query, body):
        if path == "/apis/v2beta1/recurringruns" and method == "POST":
            recurring_id = f"rr-{len(self.calls)}"
            self.recurring[recurring_id] = body
            return FakeResponse({"recurring_run_id": recurring_id})
        if path == "/apis/v2beta1/recurringruns" and method == "GET":
            name = self._named(query)
            found = [
                {"recurring_run_id": i, "display_name": b["display_name"]}
                for i, b in self.recurring.items()
                if b["display_name"] == name and b["experiment_id"] == query["experiment_id"]
            ]
            return FakeResponse({"recurringRuns": found})  # the proto's own field name
        if method == "DELETE" and self.refuse_deletes:
            error = kfp_server_api.ApiException(status=500, reason="Internal Server Error")
            error.body = b"{}"
            raise error
        if method == "DELETE":
            del self.recurring[path.rsplit("/", 1)[1]]
            return FakeResponse({})
        raise AssertionError(f"unexpected request {method} {path}")

    def sent(self, method: str, path: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and c["path"] == path]


@pytest.fixture(scope="module")
def compiled_once(tmp_path_factory):
    """``compile_pipeline`` that compiles each distinct config once per module (a compile takes
    seconds; the commands under test compile on every call)."""
    real, done = tgap_pipeline.compile_pipeline, {}

    def compile_pipeline(config, output_path, allow_floating_tag=False):
        key = json.dumps([config.to_dict(), allow_floating_tag], sort_keys=True)
        if key not in done:
            done[key] = real(
                config, tmp_path_factory.mktemp("spec") / "tgap.yaml", allow_floating_tag
            )
        Path(output_path).write_bytes(done[key].read_bytes())
        return Path(output_path)

    return compile_pipeline


@pytest.fixture
def server(monkeypatch, tmp_path, compiled_once):
    fake = FakeKfpServer()
    monkeypatch.setattr(tgap_pipeline, "compile_pipeline", compiled_once)
    monkeypatch.setattr(
        kfp_server_api.ApiClient,
        "request",
        lambda self, *args, **kwargs: fake(self, *args, **kwargs),
    )
    # kfp.Client reads a saved user namespace from ~/.config/kfp; keep tests independent of it.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.delenv(kube.TOKEN_ENV, raising=False)
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    return fake


def _expected_parameters(overrides: list[str] | None = None) -> dict:
    config = load_config(MICRO, overrides)
    return json.loads(json.dumps(tgap_pipeline.pipeline_arguments(config)))


# --------------------------------------------------------------------------- submit


def test_submit_sends_every_pipeline_parameter_with_the_bearer_token(server, capsys):
    code = main(
        ["submit", "--host", HOST, "--token", TOKEN, "--experiment", "tgap-test"]
        + ["--config", MICRO, "--set", "grid.seeds=[0,1]", "--run-name", "micro-1"]
    )
    assert code == 0

    [created_exp] = server.sent("POST", "/apis/v2beta1/experiments")
    assert created_exp["body"]["display_name"] == "tgap-test"
    [run] = server.sent("POST", "/apis/v2beta1/runs")
    body = run["body"]
    assert body["experiment_id"] == "exp-1"
    assert body["display_name"] == "micro-1"
    params = body["runtime_config"]["parameters"]
    expected = _expected_parameters(["grid.seeds=[0,1]"])
    assert params == expected
    # The run names an uploaded version of pipeline "tgap" instead of embedding the spec...
    assert "pipeline_spec" not in body
    assert server.pipelines == {"tgap": "pl-1"}
    [(version_id, version)] = server.versions.items()
    assert body["pipeline_version_reference"] == {
        "pipeline_id": "pl-1",
        "pipeline_version_id": version_id,
    }
    assert version["display_name"].startswith("micro-")
    # ...whose spec declares exactly the parameters the run sends.
    spec_params = version["spec"]["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(spec_params)
    assert params["seeds"] == [0, 1]  # the override reached the run
    for call in server.calls:
        assert call["headers"].get("authorization") == f"Bearer {TOKEN}"
    out = capsys.readouterr().out
    assert "run-1" in out and TOKEN not in out


def test_submit_takes_the_token_from_the_environment(server, monkeypatch):
    monkeypatch.setenv(kube.TOKEN_ENV, "env-token-123")
    main(["submit", "--host", HOST, "--experiment", "e", "--config", MICRO])
    assert server.calls
    assert {c["headers"].get("authorization") for c in server.calls} == {"Bearer env-token-123"}


def test_submit_reports_a_refused_run_with_the_servers_reason_and_no_token(server, capsys):
    server.refuse_runs = True
    code = main(
        ["submit", "--host", HOST, "--token", TOKEN, "--experiment", "e", "--config", MICRO]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "creating a run in experiment 'e': HTTP 400 Bad Request" in err
    assert "Invalid input: pipeline_root" in err and TOKEN not in err


def test_run_request_carries_service_account_and_pipeline_root_from_config(tmp_path):
    config = load_config(
        MICRO,
        ["cluster.service_account=tgap-runner", "cluster.pipeline_root=gs://bucket/tgap-runs"],
    )
    package = tgap_pipeline.compile_pipeline(config, tmp_path / "p.yaml")
    request = kube.run_request(config, package, "exp-9", ("pl", "pv"), "name")
    assert request["service_account"] == "tgap-runner"
    assert request["pipeline_root"] == "gs://bucket/tgap-runs"
    assert request["experiment_id"] == "exp-9"
    assert (request["pipeline_id"], request["version_id"]) == ("pl", "pv")
    assert request["params"] == tgap_pipeline.pipeline_arguments(config)


def test_a_second_submit_of_the_same_code_and_config_reuses_its_version(server):
    argv = ["submit", "--host", HOST, "--experiment", "e", "--config", MICRO]
    assert main(argv) == 0 and main(argv) == 0
    assert len(server.sent("POST", "/apis/v2beta1/pipelines/upload_version")) == 1
    assert len(server.sent("POST", "/apis/v2beta1/pipelines")) == 1
    runs = server.sent("POST", "/apis/v2beta1/runs")
    assert len(runs) == 2
    assert (
        runs[0]["body"]["pipeline_version_reference"]
        == runs[1]["body"]["pipeline_version_reference"]
    )
    # Another config is another version of the same pipeline.
    assert main([*argv, "--set", "grid.seeds=[0,1]"]) == 0
    assert len(server.versions) == 2 and len(server.pipelines) == 1


def test_the_version_name_is_the_config_commit_and_config_hash(tmp_path, monkeypatch):
    config = load_config(MICRO)
    package = tgap_pipeline.compile_pipeline(config, tmp_path / "p.yaml")
    monkeypatch.setattr(kube, "source_commit", lambda: "0123456789abcdef0123")
    name = kube.pipeline_version_name(config, package)
    assert name.startswith("micro-g0123456789ab-c") and len(name.rsplit("-c", 1)[1]) == 10
    other = kube.pipeline_version_name(load_config(MICRO, ["grid.seeds=[3]"]), package)
    assert other != name and other.startswith("micro-g0123456789ab-c")
    # Without a clean commit, the spec's own digest names the code: its content, not the
    # compiler's header comment, whose order of defaults changes from one compile to the next.
    monkeypatch.setattr(kube, "source_commit", lambda: None)
    name = kube.pipeline_version_name(config, package)
    assert name.startswith("micro-s")
    again = tmp_path / "again.yaml"
    again.write_text("# another header\n" + package.read_text())
    assert kube.pipeline_version_name(config, again) == name


def test_a_given_spec_is_checked_before_it_is_uploaded(server, capsys, tmp_path, compiled_once):
    floating = ["cluster.gpu_image=ghcr.io/tgap/tgap-cuda:0.1.0"]
    spec = compiled_once(load_config(MICRO, floating), tmp_path / "spec.yaml", True)
    argv = ["submit", "--host", HOST, "--experiment", "e", "--config", MICRO, "--spec", str(spec)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ghcr.io/tgap/tgap-cuda:0.1.0" in err and err.rstrip().endswith("--allow-floating-tag")
    # A spec whose parameters are not the config's.
    doc, *rest = yaml.safe_load_all(spec.read_text())
    del doc["root"]["inputDefinitions"]["parameters"]["finetune"]
    spec.write_text(yaml.safe_dump_all([doc, *rest]))
    assert main([*argv, "--allow-floating-tag"]) == 2
    assert "not in the spec: ['finetune']" in capsys.readouterr().err
    assert not server.sent("POST", "/apis/v2beta1/pipelines/upload_version")


# --------------------------------------------------------------------------- backend version


@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_a_server_older_than_the_minimum_is_refused_before_anything_is_sent(
    server, capsys, command
):
    server.tag = "2.5.0"
    code = main([command, "--host", HOST, "--experiment", "e", "--config", MICRO])
    assert code == 1
    err = capsys.readouterr().err
    assert "the KFP server is release 2.5.0, older than 2.14.0" in err
    assert "dsl.Collected" in err
    assert {(c["method"], c["path"]) for c in server.calls} == {("GET", "/apis/v2beta1/healthz")}


def test_a_server_without_a_release_tag_is_refused_unless_the_check_is_skipped(server, capsys):
    server.tag = "unknown"
    argv = ["submit", "--host", HOST, "--experiment", "e", "--config", MICRO]
    assert main(argv) == 1
    assert "does not name its release (healthz tag_name 'unknown')" in capsys.readouterr().err
    assert main([*argv, "--skip-version-check"]) == 0


@pytest.mark.parametrize(
    ("tag", "ok"), [("2.14.0", True), ("v2.17.0", True), ("2.13.9", False), ("1.8.5", False)]
)
def test_check_backend_compares_releases_numerically(tag, ok):
    if ok:
        kube.check_backend(tag)
    else:
        with pytest.raises(kube.KfpApiError, match="older than 2.14.0"):
            kube.check_backend(tag)


def test_check_arguments_names_missing_and_unknown_parameters(tmp_path):
    config = load_config(MICRO)
    package = tgap_pipeline.compile_pipeline(config, tmp_path / "p.yaml")
    arguments = tgap_pipeline.pipeline_arguments(config)
    kube.check_arguments(package, arguments)  # complete: no error
    broken = dict(arguments, extra=1)
    del broken["finetune"]
    with pytest.raises(ValueError, match=r"missing: \['finetune'\].*not in the spec: \['extra'\]"):
        kube.check_arguments(package, broken)


# --------------------------------------------------------------------------- schedule


def test_schedule_creates_a_weekly_recurring_run_one_at_a_time_without_catchup(server):
    code = main(
        ["schedule", "--host", HOST, "--token", TOKEN, "--experiment", "weekly"]
        + ["--config", MICRO, "--cron", "0 0 3 * * 1", "--name", "tgap weekly"]
    )
    assert code == 0
    [job] = server.sent("POST", "/apis/v2beta1/recurringruns")
    body = job["body"]
    assert body["experiment_id"] == "exp-1"
    assert body["display_name"] == "tgap weekly"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["runtime_config"]["parameters"] == _expected_parameters()
    [version_id] = server.versions
    assert body["pipeline_version_reference"]["pipeline_version_id"] == version_id
    assert all(c["headers"].get("authorization") == f"Bearer {TOKEN}" for c in server.calls)


def test_a_second_schedule_of_the_same_name_replaces_the_first(server, capsys):
    argv = ["schedule", "--host", HOST, "--experiment", "weekly", "--config", MICRO]
    assert main([*argv, "--name", "tgap weekly"]) == 0
    [first] = server.recurring
    assert main([*argv, "--name", "tgap weekly", "--set", "grid.seeds=[0,1]"]) == 0
    [second] = server.recurring  # one recurring run of that name, the new one
    assert second != first
    assert server.recurring[second]["runtime_config"]["parameters"]["seeds"] == [0, 1]
    assert server.sent("DELETE", f"/apis/v2beta1/recurringruns/{first}")
    assert f"replacing {first}" in capsys.readouterr().out
    # Another name is another recurring run.
    assert main([*argv, "--name", "tgap nightly"]) == 0
    assert len(server.recurring) == 2


def test_a_refused_deletion_says_both_schedules_run_and_a_second_schedule_mends_it(server, capsys):
    argv = ["schedule", "--host", HOST, "--experiment", "weekly", "--config", MICRO]
    assert main(argv) == 0
    [first] = server.recurring
    server.refuse_deletes = True
    assert main(argv) == 1
    assert len(server.recurring) == 2  # created, the old one not deleted
    [second] = set(server.recurring) - {first}
    [line] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert f"created recurring run {second} 'micro weekly'" in line
    assert f"both are scheduled until {first} is deleted" in line
    assert line.endswith("HTTP 500 Internal Server Error")  # the cause, last
    server.refuse_deletes = False
    assert main(argv) == 0
    assert len(server.recurring) == 1  # the third replaced both


def test_schedule_rejects_a_five_field_cron_before_contacting_the_server(server):
    code = main(
        ["schedule", "--host", HOST, "--experiment", "e", "--config", MICRO]
        + ["--cron", "0 3 * * 1"]
    )
    assert code == 2
    assert server.calls == []


# --------------------------------------------------------------------------- runs


def test_runs_lists_newest_first_with_state_and_says_where_fter_is(server, capsys):
    server.runs = [
        {
            "run_id": "r-new",
            "display_name": "tgap weekly 2026-11-16",
            "state": "RUNNING",
            "created_at": "2026-11-16T03:00:00Z",
            "finished_at": "1970-01-01T00:00:00Z",
            "runtime_config": {
                "parameters": {"methods": ["random", "active"], "sizes": [1, 2, 3], "seeds": [0]}
            },
        },
        {
            "run_id": "r-old",
            "display_name": "tgap weekly 2026-11-09",
            "state": "SUCCEEDED",
            "created_at": "2026-11-09T03:00:00Z",
            "finished_at": "2026-11-09T05:30:00Z",
            "runtime_config": {"parameters": {"grid": [{"method": "random"}] * 2}},
        },
    ]
    assert main(["runs", "--host", HOST, "--token", TOKEN, "--limit", "5"]) == 0
    [listing] = server.sent("GET", "/apis/v2beta1/runs")
    assert listing["query"]["sort_by"] == "created_at desc"
    assert listing["query"]["page_size"] == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["created", "(UTC)"]
    assert lines[1].split()[:5] == ["2026-11-16", "03:00", "RUNNING", "-", "6"]
    assert lines[2].split()[:5] == ["2026-11-09", "03:00", "SUCCEEDED", "2h30m", "2"]
    assert lines[1].endswith("r-new") and lines[2].endswith("r-old")
    assert lines[-1] == kube.FTER_NOT_REACHABLE


def test_format_runs_says_so_when_there_are_none():
    text = kube.format_runs([])
    assert "(no runs)" in text and text.endswith(kube.FTER_NOT_REACHABLE)


def test_client_kwargs_leave_host_and_token_unset_for_in_cluster_auth():
    # kfp.Client then uses KF_PIPELINES_ENDPOINT, the pod's service-account token or kubeconfig.
    assert kube.client_kwargs(None, None, None) == {"host": None, "existing_token": None}
    assert kube.client_kwargs("http://h", "team-a", "t") == {
        "host": "http://h",
        "existing_token": "t",
        "namespace": "team-a",
    }


# --------------------------------------------------------------------------- compiled spec

SECRET_VALUES = {
    "AWS_ACCESS_KEY_ID": "AKIA-TEST-7Q2W9E",
    "AWS_SECRET_ACCESS_KEY": "s3cr3t-v4lue-should-never-leak",
    "TGAP_S3_ENDPOINT": "http://minio.secret-endpoint.test:9000",
    "AWS_REGION": "eu-test-9",
}
CLUSTER_OVERRIDES = [
    "cluster.object_store_secret=tgap-test-store",
    "cluster.gpu.node_selector={cloud.google.com/gke-nodepool: gpu-pool}",
    "cluster.gpu.tolerations=[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]",
    "cluster.gpu.accelerator_type=nvidia-l4",
    "cluster.gpu.cpu_request='6'",
    "cluster.gpu.memory_request=24Gi",
    "cluster.retries=3",
    "cluster.model_cache_path=/tgap-cache",
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for name, value in SECRET_VALUES.items():  # present at compile time: must not leak
        mp.setenv(name, value)
    try:
        config = load_config(MICRO, CLUSTER_OVERRIDES)
        path = tgap_pipeline.compile_pipeline(config, tmp_path_factory.mktemp("spec") / "t.yaml")
    finally:
        mp.undo()
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return path, spec, platform


def _executor(spec: dict, component: str) -> dict:
    label = spec["components"][f"comp-{component}"]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]


def test_compiled_spec_loads_with_kfps_own_loader(compiled):
    path, _, _ = compiled
    component = kfp.components.load_component_from_file(str(path))
    assert component.name == "tgap"
    assert {"methods", "sizes", "seeds"} <= set(component.component_spec.inputs)


def test_gpu_tasks_carry_accelerator_node_pool_toleration_and_retries(compiled):
    _, spec, platform = compiled
    for name in ("finetune", "generate"):
        container = _executor(spec, name)
        resources = container["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "1"
        assert resources["resourceCpuRequest"] == "6"
        assert resources["resourceMemoryRequest"] == "24Gi"
        assert container["image"] == f"ghcr.io/tgap/tgap-cuda:{images.content_tag()}"
        assert {"name": "TGAP_CACHE", "value": "/tgap-cache"} in container["env"]
        k8s = platform[spec["components"][f"comp-{name}"]["executorLabel"]]
        assert k8s["nodeSelector"]["labels"] == {
            "cloud.google.com/gke-nodepool": "gpu-pool",
            "cloud.google.com/gke-accelerator": "nvidia-l4",
        }
        assert k8s["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        assert k8s["emptyDirMounts"] == [
            {"mountPath": "/tgap-cache", "volumeName": kcluster.CACHE_VOLUME}
        ]
    policies = [
        task["retryPolicy"]
        for comp in spec["components"].values()
        for task in comp.get("dag", {}).get("tasks", {}).values()
        if task["componentRef"]["name"] in ("comp-finetune", "comp-generate")
    ]
    assert len(policies) == 2
    assert all(p["maxRetryCount"] == 3 and p["backoffDuration"] == "60s" for p in policies)


def test_cpu_tasks_get_no_gpu_node_pool_or_accelerator(compiled):
    _, spec, platform = compiled
    gpu_labels = {
        spec["components"][f"comp-{n}"]["executorLabel"]
        for n in ("finetune", "generate", "class-images")
    }
    cpu_labels = set(spec["deploymentSpec"]["executors"]) - gpu_labels
    assert len(cpu_labels) >= 5
    for label in cpu_labels:
        container = spec["deploymentSpec"]["executors"][label]["container"]
        assert "accelerator" not in container.get("resources", {}), label
        k8s = platform.get(label, {})
        assert "nodeSelector" not in k8s and "tolerations" not in k8s, label


def test_every_task_gets_the_object_store_secret_by_reference_only(compiled):
    path, spec, platform = compiled
    for label in spec["deploymentSpec"]["executors"]:
        [secret] = platform[label]["secretAsEnv"]
        assert secret["secretNameParameter"]["runtimeValue"]["constant"] == "tgap-test-store"
        assert {m["envVar"] for m in secret["keyToEnv"]} == set(SECRET_VALUES)
    text = path.read_text()
    for name, value in SECRET_VALUES.items():
        assert value not in text, f"value of {name} leaked into the compiled spec"


# --------------------------------------------------------------------------- configure_task


def _configured(cluster_overrides: list[str], gpu: bool) -> dict:
    config = load_config(None, cluster_overrides)

    @dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
    def step() -> None:
        pass

    task_holder = {}

    @dsl.pipeline(name="one-step")
    def one_step():
        task = step()
        kcluster.configure_task(task, config.cluster, gpu=gpu)
        task_holder["platform"] = task.platform_config.get("kubernetes", {})
        task_holder["env"] = dict(task.container_spec.env or {})

    return task_holder


def test_model_cache_on_a_pvc_when_named_else_nothing():
    on_pvc = _configured(["cluster.model_cache_pvc=models", "cluster.model_cache_path=/m"], True)
    [mount] = on_pvc["platform"]["pvcMount"]
    assert mount["mountPath"] == "/m"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "models"
    assert on_pvc["env"]["TGAP_CACHE"] == "/m"
    # No cache path: no volume and no TGAP_CACHE (kfp.local honours env, so nothing dangling).
    plain = _configured([], True)
    assert "pvcMount" not in plain["platform"] and "emptyDirMounts" not in plain["platform"]
    assert "TGAP_CACHE" not in plain["env"]


def test_no_secret_configured_means_no_secret_reference():
    assert "secretAsEnv" not in _configured([], False)["platform"]


def test_gcs_key_secret_is_mounted_and_pointed_at():
    result = _configured(["cluster.gcs_credentials_secret=gcs-key"], False)
    [volume] = result["platform"]["secretAsVolume"]
    assert volume["mountPath"] == kcluster.GCS_KEY_DIR
    assert result["env"]["GOOGLE_APPLICATION_CREDENTIALS"] == f"{kcluster.GCS_KEY_DIR}/key.json"


def test_bad_cluster_settings_fail_at_compile_time_naming_the_key():
    with pytest.raises(ConfigError, match="cluster.model_cache_path"):
        _configured(["cluster.model_cache_pvc=models"], True)
    with pytest.raises(ConfigError, match=r"cluster.gpu.tolerations\[0\].*tolerationSeconds"):
        _configured(["cluster.gpu.tolerations=[{key: a, tolerationSeconds: '5'}]"], True)
    with pytest.raises(ConfigError, match="cluster.gpu_image"):
        kcluster.component_images(load_config(None, ["cluster.gpu_image=''"]).cluster)


# --------------------------------------------------------------------------- manifests

MANIFESTS = ROOT / "manifests"


def _repository(image: str) -> str:
    return images.Reference.parse(image, image).repository


def _yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kustomize(tmp_path) -> list[dict]:
    """The objects `kubectl kustomize manifests/` builds (with the example env as the secret)."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    shutil.copy(copy / "base" / "object-store.env.example", copy / "base" / "object-store.env")
    built = subprocess.run(
        [kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def test_kustomize_builds_the_secret_the_config_expects(tmp_path):
    objects = {(d["kind"], d["metadata"]["name"]): d for d in _kustomize(tmp_path)}
    defaults = load_config(None).cluster
    secret = objects[("Secret", "tgap-object-store")]
    assert set(secret["data"]) == set(defaults.object_store_keys)
    assert all(d["metadata"]["namespace"] == "kubeflow" for d in objects.values())
    runner = objects[("RoleBinding", "tgap-runner")]
    assert runner["subjects"][0]["name"] == "tgap-runner"
    assert ("ServiceAccount", "tgap-submitter") in objects


# The manifests use only stable APIs (v1, rbac.authorization.k8s.io/v1, batch/v1): the oldest
# Kubernetes schema checked here and the newest kubernetes-validate ships bound the range.
K8S_VERSIONS = ("1.29.0", "latest")


def _validate_k8s(document: dict) -> None:
    import kubernetes_validate

    for version in K8S_VERSIONS:
        if version == "latest":
            version = kubernetes_validate.latest_version()
        # strict: a field the schema does not know (a typo) is an error, as `kubectl apply
        # --validate=strict` would make it.
        kubernetes_validate.validate(document, version, strict=True)


def test_kustomize_output_and_examples_validate_against_kubernetes_schemas(tmp_path):
    documents = _kustomize(tmp_path)
    for example in ("gpu-smoke-test.yaml", "schedule-job.yaml"):
        documents += _yaml_docs(MANIFESTS / "examples" / example)
    kinds = sorted({d["kind"] for d in documents})
    assert kinds == ["Job", "Pod", "Role", "RoleBinding", "Secret", "ServiceAccount"]
    for document in documents:
        _validate_k8s(document)


def test_the_schema_check_catches_a_misspelt_field():
    import kubernetes_validate

    [pod] = _yaml_docs(MANIFESTS / "examples" / "gpu-smoke-test.yaml")
    pod["spec"]["nodeSelecter"] = pod["spec"].pop("nodeSelector")
    with pytest.raises(kubernetes_validate.ValidationError, match="nodeSelecter"):
        _validate_k8s(pod)


def test_manifest_examples_agree_with_the_config_and_kfp():
    section = yaml.safe_load((MANIFESTS / "examples" / "cluster-section.yaml").read_text())
    config = load_config(None, [f"cluster={json.dumps(section['cluster'])}"])
    assert config.cluster.service_account == "tgap-runner"
    # The GPU smoke test schedules exactly like the pipeline's GPU steps would.
    [pod] = _yaml_docs(MANIFESTS / "examples" / "gpu-smoke-test.yaml")
    gpu = config.cluster.gpu
    expected_selector = dict(
        gpu.node_selector, **{gpu.accelerator_node_label: gpu.accelerator_type}
    )
    assert pod["spec"]["nodeSelector"] == expected_selector
    assert pod["spec"]["tolerations"] == gpu.tolerations
    assert _repository(pod["spec"]["containers"][0]["image"]) == config.cluster.gpu_image
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {gpu.accelerator: gpu.limit}
    # The in-cluster schedule job: a 6-field cron, and the token where kfp.Client looks for it.
    [job] = _yaml_docs(MANIFESTS / "examples" / "schedule-job.yaml")
    pod_spec = job["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    assert _repository(container["image"]) == config.cluster.cpu_image
    command = container["command"]
    cron = next(a.split("=", 1)[1] for a in command if a.startswith("--cron="))
    assert kube.check_cron(cron) == kube.DEFAULT_CRON
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # The spec and its config both come from the ConfigMap volume: the image has no checkout.
    [config_volume] = [v for v in pod_spec["volumes"] if "configMap" in v]
    for flag in ("--spec", "--config"):
        [value] = [a.split("=", 1)[1] for a in command if a.startswith(f"{flag}=")]
        assert Path(value).parent == Path(mounts[config_volume["name"]]), flag
    [token_volume] = [v for v in pod_spec["volumes"] if v["name"] == "kfp-token"]
    [source] = token_volume["projected"]["sources"]
    token_path = f"{mounts['kfp-token']}/{source['serviceAccountToken']['path']}"
    assert token_path == kfp.client.KF_PIPELINES_SA_TOKEN_PATH
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"


# --------------------------------------------------------------------------- image tags


def test_a_floating_tag_is_refused_at_compile_naming_the_flag(tmp_path, capsys):
    out = tmp_path / "spec.yaml"
    code = main(
        ["compile", "--config", MICRO, "--set", "cluster.gpu_image=ghcr.io/tgap/tgap-cuda:0.1.0"]
        + ["--output", str(out)]
    )
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "cluster.gpu_image" in err and "'0.1.0'" in err and "--allow-floating-tag" in err
    cluster = load_config(MICRO, ["cluster.gpu_image=ghcr.io/tgap/tgap-cuda:0.1.0"]).cluster
    cpu, gpu = kcluster.component_images(cluster, allow_floating_tag=True)
    assert gpu == "ghcr.io/tgap/tgap-cuda:0.1.0"
    assert cpu == f"ghcr.io/tgap/tgap-cpu:{images.content_tag()}"


def test_image_references_resolve_to_the_recorded_digest_else_the_content_tag(tmp_path):
    tag, digest = "0.1.0-0123456789ab", "sha256:" + "5" * 64
    recorded = images.record(tag, [f"registry.test:5000/team/cpu@{digest}"], tmp_path / "d.json")
    assert images.recorded_digests(tag, tmp_path / "d.json") == recorded["images"]
    assert images.recorded_digests("0.1.0-ffffffffffff", tmp_path / "d.json") == {}
    digests = images.recorded_digests(tag, tmp_path / "d.json")
    pinned = f"registry.test:5000/team/cpu@{digest}"
    for ref in ("registry.test:5000/team/cpu", f"registry.test:5000/team/cpu:{tag}"):
        assert images.resolve(ref, "k", tag, digests, allow_floating=False) == pinned
    assert images.resolve("r.test/gpu", "k", tag, digests, False) == f"r.test/gpu:{tag}"
    given = f"r.test/gpu@{digest}"
    assert images.resolve(given, "k", tag, digests, False) == given
    for floating in ("r.test/gpu:latest", "r.test/gpu:0.1.0-aaaaaaaaaaaa"):
        with pytest.raises(ConfigError, match="--allow-floating-tag"):
            images.resolve(floating, "cluster.gpu_image", tag, digests, False)


def test_the_content_tag_follows_the_build_context_and_nothing_else(tmp_path):
    root = tmp_path / "repo"
    for name in (".dockerignore", "pyproject.toml", "README.md", *images.DOCKERFILES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((ROOT / name).read_bytes())
    (root / "tgap" / "__pycache__").mkdir(parents=True)
    (root / "tgap" / "a.py").write_text("x = 1\n")
    (root / "components").mkdir()
    first = images.content_tag(root)
    assert first.startswith(load_version() + "-") and len(first.split("-")[-1]) == 12
    # Outside the context (components/ is embedded in the spec, not the image), or ignored.
    (root / "components" / "c.py").write_text("y = 2\n")
    (root / "tgap" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert images.content_tag(root) == first
    (root / "tgap" / "a.py").write_text("x = 2\n")
    assert images.content_tag(root) != first
    (root / "tgap" / "a.py").write_text("x = 1\n")
    (root / "images" / "Dockerfile.cuda").write_text("FROM scratch\n")
    assert images.content_tag(root) != first


def load_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


# --------------------------------------------------------------------------- the schedule Job


class HttpKfp:
    """:class:`FakeKfpServer` behind a real HTTP port, for a `tgap` in another process."""

    def __init__(self, fake: FakeKfpServer):
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                outer.handle(self)

            do_GET = do_POST = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.fake = fake
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, request) -> None:
        import email.parser
        import email.policy
        import urllib.parse

        url = urllib.parse.urlsplit(request.path)
        data = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        kind = request.headers.get("Content-Type", "")
        body, files = None, []
        if kind.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {kind}\r\n\r\n".encode() + data
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                files.append((name, (part.get_filename(), part.get_payload(decode=True), "")))
        elif data:
            body = json.loads(data)
        try:
            response = self.fake(
                None,
                request.command,
                HOST + url.path,
                query_params=urllib.parse.parse_qsl(url.query),
                headers=dict(request.headers),
                body=body,
                post_params=files,
            )
        except Exception as exc:  # the fake's AssertionError: answer it, and keep it
            self.fake.calls.append({"method": "ERROR", "path": url.path, "error": repr(exc)})
            response = FakeResponse({"message": repr(exc)}, status=500)
        request.send_response(response.status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(response.data)))
        request.end_headers()
        request.wfile.write(response.data)

    def close(self) -> None:
        self.httpd.shutdown()


def _installed_wheel(tmp_path: Path) -> Path:
    """A venv outside the repository with tgap installed from its wheel (not editable); the
    dependencies come from this interpreter's site-packages through a .pth file."""
    import shutil
    import subprocess
    import sys
    import sysconfig

    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # what the image copies (.dockerignore), built out of tree
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "tgap", source / "tgap", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = tmp_path / "wheels"
    run = dict(check=True, capture_output=True, text=True, timeout=180)
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)], **run)  # fmt: skip
    [wheel] = wheels.glob("tgap-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **run)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], **run)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], **run
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return venv


def test_the_schedule_job_runs_from_the_installed_wheel_without_a_checkout(tmp_path, compiled_once):
    import subprocess

    venv = _installed_wheel(tmp_path)
    # The ConfigMap: a spec compiled from a checkout, and the config it was compiled from.
    etc = tmp_path / "etc-tgap"
    etc.mkdir()
    (etc / "config.yaml").write_bytes(Path(MICRO).read_bytes())
    compiled_once(load_config(MICRO), etc / "tgap.yaml")
    [job] = _yaml_docs(MANIFESTS / "examples" / "schedule-job.yaml")
    command = [a.replace("/etc/tgap/", f"{etc}/") for a in job["spec"]["template"]["spec"]["containers"][0]["command"]]  # fmt: skip
    assert command[0] == "tgap"
    fake = FakeKfpServer()
    server = HttpKfp(fake)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        # In the pod kfp.Client finds the in-cluster service; here, the fake's port.
        "KF_PIPELINES_ENDPOINT": server.url,
        kube.TOKEN_ENV: TOKEN,
    }
    try:
        done = subprocess.run(
            [str(venv / "bin" / command[0]), *command[1:]],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import tgap, importlib.util as u; "
             "print(tgap.__file__, u.find_spec('pipelines'), u.find_spec('components'))"],
            cwd=home, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        server.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert where.stdout.split() == [
        str(next((venv / "lib").glob("python*/site-packages/tgap/__init__.py"))),
        "None",
        "None",
    ], where.stdout + where.stderr
    assert not [c for c in fake.calls if c["method"] == "ERROR"], fake.calls
    [version] = fake.versions.values()
    assert version["spec"] == yaml.safe_load((etc / "tgap.yaml").read_text())
    assert version["display_name"].startswith("micro-s")  # named by the spec: no commit here
    [recurring] = fake.recurring.values()
    assert recurring["display_name"] == "tgap weekly"
    assert recurring["trigger"]["cron_schedule"]["cron"] == kube.DEFAULT_CRON
    assert recurring["runtime_config"]["parameters"] == _expected_parameters()
    assert all(c["headers"].get("authorization") == f"Bearer {TOKEN}" for c in fake.calls)
