"""Active data selection inside DreamBooth (the thesis's Algorithm 1).

For each batch, generate ``active.n_generate`` images for the batch's labels with the current
model, embed them and the batch's real images, take the cosine similarity (of the mean
embeddings, or the mean over all pairs) and **skip the batch** when it is above
``active.threshold``: the model already makes images like these, learn the others. The training
loop (``tgap.diffusion.training.train_loop``) asks an ``ActiveProbe`` for that score.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from tgap.config import ActiveConfig
from tgap.diffusion.build import DiffusionModel
from tgap.diffusion.generate import encode_prompts, sample
from tgap.diffusion.training import TrainData
from tgap.seeding import derive_seed

log = logging.getLogger(__name__)


def cosine_similarity(real: np.ndarray, generated: np.ndarray, mode: str) -> float:
    """Similarity of two embedding sets: cosine of their means, or the mean pairwise cosine."""
    if mode == "mean-embedding":
        a, b = real.mean(axis=0), generated.mean(axis=0)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    if mode == "mean-pairwise":
        a = real / (np.linalg.norm(real, axis=1, keepdims=True) + 1e-12)
        b = generated / (np.linalg.norm(generated, axis=1, keepdims=True) + 1e-12)
        return float((a @ b.T).mean())
    raise ValueError(
        f"finetune.active.similarity {mode!r}: expected mean-embedding or mean-pairwise"
    )


def check_active(active: ActiveConfig) -> None:
    if not -1.0 <= active.threshold <= 1.0:
        raise ValueError(
            f"finetune.active.threshold {active.threshold}: expected a cosine similarity in [-1, 1]"
        )
    if active.n_generate < 1 or active.sampler_steps < 1:
        raise ValueError(
            f"finetune.active.n_generate ({active.n_generate}) and sampler_steps "
            f"({active.sampler_steps}) must be >= 1"
        )


class ActiveProbe:
    """Active selection's batch score: similarity of the batch's real images to fresh samples
    of its labels from the current model (``active.n_generate`` images, ``sampler_steps`` DDIM
    steps, no gradients), both embedded by ``embedder``."""

    def __init__(self, active: ActiveConfig, embedder, seed: int):
        if embedder is None:
            raise ValueError("active data selection needs an embedder")
        self.active = active
        self.threshold = active.threshold
        self.embedder = embedder
        self.seed = seed

    @torch.no_grad()
    def similarity(
        self, model: DiffusionModel, data: TrainData, idx: np.ndarray, step: int
    ) -> float:
        n = self.active.n_generate
        probe_prompts = [int(data.prompt_index[idx[j % len(idx)]]) for j in range(n)]
        embeds = encode_prompts(model, [data.prompts[k] for k in probe_prompts], model.unet.device)
        seeds = [derive_seed(self.seed, "active", step, j) for j in range(n)]
        was_training = model.unet.training
        model.unet.eval()
        generated = sample(model, embeds, seeds, "ddim", self.active.sampler_steps)
        model.unet.train(was_training)
        real_emb = np.asarray(self.embedder.embed(data.instances.images(idx)), dtype=np.float32)
        gen_emb = np.asarray(self.embedder.embed(generated), dtype=np.float32)
        return cosine_similarity(real_emb, gen_emb, self.active.similarity)


def summarise_active(records: list[dict], threshold: float) -> dict[str, Any]:
    """Skip fraction per epoch, with a warning for epochs that skipped everything or nothing."""
    per_epoch: dict[int, list[bool]] = {}
    for r in records:
        per_epoch.setdefault(r["epoch"], []).append(r["skipped"])
    fractions = {str(e): round(sum(s) / len(s), 4) for e, s in sorted(per_epoch.items())}
    warnings = []
    for e, s in sorted(per_epoch.items()):
        if all(s) or not any(s):
            what = "every" if all(s) else "no"
            warnings.append(
                f"epoch {e}: active selection skipped {what} batch ({len(s)} batches) -- "
                f"threshold {threshold} may be degenerate for this embedder"
            )
    for w in warnings:
        log.warning(w)
    sims = [r["similarity"] for r in records]
    return {
        "skip_fraction_per_epoch": fractions,
        "skipped": int(sum(r["skipped"] for r in records)),
        "evaluated": len(records),
        "similarity_min": min(sims) if sims else None,
        "similarity_max": max(sims) if sims else None,
        "warnings": warnings,
    }
