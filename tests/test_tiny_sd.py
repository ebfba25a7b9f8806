"""Stable Diffusion's latent layout on the tiny SD fixture: the model-artifact format, diffusers
interop both ways (same seeds, same images), and bad input."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import real_image_set, tiny_diffusion

from tgap.config import DiffusionConfig, FinetuneConfig, GenerateConfig, PromptConfig
from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.build import (
    LORA_WEIGHTS,
    MODEL_INFO,
    ModelError,
    build_tiny_sd,
    diffusers_pipeline,
    load_model,
)
from tgap.diffusion.dreambooth import finetune
from tgap.diffusion.generate import encode_prompts, generate_image_set, prompt_for, sample
from tgap.imageset import ImageSet
from tgap.methods import parse_method
from tgap.seeding import torch_generator

LABELS = ["No Finding", "Unhealthy"]
SCHEDULER_WORDS = ("scheduler", "clip_sample", "steps_offset")


def sd_diffusion(base: Path) -> DiffusionConfig:
    return DiffusionConfig(base_model=str(base), device="cpu")


def small_finetune(**overrides) -> FinetuneConfig:
    values = dict(steps=3, batch_size=4, learning_rate=1e-3, lr_warmup_steps=0, checkpoint_every=2)
    values.update(overrides)
    return FinetuneConfig(**values)


@pytest.fixture(scope="module")
def sd(tiny_sd, tmp_path_factory):
    """The prepared base, a 64-px tuning set, and a full and a LoRA fine-tune of it."""
    root = tmp_path_factory.mktemp("sd-artifacts")
    prepare_base_model(sd_diffusion(tiny_sd), root / "base")
    tuning = real_image_set(root / "tuning", 4, resolution=64)
    for name, lora in (("full", 0), ("lora", 4)):
        finetune(root / "base", tuning, parse_method("random"), 0, small_finetune(lora_rank=lora),
                 PromptConfig(), sd_diffusion(tiny_sd), root / name)  # fmt: skip
    return root


def load_quietly(load):
    """Call ``load``; return (result, every warning and diffusers log message it produced)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = load()
    finally:
        logger.removeHandler(handler)
    return result, messages + [str(w.message) for w in caught]


def test_fixture_is_diffusers_own_sd1_layout(tiny_sd):
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    pipe, messages = load_quietly(lambda: StableDiffusionPipeline.from_pretrained(tiny_sd))
    assert isinstance(pipe.scheduler, PNDMScheduler)
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    assert pipe.scheduler.config.steps_offset == 1
    assert pipe.unet.config.in_channels == pipe.vae.config.latent_channels == 4
    assert pipe.vae_scale_factor == 8
    assert not [m for m in messages if any(w in m for w in SCHEDULER_WORDS)], messages


