"""The grid split by the work its rows need (tgap.grid), and the loops a run may use."""

from pathlib import Path

import pytest
import yaml

from components.expand_grid import expand_grid
from tgap.config import ConfigError, load_config
from tgap.grid import (
    KINDS,
    class_image_seeds,
    config_rows,
    loop_items,
    parse_rows,
    row_kind,
    split_rows,
)

SPEC = Path(__file__).resolve().parents[1] / "pipelines" / "compiled" / "tgap.yaml"


def test_thesis_rows_split_into_per_row_per_seed_and_retrieval_work():
    rows = config_rows(load_config("pipelines/configs/thesis.yaml"))
    kinds = split_rows(rows)
    assert [len(kinds[k]) for k in ("finetune", "no-finetune", "retrieval")] == [75, 5, 15]
    assert {r.method.name for r in kinds["finetune"]} == {
        "random", "spectral-pixel", "spectral-clip", "curated", "active"
    }  # fmt: skip
    # no-finetune: one item per seed, holding every size; together they are the original rows.
    assert kinds["no-finetune"][0].to_item() == {
        "method": "no-finetune",
        "seed": 0,
        "sizes": [500, 1000, 10000],
    }
    expanded = [r for kind in kinds.values() for item in kind for r in item.rows]
    assert sorted(expanded, key=str) == sorted(rows, key=str)
    assert class_image_seeds(rows) == [0, 1, 2, 3, 4]


def test_a_grid_without_fine_tunes_needs_no_class_images(tmp_path):
    rows = parse_rows({"method": m, "size": 5, "seed": 3} for m in ("no-finetune", "retrieval"))
    assert class_image_seeds(rows) == []
    [item] = split_rows(rows)["no-finetune"]
    assert item.cell_folders(tmp_path) == [(rows[0], tmp_path / "size-5")]
    [row] = split_rows(rows)["retrieval"]
    assert row == rows[1] and row.cell_folders(tmp_path) == [(row, tmp_path)]


def _run_form(spec: Path) -> tuple[dict, list[str]]:
    """The run form's values (the spec's parameter defaults) and the loops the spec has (the
    constant its expand-grid task is given)."""
    doc = next(yaml.safe_load_all(spec.read_text()))
    parameters = doc["root"]["inputDefinitions"]["parameters"]
    form = {name: p["defaultValue"] for name, p in parameters.items()}
    task = doc["root"]["dag"]["tasks"]["expand-grid"]
    return form, task["inputs"]["parameters"]["compiled_kinds"]["runtimeValue"]["constant"]


def test_the_run_form_with_one_kinds_methods_unticked_is_refused_by_expand_grid():
    # The KFP backend cannot collect from a loop that ran no iteration, so a run whose methods
    # leave a compiled loop empty must fail in its first task, not in the report at the end.
    form, kinds = _run_form(SPEC)
    assert sorted(kinds) == sorted(KINDS)
    assert len(expand_grid(**form, compiled_kinds=kinds)) == 7 * 3 * 5  # the form as shipped
    for kind in kinds:
        kept = [m for m in form["methods"] if row_kind({"method": m}) != kind]
        with pytest.raises(ConfigError) as refused:
            expand_grid(**{**form, "methods": kept}, compiled_kinds=kinds)
        message = str(refused.value)
        assert f"leave this compiled spec's {kind} loop without work items" in message
        assert f"'grid.methods=[{', '.join(sorted(kept))}]'" in message  # the fix


def test_loop_items_refuses_a_missing_or_empty_loop_and_names_both_fixes():
    rows = parse_rows([
        {"method": "random", "size": 5, "seed": 0},
        {"method": "retrieval", "size": 5, "seed": 0},
    ])  # fmt: skip
    assert [len(v) for v in loop_items(rows, ["finetune", "retrieval"]).values()] == [1, 0, 1]
    with pytest.raises(ConfigError, match="methods: retrieval need the retrieval loop"):
        loop_items(rows, ["finetune"])
    with pytest.raises(ConfigError, match=r"no-finetune loop without work items.*e\.g\. no-fine"):
        loop_items(rows, ["finetune", "no-finetune", "retrieval"])


def test_a_run_whose_tuning_trials_disagree_with_the_compiled_spec_is_refused_by_expand_grid():
    # The thesis spec is compiled with trials 0, so its fine-tune loop has no tune-generation
    # task: a run form asking for trials would generate untuned, and the reverse would download
    # every model and real-val for nothing.
    form, kinds = _run_form(SPEC)
    tuned = {
        **form,
        "generate": {**form["generate"], "tune": {**form["generate"]["tune"], "trials": 4}},
    }
    with pytest.raises(ConfigError, match=r"compiled with trials 0 and has no tune-generation"):
        expand_grid(**tuned, compiled_kinds=kinds)
    with pytest.raises(ConfigError, match=r"generate.tune.trials: 0, but this spec was compiled"):
        expand_grid(**form, compiled_kinds=kinds, compiled_tuning=True)
