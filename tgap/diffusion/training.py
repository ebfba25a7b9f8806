"""The diffusion training loop, shared by DreamBooth fine-tuning and base-model pretraining.

``train_loop`` makes ``settings.steps`` optimizer updates, one per batch: noise the batch at
random timesteps, predict the noise (or v) from the prompts, MSE -- with prior preservation the
batch also holds as many class examples, whose loss is added with ``prior_loss_weight``. An
optional probe (active data selection, ``tgap.diffusion.active``) may skip a batch first; a
skipped batch is replaced by the next one, so every method makes the same number of updates.

Every ``checkpoint_every`` updates: weights, optimizer, LR schedule, the noise generator, the
global RNG states and the batch position go to ``ckpt_dir/step-NNNNNN`` (and, with a
``CheckpointStore``, to object storage); a rerun resumes from the newest one, local or stored,
and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from tgap.config import DiffusionConfig, FinetuneConfig
from tgap.device import peak_memory_mb, torch_dtype
from tgap.diffusion.build import DiffusionModel, ModelError
from tgap.diffusion.checkpoint_store import CheckpointStore
from tgap.diffusion.generate import encode_prompts, tokenize
from tgap.imageset import ImageSet
from tgap.seeding import derive_seed
from tgap.storage import StorageError

log = logging.getLogger(__name__)


@dataclass
class LoopSettings:
    """What ``train_loop`` needs from the config sections (one place, so pretrain can share it).

    Every field but ``seed`` is the key of the same name in ``finetune`` or ``diffusion``:
    ``from_config`` copies them by name, so a setting added here is read from the config by
    naming it alike. The defaults are a plain loop's (pretrain's), not the fine-tune's.
    """

    steps: int
    batch_size: int
    learning_rate: float
    lr_warmup_steps: int = 0
    lr_scheduler: str = "constant_with_warmup"
    prior_loss_weight: float = 1.0
    train_text_encoder: bool = False
    lora_rank: int = 0
    checkpoint_every: int = 100
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    attention: str = "sdpa"
    seed: int = 0

    @classmethod
    def from_config(
        cls, finetune: FinetuneConfig, diffusion: DiffusionConfig, seed: int
    ) -> LoopSettings:
        """The fine-tune's settings: each field from the section that has a key of its name."""
        values = {
            f.name: getattr(finetune if hasattr(finetune, f.name) else diffusion, f.name)
            for f in fields(cls)
            if f.name != "seed"
        }
        return cls(**values, seed=seed)


class Examples:
    """Training images, read per batch and put into model space there.

    ``source`` is an image set on disk or a uint8 (n, r, r) array (a memory-mapped ``.npy``
    stays on disk). Only a batch is ever decoded, and latent models VAE-encode that batch alone,
    so memory does not grow with the number of images (docs/diffusion.md, "Memory").
    """

    def __init__(self, source: ImageSet | np.ndarray, model: DiffusionModel, seed: int):
        self.source, self.model, self.seed = source, model, seed

    def __len__(self) -> int:
        return len(self.source)

    def images(self, idx: np.ndarray) -> np.ndarray:
        """uint8 (b, r, r): what the active-selection embedder sees."""
        if isinstance(self.source, ImageSet):
            return self.source.load_many(idx)
        return np.asarray(self.source[np.asarray(idx)])

    def model_space(self, idx: np.ndarray, step: int) -> torch.Tensor:
        """Pixels in [-1, 1], or VAE latents (their sampling noise seeded by ``step``)."""
        return to_model_space(self.model, self.images(idx), derive_seed(self.seed, "step", step))


@dataclass
class TrainData:
    """Training examples (read per batch) and their prompts."""

    instances: Examples
    prompt_index: np.ndarray  # (n,) index into prompts
    prompts: list[str]
    class_examples: Examples | None = None  # prior-preservation examples
    class_prompt_index: int = -1
    labels: list[str] = field(default_factory=list)  # per instance example (for logging)


class BatchProbe(Protocol):
    """Scores a batch before it is trained on; the loop skips it when the score is above
    ``threshold`` (active data selection implements this).

    ``max_skips`` bounds the skipped batches of a whole run (0: no batch is probed); when it is
    reached the loop calls ``budget_spent(update)`` (which may raise) and trains the remaining
    updates unprobed.
    """

    threshold: float
    max_skips: int

    def similarity(
        self, model: DiffusionModel, data: TrainData, idx: np.ndarray, batch: int
    ) -> float: ...

    def budget_spent(self, update: int) -> None: ...


