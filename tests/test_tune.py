"""tune-generation: a seeded study, best = argmax, real-test never touched, clear config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny import DATA, real_image_set, tiny_diffusion

from tgap.config import (
    ClassifierConfig,
    ConfigError,
    DataConfig,
    GenerateConfig,
    PromptConfig,
    TuneConfig,
    TuneSpaceConfig,
    load_config,
)
from tgap.diffusion.base_model import prepare_base_model
from tgap.grid import parse_rows
from tgap.imageset import ImageSet, ImageSetWriter
from tgap.ingest import ingest
from tgap.provenance import choices
from tgap.tune import (
    HISTORY,
    STUDY,
    TUNING,
    TuneError,
    best_trial,
    check_real_val,
    copy_tuning_record,
    make_sampler,
    planned_work,
    tune_generation,
    tuned_generate,
)

CLASSIFIER = ClassifierConfig(epochs=1, batch_size=8, patience=1, device="cpu")


def tuning_generate(**tune) -> GenerateConfig:
    values = dict(trials=3, n_per_label=6, space=TuneSpaceConfig([1.0, 5.0], [2, 4]))
    values.update(tune)
    return GenerateConfig(n_per_label=12, batch_size=12, steps=3, tune=TuneConfig(**values))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    prepare_base_model(tiny_diffusion(), root / "base")
    real = real_image_set(root / "real", 30)
    # A real-val set: two images per patient, split "val" (what ingest writes).
    with ImageSetWriter(root / "val", real.labels, real.resolution) as writer:
        for i, record in enumerate(real.records):
            writer.add(real.load(i), record.label, patient_id=f"p{i // 2}", split="val")
    return root, ImageSet(root / "val")


def run(setup, out: Path, method: str = "random", **tune) -> dict:
    root, val = setup
    return tune_generation(
        root / "base", val, method, 0, PromptConfig(), tuning_generate(**tune),
        tiny_diffusion(), CLASSIFIER, out, size=20,
    )  # fmt: skip


def test_the_study_is_deterministic_for_a_seed_and_writes_its_record(setup, tmp_path):
    a = run(setup, tmp_path / "a")
    b = run(setup, tmp_path / "b")
    assert a["tuned"] and a["n_trials"] == 3
    # the record names its cell (method, size, seed): a grid of several sizes pairs it right
    assert (a["method"], a["size"], a["seed"]) == ("random", 20, 0)
    strip = [{k: v for k, v in t.items() if k != "seconds"} for t in a["trials"]]
    assert strip == [{k: v for k, v in t.items() if k != "seconds"} for t in b["trials"]]
    assert a["params"] == b["params"] and a["study_seed"] == b["study_seed"]
    # scored on all of real-val, and the record says so
    assert a["chosen_on"] == "real-val" and a["validation"]["n_images"] == len(setup[1])
    # trial 0 is generate's own parameters (inside the space): the "before tuning" score
    assert {k: a["trials"][0][k] for k in a["untuned"]} == a["untuned"]
    assert a["baseline"] == {"number": 0, "value": a["trials"][0]["value"]}
    # startup_trials 3 (the default) of 3: no trial came from the sampler's model
    assert a["startup_trials"] == 3
    assert [t["drawn_by"] for t in a["trials"]] == ["generate's own", "random", "random"]
    # startup_trials 1: trials 1 and 2 come from TPE's model, so they differ from the random ones
    d = run(setup, tmp_path / "d", startup_trials=1)
    assert [t["drawn_by"] for t in d["trials"]] == ["generate's own", "tpe", "tpe"]
    assert [t["guidance_scale"] for t in d["trials"][1:]] != [
        t["guidance_scale"] for t in a["trials"][1:]
    ]
    for t in a["trials"]:
        assert 1.0 <= t["guidance_scale"] <= 5.0 and 2 <= t["steps"] <= 4
        assert t["scheduler"] == "ddim" and t["value"] == t["s2r_auroc"]
    # another study seed: other parameters tried
    c = run(setup, tmp_path / "c", seed=1)
    assert c["study_seed"] != a["study_seed"]
    assert [t["guidance_scale"] for t in c["trials"]] != [t["guidance_scale"] for t in a["trials"]]
    # the record: tuning.json as returned, the journal, the plot; no trial scratch left behind
    on_disk = json.loads((tmp_path / "a" / TUNING).read_text())
    assert on_disk["trials"] == json.loads(json.dumps(a["trials"]))
    assert (tmp_path / "a" / STUDY).is_file() and (tmp_path / "a" / HISTORY).stat().st_size > 0
    assert not (tmp_path / "a" / ".trials").exists()


def test_best_is_the_argmax_of_the_recorded_scores(setup, tmp_path):
    result = run(setup, tmp_path / "t", objective="cas-accuracy", trials=4)
    values = [t["value"] for t in result["trials"]]
    assert values == [t["cas_accuracy"] for t in result["trials"]]
    best = result["trials"][int(np.argmax(values))]  # argmax: the first maximum
    assert result["best"] == {"number": best["number"], "value": max(values)}
    assert result["params"] == {k: best[k] for k in ("guidance_scale", "steps", "scheduler")}
    # ties go to the first trial; failed trials never win
    trials = [
        {"number": 0, "value": 0.5},
        {"number": 1, "value": 0.9},
        {"number": 2, "value": 0.9},
        {"number": 3, "value": None},
    ]
    assert best_trial(trials)["number"] == 1
    assert best_trial([{"number": 0, "value": None}]) is None


@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_after_its_startup_trials_the_sampler_searches_near_the_best(name):
    """Optuna's default of 10 random startup trials would make a budget of 8 random search:
    ``startup_trials`` hands over to the model, which then samples near the optimum (0.3)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def xs(startup: int) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(name, 0, startup), direction="maximize")
        study.optimize(lambda t: -((t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2), n_trials=16)
        return [t.params["x"] for t in study.trials]

    model, random_only = xs(3), xs(16)
    assert model[:3] == random_only[:3]  # the same seeded random draws until the hand-over

    def spread(x: list[float]) -> float:
        return float(np.median(np.abs(np.array(x[8:]) - 0.3)))

    assert spread(model) < 0.5 * spread(random_only)


def test_a_retried_study_runs_only_the_missing_trials(setup, tmp_path):
    first = run(setup, tmp_path / "s", trials=2)
    again = run(setup, tmp_path / "s", trials=3)
    assert [t["number"] for t in again["trials"]] == [0, 1, 2]
    assert again["trials"][:2] == first["trials"]


def test_generate_uses_the_tuned_parameters_only_when_it_tuned(setup, tmp_path):
    result = run(setup, tmp_path / "t")
    gen = tuning_generate()
    tuned = tuned_generate(gen, tmp_path / "t")
    assert (tuned.guidance_scale, tuned.steps, tuned.scheduler) == (
        result["params"]["guidance_scale"],
        result["params"]["steps"],
        result["params"]["scheduler"],
    )
    assert tuned.n_per_label == gen.n_per_label
    assert copy_tuning_record(tmp_path / "t", tmp_path) == [TUNING, HISTORY]

    off = run(setup, tmp_path / "off", trials=0)
    assert off["tuned"] is False and "trials is 0" in off["message"]
    assert sorted(p.name for p in (tmp_path / "off").iterdir()) == [TUNING]
    assert tuned_generate(gen, tmp_path / "off") is gen
    assert copy_tuning_record(tmp_path / "off", tmp_path / "off") == []
    skipped = run(setup, tmp_path / "r", method="retrieval")
    assert skipped["tuned"] is False and "retrieval" in skipped["message"]


def test_the_objective_reads_real_val_only_which_shares_no_patient_with_real_test(tmp_path):
    """On NIH (patient IDs): real-val is disjoint by patient from real-test and real-train, and
    any set but real-val is refused as the objective's data."""
    source = DATA / "nih-cxr14-mini"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    data = DataConfig(
        source=str(source), format="nih-csv", csv="Data_Entry_2017_v2020.csv", resolution=16,
        label_policy={"No Finding": "No Finding"}, default_label="Unhealthy",
    )  # fmt: skip
    dirs = [tmp_path / name for name in ("pool", "train", "val", "test")]
    ingest(data, *dirs)
    train, val, test = (ImageSet(d) for d in dirs[1:])
    check_real_val(val)
    assert set(np.unique(val.label_indices)) == {0, 1}
    val_patients = {r.patient_id for r in val.records}
    for other in (train, test):
        assert not val_patients & {r.patient_id for r in other.records}
        assert not {r.original_id for r in val.records} & {r.original_id for r in other.records}
    for other in (train, test):
        with pytest.raises(TuneError, match="real-val only"):
            check_real_val(other)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["generate.tune.trials=4", "generate.tune.space={guidance_scale: [], steps: []}"],
            "generate.tune.space: empty search space",
        ),
        (["generate.tune.space.guidance_scale=[7, 2]"], r"guidance_scale: low 7.0 > high 2.0"),
        (["generate.tune.space.steps=[30]"], r"steps: \[30\]: expected \[low, high\]"),
        (["generate.tune.trials=-1"], r"generate.tune.trials: -1 is out of range"),
        (
            ["generate.tune.trials=2", "generate.n_per_label=200", "generate.tune.n_per_label=400"],
            "generate.tune.n_per_label: 400 is larger than generate.n_per_label 200",
        ),
        (["generate.tune.sampler=random"], "generate.tune.sampler"),
        (["generate.tune.objective=fid"], "generate.tune.objective"),
    ],
)
def test_bad_tuning_config_fails_at_load_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("pipelines/configs/demo.yaml", overrides)


