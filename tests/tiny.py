"""Small real inputs shared by the test modules: a tiny diffusion model's config, a short
fine-tune, a few real PneumoniaMNIST images. A helper module (like browser.py and servers.py),
so no test module imports another."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tgap.config import DiffusionConfig, FinetuneConfig
from tgap.imageset import ImageSet, ImageSetWriter, to_grey_square

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TOKENIZER = str(DATA / "clip-tokenizer")


def tiny_diffusion(**overrides) -> DiffusionConfig:
    """A 16-px model small enough for unit tests (about 0.1 M UNet parameters)."""
    values = dict(
        tokenizer=TOKENIZER,
        sample_size=16,
        block_out_channels=[8, 16],
        cross_attention_dim=16,
        text_hidden_size=16,
        text_layers=1,
        device="cpu",
    )
    values.update(overrides)
    return DiffusionConfig(**values)


def real_image_set(path: Path, n_per_label: int, resolution: int = 16) -> ImageSet:
    """A small real image set from PneumoniaMNIST (normal -> No Finding, pneumonia -> Unhealthy)."""
    data = np.load(DATA / "pneumoniamnist" / "pneumoniamnist.npz")
    images, labels = data["val_images"], data["val_labels"].ravel()
    with ImageSetWriter(path, ["No Finding", "Unhealthy"], resolution) as writer:
        for value, label in ((0, "No Finding"), (1, "Unhealthy")):
            for i in np.flatnonzero(labels == value)[:n_per_label]:
                writer.add(to_grey_square(images[i], resolution), label, original_id=str(i))
    return ImageSet(path)


def tiny_finetune(**overrides) -> FinetuneConfig:
    values = dict(steps=8, batch_size=4, learning_rate=3e-3, lr_warmup_steps=0, checkpoint_every=4)
    values.update(overrides)
    return FinetuneConfig(**values)
