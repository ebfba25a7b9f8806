"""`tgap plan`: the cost of a run, before it runs."""

import json
import re

import pytest

from tgap.cli import main
from tgap.config import ConfigError, check_placement, load_config, quantity_bytes
from tgap.plan import (
    classifier_train_bytes,
    generation_hours,
    memory_warnings,
    plan,
    sd15_lora_params,
)
from tgap.transfer import StageTransfer, format_transfers, image_set, transfers

THESIS = "pipelines/configs/thesis.yaml"


def _cost_lines(out: str) -> list[str]:
    """The cost table's lines: the output before the blank line that precedes the transfer table."""
    return out.strip().split("\n\n")[0].splitlines()


def _total(capsys, *args: str) -> dict[str, float]:
    assert main(["plan", "--config", THESIS, *args]) == 0
    last = _cost_lines(capsys.readouterr().out)[-1]
    assert last.startswith("total ")
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", last)}


def test_plan_prints_a_table_and_a_total_line(capsys):
    total = _total(capsys)
    for key in ("tasks", "gpu_tasks", "gpu_hours", "cpu_hours", "artifact_gb", "model_gb"):
        assert key in total
    assert 0 < total["gpu_tasks"] < total["tasks"]


def test_lora_rank_8_stores_the_thesis_models_in_a_fifteenth_of_full_fine_tunes(capsys):
    full = _total(capsys)
    lora = _total(capsys, "--set", "finetune.lora_rank=8")
    assert full["model_gb"] >= 75 * 2 * 0.8595  # 75 fine-tuned SD 1.5 UNets in fp16
    assert lora["model_gb"] < full["model_gb"] / 15
    assert lora["gpu_hours"] == full["gpu_hours"]  # the plan counts the same steps


def test_lora_size_from_sd15_attention_shapes():
    # diffusers' SD 1.5 UNet attention LoRA at rank 4 has 797,184 parameters (3.2 MB in fp32).
    assert sd15_lora_params(4) == 797_184


def test_work_done_once_is_counted_once():
    stages = {s.name: s for s in plan(load_config(THESIS))}
    assert stages["class-images"].tasks == 1
    assert stages["class-images"].units["images_generated"] == 5 * 200  # 5 seeds x 200
    assert stages["fine-tune"].tasks == 75  # 5 fine-tuning methods x 3 sizes x 5 seeds
    assert stages["generate"].tasks == 75 + 5  # + no-finetune once per seed


def test_learning_curves_are_counted_and_a_small_share_of_the_thesis_gpu_hours():
    config = load_config(THESIS)
    stages = {s.name: s for s in plan(config)}
    curve = stages["learning-curve"]
    # 95 work items x 2 fractions below 1; 5 seeds x the sizes up to half of real-train.
    assert curve.units["synthetic_curve_trainings"] == 95 * 2
    hold = round(112_120 * config.data.split.train_fraction) // 2
    sizes = {min(s, hold) for s in config.evaluation.real_curve_sizes}
    assert curve.units["real_curve_trainings"] == 5 * len(sizes)
    assert curve.tasks == 95 + 1 and curve.gpu
    total = sum(s.hours for s in stages.values() if s.gpu)
    assert 0 < curve.hours < 0.03 * total  # docs/evaluation.md states the share
    off = {s.name: s for s in plan(load_config(THESIS, [
        "evaluation.real_curve_sizes=[]", "evaluation.synthetic_curve_fractions=[]"]))}  # fmt: skip
    assert off["learning-curve"].hours == 0


def test_generation_hours_is_the_figure_the_plan_counts():
    config = load_config(THESIS)
    stages = {s.name: s for s in plan(config)}
    one = generation_hours(config, config.generate.n_per_label)
    assert one * stages["generate"].tasks == pytest.approx(stages["generate"].hours)
    assert generation_hours(config, 2500) == pytest.approx(one / 4)


def test_a_throughput_override_changes_the_estimate():
    base = {s.name: s for s in plan(load_config(THESIS))}
    slow = {s.name: s for s in plan(load_config(
        THESIS, ["cluster.throughput.nvidia-a100.sample_unet_evals_per_s=31"]))}  # fmt: skip
    assert slow["generate"].hours == base["generate"].hours * 2


def test_tuning_trials_are_counted_and_zero_trials_plan_no_tune_generation_task():
    # A spec compiled with trials 0 has no tune-generation task (pipelines/tgap_pipeline.py).
    off = {s.name: s for s in plan(load_config(THESIS))}
    assert "tune-generation" not in off
    assert "tune-generation" not in {s.name for s in transfers(load_config(THESIS))}
    on = {s.name: s for s in plan(load_config(THESIS, [
        "generate.tune.trials=8", "generate.tune.n_per_label=100",
        "generate.tune.space={guidance_scale: [1.0, 6.0], steps: [10, 30]}",
    ]))}  # fmt: skip
    tune = on["tune-generation"]
    assert tune.gpu and tune.units["trials"] == 75 * 8
    # 8 trials x 100 per label x 2 labels per fine-tuned cell.
    assert tune.units["images_generated"] == 75 * 8 * 100 * 2
    assert tune.hours > 0


