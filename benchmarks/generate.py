"""Generation speed on the demo preset: one batched call vs a one-image-at-a-time loop.

    .venv/bin/python benchmarks/generate.py [--config pipelines/configs/demo.yaml] [--n 64]

Builds the demo's base model with random weights (speed does not depend on the weights), then
generates ``--n`` images batched (``generate.batch_size`` per call) and ``--n-loop`` images one
per call, with the demo's sampler, steps and guidance. Ends with
``RESULT generate batched_img_s=... loop_img_s=... speedup=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tgap.config import load_config
from tgap.device import pick_device
from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.build import load_model
from tgap.diffusion.generate import encode_prompts, prompt_for, sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/configs/demo.yaml")
    parser.add_argument("--n", type=int, default=64, help="images generated batched")
    parser.add_argument("--n-loop", type=int, default=8, help="images generated one at a time")
    args = parser.parse_args()
    config = load_config(args.config)
    gen = config.generate
    with tempfile.TemporaryDirectory() as tmp:
        prepare_base_model(replace(config.diffusion, pretrain_steps=0), Path(tmp) / "base")
        model = load_model(Path(tmp) / "base", pick_device(config.diffusion.device))
        label = config.data.labels[-1]
        embeds = encode_prompts(model, [prompt_for(label, config.prompt)], model.unet.device)
        uncond = encode_prompts(model, [""], model.unet.device)

        def run(n: int, batch: int) -> float:
            start = time.perf_counter()
            for b in range(0, n, batch):
                k = min(batch, n - b)
                sample(
                    model,
                    embeds.expand(k, -1, -1),
                    list(range(b, b + k)),
                    gen.scheduler,
                    gen.steps,
                    gen.guidance_scale,
                    uncond,
                )
            return n / (time.perf_counter() - start)

        run(2, 2)  # warm-up
        batched = run(args.n, gen.batch_size)
        loop = run(args.n_loop, 1)
    print(
        f"demo preset: {gen.scheduler}, {gen.steps} steps, guidance {gen.guidance_scale}, "
        f"{model.resolution} px, batch {gen.batch_size}"
    )
    print(f"{'mode':<10} {'images':>7} {'img/s':>8}")
    print(f"{'batched':<10} {args.n:>7} {batched:>8.2f}")
    print(f"{'loop':<10} {args.n_loop:>7} {loop:>8.2f}")
    print(
        f"RESULT generate batched_img_s={batched:.3f} loop_img_s={loop:.3f} "
        f"speedup={batched / loop:.2f}"
    )


if __name__ == "__main__":
    main()
