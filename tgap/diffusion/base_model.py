"""The prepare-base-model stage: build the tiny preset (and pretrain it here), or fetch a
Stable Diffusion folder, and write the base-model folder every fine-tune starts from.

Pretraining lives here, beside the base model it makes: the tiny pixel-space preset is trained
on the real pool with the class prompt only (labels unused) -- a small stand-in for Stable
Diffusion's pretraining, so DreamBooth is a real fine-tune and ``no-finetune`` a real control.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tgap.config import DiffusionConfig, PromptConfig
from tgap.device import pick_device
from tgap.diffusion.build import (
    MODEL_INFO,
    REQUIRED,
    DiffusionModel,
    build_tiny_pixel,
    content_hash,
    count_parameters,
    fetch_model_dir,
    load_model,
    model_index,
    save_model,
    validate_model_dir,
)
from tgap.diffusion.training import (
    Examples,
    LoopSettings,
    TrainData,
    check_resolution,
    loss_summary,
    train_loop,
)
from tgap.imageset import ImageSet
from tgap.seeding import derive_seed

log = logging.getLogger(__name__)


def prepare_base_model(
    diffusion: DiffusionConfig,
    out_dir: str | Path,
    pretrain_set: ImageSet | None = None,
    prompt: PromptConfig | None = None,
) -> dict:
    """Stage: write the base model folder ``out_dir`` and return its ``tgap_model.json``.

    ``tiny-pixel`` builds the preset from config with random weights; when
    ``diffusion.pretrain_steps > 0`` and ``pretrain_set`` is given, it then trains it on those
    images with the class prompt only (labels unused) -- a small stand-in for Stable Diffusion's
    pretraining, so the DreamBooth stage is a real fine-tune and ``no-finetune`` a real control.
    The class prompt is ``prompt.class_prompt`` (default ``PromptConfig()``). Anything else is fetched, validated and copied.
    """
    out_dir = Path(out_dir)
    if (out_dir / MODEL_INFO).is_file():
        log.info("base model %s already complete; reusing it", out_dir)
        return json.loads((out_dir / MODEL_INFO).read_text())
    if diffusion.base_model == "tiny-pixel":
        unet, text_encoder, tokenizer, scheduler = build_tiny_pixel(diffusion)
        info: dict[str, Any] = {
            "kind": "tiny-pixel",
            "pretrained": False,
            "source": "built from config (tgap.diffusion.build.build_tiny_pixel)",
            "pixel_space": True,
            "resolution": diffusion.sample_size,
            "parameters": {
                "unet": count_parameters(unet),
                "text_encoder": count_parameters(text_encoder),
            },
            "pretrain": None,
            "description": "randomly initialised, not pretrained",
        }
        if diffusion.pretrain_steps > 0 and pretrain_set is not None:
            class_prompt = (prompt or PromptConfig()).class_prompt
            summary = pretrain(
                unet,
                text_encoder,
                tokenizer,
                scheduler.config,
                pretrain_set,
                diffusion,
                out_dir,
                class_prompt,
            )
            info["pretrain"] = summary
            info["description"] = (
                f"randomly initialised (no external pretrained weights), then trained here for "
                f"{summary['steps']} steps on {summary['images']} real pool images with the class "
                f"prompt only ({summary['prompt']!r}, labels unused)"
            )
        elif diffusion.pretrain_steps > 0:
            log.warning(
                "diffusion.pretrain_steps=%d but no pretrain set given: not pretraining",
                diffusion.pretrain_steps,
            )
        save_model(out_dir, unet, text_encoder, tokenizer, dict(scheduler.config), info)
        shutil.rmtree(out_dir / "pretrain-checkpoints", ignore_errors=True)
        log.info("base model: %s (%s)", out_dir, info["description"])
        return info

    source = fetch_model_dir(diffusion.base_model)
    validate_model_dir(source, pixel_space=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED:
        shutil.copytree(source / name, out_dir / name, dirs_exist_ok=True)
    if (source / "model_index.json").is_file():
        shutil.copy2(source / "model_index.json", out_dir / "model_index.json")
    else:
        scheduler = json.loads((out_dir / "scheduler" / "scheduler_config.json").read_text())
        index = model_index(scheduler.get("_class_name", "PNDMScheduler"), pixel_space=False)
        (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    model_info = {"kind": "stable-diffusion", "pixel_space": False, "source": diffusion.base_model}
    model = load_model(out_dir, info=model_info)
    vae_scale = 2 ** (len(model.vae.config.block_out_channels) - 1)
    info = {
        **model_info,
        "pretrained": True,
        "resolution": int(model.unet.config.sample_size) * vae_scale,
        "parameters": {
            "unet": count_parameters(model.unet),
            "text_encoder": count_parameters(model.text_encoder),
            "vae": count_parameters(model.vae),
        },
        "pretrain": None,
        "description": f"pretrained Stable Diffusion weights from {diffusion.base_model}",
        "content_hash": content_hash(out_dir),
    }
    (out_dir / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")  # last: marks complete
    return info


def pretrain(
    unet,
    text_encoder,
    tokenizer,
    scheduler_config: dict,
    pool: ImageSet,
    diffusion: DiffusionConfig,
    out_dir: Path,
    class_prompt: str,
) -> dict:
    """Train a freshly built model on ``pool`` with ``class_prompt`` only (labels unused).

    Used by ``prepare_base_model``; checkpoints in ``out_dir/pretrain-checkpoints`` so a
    retried task resumes.
    """
    device = pick_device(diffusion.device)
    model = DiffusionModel(
        unet.to(device),
        text_encoder.to(device),
        tokenizer,
        dict(scheduler_config),
        None,
        {"resolution": diffusion.sample_size, "kind": "tiny-pixel"},
    )
    check_resolution(model, pool.resolution, f"pretrain set {pool.root}")
    data = TrainData(
        instances=Examples(pool, model, diffusion.seed),
        prompt_index=np.zeros(len(pool), dtype=np.int64),
        prompts=[class_prompt],
    )
    settings = LoopSettings(
        steps=diffusion.pretrain_steps,
        batch_size=diffusion.pretrain_batch_size,
        learning_rate=diffusion.pretrain_learning_rate,
        lr_warmup_steps=min(50, diffusion.pretrain_steps // 10),
        checkpoint_every=100,
        mixed_precision=diffusion.mixed_precision,
        gradient_checkpointing=diffusion.gradient_checkpointing,
        attention=diffusion.attention,
        seed=derive_seed(diffusion.seed, "pretrain"),
    )
    record = train_loop(
        model, data, settings, Path(out_dir) / "pretrain-checkpoints", desc="pretrain"
    )
    return {
        "steps": settings.steps,
        "images": len(pool),
        "prompt": class_prompt,
        "source": str(pool.root),
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        **loss_summary(record["loss"]),
        "wall_time_s": record["wall_time_s"],
    }
