"""``TgapPixelPipeline``: the tiny pixel-space preset as a diffusers pipeline of its own.

The preset has no VAE, so ``StableDiffusionPipeline`` cannot hold it; its ``model_index.json``
names this class instead, and ``TgapPixelPipeline.from_pretrained(folder)`` loads it through
diffusers' own loader. Sampling matches ``tgap.diffusion.generate.sample`` with the model's own
scheduler: per-image generators, classifier-free guidance with the unconditional half first.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from diffusers import DiffusionPipeline


class TgapPixelPipeline(DiffusionPipeline):
    """Text -> 1-channel image, denoised in pixel space (no VAE)."""

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet, text_encoder, tokenizer, scheduler):
        super().__init__()
        self.register_modules(
            unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
        )

    def _embed(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        negative_prompt: str = "",
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> np.ndarray:
        """Images as uint8 (n, side, side)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        n = len(prompts)
        generators = generator if isinstance(generator, list) else [generator] * n
        cond = self._embed(prompts)
        guided = guidance_scale != 1.0
        if guided:
            cond = torch.cat([self._embed([negative_prompt]).expand_as(cond), cond])
        side, channels = self.unet.config.sample_size, self.unet.config.in_channels
        x = torch.stack(
            [
                torch.randn((channels, side, side), generator=g, device=self.device)
                for g in generators
            ]
        )
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        x = x * self.scheduler.init_noise_sigma
        step_kwargs = {}
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            step_kwargs["generator"] = generators  # per-image sampler noise, as tgap's sample
        for t in self.scheduler.timesteps:
            model_in = self.scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            out = self.unet(model_in, t, encoder_hidden_states=cond).sample
            if guided:
                uncond, text = out.chunk(2)
                out = uncond + guidance_scale * (text - uncond)
            x = self.scheduler.step(out, t, x, **step_kwargs).prev_sample
        return ((x.float().clamp(-1, 1) + 1) * 127.5).round()[:, 0].to(torch.uint8).cpu().numpy()
