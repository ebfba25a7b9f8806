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
from tgap.tune import _baseline_params

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


def test_thesis_classifier_has_chexnet_sigmoid_head_and_the_small_presets_keep_softmax():
    thesis = load_config("pipelines/configs/thesis.yaml").classifier
    assert (thesis.arch, thesis.head) == ("densenet121", "sigmoid")
    for preset in ("demo.yaml", "micro.yaml"):
        assert load_config(f"pipelines/configs/{preset}").classifier.head == "softmax", preset


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
        ("classifier.head=tanh", "classifier.head: 'tanh' is not one of 'softmax', 'sigmoid'"),
        ("grid.methods=[random, nonsense]", "grid.methods[1]: unknown method 'nonsense'"),
        ("data.split.test_fraction=0.5", "data.split: pool_fraction, train_fraction"),
        ("data=3", "data: expected a mapping"),
        ("finetune.steps", "expected key=value"),
        ("evaluation.real_curve_sizes=[100, 50]", "evaluation.real_curve_sizes: [100, 50]"),
        ("evaluation.real_curve_sizes=[1, 50]", "evaluation.real_curve_sizes[0]: 1 is out of"),
        ("evaluation.synthetic_curve_fractions=[0.5]", "expected at least 2 increasing fractions"),
        ("evaluation.synthetic_curve_fractions=[0.5, 0.9]", "ending at 1.0"),
        ("evaluation.synthetic_curve_fractions=[0, 1]", "synthetic_curve_fractions[0]: 0"),
        ("evaluation.synthetic_curve_fractions=[0.05, 1]", "under 2 images per label"),
        ("evaluation.real_curve_sizes=[50]", "real_curve_sizes: [50] .expected at least 2"),
        ("evaluation.synthetic_curve_fractions=[0.25, 0.27, 1]", "give [4, 4] images per"),
        ("evaluation.synthetic_curve_fractions=[0.5, 0.99, 1]", "expected distinct sizes below 16"),
        ("cluster.gpu_stages=[train-classifier]", "list both 'train-classifier' and"),
        ("finetune.checkpoint_uri=http://host/x", "finetune.checkpoint_uri: "),
        ("finetune.checkpoint_uri=s3:///no-bucket", "finetune.checkpoint_uri: "),
        ("finetune.active.max_skip_fraction=1.0", "finetune.active.max_skip_fraction: "),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("pipelines/configs/micro.yaml", [override])


def test_the_four_split_fractions_sum_to_1_and_real_val_has_a_source():
    config = load_config("pipelines/configs/nih-mini.yaml")
    split = config.data.split
    assert split.val_fraction > 0 and split.drop_test_patients  # the default: sealed
    fractions = (split.pool_fraction, split.train_fraction, split.val_fraction, split.test_fraction)
    assert sum(fractions) == pytest.approx(1)
    with pytest.raises(ConfigError, match=r"data.split: .*val_fraction.* sum to 1 \(got 0.45 \+"):
        load_config("pipelines/configs/nih-mini.yaml", ["data.split.val_fraction=0.2"])
    # val_fraction 0 only where the source has an official validation split
    zero = ["data.split.val_fraction=0", "data.split.pool_fraction=0.55"]
    with pytest.raises(ConfigError, match=r"data.split.val_fraction: 0 but data.format nih-csv"):
        load_config("pipelines/configs/nih-mini.yaml", zero)
    assert load_config("pipelines/configs/micro.yaml").data.split.val_fraction == 0  # MedMNIST
    folders = "data.split_folders={test: test, pool_and_train: train, val: val}"
    image_folder = ["data.format=image-folder", "data.source=x", folders]
    assert load_config("pipelines/configs/nih-mini.yaml", [*image_folder, *zero])
    # A val entry of the other format's key (csv_format is not read for an image folder) does not
    # count: refused at load, not at ingest.
    csv_val = "data.csv_format.split_values={test: t, pool_and_train: p, val: v}"
    with pytest.raises(ConfigError, match=r"data.split.val_fraction: 0 but data.format image-fo"):
        load_config("pipelines/configs/nih-mini.yaml", [*image_folder[:2], csv_val, *zero])
    with pytest.raises(ConfigError, match=r"data.split.val_fraction: -0.1 is out of range"):
        load_config("pipelines/configs/micro.yaml", ["data.split.val_fraction=-0.1"])


