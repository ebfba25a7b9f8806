"""CUDA code paths: mixed precision, gradient checkpointing, SDPA, fp16 generation, DenseNet-121
under autocast. Marked ``cuda``; without a GPU every test here is skipped with the reason
(``pytest -m cuda -rs``). ``scripts/gpu-check.sh`` runs them, then ``benchmarks/gpu.py``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import real_image_set

from tgap.config import DiffusionConfig, GenerateConfig, PromptConfig
from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.build import load_model
from tgap.diffusion.generate import encode_prompts, generate_image_set, sample
from tgap.diffusion.training import Examples, LoopSettings, TrainData, train_loop
from tgap.imageset import ImageSet

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine",
    ),
]


@pytest.fixture(scope="module")
def gpu_sd(tiny_sd, tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda")
    prepare_base_model(DiffusionConfig(base_model=str(tiny_sd), device="cuda"), root / "base")
    return root / "base", real_image_set(root / "tuning", 8, resolution=64)


def _train(base: Path, tuning: ImageSet, tmp: Path, **settings) -> dict:
    model = load_model(base, "cuda")
    data = TrainData(
        instances=Examples(tuning, model, 0),
        prompt_index=tuning.label_indices,
        prompts=["an image of Healthy chest X-ray", "an image of Unhealthy chest X-ray"],
    )
    values = dict(steps=4, batch_size=4, learning_rate=1e-4, checkpoint_every=100, seed=0)
    values.update(settings)
    return train_loop(model, data, LoopSettings(**values), tmp / "ckpt")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_finetune_steps_have_finite_loss(gpu_sd, tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16 support")
    record = _train(*gpu_sd, tmp_path, mixed_precision=precision)
    assert all(math.isfinite(v) for v in record["loss"]), record["loss"]
    if precision == "fp16":
        assert record["grad_scale"] is not None and record["grad_scale"] > 0  # GradScaler used
    else:
        assert record["grad_scale"] is None  # bf16 has fp32's range: no scaler


def test_gradient_checkpointing_gives_the_same_loss(gpu_sd, tmp_path):
    torch.backends.cudnn.deterministic = True
    plain = _train(*gpu_sd, tmp_path / "a", gradient_checkpointing=False)
    checkpointed = _train(*gpu_sd, tmp_path / "b", gradient_checkpointing=True)
    np.testing.assert_allclose(plain["loss"], checkpointed["loss"], rtol=1e-3, atol=1e-5)


def test_sdpa_and_default_attention_agree(gpu_sd, tmp_path):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    model = load_model(gpu_sd[0], "cuda")
    x = torch.randn(2, 4, 8, 8, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    cond = encode_prompts(model, ["a", "b"], "cuda")
    t = torch.tensor([10, 500], device="cuda")
    outs = []
    for processor in (AttnProcessor2_0(), AttnProcessor()):
        model.unet.set_attn_processor(processor)
        with torch.no_grad():
            outs.append(model.unet(x, t, encoder_hidden_states=cond).sample)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-3, atol=1e-4)
    sdpa = _train(*gpu_sd, tmp_path / "a", attention="sdpa")
    default = _train(*gpu_sd, tmp_path / "b", attention="default")
    np.testing.assert_allclose(sdpa["loss"], default["loss"], rtol=1e-3, atol=1e-5)


def test_fp16_batched_generation(gpu_sd, tmp_path):
    base = gpu_sd[0]
    gen = GenerateConfig(n_per_label=4, batch_size=8, scheduler="pndm", steps=4,
                         guidance_scale=3.0, grid_images=2)  # fmt: skip
    fp16 = DiffusionConfig(device="cuda", mixed_precision="fp16")
    stats = generate_image_set(base, ["No Finding", "Unhealthy"], 4, PromptConfig(), gen, fp16,
                               seed=0, out_dir=tmp_path / "fp16")  # fmt: skip
    assert stats["n_images"] == 8
    batched = ImageSet(tmp_path / "fp16").load_all().astype(int)
    # The same images in fp32, one at a time: fp16 rounding moves pixels by a few grey levels.
    model = load_model(base, "cuda")
    embeds = encode_prompts(model, ["an image of Healthy chest X-ray"], "cuda")
    uncond = encode_prompts(model, [""], "cuda")
    records = ImageSet(tmp_path / "fp16").records
    alone = np.stack([
        sample(model, embeds, [int(r.original_id)], "pndm", 4, 3.0, uncond)[0]
        for r in records[:4]
    ]).astype(int)  # fmt: skip
    assert np.abs(batched[:4] - alone).mean() < 2.0


def test_densenet121_trains_under_mixed_precision():
    """torchvision's DenseNet-121 (the classifier's arch) under fp16 autocast + GradScaler:
    finite loss that goes down on a fixed batch. ``tgap.classify.fit`` itself trains in fp32."""
    from tgap.classify import build_model

    torch.manual_seed(0)
    model = build_model("densenet121", 2).cuda().train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.rand(16, 3, 224, 224, device="cuda")
    y = torch.randint(0, 2, (16,), device="cuda")
    losses = []
    for _ in range(8):
        with torch.autocast("cuda", dtype=torch.float16):
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
