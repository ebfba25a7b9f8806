"""The compiled pipeline: parses back, carries every parameter with a default and description,
and the committed spec is what the code compiles today."""

import re
from pathlib import Path

import pytest
import yaml
from kfp import components

from components import STAGES as STAGE_FUNCTIONS
from pipelines import images
from pipelines.tgap_pipeline import compile_pipeline, pipeline_arguments
from tgap.config import (
    STAGES,
    Config,
    ConfigError,
    config_from_parameters,
    load_config,
    section,
)
from tgap.parameters import PARAMETER_HELP
from tgap.provenance import REAL_TEST_READERS, REAL_VAL_READERS

COMMITTED = Path("pipelines/compiled/tgap.yaml")


def _spec(path: Path) -> dict:
    """The pipeline spec document (the second YAML document, if any, is the platform spec)."""
    return _documents(path)[0]


def _documents(path: Path) -> list[dict]:
    # The header comment lists defaults in an unstable dict order; the documents are stable.
    return list(yaml.safe_load_all(path.read_text()))


def test_every_stage_function_is_a_config_stage():
    import components

    # components.STAGES is derived from tgap.config.STAGES: a stage without a function fails
    # at import; this catches a function no stage names (it would never become a component).
    assert list(components.STAGES) == list(STAGES)
    assert sorted(components._FUNCTIONS.values(), key=id) == sorted(
        STAGE_FUNCTIONS.values(), key=id
    )


def test_compiled_spec_parses_with_kfp_loader(tmp_path):
    path = compile_pipeline(load_config("pipelines/configs/micro.yaml"), tmp_path / "p.yaml")
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "tgap"
    spec = _spec(path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) <= set(PARAMETER_HELP)
    for name, definition in params.items():
        assert definition.get("description"), name
        assert "defaultValue" in definition, name


def _loops(spec: dict) -> dict[str, set[str]]:
    """Loop parameter name -> display names of the tasks inside it."""
    out = {}
    for task in spec["root"]["dag"]["tasks"].values():
        if "parameterIterator" in task:
            component = spec["components"][task["componentRef"]["name"]]
            inner = component["dag"]["tasks"].values()
            assert not any("parameterIterator" in t for t in inner), "nested loop"
            # Each loop iterates over one grid-items task's output: name it by that task's kind.
            producer = task["inputs"]["parameters"][
                task["parameterIterator"]["items"]["inputParameter"]
            ]["taskOutputParameter"]["producerTask"]
            kind = spec["root"]["dag"]["tasks"][producer]["inputs"]["parameters"]["kind"]
            name = kind["runtimeValue"]["constant"].replace("-", "_")
            out[name] = {t["taskInfo"]["name"] for t in inner}
    return out


def test_every_stage_is_a_task_and_each_row_kind_is_a_flat_loop(tmp_path):
    config = load_config(
        "pipelines/configs/micro.yaml", ["grid.methods=[random,no-finetune,retrieval]"]
    )
    spec = _spec(compile_pipeline(config, tmp_path / "p.yaml"))
    loops = _loops(spec)
    evaluation = {
        "train-real-classifier", "train-synthetic-classifier", "evaluate-S2R", "evaluate-R2S",
        "evaluate-R2R", "supplementation", "synthetic-curve", "compute-FTER",
    }  # fmt: skip
    assert loops == {
        # micro has generate.tune.trials 0: no tune-generation task (it would only download)
        "finetune": {"select", "fine-tune", "generate"} | evaluation,
        # The base model generates once per seed; nothing fine-tunes.
        "no_finetune": {"select", "generate"} | evaluation,
        # Nothing on a GPU: no fine-tune, no generation.
        "retrieval": {"select"} | evaluation,
    }
    outer = {t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()}
    assert {
        "fingerprint", "ingest", "train-reference-classifier", "embed", "prepare-base-model",
        "class-images", "report", "expand-grid", "validate-run", "real-curves",
    } <= outer  # fmt: skip


def _readers(spec: dict, producer: str, output: str) -> set[str]:
    """Display names of the tasks that take ``producer``'s artifact ``output`` as an input, in
    the root DAG or inside a loop (a loop's component input is traced to its producer)."""
    found = set()

    def walk(tasks: dict, inherited: dict[str, tuple[str, str]]) -> None:
        for task in tasks.values():
            sources = {}
            for name, value in task.get("inputs", {}).get("artifacts", {}).items():
                if "taskOutputArtifact" in value:
                    out = value["taskOutputArtifact"]
                    sources[name] = (out["producerTask"], out["outputArtifactKey"])
                elif "componentInputArtifact" in value:
                    sources[name] = inherited.get(value["componentInputArtifact"])
            dag = spec["components"][task["componentRef"]["name"]].get("dag")
            if dag:  # a loop: its inner tasks see these inputs by name
                walk(dag["tasks"], sources)
            elif (producer, output) in sources.values():
                found.add(task["taskInfo"]["name"])

    walk(spec["root"]["dag"]["tasks"], {})
    return found


