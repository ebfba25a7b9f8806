"""Base models: build the tiny pixel-space preset, or fetch and validate a Stable Diffusion folder.

A model folder (what every diffusion stage reads and writes) is a diffusers ``save_pretrained``
layout plus ``tgap_model.json``::

    unet/  text_encoder/  tokenizer/  scheduler/  [vae/]   model_index.json   tgap_model.json

``vae/`` is absent for the pixel-space preset ``tiny-pixel``: a randomly initialised, frozen VAE
cannot decode anything, so the tiny preset denoises 1-channel pixels directly. ``tgap_model.json``
says plainly where the weights came from (``pretrained``: external pretrained weights or not).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tgap.config import DiffusionConfig

log = logging.getLogger(__name__)

MODEL_INFO = "tgap_model.json"
# component -> a file that must exist inside it (the one from_pretrained reads first)
REQUIRED = {
    "unet": "config.json",
    "text_encoder": "config.json",
    "tokenizer": "vocab.json",
    "scheduler": "scheduler_config.json",
    "vae": "config.json",
}


class ModelError(ValueError):
    """A base model or model folder is missing, incomplete or unusable; the message says why."""


@dataclass
class DiffusionModel:
    """The loaded components of a model folder. ``vae`` is None for pixel-space models."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    vae: Any | None
    info: dict[str, Any]
    # A learned embedding per label (tgap.diffusion.class_encoder) replacing the text encoder.
    class_encoder: Any | None = None

    @property
    def resolution(self) -> int:
        """Image side the model generates (pixels)."""
        return int(self.info["resolution"])

    @property
    def size_factor(self) -> int:
        """Image sides must be multiples of this (VAE scale x UNet downsampling)."""
        vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae else 1
        return vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)


# --------------------------------------------------------------------------- the tiny preset


def build_tiny_pixel(diffusion: DiffusionConfig):
    """A Stable-Diffusion-shaped pixel-space model with random weights: (unet, text_encoder, tokenizer, scheduler).

    UNet2DConditionModel on 1-channel images, cross-attention only in the lowest-resolution block
    and the mid block (8x8 at 32 px; attention at 16x16 as well made a step 3.5x slower here),
    a small CLIPTextModel and the real CLIP tokenizer.
    """
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    channels = list(diffusion.block_out_channels)
    factor = 2 ** (len(channels) - 1)
    if diffusion.sample_size % factor:
        raise ModelError(
            f"diffusion.sample_size {diffusion.sample_size} is not a multiple of {factor} "
            f"(the UNet halves the image {len(channels) - 1} times for block_out_channels {channels})"
        )
    tokenizer_dir = Path(diffusion.tokenizer)
    if not (tokenizer_dir / "vocab.json").is_file():
        raise ModelError(
            f"diffusion.tokenizer {diffusion.tokenizer}: no CLIP tokenizer there (vocab.json missing)"
        )
    torch.manual_seed(diffusion.seed)
    n = len(channels)
    unet = UNet2DConditionModel(
        sample_size=diffusion.sample_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=tuple(channels),
        layers_per_block=diffusion.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=diffusion.cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=min(8, channels[0]),
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=diffusion.text_hidden_size,
            intermediate_size=2 * diffusion.text_hidden_size,
            num_hidden_layers=diffusion.text_layers,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=diffusion.cross_attention_dim,
        )
    )
    if diffusion.text_hidden_size != diffusion.cross_attention_dim:
        raise ModelError(
            f"diffusion.text_hidden_size {diffusion.text_hidden_size} must equal "
            f"diffusion.cross_attention_dim {diffusion.cross_attention_dim} (the UNet attends to "
            "the text encoder's hidden states)"
        )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule=diffusion.beta_schedule,
        prediction_type=diffusion.prediction_type,
        clip_sample=True,
    )
    return unet, text_encoder, tokenizer, scheduler


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- folders


