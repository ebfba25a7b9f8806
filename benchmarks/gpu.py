"""GPU throughput: fine-tune it/s and generation img/s for the tiny SD fixture and for an
SD-1.5-shaped model (real channel widths, random weights), and DenseNet-121 train img/s.

    .venv/bin/python benchmarks/gpu.py                      # on a CUDA GPU (scripts/gpu-check.sh)
    .venv/bin/python benchmarks/gpu.py --device cpu --quick  # the same code paths, CPU-sized

Every figure goes through tgap's own code: ``train_loop`` (fp16 autocast + GradScaler on the
GPU, the VAE encoding each batch) and ``sample`` (classifier-free guidance, one batched forward).
The SD-1.5 shape is built in memory (UNet 320/640/1280/1280 with cross-attention 768, the SD VAE,
a CLIP ViT-L-shaped text encoder: about 1.07 B parameters), not downloaded. ``--quick`` scales
the SD-1.5 widths by 1/10 and takes a few steps, so that a CPU runs it in minutes; its figures
are not GPU figures. Ends with ``RESULT gpu device=... tiny_finetune_it_s=... ...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / ".." / "shared" / "data" / "clip-tokenizer"


def sd15_model(width: float, resolution: int):
    """A DiffusionModel shaped like Stable Diffusion 1.5 (``width`` scales the channels)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tgap.diffusion.build import SD1_SCHEDULER, DiffusionModel

    def w(c: int) -> int:
        return max(32, int(round(c * width / 32)) * 32)

    text_dim = w(768)
    unet = UNet2DConditionModel(
        sample_size=resolution // 8,
        block_out_channels=tuple(w(c) for c in (320, 640, 1280, 1280)),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=text_dim,
        attention_head_dim=8,
        layers_per_block=2,
    )
    vae = AutoencoderKL(
        block_out_channels=tuple(w(c) for c in (128, 256, 512, 512)),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=resolution,
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZER))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_dim,
            intermediate_size=4 * text_dim,
            num_hidden_layers=12 if width >= 1 else 2,
            num_attention_heads=max(1, text_dim // 64),
            max_position_embeddings=tokenizer.model_max_length,
        )
    )
    config = dict(PNDMScheduler(**SD1_SCHEDULER).config)
    info = {"kind": "sd15-shaped", "pixel_space": False, "resolution": resolution}
    return DiffusionModel(unet, text_encoder, tokenizer, config, vae, info)


def tiny_model(tmp: Path):
    from tgap.config import DiffusionConfig
    from tgap.diffusion.base_model import prepare_base_model
    from tgap.diffusion.build import build_tiny_sd, load_model

    sd = build_tiny_sd(tmp / "sd", TOKENIZER, sample_size=64)
    prepare_base_model(DiffusionConfig(base_model=str(sd), device="cpu"), tmp / "base")
    return load_model(tmp / "base")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def finetune_it_s(model, device, batch: int, steps: int, precision: str, tmp: Path) -> float:
    """Fine-tune iterations/s of ``train_loop`` (full UNet), after 2 warm-up steps."""
    from tgap.diffusion.training import Examples, LoopSettings, TrainData, train_loop

    for module in (model.unet, model.text_encoder, model.vae):
        module.to(device)
    side = model.resolution
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(batch * 2, 8), side, side), dtype=np.uint8)
    data = TrainData(
        instances=Examples(images, model, 0),
        prompt_index=np.zeros(len(images), dtype=np.int64),
        prompts=["an image of Healthy chest X-ray"],
    )
    seconds = {}
    for name, n in (("warm", 2), ("timed", steps)):
        settings = LoopSettings(steps=n, batch_size=batch, learning_rate=1e-5,
                                checkpoint_every=10**6, mixed_precision=precision)  # fmt: skip
        sync(device)
        record = train_loop(model, data, settings, tmp / f"ckpt-{name}-{id(model)}")
        sync(device)
        seconds[name] = record["wall_time_s"]
    model.unet.requires_grad_(False)
    return steps / seconds["timed"]


def generate_img_s(model, device, batch: int, steps: int, precision: str) -> float:
    """Images/s of ``sample`` (guidance 7.5, PNDM), after one warm-up batch."""
    from tgap.device import torch_dtype
    from tgap.diffusion.generate import encode_prompts, sample

    embeds = encode_prompts(model, ["an image of Healthy chest X-ray"] * batch, device)
    uncond = encode_prompts(model, [""], device)
    dtype = torch_dtype(precision, device)
    sample(model, embeds, list(range(batch)), "pndm", 2, 7.5, uncond, dtype)  # warm-up
    sync(device)
    start = time.perf_counter()
    sample(model, embeds, list(range(batch)), "pndm", steps, 7.5, uncond, dtype)
    sync(device)
    return batch / (time.perf_counter() - start)


def densenet_img_s(device, batch: int, iters: int) -> float:
    """DenseNet-121 (the classifier's arch) train images/s at 224 px; fp16 autocast on a GPU."""
    from tgap.classify import build_model

    model = build_model("densenet121", 2).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=cuda)
    x = torch.rand(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 2, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()

    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync(device)
    return batch * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: SD-1.5 widths / 10")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda: torch.cuda.is_available() is False (try --device cpu --quick)"
        )
    device = torch.device(args.device)
    precision = "fp16" if device.type == "cuda" else "no"
    quick = args.quick
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tgap-gpu-") as tmp:
        tmp = Path(tmp)
        tiny = tiny_model(tmp)
        results["tiny_finetune_it_s"] = finetune_it_s(
            tiny, device, 8, 3 if quick else 50, precision, tmp
        )
        results["tiny_generate_img_s"] = generate_img_s(
            tiny, device, 8 if quick else 64, 2 if quick else 20, precision
        )
        width, side = (0.1, 64) if quick else (1.0, 512)
        sd15 = sd15_model(width, side)
        results["sd15_params_m"] = (
            sum(p.numel() for m in (sd15.unet, sd15.vae, sd15.text_encoder) for p in m.parameters())
            / 1e6
        )
        results["sd15_finetune_it_s"] = finetune_it_s(
            sd15, device, 1 if quick else 4, 2 if quick else 20, precision, tmp
        )
        results["sd15_generate_img_s"] = generate_img_s(
            sd15, device, 1 if quick else 8, 2 if quick else 25, precision
        )
        del sd15
        results["densenet_train_img_s"] = densenet_img_s(
            device, 2 if quick else 64, 1 if quick else 20
        )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    label = f"sd15_width={width} resolution={side} precision={precision}"
    print(f"# device: {name}; {label}{' (quick: not GPU figures)' if quick else ''}")
    print(
        f"RESULT gpu device={name.replace(' ', '_')} quick={int(quick)} "
        + " ".join(f"{k}={v:.3f}" for k, v in results.items())
    )


if __name__ == "__main__":
    main()