def test_real_test_is_read_only_by_the_tasks_that_report_on_it(tmp_path):
    """Sealed real-test: every choice is made on real-val, never on real-test."""
    # with trials, so the fine-tune loop holds tune-generation (real-val's reader); a trial's
    # set no larger than micro's generated one
    config = load_config(
        "pipelines/configs/micro.yaml",
        ["grid.methods=[random,no-finetune,retrieval]", "generate.tune.trials=2",
         "generate.tune.n_per_label=8"],
    )  # fmt: skip
    spec = _spec(compile_pipeline(config, tmp_path / "p.yaml"))
    assert _readers(spec, "ingest", "real_test") == set(REAL_TEST_READERS) == {
        "evaluate-S2R", "evaluate-R2R", "supplementation", "real-curves", "synthetic-curve",
        "compute-FTER",
    }  # fmt: skip
    assert _readers(spec, "ingest", "real_val") == set(REAL_VAL_READERS) == {"tune-generation"}
    # the tracer sees through loops: real-train reaches the reference classifier (outside) and
    # the per-seed real classifier (inside every loop)
    assert {"train-reference-classifier", "train-real-classifier", "validate-run"} <= _readers(
        spec, "ingest", "real_train"
    )


def test_real_curves_run_once_outside_the_loops_and_feed_every_cell(tmp_path):
    config = load_config(
        "pipelines/configs/micro.yaml", ["grid.methods=[random,no-finetune,retrieval]"]
    )
    spec = _spec(compile_pipeline(config, tmp_path / "p.yaml"))
    tasks = spec["root"]["dag"]["tasks"]
    [real] = [name for name, t in tasks.items() if t["taskInfo"]["name"] == "real-curves"]
    assert tasks[real]["inputs"]["parameters"]["seeds"]["componentInputParameter"] == "seeds"
    for loop in (t for t in tasks.values() if "parameterIterator" in t):
        inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
        [cell] = [t for t in inner.values() if t["taskInfo"]["name"] == "compute-FTER"]
        source = cell["inputs"]["artifacts"]["real_curves"]
        # Passed into the loop from the one real-curves task.
        assert source["componentInputArtifact"].startswith(f"pipelinechannel--{real}-curve")


def test_a_kind_absent_from_the_grid_has_no_loop(tmp_path):
    config = load_config("pipelines/configs/micro.yaml", ["grid.methods=[random,retrieval]"])
    spec = _spec(compile_pipeline(config, tmp_path / "p.yaml"))
    assert set(_loops(spec)) == {"finetune", "retrieval"}


def test_arguments_round_trip_to_the_same_config():
    # Nulls are dropped (KFP parameters cannot carry them) and numbers may come back as floats.
    config = load_config("pipelines/configs/thesis.yaml", ["data.age_min=20"])
    args = pipeline_arguments(config)
    assert (args["methods"], args["sizes"], args["seeds"]) == (
        config.grid.methods,
        config.grid.sizes,
        config.grid.seeds,
    )
    assert len(config_from_parameters(args, config).grid_rows()) == 105
    for name in ("data", "select", "finetune", "generate", "classifier", "evaluation"):
        floats = yaml.safe_load(yaml.safe_dump(args[name]).replace(": 1\n", ": 1.0\n"))
        rebuilt = section(type(getattr(config, name)), floats, name)
        assert rebuilt == getattr(config, name), name
    assert section(Config, {"data": args["data"]}, "config").data.age_max is None


def test_committed_spec_is_up_to_date(tmp_path):
    fresh = compile_pipeline(load_config("pipelines/configs/thesis.yaml"), tmp_path / "tgap.yaml")
    assert COMMITTED.is_file(), "run `make compile` and commit pipelines/compiled/tgap.yaml"
    assert _documents(COMMITTED) == _documents(fresh), (
        "out of date: run `make compile` and commit it"
    )


def test_committed_spec_names_no_floating_image_tag():
    # Each image is pinned by digest or tagged by the content of its build (pipelines/images.py):
    # resolving it again, with floating tags refused, changes nothing.
    spec = _spec(COMMITTED)
    refs = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert refs and all("@sha256:" in r or ":" in r.rsplit("/", 1)[-1] for r in refs), refs
    tag = images.content_tag()
    digests = images.recorded_digests(tag)
    for ref in refs:
        assert images.resolve(ref, ref, tag, digests, allow_floating=False) == ref