def test_host_memory_per_task_is_planned_and_checked_against_the_pool_requests(capsys):
    config = load_config(THESIS)
    stages = {s.name: s for s in plan(config)}
    # The reference classifier holds real-train at 224 px twice (the set, fit's split copies).
    n_train = round(config.cluster.source_images * config.data.split.train_fraction)
    assert (
        stages["train-classifier"].memory_bytes
        == classifier_train_bytes(n_train, 224)
        == 2 * n_train * 224**2
    )
    assert memory_warnings(list(stages.values()), config) == []
    total = _total(capsys)
    assert 4 < total["max_task_mem_gb"] < 16  # within the GPU pool's 16G request
    small = load_config(THESIS, ["cluster.gpu.memory_request=4Gi"])
    warnings = memory_warnings(plan(small), small)
    assert any(w.startswith("memory: supplementation holds ~5.") for w in warnings)
    assert all("cluster.gpu.memory_request 4Gi: raise it" in w for w in warnings)
    assert main(["plan", "--config", THESIS, "--set", "cluster.gpu.memory_request=4Gi"]) == 0
    out = _cost_lines(capsys.readouterr().out)
    assert out[-2] == warnings[-1] and out[-1].startswith("total ")


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("16G", 16e9), ("15Gi", 15 * 2**30), ("8000M", 8e9), ("1.5Ti", 1.5 * 2**40), ("1e9", 1e9)],
)
def test_memory_quantities_read_as_kubernetes_does(quantity, expected):
    assert quantity_bytes(quantity, "k") == expected


def test_a_memory_request_kubernetes_cannot_read_is_a_compile_error():
    config = load_config(THESIS, ["cluster.gpu.memory_request=16 gigs"])
    with pytest.raises(ConfigError, match=r"cluster.gpu.memory_request: '16 gigs' is not a memory"):
        check_placement(config)


# --------------------------------------------------------------------------- power from a pilot


def _pilot_run(root, with_predictions: bool):
    """A made-up finished run: random and spectral-pixel (fine-tuned) and no-finetune (a
    control, ignored) at size 500, seeds 0-2, scored on the same 120 real-test images.
    ALL NUMBERS MADE UP: binormal scores whose separation differs by method and seed."""
    import csv

    import numpy as np

    from tgap import metrics
    from tgap.artifacts import CellArtifact

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    files = [f"img{i}.png" for i in range(120)]
    shared = rng.normal(size=120)  # the images' own difficulty, the same for every classifier
    separation = {"random": 1.4, "spectral-pixel": 1.6, "no-finetune": 0.3}
    for method, d in separation.items():
        for seed in range(3):
            score = d * y + 0.8 * shared + 0.6 * rng.normal(size=120) + 0.2 * rng.normal()
            positive = 1 / (1 + np.exp(-score))
            auc, var = metrics.delong(y, positive)
            folder = root / f"compute-cell-{method}-{seed}"
            assets = {}
            if with_predictions:
                (folder / "assets").mkdir(parents=True)
                with open(folder / "assets/s2r_predictions.csv", "w", newline="") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["file", "label", "score_No Finding", "score_Unhealthy",
                                     "predicted"])  # fmt: skip
                    for f, label, p in zip(files, y, positive, strict=True):
                        name = ["No Finding", "Unhealthy"][label]
                        writer.writerow([f, name, 1 - p, p, name])
                assets = {"s2r_predictions.csv": "assets/s2r_predictions.csv"}
            metrics_ = {"s2r_accuracy": 0.8, "s2r_auroc": auc, "r2s_accuracy": 0.9,
                        "r2s_auroc": 0.9, "fter": auc / 0.9,
                        "s2r_auroc_var": metrics.auroc_variance(auc, var, 60, 60)}  # fmt: skip
            CellArtifact(method, 500, seed, metrics_, assets=assets).write(
                folder if with_predictions else folder.mkdir(parents=True) or folder
            )
    return root