# --------------------------------------------------------------------------- pure helpers


def batch_plan(n: int, batch_size: int, steps: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """``(epoch, instance indices)`` of the first ``steps`` batches: a fresh permutation per epoch.

    An epoch is ``max(1, n // batch_size)`` batches of ``min(batch_size, n)`` images; the few
    left over by the division are reached in later epochs through the new permutations.
    """
    per_epoch, size = max(1, n // batch_size), min(batch_size, n)
    plan: list[tuple[int, np.ndarray]] = []
    epoch = 0
    while len(plan) < steps:
        perm = np.random.default_rng(derive_seed(seed, "epoch", epoch)).permutation(n)
        for j in range(per_epoch):
            plan.append((epoch, perm[j * size : (j + 1) * size]))
        epoch += 1
    return plan[:steps]


def make_batch(data: TrainData, instance_idx: np.ndarray, step: int):
    """Instance examples, then (with prior preservation) as many class examples.

    Returns ``(x, prompt indices, is_prior mask)``. Class examples cycle through the class
    images in order, ``len(instance_idx)`` per iteration.
    """
    x = data.instances.model_space(instance_idx, step)
    prompt_index = data.prompt_index[instance_idx]
    is_prior = np.zeros(len(instance_idx), dtype=bool)
    if data.class_examples is not None:
        m, k = len(data.class_examples), len(instance_idx)
        class_idx = (np.arange(k) + step * k) % m
        x = torch.cat([x, data.class_examples.model_space(class_idx, step)])
        prompt_index = np.concatenate([prompt_index, np.full(k, data.class_prompt_index)])
        is_prior = np.concatenate([is_prior, np.ones(k, dtype=bool)])
    return x, prompt_index, is_prior


def dreambooth_loss(
    pred: torch.Tensor, target: torch.Tensor, is_prior: np.ndarray, prior_loss_weight: float
) -> tuple[torch.Tensor, float, float]:
    """MSE on instance examples + ``prior_loss_weight`` x MSE on class examples.

    Returns (loss, instance loss, prior loss) -- the last two as floats for the log (nan if absent).
    """
    prior = torch.as_tensor(is_prior, device=pred.device)
    instance_loss = F.mse_loss(pred[~prior].float(), target[~prior].float())
    if not prior.any():
        return instance_loss, instance_loss.item(), float("nan")
    prior_loss = F.mse_loss(pred[prior].float(), target[prior].float())
    return instance_loss + prior_loss_weight * prior_loss, instance_loss.item(), prior_loss.item()


def loss_summary(losses: list[float | None]) -> dict[str, float]:
    """Mean loss of the first and last tenth of the trained steps (what logs and reports show)."""
    trained = [v for v in losses if v is not None]
    if not trained:
        return {}
    k = max(1, len(trained) // 10)
    return {
        "loss_first": round(float(np.mean(trained[:k])), 5),
        "loss_last": round(float(np.mean(trained[-k:])), 5),
    }


# --------------------------------------------------------------------------- data


def to_model_space(model: DiffusionModel, images: np.ndarray, seed: int) -> torch.Tensor:
    """uint8 (n, r, r) -> pixels in [-1, 1] (n, 1, r, r), or VAE latents for latent models
    (grey repeated to RGB, encoded 16 at a time)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1).unsqueeze(1)
    if model.vae is None:
        return x
    gen = torch.Generator(device=model.vae.device).manual_seed(derive_seed(seed, "vae"))
    out = []
    with torch.no_grad():
        for chunk in x.split(16):
            rgb = chunk.repeat(1, 3, 1, 1).to(model.vae.device)
            latents = model.vae.encode(rgb).latent_dist.sample(generator=gen)
            out.append(latents * model.vae.config.scaling_factor)
    return torch.cat(out)


def check_resolution(model: DiffusionModel, resolution: int, where: str) -> None:
    if resolution % model.size_factor or (model.vae is None and resolution != model.resolution):
        raise ModelError(
            f"{where}: resolution {resolution} cannot be used with model "
            f"{model.info.get('kind')} (generates {model.resolution} px; sides must be multiples "
            f"of {model.size_factor}{'' if model.vae else f' and equal {model.resolution}'})"
        )


# --------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": json.dumps(random.getstate()),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    done = sorted(p for p in ckpt_dir.glob("step-*") if (p / "state.pt").is_file())
    return done[-1] if done else None


def save_checkpoint(
    ckpt_dir, step, batch, unet, text_encoder, optimizer, lr_sched, noise_gen, log_so_far
) -> Path:
    """Write ``step-NNNNNN`` (after ``step`` updates, ``batch`` batches drawn) through a temp
    folder + rename; keep the latest two; return its path."""
    final = ckpt_dir / f"step-{step:06d}"
    tmp = ckpt_dir / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, tmp / "unet.safetensors")
    if text_encoder is not None:
        state = {k: v.contiguous() for k, v in text_encoder.state_dict().items()}
        save_file(state, tmp / "text_encoder.safetensors")
    (tmp / "log.json").write_text(json.dumps(log_so_far))
    torch.save(
        {
            "step": step,
            "batch": batch,
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_sched.state_dict(),
            "noise_generator": noise_gen.get_state(),
            "rng": _rng_state(),
        },
        tmp / "state.pt",
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(ckpt_dir.glob("step-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path, unet, text_encoder, optimizer, lr_sched, noise_gen
) -> tuple[int, int, dict]:
    """Restore a checkpoint; return (updates made, batches drawn, the log so far)."""
    unet.load_state_dict(load_file(path / "unet.safetensors"))
    if text_encoder is not None:
        text_encoder.load_state_dict(load_file(path / "text_encoder.safetensors"))
    state = torch.load(path / "state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    lr_sched.load_state_dict(state["lr_scheduler"])
    noise_gen.set_state(state["noise_generator"])
    _set_rng_state(state["rng"])
    step = int(state["step"])
    return step, int(state.get("batch", step)), json.loads((path / "log.json").read_text())


def _step_of(path: Path | None) -> int:
    return -1 if path is None else int(path.name.removeprefix("step-"))


def resume_point(ckpt_dir: Path, store: CheckpointStore | None) -> Path | None:
    """The newest checkpoint, local or in ``store`` (downloaded into ``ckpt_dir`` when newer)."""
    latest = latest_checkpoint(ckpt_dir)
    if store is not None:
        latest = store.pull_latest(ckpt_dir, newer_than=_step_of(latest)) or latest
    return latest


def push_checkpoint(store: CheckpointStore | None, path: Path) -> None:
    """Mirror a local checkpoint; a store that fails mid-run costs a warning, not the fine-tune
    (the next checkpoint tries again; ``CheckpointStore.check`` ran before training)."""
    if store is None:
        return
    try:
        store.push(path)
    except StorageError as exc:
        log.warning("checkpoint %s not copied to %s: %s", path.name, store.prefix, exc)


# --------------------------------------------------------------------------- the loop


def _configure(model: DiffusionModel, settings: LoopSettings) -> list[torch.nn.Parameter]:
    """Attention kernel, LoRA, gradient checkpointing; return the parameters to train."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    unet, text_encoder = model.unet, model.text_encoder
    unet.set_attn_processor(AttnProcessor2_0() if settings.attention == "sdpa" else AttnProcessor())
    if settings.lora_rank > 0:
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=settings.lora_rank,
                lora_alpha=settings.lora_rank,
                init_lora_weights="gaussian",
                target_modules=["to_k", "to_q", "to_v", "to_out.0"],
            )
        )
    else:
        unet.requires_grad_(True)
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    if settings.train_text_encoder:
        text_encoder.requires_grad_(True).train()
        params += list(text_encoder.parameters())
    if settings.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if settings.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    return params


def train_loop(
    model: DiffusionModel,
    data: TrainData,
    settings: LoopSettings,
    ckpt_dir: Path,
    probe: BatchProbe | None = None,
    desc: str = "dreambooth",
    store: CheckpointStore | None = None,
) -> dict[str, Any]:
    """Make ``settings.steps`` optimizer updates on ``data``, ``model`` in place; resume from the
    newest checkpoint in ``ckpt_dir`` or ``store``; return the training log.

    With a ``probe`` (active data selection), each batch is first scored by ``probe.similarity``
    and skipped when the score is above ``probe.threshold``: it changes no weights, and the next
    batch of the plan takes its place. After ``probe.max_skips`` skips the probe is off
    (``probe.budget_spent``, which may raise) and the remaining updates train the next batches
    unprobed. With LoRA the adapter is left attached to ``model.unet`` (not fused): the
    fine-tune stage saves the adapter alone.
    """
    step = _training_step(model, data, settings)
    # Enough batches for every skip the probe may make.
    max_skips = probe.max_skips if probe is not None else 0
    plan = batch_plan(
        len(data.instances), settings.batch_size, settings.steps + max_skips, settings.seed
    )
    update, batch, record = _resume_or_seed(step, ckpt_dir, store, desc)

    t0 = time.perf_counter() - record["wall_time_s"]
    bar = tqdm(desc=desc, unit="step", initial=update, total=settings.steps)
    while update < settings.steps:
        epoch, idx = plan[batch]
        batch += 1
        if probe is not None and record["skipped"] < probe.max_skips:
            if _probe_skips(probe, model, data, idx, batch - 1, epoch, update, record):
                bar.set_postfix(skipped=record["skipped"])
                continue
        loss, inst, prior = step.train(idx, update)
        update += 1
        record["loss"].append(round(loss, 6))
        record["instance_loss"].append(round(inst, 6))
        record["prior_loss"].append(None if np.isnan(prior) else round(prior, 6))
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        # Not after the last update: the model itself is saved then.
        if update % settings.checkpoint_every == 0 and update < settings.steps:
            record["wall_time_s"] = time.perf_counter() - t0
            saved = save_checkpoint(ckpt_dir, update, batch, model.unet, step.text_encoder,
                                    step.optimizer, step.lr_sched, step.noise_gen,
                                    record)  # fmt: skip
            push_checkpoint(store, saved)
    bar.close()
    record["updates"] = update
    record["batches"] = batch
    record["wall_time_s"] = round(time.perf_counter() - t0, 2)
    record["peak_memory_mb"] = round(peak_memory_mb(model.unet.device), 1)
    # fp16 trains through a GradScaler (bf16 and fp32 need none); its last scale, for the log.
    record["grad_scale"] = step.scaler.get_scale() if step.scaler.is_enabled() else None
    _stop_training(model)
    return record


def _training_step(model: DiffusionModel, data: TrainData, settings: LoopSettings) -> _Step:
    """Make ``model``'s trained parameters trainable and the optimizer, LR schedule, grad
    scaler and noise generator that train them."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    device = model.unet.device
    dtype = torch_dtype(settings.mixed_precision, device)
    params = _configure(model, settings)
    # Class-encoder conditioning: its embeddings train with the UNet (the text encoder is unused).
    class_encoder = model.class_encoder
    if class_encoder is not None:
        params += list(class_encoder.requires_grad_(True).parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=1e-2)
    lr_sched = get_scheduler(
        settings.lr_scheduler,
        optimizer,
        num_warmup_steps=settings.lr_warmup_steps,
        num_training_steps=settings.steps,
    )
    text_encoder = model.text_encoder if settings.train_text_encoder else None
    if class_encoder is not None:
        text_encoder = class_encoder  # its place in the checkpoints
    return _Step(
        model=model,
        data=data,
        settings=settings,
        noise_scheduler=DDPMScheduler.from_config(model.scheduler_config),
        optimizer=optimizer,
        lr_sched=lr_sched,
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        noise_gen=torch.Generator(device=device).manual_seed(derive_seed(settings.seed, "noise")),
        params=params,
        text_encoder=text_encoder,
        dtype=dtype,
    )


def _resume_or_seed(
    step: _Step, ckpt_dir: Path, store: CheckpointStore | None, desc: str
) -> tuple[int, int, dict[str, Any]]:
    """(update, batch, record) to start from: the newest checkpoint's, or a fresh start with
    torch's global RNG seeded."""
    settings = step.settings
    record: dict[str, Any] = {
        "loss": [],
        "instance_loss": [],
        "prior_loss": [],
        "active": [],
        "resumed_from": [],
        "wall_time_s": 0.0,
        "skipped": 0,
        "skip_budget_spent_at": None,
    }
    update, batch = 0, 0
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    latest = resume_point(ckpt_dir, store)
    if latest is not None:
        update, batch, record = load_checkpoint(
            latest, step.model.unet, step.text_encoder, step.optimizer, step.lr_sched,
            step.noise_gen,
        )  # fmt: skip
        record["resumed_from"].append(update)
        log.info("resuming %s from %s (update %d of %d)", desc, latest, update, settings.steps)
    else:
        torch.manual_seed(derive_seed(settings.seed, "torch"))
    return update, batch, record


def _stop_training(model: DiffusionModel) -> None:
    """Back to eval mode with gradients off. With LoRA the adapter stays attached (the
    fine-tune stage saves it alone)."""
    model.unet.eval().requires_grad_(False)
    model.text_encoder.eval().requires_grad_(False)
    if model.class_encoder is not None:
        model.class_encoder.eval().requires_grad_(False)


def _probe_skips(probe, model, data, idx, batch, epoch, update, record) -> bool:
    """Score batch number ``batch`` and record it; True when it is skipped. The skip that
    reaches ``probe.max_skips`` spends the budget: the probe is off from then on."""
    sim = probe.similarity(model, data, idx, batch)
    skipped = bool(sim > probe.threshold)
    record["active"].append(
        {
            "batch": batch,
            "update": update,
            "epoch": epoch,
            "similarity": round(sim, 6),
            "skipped": skipped,
        }
    )
    if skipped:
        record["skipped"] += 1
        if record["skipped"] >= probe.max_skips:
            record["skip_budget_spent_at"] = update
            log.warning(
                "active selection: skip budget spent (%d batches skipped) at update %d; the "
                "remaining updates train unprobed", record["skipped"], update,
            )  # fmt: skip
            probe.budget_spent(update)
    return skipped


@dataclass
class _Step:
    """One optimizer update on one batch: what it needs, gathered once by ``train_loop``."""

    model: DiffusionModel
    data: TrainData
    settings: LoopSettings
    noise_scheduler: Any
    optimizer: torch.optim.Optimizer
    lr_sched: Any
    scaler: torch.amp.GradScaler
    noise_gen: torch.Generator
    params: list[torch.nn.Parameter]
    text_encoder: Any
    dtype: torch.dtype
    prompt_ids: torch.Tensor | None = None
    frozen_embeds: torch.Tensor | None = None

    def __post_init__(self) -> None:
        device = self.model.unet.device
        self.prompt_ids = tokenize(self.model, self.data.prompts, device)
        if self.text_encoder is None:
            self.frozen_embeds = encode_prompts(self.model, self.data.prompts, device)

    def train(self, idx: np.ndarray, update: int) -> tuple[float, float, float]:
        """Noise the batch, predict, step the optimizer and the LR schedule; return the losses."""
        model, device, ns = self.model, self.model.unet.device, self.noise_scheduler
        x, p_idx, is_prior = make_batch(self.data, idx, update)
        x = x.to(device)
        noise = torch.randn(x.shape, generator=self.noise_gen, device=device)
        t = torch.randint(0, ns.config.num_train_timesteps, (len(x),), generator=self.noise_gen,
                          device=device)  # fmt: skip
        noisy = ns.add_noise(x, noise, t)
        target = (
            ns.get_velocity(x, noise, t) if ns.config.prediction_type == "v_prediction" else noise
        )
        with torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            pred = model.unet(noisy, t, encoder_hidden_states=self._cond(p_idx)).sample
        loss, inst, prior = dreambooth_loss(pred, target, is_prior, self.settings.prior_loss_weight)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_sched.step()
        return loss.item(), inst, prior

    def _cond(self, p_idx: np.ndarray) -> torch.Tensor:
        """The UNet's conditioning: class encoder, trained text encoder, or frozen embeddings."""
        device = self.model.unet.device
        if self.model.class_encoder is not None:
            return self.model.class_encoder([self.data.prompts[i] for i in p_idx])
        if self.text_encoder is not None:
            return self.text_encoder(self.prompt_ids[torch.as_tensor(p_idx, device=device)])[0]
        return self.frozen_embeds[torch.as_tensor(p_idx, device=device)]
