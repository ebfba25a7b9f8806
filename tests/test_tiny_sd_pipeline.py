"""The committed compiled spec, run under kfp.local on the tiny Stable Diffusion fixture: the
latent (VAE) branch of fine-tune and generate through every stage, for ``random``, ``active``,
``no-finetune`` and ``retrieval`` with a full fine-tune and with LoRA. Every kind of loop the
spec compiles gets work (the backend cannot collect a loop that ran no iteration, and
expand-grid refuses such a grid), so both runs hold a method of each kind."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest

from tgap.config import load_config
from tgap.diffusion.build import LORA_WEIGHTS, MODEL_INFO, diffusers_pipeline
from tgap.local_run import run_local

SPEC = Path("pipelines/compiled/tgap.yaml")
MICRO = Path("pipelines/configs/micro.yaml")
pytestmark = pytest.mark.slow

# 64 px images (8x8 latents), a handful of steps and images: one run is a few minutes.
OVERRIDES = [
    "name=tiny-sd",
    "data.resolution=64",
    "data.max_images=240",
    "grid.methods=[random, active, no-finetune, retrieval]",
    "grid.sizes=[8]",
    "finetune.steps=2",
    "finetune.batch_size=4",
    "finetune.num_class_images=2",
    "finetune.class_sampler_steps=1",
    "finetune.active.n_generate=1",
    "finetune.active.sampler_steps=1",
    "generate.n_per_label=8",
    "generate.steps=2",
    "generate.scheduler=pndm",
    "classifier.epochs=1",
    "evaluation.bootstrap_resamples=20",
]


@pytest.fixture(scope="module", params=["full", "lora"])
def sd_run(request, tiny_sd, tmp_path_factory) -> tuple[str, Path]:
    lora = ["finetune.lora_rank=4"] if request.param == "lora" else []
    config = load_config(MICRO, [*OVERRIDES, f"diffusion.base_model={tiny_sd}", *lora])
    out = tmp_path_factory.mktemp(f"sd-{request.param}") / "run"
    run_local(config, out, pipeline_file=SPEC)
    return request.param, out


def test_every_method_runs_the_latent_path_through_the_compiled_spec(sd_run):
    kind, run = sd_run
    with open(run / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["method"] for r in rows) == ["active", "no-finetune", "random", "retrieval"]
    models = {}
    for info_file in (run / "artifacts").glob("**/finetune*/model/tgap_model.json"):
        log = json.loads((info_file.parent / "training_log.json").read_text())
        models[log["method"]] = info_file.parent
    # no-finetune has no fine-tune task: the base model generates, once per seed.
    assert set(models) == {"active", "random"}
    # generate copies its generator's training log beside every synthetic set.
    logs = [
        json.loads(p.read_text())
        for p in (run / "artifacts").glob("**/generate*/synthetic/training_log.json")
    ]
    base_logs = [log for log in logs if log["method"] not in models]
    # LoRA changes fine-tune only: no-finetune generates from the base model either way.
    [base_log] = base_logs
    assert base_log["method"] == "no-finetune" and base_log["fine_tuned"] is False
    for model in models.values():
        info = json.loads((model / MODEL_INFO).read_text())
        assert info["pixel_space"] is False and info["base_model"]["content_hash"]
        if kind == "lora":
            assert info["trained"] == ["unet_lora"] and (model / LORA_WEIGHTS).is_file()
            assert not (model / "unet").exists()
        else:
            assert info["trained"] == ["unet"] and (model / "unet").is_dir()
    for synthetic in (run / "artifacts").glob("**/generate*/synthetic/dataset.json"):
        assert json.loads(synthetic.read_text())["resolution"] == 64


def test_the_fine_tuned_folder_loads_in_diffusers_without_a_scheduler_warning(sd_run):
    from diffusers import PNDMScheduler

    _, run = sd_run
    model = next(
        p.parent
        for p in (run / "artifacts").glob("**/finetune*/model/training_log.json")
        if json.loads(p.read_text())["method"] == "random"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = diffusers_pipeline(model)
    assert isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.scheduler.config.steps_offset == 1
    words = ("scheduler", "clip_sample", "steps_offset")
    assert not [w for w in caught if any(x in str(w.message) for x in words)]