def validate_model_dir(path: str | Path, pixel_space: bool | None = None) -> None:
    """Raise ModelError naming the first missing component of a diffusers model folder."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"base model {path}: not a folder")
    if pixel_space is None:
        info_file = path / MODEL_INFO
        pixel_space = info_file.is_file() and json.loads(info_file.read_text()).get("pixel_space")
    for name, marker in REQUIRED.items():
        if name == "vae" and pixel_space:
            continue
        if not (path / name / marker).is_file():
            alt = name == "tokenizer" and (path / name / "tokenizer.json").is_file()
            if not alt:
                raise ModelError(
                    f"base model {path}: component {name!r} is missing "
                    f"(expected {name}/{marker}; a diffusers Stable Diffusion folder has "
                    f"{', '.join(REQUIRED)})"
                )


def save_model(
    out_dir: str | Path,
    unet,
    text_encoder,
    tokenizer,
    scheduler_config: dict[str, Any],
    info: dict[str, Any],
    vae=None,
) -> None:
    """Write a model folder; ``tgap_model.json`` goes last so its presence means complete."""
    from diffusers import DDPMScheduler

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_INFO).unlink(missing_ok=True)
    unet.save_pretrained(out_dir / "unet")
    text_encoder.save_pretrained(out_dir / "text_encoder")
    tokenizer.save_pretrained(out_dir / "tokenizer")
    DDPMScheduler.from_config(scheduler_config).save_pretrained(out_dir / "scheduler")
    if vae is not None:
        vae.save_pretrained(out_dir / "vae")
    index = {
        "_class_name": "StableDiffusionPipeline" if vae is not None else "TgapPixelDiffusion",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    if vae is not None:
        index["vae"] = ["diffusers", "AutoencoderKL"]
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out_dir / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")


def load_model(
    model_dir: str | Path, device: torch.device | str = "cpu", info: dict[str, Any] | None = None
) -> DiffusionModel:
    """Load a model folder written by ``save_model`` (``info`` overrides its tgap_model.json)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    model_dir = Path(model_dir)
    info_file = model_dir / MODEL_INFO
    if info is None:
        if not info_file.is_file():
            raise ModelError(f"model {model_dir}: {MODEL_INFO} is missing (not a complete model)")
        info = json.loads(info_file.read_text())
    validate_model_dir(model_dir, pixel_space=bool(info.get("pixel_space")))
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet").to(device)
    text_encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder").to(device)
    tokenizer = CLIPTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    scheduler_config = dict(DDPMScheduler.load_config(model_dir / "scheduler"))
    vae = None
    if not info.get("pixel_space"):
        vae = AutoencoderKL.from_pretrained(model_dir / "vae").to(device)
    for module in (unet, text_encoder, vae):
        if module is not None:
            module.eval().requires_grad_(False)
    from tgap.diffusion.class_encoder import load_class_encoder

    model = DiffusionModel(unet, text_encoder, tokenizer, scheduler_config, vae, info)
    model.class_encoder = load_class_encoder(model_dir, device)
    return model


def fetch_model_dir(base_model: str) -> Path:
    """A local folder for ``base_model``: a path, an s3:// / gs:// URI, or a hub id."""
    if base_model.startswith(("s3://", "gs://", "file://")):
        from tgap.storage import download_to_cache  # written alongside; import only when used

        try:
            return Path(download_to_cache(base_model))
        except (OSError, ValueError) as exc:  # StorageError is a ValueError
            raise ModelError(
                f"diffusion.base_model {base_model}: could not be fetched: {exc}"
            ) from None
    path = Path(base_model)
    if path.exists() or base_model.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ModelError(f"diffusion.base_model {base_model}: no such folder")
        return path
    if base_model.count("/") == 1:  # looks like a Hugging Face hub id
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(base_model))
        except Exception as exc:  # noqa: BLE001 - any hub failure gets the same clear message
            raise ModelError(
                f"diffusion.base_model {base_model!r}: looks like a hub id but could not be "
                f"downloaded ({type(exc).__name__}); this machine may have no access to the hub. "
                "Give a local folder or an s3:// / gs:// URI of a diffusers Stable Diffusion layout."
            ) from None
    raise ModelError(
        f"diffusion.base_model {base_model!r}: expected 'tiny-pixel', a local folder, an s3:// or "
        "gs:// URI, or a hub id"
    )
