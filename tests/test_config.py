"""Config: presets load, overrides apply, bad keys and values are errors that name the key."""

from pathlib import Path

import pytest

from tgap.config import (
    Config,
    ConfigError,
    FinetuneConfig,
    from_dict,
    load_config,
    parse_override,
    section,
)

PRESETS = sorted(Path("pipelines/configs").glob("*.yaml"))


def test_every_preset_loads_and_has_a_grid():
    assert {p.name for p in PRESETS} >= {"demo.yaml", "micro.yaml", "nih-mini.yaml", "thesis.yaml"}
    for preset in PRESETS:
        config = load_config(preset)
        assert config.grid_rows(), preset


def test_thesis_grid_is_seven_methods_three_sizes_five_seeds():
    config = load_config("pipelines/configs/thesis.yaml")
    assert len(config.grid.methods) == 7
    assert config.grid.sizes == [500, 1000, 10000]
    assert len(config.grid.seeds) == 5
    assert len(config.grid_rows()) == 105
    assert config.generate.n_per_label == 10000


def test_override_sets_nested_value_with_yaml_typing():
    config = load_config(
        "pipelines/configs/micro.yaml",
        ["finetune.steps=7", "grid.sizes=[5, 6]", "finetune.active.threshold=0.5"],
    )
    assert config.finetune.steps == 7
    assert config.grid.sizes == [5, 6]
    assert config.finetune.active.threshold == 0.5
    assert parse_override("a.b=x") == {"a": {"b": "x"}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("finetune.stpes=3", "finetune.stpes: unknown key"),
        ("finetune.steps=3.5", "finetune.steps: expected an integer"),
        ("finetune.steps=many", "finetune.steps: expected an integer"),
        ("generate.scheduler=magic", "generate.scheduler: 'magic' is not one of"),
        ("grid.methods=[random, nonsense]", "grid.methods[1]: unknown method 'nonsense'"),
        ("data.split.test_fraction=0.5", "data.split: pool_fraction, train_fraction"),
        ("data=3", "data: expected a mapping"),
        ("finetune.steps", "expected key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("pipelines/configs/micro.yaml", [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(listy)


def test_kfp_struct_numbers_come_back_as_ints_only_through_section():
    # KFP dict parameters turn 3 into 3.0; components rebuild sections with `section`.
    assert section(FinetuneConfig, {"steps": 3.0}, "finetune").steps == 3
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(FinetuneConfig, {"steps": 3.0}, "finetune")
    with pytest.raises(ConfigError, match="expected an integer"):
        section(FinetuneConfig, {"steps": 3.5}, "finetune")


def test_config_round_trips_through_its_dict():
    config = load_config("pipelines/configs/thesis.yaml")
    assert from_dict(Config, config.to_dict()) == config