def test_the_thesis_preset_uses_the_conformance_settings():
    """docs/evaluation.md, "Conformance with the thesis": every setting that exists is set."""
    config = load_config("pipelines/configs/thesis.yaml")
    active = config.finetune.active
    assert (active.embedder, active.similarity, active.threshold) == ("clip", "mean-embedding", 0.3)
    assert active.n_generate == config.finetune.batch_size
    assert (config.select.k, config.select.cluster_images) == (10, 10_000)
    assert config.grid.seeds == [0, 1, 2, 3, 4]
    assert config.generate.n_per_label == 10_000
    split = config.data.split
    assert (split.train_fraction, split.test_fraction) == (0.2, 0.2)
    # A clustered method's largest size must fit in the clustered sample: refused at load.
    with pytest.raises(ConfigError, match=r"cluster_images: 5000 is below grid.sizes' 10000"):
        load_config("pipelines/configs/thesis.yaml", ["select.cluster_images=5000"])


def test_learning_curve_defaults_double_from_25_and_can_be_switched_off():
    evaluation = load_config(None).evaluation
    assert evaluation.real_curve_sizes[:3] == [25, 50, 100]
    assert evaluation.synthetic_curve_fractions == [0.25, 0.5, 1.0]
    off = load_config(None, ["evaluation.real_curve_sizes=[]",
                             "evaluation.synthetic_curve_fractions=[]"]).evaluation  # fmt: skip
    assert off.real_curve_sizes == [] and off.synthetic_curve_fractions == []


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


def test_extends_merges_the_parent_underneath_section_by_section(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\ngrid: {methods: [random], sizes: [8], seeds: [0, 1]}\n"
        "finetune: {steps: 7, batch_size: 2}\n"
    )
    (tmp_path / "mid.yaml").write_text("extends: base.yaml\nfinetune: {steps: 5}\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "leaf.yaml").write_text("extends: ../mid.yaml\nname: leaf\ngrid: {seeds: [3]}\n")
    config = load_config(sub / "leaf.yaml", ["finetune.batch_size=4"])
    assert config.name == "leaf"
    assert (config.grid.methods, config.grid.sizes, config.grid.seeds) == (["random"], [8], [3])
    assert (config.finetune.steps, config.finetune.batch_size) == (5, 4)
    assert "extends" not in config.to_dict()


def test_demo_tuned_is_the_demo_plus_tuning_and_one_seed():
    demo = load_config("pipelines/configs/demo.yaml").to_dict()
    tuned = load_config("pipelines/configs/demo-tuned.yaml").to_dict()
    # Same fine-tunes (so demo's seed-0 S->R is the "before tuning" number on real-test).
    for key in ("data", "diffusion", "finetune", "classifier", "select", "cluster"):
        assert tuned[key] == demo[key], key
    assert tuned["grid"]["seeds"] == [0] and tuned["generate"]["tune"]["trials"] == 8
    # Not random search only: the sampler's model draws the trials after its startup ones.
    assert tuned["generate"]["tune"]["startup_trials"] < tuned["generate"]["tune"]["trials"]
    # Trial 0 is the demo's own setting only when that setting lies inside the searched ranges.
    tuned_generate = load_config("pipelines/configs/demo-tuned.yaml").generate
    assert _baseline_params(tuned_generate) == {
        "guidance_scale": demo["generate"]["guidance_scale"],
        "steps": demo["generate"]["steps"],
    }


def test_extends_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"extends itself .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: extends: .*gone\.yaml does not exist"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: [x]\n")
    with pytest.raises(ConfigError, match="extends: expected a file name"):
        load_config(tmp_path / "d.yaml")


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


def test_the_library_names_no_data_folder_and_a_run_without_one_stops_naming_the_key(tmp_path):
    from tgap.diffusion.build import ModelError, build_tiny_pixel
    from tgap.local_run import resolve_local_paths

    defaults = load_config(None)
    assert defaults.data.source == "" and defaults.diffusion.tokenizer == ""
    for preset in ("demo", "micro", "nih-mini"):  # the presets name theirs
        config = load_config(f"pipelines/configs/{preset}.yaml")
        assert config.data.source and config.diffusion.tokenizer, preset
    with pytest.raises(ConfigError, match=r"^data.source: not set"):
        resolve_local_paths(defaults)
    with pytest.raises(ModelError, match=r"^diffusion.tokenizer: not set"):
        build_tiny_pixel(defaults.diffusion)