@pytest.mark.parametrize("with_predictions", [True, False])
def test_plan_pilot_prints_the_seeds_needed_and_their_cost(capsys, tmp_path, with_predictions):
    from tgap.metrics import seeds_needed
    from tgap.plan import pilot_power

    run = _pilot_run(tmp_path, with_predictions)
    pilot = pilot_power(run)
    assert pilot.seeds == 3 and pilot.pairs == 1  # no-finetune is a control: not paired
    assert ("measured" in pilot.test_from) is with_predictions
    assert main(["plan", "--config", THESIS, "--pilot", str(run), "--detect", "0.05"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    total = dict(re.findall(r"(\w+)=([\d.]+)", next(x for x in out if x.startswith("total"))))
    ranking, known = out[-2:]
    power = dict(re.findall(r"(\w+)=([\d.]+)", ranking))
    assert ranking.startswith("power: pilot 3 seeds, 1 fine-tuned method pairs"), ranking
    # The known effect: each fine-tuned method against the control, a line of its own.
    assert known.startswith("power: pilot 3 seeds, 2 fine-tuned methods against no-finetune")
    control = pilot_power(run, control="no-finetune")
    assert control.pairs == 2 and control.family == 1  # no results.json: no Holm family
    k = seeds_needed(pilot.between_sd, pilot.test_var, 0.05)
    if not with_predictions:
        # Assumed fully shared, the two cells' real-test variance alone hides 0.05.
        assert k == 201 and "only a larger test set helps" in ranking
        return
    k_known = seeds_needed(control.between_sd, control.test_var, 0.05)
    expected = "only a larger test set helps" if k_known == 201 else f"seeds={k_known},"
    assert expected in known
    # The thesis grid has 5 seeds: per-seed cost x seeds needed.
    per_seed = float(total["gpu_hours"]) / 5
    assert int(power["seeds"]) == k
    assert float(power["gpu_hours"]) == pytest.approx(k * per_seed, abs=0.1 * k)


def test_plan_pilot_holds_the_smallest_p_to_alpha_over_the_pilot_reports_family(tmp_path):
    from tgap.metrics import seeds_needed
    from tgap.plan import pilot_power, power_line

    run = _pilot_run(tmp_path, with_predictions=True)
    (run / "results.json").write_text(json.dumps({"comparisons": {"family_size": 7}}))
    pilot = pilot_power(run, control="no-finetune")
    assert pilot.family == 7
    line = power_line(pilot, 0.1, 10.0)
    k = seeds_needed(pilot.between_sd, pilot.test_var, 0.1, alpha=0.05 / 7)
    assert k > seeds_needed(pilot.between_sd, pilot.test_var, 0.1)  # Holm costs seeds
    assert "alpha 0.05/7 (Holm over the pilot report's 7 comparisons)" in line
    assert f"seeds={k}, 10.0 GPU-hours per seed, gpu_hours={10.0 * k:.1f}" in line


def test_plan_pilot_needs_two_fine_tuned_methods(tmp_path):
    from tgap.plan import pilot_power

    with pytest.raises(ConfigError, match=r"no cell\.json"):
        pilot_power(tmp_path)


def test_an_image_set_is_its_manifest_plus_one_object_per_shard():
    assert image_set(20_000, 32, 1000).objects == 21
    assert image_set(20_001, 32, 1000).objects == 22
    assert image_set(0, 32, 1000).objects == 1
    assert image_set(20_000, 32, 1).objects == 20_001  # one object per image
    assert image_set(10, 100, 4, extra=2).bytes == 10 * 0.36 * 100**2


def test_shards_cut_the_thesis_downloads_more_than_tenfold(capsys):
    config = load_config(THESIS)
    per_image = sum(s.down_objects for s in transfers(config, shard_size=1))
    sharded = {s.name: s for s in transfers(config)}
    assert per_image >= 10 * sum(s.down_objects for s in sharded.values())
    # The pool (67,272 images: 68 shards + manifest) goes into every select task.
    assert sharded["select"].tasks == 95
    assert sharded["compute-fter"].tasks == 95
    assert main(["plan", "--config", THESIS, "--shard-size", "1", "--object-latency-ms", "0"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("transfer shard_size=1 latency_ms=0 ")
    assert f"down_objects={per_image} " in last


def test_transfer_time_is_a_round_trip_per_object_plus_bytes_over_bandwidth():
    stage = StageTransfer("s", 1, [image_set(1000, 100, 100)], [image_set(0, 100, 100)])
    assert stage.down_objects + stage.up_objects == 12
    assert stage.seconds(0.5, 1e6) == pytest.approx(12 * 0.5 + 1000 * 0.36 * 100**2 / 1e6)
    table = format_transfers([stage], 100, latency_ms=500, bandwidth_mb_s=1)
    assert table.splitlines()[-1].endswith(f"transfer_hours={stage.seconds(0.5, 1e6) / 3600:.1f}")
    with pytest.raises(ValueError, match="bandwidth 0 MB/s"):
        format_transfers([stage], 100, bandwidth_mb_s=0)