def test_the_run_has_one_metrics_artifact_the_reports():
    # The KFP compare page makes every Metrics artifact a column "<task> > <artifact>"; per-cell
    # ones would add hundreds of identical columns, without method, size or seed.
    spec = _spec(COMMITTED)
    producers = sorted(
        name
        for name, component in spec["components"].items()
        for output in component.get("outputDefinitions", {}).get("artifacts", {}).values()
        if output["artifactType"]["schemaTitle"] == "system.Metrics"
        and "executorLabel" in component
    )
    assert producers == ["comp-report"]


# --------------------------------------------------------------------------- the thesis spec


@pytest.fixture(scope="module")
def thesis():
    config = load_config("pipelines/configs/thesis.yaml")
    docs = _documents(COMMITTED)
    return config, docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _stage_of(component: str) -> str:
    """The stage name (`tgap.config.STAGES`) of a compiled component `comp-<function>`."""
    # Components used in several loops compile to comp-<function>-2, -3, ...
    function = re.sub(r"-\d+$", "", component.removeprefix("comp-")).replace("-", "_")
    [name] = [n for n, f in STAGE_FUNCTIONS.items() if f.__name__ == function]
    return name


def _executors_by_stage(spec: dict) -> list[tuple[str, str]]:
    """(stage, executor label) of every executor of the spec."""
    return [
        (_stage_of(name), comp["executorLabel"])
        for name, comp in spec["components"].items()
        if "executorLabel" in comp
    ]


def test_thesis_gpu_stages_have_accelerator_toleration_and_node_selector(thesis):
    config, spec, platform = thesis
    executors = _executors_by_stage(spec)
    stages = {stage for stage, _ in executors}
    # A spec compiled with generate.tune.trials 0 has no tune-generation task at all.
    assert ("tune-generation" in stages) == (config.generate.tune.trials > 0)
    assert set(config.cluster.gpu_stages) - {"tune-generation"} <= stages
    for stage, label in executors:
        if stage not in config.cluster.gpu_stages:
            continue
        container = spec["deploymentSpec"]["executors"][label]["container"]
        assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu", stage
        assert container["image"] == images.component_images(config.cluster)[1], stage
        assert platform[label]["nodeSelector"]["labels"], stage
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
            platform[label]["tolerations"]
        ), stage


def test_thesis_other_stages_have_cpu_and_memory_requests(thesis):
    config, spec, platform = thesis
    for stage, label in _executors_by_stage(spec):
        if stage in config.cluster.gpu_stages:
            continue
        resources = spec["deploymentSpec"]["executors"][label]["container"]["resources"]
        assert resources["resourceCpuRequest"] == config.cluster.cpu.cpu_request, stage
        assert resources["resourceMemoryRequest"] == config.cluster.cpu.memory_request, stage
        assert "accelerator" not in resources, stage
        assert "tolerations" not in platform.get(label, {}), stage


def test_thesis_trains_no_classifier_on_a_cpu_only_executor(thesis):
    _, spec, _ = thesis
    trainings = (
        "train-classifier",
        "supplementation",
        "learning-curve",
        "fine-tune",
        "class-images",
    )
    executors = [(s, label) for s, label in _executors_by_stage(spec) if s in trainings]
    assert {s for s, _ in executors} == set(trainings)
    for stage, label in executors:
        container = spec["deploymentSpec"]["executors"][label]["container"]
        assert "accelerator" in container["resources"], stage


def test_fingerprint_is_never_cached_and_feeds_ingest_and_the_base_model(thesis):
    _, spec, _ = thesis
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["fingerprint"]["cachingOptions"].get("enableCache", False) is False
    for task, parameter, output in (
        ("ingest", "fingerprint", "data"),
        ("prepare-base-model", "fingerprint", "base_model"),
        ("embed", "clip_fingerprint", "clip_weights"),
        ("train-classifier", "weights_fingerprint", "classifier_weights"),
    ):
        source = tasks[task]["inputs"]["parameters"][parameter]["taskOutputParameter"]
        assert source == {"producerTask": "fingerprint", "outputParameterKey": output}, task
    assert tasks["ingest"]["cachingOptions"]["enableCache"] is True


def test_a_cuda_stage_outside_gpu_stages_fails_at_compile_time_naming_both_keys(tmp_path):
    config = load_config("pipelines/configs/thesis.yaml", ["cluster.gpu_stages=[fine-tune]"])
    with pytest.raises(ConfigError, match=r"diffusion.device.*cluster.gpu_stages"):
        compile_pipeline(config, tmp_path / "p.yaml")
    config = load_config(None, ["classifier.device=cuda"])
    with pytest.raises(
        ConfigError, match=r"classifier.device.*'train-classifier'.*cluster.gpu_stages"
    ):
        compile_pipeline(config, tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match=r"cluster.gpu_stages\[0\]: unknown stage 'gpu'"):
        load_config(None, ["cluster.gpu_stages=[gpu]"])
