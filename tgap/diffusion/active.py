"""Active data selection inside DreamBooth (the thesis's Algorithm 1).

For each batch, generate ``active.n_generate`` images for the batch's labels with the current
model, embed them and the batch's real images, take the cosine similarity (of the mean
embeddings, or the mean over all pairs) and **skip the batch** when it is above
``active.threshold``: the model already makes images like these, learn the others. The training
loop (``tgap.diffusion.training.train_loop``) asks an ``ActiveProbe`` for that score.

A threshold suits one embedder and one similarity only (pixel cosines of X-rays sit near
0.5-0.8, CLIP's elsewhere), so ``threshold: auto`` measures the similarities on the base model
over the first ``calibration_batches`` batches and sets the threshold at their
``1 - target_skip`` quantile. A fine-tune that trained fewer than ``min_trained_fraction`` of
its steps fails (``on_untrained: fail``) or is marked ``did_not_train`` (``flag``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from tgap.config import ActiveConfig, check_constraints
from tgap.diffusion.build import DiffusionModel
from tgap.diffusion.generate import encode_prompts, sample
from tgap.diffusion.training import TrainData, batch_plan
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


class UntrainedError(RuntimeError):
    """Active selection skipped so many batches that the model did not train."""


def check_active(active: ActiveConfig) -> None:
    """The constraints declared on ``ActiveConfig``'s fields, for callers that built it by hand
    (``load_config`` already checked a loaded one): the same walk, not a second copy."""
    check_constraints(active, "finetune.active")


class ActiveProbe:
    """Active selection's batch score: similarity of the batch's real images to fresh samples
    of its labels from the current model (``active.n_generate`` images, ``sampler_steps`` DDIM
    steps, no gradients), both embedded by ``embedder``."""

    def __init__(self, active: ActiveConfig, embedder, seed: int, steps: int):
        if embedder is None:
            raise ValueError("active data selection needs an embedder")
        self.active = active
        # None until ``calibrate`` when the config says auto.
        self.threshold: float | None = None if active.threshold == "auto" else active.threshold
        self.calibration: list[float] = []
        self.embedder = embedder
        self.seed = seed
        self.steps = steps
        self.seen: list[float] = []

    def calibrate(self, model: DiffusionModel, data: TrainData, batch_size: int) -> float:
        """With ``threshold: auto``: similarities of the loop's first batches on the model as it
        is (the base model), threshold at their ``1 - target_skip`` quantile. Uses the loop's own
        batches and probe seeds, so step 0's score in training is the first one measured here."""
        if self.threshold is not None:
            return self.threshold
        n = min(self.active.calibration_batches, self.steps)
        plan = batch_plan(len(data.instances), batch_size, n, self.seed)
        self.calibration = [self.similarity(model, data, idx, step) for step, (_, idx) in
                            enumerate(plan)]  # fmt: skip
        self.seen = []
        self.threshold = float(np.quantile(self.calibration, 1.0 - self.active.target_skip))
        log.info(
            "active selection: threshold auto -> %.4f (quantile %.2f of %d base-model batch "
            "similarities %.4f..%.4f, target skip %.2f)",
            self.threshold, 1.0 - self.active.target_skip, n, min(self.calibration),
            max(self.calibration), self.active.target_skip,
        )  # fmt: skip
        return self.threshold

    def untrained_message(self, trained: int, what: str = "") -> str:
        """One line naming the threshold, the similarities seen and the fix; '' if it trained."""
        if trained >= self.active.min_trained_fraction * self.steps:
            return ""
        sims = self.seen or self.calibration or [float("nan")]
        how = "auto" if self.active.threshold == "auto" else "fixed"
        return (
            f"active selection {what or 'trained'} {trained} of {self.steps} steps (< "
            f"finetune.active.min_trained_fraction {self.active.min_trained_fraction}): threshold "
            f"{self.threshold:.4f} ({how}) vs batch similarities {min(sims):.4f}..{max(sims):.4f} "
            f"({self.active.embedder} embedder, {self.active.similarity}); fix: set "
            "finetune.active.threshold: auto, or a value inside that range"
        )

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
        score = cosine_similarity(real_emb, gen_emb, self.active.similarity)
        if self.threshold is not None:
            self._fail_early(score)
        return score

    def _fail_early(self, score: float) -> None:
        """Stop as soon as the run can no longer train ``min_trained_fraction`` of its steps
        (``on_untrained: fail``), instead of finishing a fine-tune that will be refused."""
        self.seen.append(score)
        skipped = sum(s > self.threshold for s in self.seen)
        if self.active.on_untrained == "fail":
            message = self.untrained_message(
                self.steps - skipped, f"skipped {skipped} of the first {len(self.seen)} batches"
                ", so it can train at most"
            )  # fmt: skip
            if message:
                raise UntrainedError(message)


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