def test_artifacts_store_only_what_was_trained_and_reference_the_base(sd):
    base_hash = json.loads((sd / "base" / MODEL_INFO).read_text())["content_hash"]
    full = json.loads((sd / "full" / MODEL_INFO).read_text())
    lora = json.loads((sd / "lora" / MODEL_INFO).read_text())
    for info in (full, lora):
        assert info["base_model"]["content_hash"] == base_hash
        assert info["storage_dtype"] == "float32"  # the CPU trains in fp32
    assert full["trained"] == ["unet"] and lora["trained"] == ["unet_lora"]
    assert sorted(p.name for p in (sd / "full").iterdir() if p.is_dir()) == ["unet"]
    assert not [p for p in (sd / "lora").iterdir() if p.is_dir()]
    adapter = (sd / "lora" / LORA_WEIGHTS).stat().st_size
    unet = (sd / "full" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert adapter < unet / 5


@pytest.mark.parametrize("name", ["base", "full", "lora"])
def test_every_artifact_loads_in_diffusers_keeping_the_base_scheduler(sd, name):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    pipe, messages = load_quietly(lambda: diffusers_pipeline(sd / name))
    assert isinstance(pipe, StableDiffusionPipeline)
    assert not [m for m in messages if any(w in m for w in SCHEDULER_WORDS)], messages
    base_scheduler = json.loads((sd / "base" / "scheduler" / "scheduler_config.json").read_text())
    assert type(pipe.scheduler).__name__ == base_scheduler["_class_name"] == "PNDMScheduler"
    for key, value in base_scheduler.items():
        if not key.startswith("_"):
            assert pipe.scheduler.config[key] == value, key
    if name == "full":  # the documented recipe, in plain diffusers
        unet = UNet2DConditionModel.from_pretrained(sd / "full" / "unet")
        plain = StableDiffusionPipeline.from_pretrained(sd / "base", unet=unet)
        assert torch.equal(plain.unet.conv_in.weight, pipe.unet.conv_in.weight)


def _tgap_images(model_dir: Path, tmp_path: Path, guidance: float):
    gen = GenerateConfig(n_per_label=2, batch_size=4, scheduler="pndm", steps=4,
                         guidance_scale=guidance, negative_prompt="", grid_images=2)  # fmt: skip
    out = tmp_path / f"gen-{model_dir.name}-{guidance}"
    generate_image_set(model_dir, LABELS, 2, PromptConfig(), gen, DiffusionConfig(device="cpu"),
                       seed=5, out_dir=out)  # fmt: skip
    images = ImageSet(out)
    prompts = [prompt_for(r.label, PromptConfig()) for r in images.records]
    seeds = [int(r.original_id) for r in images.records]
    return images.load_all(), prompts, seeds


@pytest.mark.parametrize("name,guidance", [("base", 1.0), ("full", 3.0), ("lora", 3.0)])
def test_same_seeds_give_the_same_images_in_diffusers_and_in_tgap(sd, tmp_path, name, guidance):
    """tgap's generate stage vs diffusers' StableDiffusionPipeline: same scheduler (the model's
    PNDM), steps, guidance, seeds (one generator per image, as tgap uses).

    Where they cannot agree bit for bit: tgap turns the VAE's RGB into grey by averaging the
    channels and then clamps to [-1, 1]; diffusers clamps each channel first. So the latents are
    compared (tolerance of float rounding), and the grey images only at pixels where no channel
    was clamped (within one grey level: rounding to uint8); diffusers' LoRA path runs the adapter
    unfused, tgap fuses it into the weights (float rounding again).
    """
    images, prompts, seeds = _tgap_images(sd / name, tmp_path, guidance)
    pipe = diffusers_pipeline(sd / name)
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(prompt=prompts, num_inference_steps=4, guidance_scale=guidance,
                  negative_prompt=[""] * len(prompts) if guidance > 1 else None)  # fmt: skip
    latents = pipe(**kwargs, generator=[torch_generator(s) for s in seeds], output_type="latent")
    rgb = pipe(**kwargs, generator=[torch_generator(s) for s in seeds], output_type="np").images

    model = load_model(sd / name)
    embeds = encode_prompts(model, prompts, "cpu")
    uncond = encode_prompts(model, [""], "cpu")
    ours = _latents(model, embeds, seeds, guidance, uncond)
    assert torch.allclose(ours, latents.images, atol=1e-4, rtol=1e-4)

    with torch.no_grad():
        decoded = pipe.vae.decode(latents.images / pipe.vae.config.scaling_factor).sample
    inside = (decoded.abs() <= 1).all(dim=1).numpy()
    theirs = np.round(rgb.mean(axis=-1) * 255)
    assert inside.mean() > 0.2, "too few unclamped pixels to compare"
    assert np.abs(theirs[inside] - images.astype(float)[inside]).max() <= 1


def _latents(model, embeds, seeds, guidance, uncond):
    """tgap's sampling loop, stopped before the VAE decode (``sample`` with an identity decode)."""
    import tgap.diffusion.generate as generate

    captured = {}
    original = generate.to_uint8
    generate.to_uint8 = lambda m, x: captured.setdefault("x", x)
    try:
        sample(model, embeds, seeds, "pndm", 4, guidance, uncond)
    finally:
        generate.to_uint8 = original
    return captured["x"]


def test_lora_artifact_generates_like_the_model_with_the_adapter_fused(sd, tmp_path):
    """Generate from the adapter artifact (tgap fuses it at load) == diffusers' pipeline with the
    adapter loaded and fused by diffusers (within float tolerance)."""
    pipe = diffusers_pipeline(sd / "lora")
    pipe.fuse_lora()
    model = load_model(sd / "lora")
    theirs = {  # peft keeps its wrappers after fusing: the fused weight is the base layer's
        k.replace(".base_layer", ""): v
        for k, v in pipe.unet.state_dict().items()
        if "lora_" not in k
    }
    ours = model.unet.state_dict()
    assert ours.keys() == theirs.keys()
    for name, weight in ours.items():
        assert torch.allclose(weight, theirs[name], atol=1e-6), name
    base = load_model(sd / "base")
    assert not torch.equal(
        base.unet.state_dict()["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"],
        model.unet.state_dict()[
            "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
        ],
    )


def test_tiny_pixel_model_has_a_pipeline_class_diffusers_loads(tmp_path):
    from tgap.diffusion.pixel_pipeline import TgapPixelPipeline

    prepare_base_model(tiny_diffusion(), tmp_path / "base")
    index = json.loads((tmp_path / "base" / "model_index.json").read_text())
    assert index["_class_name"] == "TgapPixelPipeline"
    pipe = TgapPixelPipeline.from_pretrained(tmp_path / "base")
    pipe.set_progress_bar_config(disable=True)
    model = load_model(tmp_path / "base")
    seeds = [3, 4]
    prompts = ["an image of Healthy chest X-ray"] * 2
    ours = sample(model, encode_prompts(model, prompts, "cpu"), seeds, "ddpm", 3, 2.0,
                  encode_prompts(model, [""], "cpu"))  # fmt: skip
    theirs = pipe(prompts, 3, 2.0, generator=[torch_generator(s) for s in seeds])
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


# --------------------------------------------------------------------------- bad input


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit(path: Path, **values) -> None:
    config = json.loads(path.read_text())
    config.update(values)
    path.write_text(json.dumps(config))


def test_vae_latent_channels_that_do_not_fit_the_unet_are_one_clear_error(tiny_sd, tmp_path):
    bad = _copy(tiny_sd, tmp_path / "bad")
    _edit(bad / "vae" / "config.json", latent_channels=8)
    with pytest.raises(ModelError) as err:
        prepare_base_model(sd_diffusion(bad), tmp_path / "base")
    message = str(err.value)
    assert "vae/config.json" in message and "latent_channels=8" in message
    assert "unet/config.json" in message and "in_channels=4" in message


def test_tokenizer_too_large_for_the_text_encoder_is_one_clear_error(tiny_sd, tmp_path):
    bad = _copy(tiny_sd, tmp_path / "bad")
    _edit(bad / "text_encoder" / "config.json", vocab_size=1000)
    with pytest.raises(ModelError) as err:
        prepare_base_model(sd_diffusion(bad), tmp_path / "base")
    message = str(err.value)
    assert "has 49408 tokens" in message and "tokenizer/" in message
    assert "text_encoder/config.json has vocab_size=1000" in message


def test_lora_adapter_for_another_base_model_is_one_clear_error(sd, tmp_path):
    other_sd = build_tiny_sd(tmp_path / "other-sd", tiny_diffusion().tokenizer, seed=1)
    prepare_base_model(sd_diffusion(other_sd), tmp_path / "other")
    moved = _copy(sd / "lora", tmp_path / "lora")
    info = json.loads((moved / MODEL_INFO).read_text())
    info["base_model"].update(path=str(tmp_path / "other"), uri=str(tmp_path / "other"))
    (moved / MODEL_INFO).write_text(json.dumps(info))
    with pytest.raises(ModelError) as err:
        load_model(moved)
    message = str(err.value)
    assert str(moved) in message and str(tmp_path / "other") in message
    assert info["base_model"]["content_hash"] in message and "another model" in message

    info["base_model"].update(path=str(tmp_path / "gone"), uri=str(tmp_path / "gone"))
    (moved / MODEL_INFO).write_text(json.dumps(info))
    with pytest.raises(ModelError, match="missing"):
        load_model(moved)
