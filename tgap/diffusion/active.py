"""Active data selection inside DreamBooth (the thesis's Algorithm 1).

For each batch, generate ``active.n_generate`` images for the batch's labels with the current
model, embed them and the batch's real images, take the cosine similarity (of the mean
embeddings, or the mean over all pairs) and **skip the batch** when it is above
``active.threshold``: the model already makes images like these, learn the others. The training
loop (``tgap.diffusion.training.train_loop``) asks an ``ActiveProbe`` for that score, and
replaces a skipped batch by the next one, so active makes ``finetune.steps`` updates like every
other method. Skips are capped (``max_skip_fraction``): at the cap the probe stops and the rest
of the updates train unprobed.

A threshold suits one embedder and one similarity only (pixel cosines of X-rays sit near
0.5-0.8, CLIP's elsewhere), so ``threshold: auto`` measures the similarities on the base model
over the first ``calibration_batches`` batches and sets the threshold at their
``1 - target_skip`` quantile. A fine-tune whose probe chose fewer than ``min_trained_fraction``
of its updates before the cap fails (``on_untrained: fail``, at the cap) or is marked
``did_not_train`` (``flag``).
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
        self.max_skips = max_skips(steps, active.max_skip_fraction)

    def calibrate(self, model: DiffusionModel, data: TrainData, batch_size: int) -> float:
        """With ``threshold: auto``: similarities of the loop's first batches on the model as it
        is (the base model), threshold at their ``1 - target_skip`` quantile. Uses the loop's own
        batches and probe seeds, so batch 0's score in training is the first one measured here."""
        if self.threshold is not None:
            return self.threshold
        n = min(self.active.calibration_batches, self.steps)
        plan = batch_plan(len(data.instances), batch_size, n, self.seed)
        self.calibration = [self.similarity(model, data, idx, batch) for batch, (_, idx) in
                            enumerate(plan)]  # fmt: skip
        self.threshold = float(np.quantile(self.calibration, 1.0 - self.active.target_skip))
        log.info(
            "active selection: threshold auto -> %.4f (quantile %.2f of %d base-model batch "
            "similarities %.4f..%.4f, target skip %.2f)",
            self.threshold, 1.0 - self.active.target_skip, n, min(self.calibration),
            max(self.calibration), self.active.target_skip,
        )  # fmt: skip
        return self.threshold

    def untrained_message(self, chosen: int) -> str:
        """One line naming the threshold, the similarities seen and the fix; '' when the probe
        chose at least ``min_trained_fraction`` of the updates (``chosen``: those made before the
        skip budget was spent)."""
        if chosen >= self.active.min_trained_fraction * self.steps:
            return ""
        sims = self.seen or self.calibration or [float("nan")]
        how = "auto" if self.active.threshold == "auto" else "fixed"
        return (
            f"active selection chose {chosen} of {self.steps} updates before its skip budget "
            f"({self.max_skips} skips, finetune.active.max_skip_fraction "
            f"{self.active.max_skip_fraction}) was spent (< "
            f"finetune.active.min_trained_fraction {self.active.min_trained_fraction}): threshold "
            f"{self.threshold:.4f} ({how}) vs batch similarities {min(sims):.4f}..{max(sims):.4f} "
            f"({self.active.embedder} embedder, {self.active.similarity}); fix: set "
            "finetune.active.threshold: auto, or a value inside that range"
        )

    def budget_spent(self, update: int) -> None:
        """The loop spent the skip budget at ``update``: the probe chose no update after it. With
        ``on_untrained: fail`` a run that chose too few stops here, the earliest point at which
        that is certain, instead of finishing a fine-tune that will be refused."""
        message = self.untrained_message(update)
        if message and self.active.on_untrained == "fail":
            raise UntrainedError(message)

    @torch.no_grad()
    def similarity(
        self, model: DiffusionModel, data: TrainData, idx: np.ndarray, batch: int
    ) -> float:
        """Score of batch number ``batch`` of the plan (its probe seeds derive from it)."""
        n = self.active.n_generate
        probe_prompts = [int(data.prompt_index[idx[j % len(idx)]]) for j in range(n)]
        embeds = encode_prompts(model, [data.prompts[k] for k in probe_prompts], model.unet.device)
        seeds = [derive_seed(self.seed, "active", batch, j) for j in range(n)]
        was_training = model.unet.training
        model.unet.eval()
        generated = sample(model, embeds, seeds, "ddim", self.active.sampler_steps)
        model.unet.train(was_training)
        real_emb = np.asarray(self.embedder.embed(data.instances.images(idx)), dtype=np.float32)
        gen_emb = np.asarray(self.embedder.embed(generated), dtype=np.float32)
        score = cosine_similarity(real_emb, gen_emb, self.active.similarity)
        if self.threshold is not None:
            self.seen.append(score)
        return score


def max_skips(steps: int, max_skip_fraction: float) -> int:
    """Skips allowed in a run of ``steps`` updates: at most ``max_skip_fraction`` of the batches
    probed are skipped, so skips <= f / (1 - f) x steps."""
    return int(np.floor(steps * max_skip_fraction / (1.0 - max_skip_fraction) + 1e-9))


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
