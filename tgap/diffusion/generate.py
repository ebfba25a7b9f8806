"""Batched text-to-image sampling and the generate stage.

One sampling function (``sample``) serves the generate stage, the class images of prior
preservation and the active-selection probe, so every generated image goes through the same code.
Image ``i`` of a run is drawn from its own seed ``derive_seed(seed, label, i)``: its starting noise
and any sampler noise come from a generator of its own, so it comes out the same whether it is
generated alone or inside a batch (up to float rounding of batched kernels, < 1 grey level).
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from tgap.config import DiffusionConfig, GenerateConfig, PromptConfig
from tgap.config.schema import Scheduler
from tgap.device import pick_device, torch_dtype
from tgap.diffusion.build import DiffusionModel, load_model
from tgap.imageset import ImageSet, ImageSetWriter, write_label_grids
from tgap.seeding import derive_seed, torch_generator

log = logging.getLogger(__name__)

SCHEDULERS = get_args(Scheduler)  # the config's generate.scheduler choices


def prompt_for(label: str, prompt: PromptConfig) -> str:
    """The instance prompt of ``label``: template with the label's word and optional identifier."""
    word = prompt.words.get(label, label)
    if prompt.identifier:
        word = f"{prompt.identifier} {word}"
    return prompt.template.format(label=word)


def tokenize(model: DiffusionModel, prompts: list[str], device) -> torch.Tensor:
    """Token ids (n, tokens) of ``prompts``, padded to the model's length."""
    return model.tokenize(prompts, device)


@torch.no_grad()
def encode_prompts(model: DiffusionModel, prompts: list[str], device) -> torch.Tensor:
    """Text-encoder hidden states (n, tokens, d) for ``prompts`` (padded to the model's length)."""
    if model.class_encoder is not None:  # class-encoder conditioning: a learned embedding per label
        return model.class_encoder(prompts).to(device)
    return model.text_encoder(tokenize(model, prompts, device))[0]


def make_scheduler(name: str, scheduler_config: dict, pixel_space: bool):
    """A diffusers sampler built from the model's training scheduler config.

    Pixel-space models predict images in [-1, 1]; with few steps the first denoising steps
    extrapolate far outside that range (x0 = (x - sqrt(1-a) eps) / sqrt(a) with sqrt(a) ~ 0.01 at
    t = T). DDIM/DDPM clip x0 (``clip_sample``); DPM-Solver++ needs its dynamic ``thresholding``
    for the same purpose -- without it, 20 steps gave saturated noise on the tiny model.
    """
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
    )

    if name == "ddim":
        return DDIMScheduler.from_config(scheduler_config, clip_sample=pixel_space)
    if name == "ddpm":
        return DDPMScheduler.from_config(scheduler_config, clip_sample=pixel_space)
    if name == "dpm-solver++":
        return DPMSolverMultistepScheduler.from_config(
            scheduler_config,
            algorithm_type="dpmsolver++",
            thresholding=pixel_space,
            sample_max_value=1.0,
        )
    if name == "euler":
        return EulerDiscreteScheduler.from_config(scheduler_config)
    if name == "pndm":
        return PNDMScheduler.from_config(scheduler_config, skip_prk_steps=True)
    raise ValueError(f"generate.scheduler {name!r}: expected one of {', '.join(SCHEDULERS)}")


def to_uint8(model: DiffusionModel, x: torch.Tensor) -> np.ndarray:
    """Model-space samples -> (n, r, r) uint8 grey images (VAE-decoded for latent models)."""
    if model.vae is not None:
        x = model.vae.decode(x / model.vae.config.scaling_factor).sample.mean(dim=1, keepdim=True)
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round()
    return x[:, 0].to(torch.uint8).cpu().numpy()


