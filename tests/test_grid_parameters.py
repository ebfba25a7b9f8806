"""The compiled spec run under kfp.local with the grid given as run arguments (as the UI's run form
sends them): the first task expands exactly that grid, and rejects a bad value before any work."""

import json
from pathlib import Path

import pytest
from kfp import components, local

from pipelines.tgap_pipeline import compile_pipeline, pipeline_arguments
from tgap.config import load_config
from tgap.local_run import resolve_local_paths

MICRO = Path("pipelines/configs/micro.yaml")
pytestmark = pytest.mark.slow


def _run_spec(tmp_path: Path, **changes):
    # Compiled with the retrieval loop only (the cheapest loop; no diffusion stage runs).
    config = resolve_local_paths(
        load_config(
            MICRO,
            [
                "diffusion.pretrain_steps=0",
                "grid.methods=[retrieval]",
                "evaluation.real_curve_sizes=[]",  # curves: the micro run's
                "evaluation.synthetic_curve_fractions=[]",
            ],
        )
    )
    spec = compile_pipeline(config, tmp_path / "spec.yaml")
    root = tmp_path / "root"
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    arguments = {**pipeline_arguments(config), **changes}
    components.load_component_from_file(str(spec))(**arguments)
    return root


def test_run_arguments_not_the_defaults_give_exactly_that_grid(tmp_path):
    root = _run_spec(tmp_path, methods=["retrieval"], sizes=[5, 6], seeds=[3])
    [run] = root.iterdir()
    rows = json.loads((run / "expand-grid" / "executor_output.json").read_text())
    assert rows["parameterValues"]["Output"] == [
        {"method": "retrieval", "size": 5, "seed": 3},
        {"method": "retrieval", "size": 6, "seed": 3},
    ]
    cells = sorted(
        (c["method"], int(c["size"]), int(c["seed"]))
        for c in (json.loads(p.read_text()) for p in run.glob("**/compute-fter/cell/cell.json"))
    )
    assert cells == [("retrieval", 5, 3), ("retrieval", 6, 3)]
    results = json.loads(next(run.glob("report/results/results.json")).read_text())
    assert "retrieval" in json.dumps(results)


def test_a_method_typed_in_the_run_form_is_rejected_by_the_first_task(tmp_path, capfd):
    with pytest.raises(RuntimeError, match="expand-grid"):
        _run_spec(tmp_path, methods=["retrieval", "actve"])
    out = capfd.readouterr().out
    assert "grid.methods[1]: unknown method 'actve'; known methods: random" in out
    # Nothing else started (a task without outputs leaves no folder when it fails).
    started = {p.name for p in (tmp_path / "root").glob("*/*")}
    assert started <= {"expand-grid"}, started


def test_a_method_whose_loop_the_spec_lacks_is_rejected_by_the_first_task(tmp_path, capfd):
    with pytest.raises(RuntimeError, match="expand-grid"):
        _run_spec(tmp_path, methods=["retrieval", "random"])
    out = capfd.readouterr().out
    assert "methods: random need the finetune loop, which this compiled spec lacks" in out
    started = {p.name for p in (tmp_path / "root").glob("*/*")}
    assert started <= {"expand-grid"}, started