def test_one_scheduler_range_or_a_fixed_value_is_a_valid_space():
    config = load_config(
        "pipelines/configs/demo.yaml",
        [
            "generate.tune.trials=2",
            "generate.tune.space={guidance_scale: [2, 2], steps: [], schedulers: [ddim, euler]}",
        ],
    )
    assert config.generate.tune.space.schedulers == ["ddim", "euler"]


def test_the_report_says_who_chose_generation_fixed_in_config_or_tuned_on_real_val():
    """An untuned run does not say 'not tuned' of demo.yaml's guidance (chosen before the run):
    it says the config fixed it, and with which value."""
    key = "generation (guidance, steps, scheduler)"
    demo = load_config("pipelines/configs/demo.yaml")
    g = demo.generate
    assert choices(demo)[key]["chosen_on"] == (
        f"fixed in config (guidance_scale {g.guidance_scale:g}, {g.steps} {g.scheduler} steps)"
    )
    tuned = choices(load_config("pipelines/configs/demo-tuned.yaml"))
    assert tuned[key]["chosen_on"].startswith("real-val")
    assert "real-test" not in tuned[key]["chosen_on"]


def test_report_shows_the_trial_table_and_a_history_plot_per_method(setup, tmp_path):
    from tgap.config import Config, GridConfig
    from tgap.report import build_report

    study = run(setup, tmp_path / "study")
    dirs = []
    for method in ["random", "active"]:
        d = tmp_path / "cells" / method
        (d / "assets").mkdir(parents=True)
        copy_tuning_record(tmp_path / "study", d / "assets")
        cell = {"method": method, "size": 20, "seed": 0, "s2r_accuracy": 0.6, "s2r_auroc": 0.7,
                "r2s_accuracy": 0.7, "r2s_auroc": 0.8, "fter": 0.875}  # fmt: skip
        (d / "cell.json").write_text(json.dumps(cell))
        dirs.append(d)
    config = Config(grid=GridConfig(methods=["random", "active"], sizes=[20], seeds=[0]))
    config.generate.tune.trials = 3
    text = Path(build_report(dirs, config, {}, tmp_path / "out")["report.html"]).read_text()
    section = text[text.index("<h2>Generation tuning</h2>") : text.index("<h2>Sample grids</h2>")]
    assert section.count("<details><summary>Trials:") == 2
    assert section.count('alt="tuning ') == 2  # one history plot per method
    assert section.count("data:image/png;base64,") == 2
    assert f"<td>{study['study_seed']}</td>" in section
    assert "never on real-test" in section
    assert "prompt.template and prompt.words were unused" not in text
    config.diffusion.conditioning = "class-encoder"
    text = Path(build_report(dirs, config, {}, tmp_path / "out1")["report.html"]).read_text()
    assert "prompt.template and prompt.words were unused" in text
    # trials 0: the section says no study ran
    config.generate.tune.trials = 0
    for d in dirs:
        for name in (TUNING, HISTORY):
            (d / "assets" / name).unlink()
    text = Path(build_report(dirs, config, {}, tmp_path / "out2")["report.html"]).read_text()
    assert "generate.tune.trials is 0" in text


def test_planned_work_counts_the_trials_of_every_fine_tuned_cell():
    gen = tuning_generate(trials=8, n_per_label=6)
    methods = ("random", "active", "retrieval", "no-finetune")
    rows = parse_rows({"method": m, "size": 10, "seed": 0} for m in methods)
    work = planned_work(gen, 2, rows)
    assert work == {"trials_per_cell": 8, "cells": 2, "images": 2 * 8 * 6 * 2,
                    "unet_evaluations": 2 * 8 * 6 * 2 * 4 * 2, "classifier_trainings": 16}  # fmt: skip
    assert planned_work(tuning_generate(trials=0), 2, rows[:1])["images"] == 0