@torch.no_grad()
def sample(
    model: DiffusionModel,
    prompt_embeds: torch.Tensor,
    seeds: list[int],
    scheduler_name: str = "ddim",
    steps: int = 50,
    guidance_scale: float = 1.0,
    uncond_embeds: torch.Tensor | None = None,
    autocast_dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Generate one image per (prompt embedding, seed) in one batch; return uint8 (n, r, r).

    Classifier-free guidance runs the conditional and unconditional halves in one batched forward;
    with ``guidance_scale == 1`` the unconditional pass is skipped (half the work).
    """
    if len(seeds) != len(prompt_embeds):
        raise ValueError(f"{len(seeds)} seeds for {len(prompt_embeds)} prompts")
    unet = model.unet
    device = unet.device
    scheduler = make_scheduler(scheduler_name, model.scheduler_config, model.vae is None)
    scheduler.set_timesteps(steps, device=device)
    side = unet.config.sample_size
    shape = (unet.config.in_channels, side, side)
    generators = [torch_generator(s, device) for s in seeds]
    x = torch.stack([torch.randn(shape, generator=g, device=device) for g in generators])
    x = x * scheduler.init_noise_sigma
    guided = guidance_scale != 1.0
    if guided:
        if uncond_embeds is None:
            uncond_embeds = encode_prompts(model, [""], device)
        cond = torch.cat([uncond_embeds.expand_as(prompt_embeds), prompt_embeds])
    else:
        cond = prompt_embeds
    step_kwargs = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = generators  # per-image sampler noise (DDPM, Euler, ...)
    use_autocast = device.type == "cuda" and autocast_dtype != torch.float32
    for t in scheduler.timesteps:
        model_in = torch.cat([x, x]) if guided else x
        model_in = scheduler.scale_model_input(model_in, t)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
            out = unet(model_in, t, encoder_hidden_states=cond).sample.float()
        if guided:
            uncond, text = out.chunk(2)
            out = uncond + guidance_scale * (text - uncond)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return to_uint8(model, x)


def generate_image_set(
    model_dir: str | Path,
    labels: list[str],
    n_per_label: int,
    prompt: PromptConfig,
    generate: GenerateConfig,
    diffusion: DiffusionConfig,
    seed: int,
    out_dir: str | Path,
) -> dict:
    """Stage: generate ``n_per_label`` images per label into the image set ``out_dir``.

    Manifest rows have ``source=synthetic`` and ``original_id`` = the image's own seed. After the
    image set is complete, a sample grid ``grid_<label-slug>.png`` per label (the first
    ``generate.grid_images`` images) is added beside ``dataset.json``.
    """
    if generate.scheduler not in SCHEDULERS:
        raise ValueError(f"generate.scheduler {generate.scheduler!r}: expected one of {SCHEDULERS}")
    if n_per_label < 1 or generate.batch_size < 1 or generate.steps < 1:
        raise ValueError(
            f"n_per_label ({n_per_label}), generate.batch_size ({generate.batch_size}) and "
            f"generate.steps ({generate.steps}) must be >= 1"
        )
    device = pick_device(diffusion.device)
    dtype = torch_dtype(diffusion.mixed_precision, device)
    model = load_model(model_dir, device)
    out_dir = Path(out_dir)
    embeds = encode_prompts(model, [prompt_for(label, prompt) for label in labels], device)
    uncond = encode_prompts(model, [generate.negative_prompt], device)
    jobs = [
        (k, i, derive_seed(seed, label, i))
        for k, label in enumerate(labels)
        for i in range(n_per_label)
    ]
    info = {
        "generator": {
            "model": str(model_dir),
            "model_description": model.info.get("description", ""),
            "scheduler": generate.scheduler,
            "steps": generate.steps,
            "guidance_scale": generate.guidance_scale,
            "negative_prompt": generate.negative_prompt,
            "seed": seed,
            "prompts": {label: prompt_for(label, prompt) for label in labels},
        }
    }
    start = time.perf_counter()
    with ImageSetWriter(out_dir, labels, model.resolution, str(model_dir), info) as writer:
        bar = tqdm(total=len(jobs), desc="generate", unit="img")
        for b in range(0, len(jobs), generate.batch_size):
            batch = jobs[b : b + generate.batch_size]
            images = sample(
                model,
                embeds[[k for k, _, _ in batch]],
                [s for _, _, s in batch],
                generate.scheduler,
                generate.steps,
                generate.guidance_scale,
                uncond,
                dtype,
            )
            for (k, _, s), image in zip(batch, images, strict=True):
                writer.add(image, labels[k], source="synthetic", original_id=str(s))
            bar.update(len(batch))
        bar.close()
    seconds = time.perf_counter() - start
    grids = write_label_grids(ImageSet(out_dir), out_dir, "grid", generate.grid_images)
    stats = {
        "n_images": len(jobs),
        "n_per_label": n_per_label,
        "seconds": round(seconds, 2),
        "images_per_s": round(len(jobs) / seconds, 2),
        "grids": grids,
        **info["generator"],
    }
    log.info(
        "generated %d images in %.1f s (%.1f img/s, %s %d steps, guidance %.1f) -> %s",
        len(jobs),
        seconds,
        len(jobs) / seconds,
        generate.scheduler,
        generate.steps,
        generate.guidance_scale,
        out_dir,
    )
    return stats
