"""`tgap plan`: the cost of a run, before it runs."""

import re

import pytest

from tgap.cli import main
from tgap.config import ConfigError, check_placement, load_config, quantity_bytes
from tgap.plan import classifier_train_bytes, memory_warnings, plan, sd15_lora_params

THESIS = "pipelines/configs/thesis.yaml"


def _total(capsys, *args: str) -> dict[str, float]:
    assert main(["plan", "--config", THESIS, *args]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
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


def test_a_throughput_override_changes_the_estimate():
    base = {s.name: s for s in plan(load_config(THESIS))}
    slow = {s.name: s for s in plan(load_config(
        THESIS, ["cluster.throughput.nvidia-a100.sample_unet_evals_per_s=31"]))}  # fmt: skip
    assert slow["generate"].hours == base["generate"].hours * 2


def test_tuning_trials_are_counted_and_a_study_of_zero_trials_costs_no_gpu():
    off = {s.name: s for s in plan(load_config(THESIS))}
    assert off["tune-generation"].tasks == 75 and not off["tune-generation"].gpu
    assert off["tune-generation"].hours == 0
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
    out = capsys.readouterr().out.strip().splitlines()
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
