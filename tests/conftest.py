"""Fixtures shared by several test files (keep additions self-contained: others add here too)."""

from __future__ import annotations

from pathlib import Path

import pytest

CLIP_TOKENIZER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "clip-tokenizer"


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion 1.x folder, built once per test session.

    diffusers' own ``StableDiffusionPipeline`` with random weights (latent UNet on 4 channels,
    AutoencoderKL with SD's factor 8, CLIPTextModel, the real CLIP tokenizer, SD 1.x's PNDM
    scheduler config), written with ``save_pretrained``: 64 px images, 8x8 latents.
    """
    from tgap.diffusion.build import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd", CLIP_TOKENIZER, sample_size=64)
