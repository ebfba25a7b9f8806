"""Base models: the tiny pixel preset, pretraining, Stable Diffusion folders, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny import real_image_set, tiny_diffusion

from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.build import ModelError, load_model


def test_tiny_pixel_base_model_is_a_loadable_folder_that_says_it_is_not_pretrained(tmp_path):
    info = prepare_base_model(tiny_diffusion(), tmp_path / "base")
    for part in ("unet", "text_encoder", "tokenizer", "scheduler", "model_index.json"):
        assert (tmp_path / "base" / part).exists(), part
    assert not (tmp_path / "base" / "vae").exists()  # pixel space: no VAE
    on_disk = json.loads((tmp_path / "base" / "tgap_model.json").read_text())
    assert on_disk == info
    assert (
        info["pretrained"] is False
        and info["description"] == "randomly initialised, not pretrained"
    )
    model = load_model(tmp_path / "base")
    assert sum(p.numel() for p in model.unet.parameters()) == info["parameters"]["unet"]
    assert model.unet.config.in_channels == 1 and model.resolution == 16
    # same config -> same random weights
    prepare_base_model(tiny_diffusion(), tmp_path / "again")
    again = load_model(tmp_path / "again")
    for a, b in zip(model.unet.parameters(), again.unet.parameters(), strict=True):
        assert torch.equal(a, b)


def test_pretraining_on_the_pool_lowers_the_loss_and_is_recorded(tmp_path):
    pool = real_image_set(tmp_path / "pool", 8)
    cfg = tiny_diffusion(pretrain_steps=12, pretrain_batch_size=8, pretrain_learning_rate=3e-3)
    info = prepare_base_model(cfg, tmp_path / "base", pool)
    assert info["pretrain"]["steps"] == 12 and info["pretrain"]["images"] == 16
    assert info["pretrain"]["loss_last"] < info["pretrain"]["loss_first"]
    assert info["pretrained"] is False and "no external pretrained weights" in info["description"]
    assert not (tmp_path / "base" / "pretrain-checkpoints").exists()


def _fake_stable_diffusion(path: Path) -> Path:
    """A diffusers SD folder with tiny random components (UNet on 4-channel latents, a VAE)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    prepare_base_model(tiny_diffusion(), path / "pixel")
    for part in ("text_encoder", "tokenizer", "scheduler"):
        shutil.copytree(path / "pixel" / part, path / "sd" / part)
    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=8,
        norm_num_groups=8,
    ).save_pretrained(path / "sd" / "unet")
    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).save_pretrained(path / "sd" / "vae")
    return path / "sd"


def test_stable_diffusion_folder_is_copied_and_a_missing_component_is_named(tmp_path):
    sd = _fake_stable_diffusion(tmp_path)
    info = prepare_base_model(tiny_diffusion(base_model=str(sd)), tmp_path / "base")
    assert info["kind"] == "stable-diffusion" and info["pretrained"] is True
    assert info["resolution"] == 16  # 8 latent pixels x VAE scale 2
    assert load_model(tmp_path / "base").vae is not None

    shutil.rmtree(sd / "text_encoder")
    with pytest.raises(ModelError, match="component 'text_encoder' is missing"):
        prepare_base_model(tiny_diffusion(base_model=str(sd)), tmp_path / "other")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("/nonexistent/tgap-model", "no such folder"),
        ("file:///nonexistent/tgap-model", "could not be fetched: .*no such file"),
        ("nobody/no-such-model", "hub id"),
    ],
)
def test_base_model_that_does_not_exist_is_a_clear_error(tmp_path, monkeypatch, uri, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=message):
        prepare_base_model(tiny_diffusion(base_model=uri), tmp_path / "base")


def test_resolution_the_unet_cannot_take_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="not a multiple of 4"):
        prepare_base_model(tiny_diffusion(sample_size=18, block_out_channels=[8, 16, 16]), tmp_path)
