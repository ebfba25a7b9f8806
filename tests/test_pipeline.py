"""The compiled pipeline: parses back, carries every parameter with a default and description,
and the committed spec is what the code compiles today."""

from pathlib import Path

import yaml
from kfp import components

from pipelines.tgap_pipeline import PARAMETER_HELP, compile_pipeline, pipeline_arguments
from tgap.config import Config, load_config, section

COMMITTED = Path("pipelines/compiled/tgap.yaml")


def _spec(path: Path) -> dict:
    """The pipeline spec document (the second YAML document, if any, is the platform spec)."""
    return _documents(path)[0]


def _documents(path: Path) -> list[dict]:
    # The header comment lists defaults in an unstable dict order; the documents are stable.
    return list(yaml.safe_load_all(path.read_text()))


def test_compiled_spec_parses_with_kfp_loader(tmp_path):
    path = compile_pipeline(load_config("pipelines/configs/micro.yaml"), tmp_path / "p.yaml")
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "tgap"
    spec = _spec(path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(PARAMETER_HELP)
    for name, definition in params.items():
        assert definition.get("description"), name
        assert "defaultValue" in definition, name


def test_every_stage_is_a_task_and_the_loop_is_flat(tmp_path):
    spec = _spec(compile_pipeline(load_config("pipelines/configs/micro.yaml"), tmp_path / "p.yaml"))
    root_tasks = spec["root"]["dag"]["tasks"]
    loops = [t for t in root_tasks.values() if "parameterIterator" in t]
    assert len(loops) == 1
    loop_component = spec["components"][loops[0]["componentRef"]["name"]]
    inner = {t["taskInfo"]["name"] for t in loop_component["dag"]["tasks"].values()}
    assert not any("parameterIterator" in t for t in loop_component["dag"]["tasks"].values())
    assert inner == {
        "select",
        "fine-tune",
        "tune-generation",
        "generate",
        "train-real-classifier",
        "train-synthetic-classifier",
        "evaluate-S2R",
        "evaluate-R2S",
        "evaluate-R2R",
        "compute-FTER",
    }
    outer = {t["taskInfo"]["name"] for t in root_tasks.values()}
    assert {
        "ingest",
        "train-reference-classifier",
        "embed",
        "prepare-base-model",
        "report",
    } <= outer


def test_arguments_round_trip_to_the_same_config():
    # Nulls are dropped (KFP parameters cannot carry them) and numbers may come back as floats.
    config = load_config("pipelines/configs/thesis.yaml", ["data.age_min=20"])
    args = pipeline_arguments(config)
    assert len(args["grid"]) == 105
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
