"""Fine-tune speed on the demo preset: plain DreamBooth vs DreamBooth with active selection.

    .venv/bin/python benchmarks/finetune.py [--config pipelines/configs/demo.yaml] [--steps 10]

Builds the demo's base model with random weights (speed does not depend on them) and a tuning
set of real PneumoniaMNIST images, then runs ``--steps`` fine-tune steps with the demo's
settings twice: method ``random`` (plain) and method ``active`` with threshold 1.0, so active
selection evaluates every batch and no batch is skipped (the worst case for its overhead).
Seconds per step come from the training log's wall time (the loop only, not the class images).
Ends with ``RESULT finetune plain_steps_s=... active_steps_s=... active_overhead=... peak_rss_mb=...``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from tgap.config import load_config
from tgap.device import peak_memory_mb, pick_device
from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.dreambooth import finetune
from tgap.embed import get_embedder
from tgap.imageset import ImageSet, ImageSetWriter, to_grey_square
from tgap.methods import parse_method

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pneumoniamnist"


def tuning_set(path: Path, labels: list[str], n_per_label: int, resolution: int) -> ImageSet:
    data = np.load(DATA / "pneumoniamnist.npz")
    images, values = data["train_images"], data["train_labels"].ravel()
    with ImageSetWriter(path, labels, resolution) as writer:
        for value, label in enumerate(labels):
            for i in np.flatnonzero(values == value)[:n_per_label]:
                writer.add(to_grey_square(images[i], resolution), label, original_id=str(i))
    return ImageSet(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/configs/demo.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--n-per-label", type=int, default=64)
    args = parser.parse_args()
    config = load_config(args.config)
    ft = replace(config.finetune, steps=args.steps, checkpoint_every=10**6)
    active = replace(ft.active, threshold=1.0)
    embedder_name = ft.active.embedder if ft.active.embedder != "classifier" else "pixel"
    embedder = get_embedder(embedder_name, config.select)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_base_model(replace(config.diffusion, pretrain_steps=0), tmp / "base")
        tuning = tuning_set(
            tmp / "tuning", config.data.labels, args.n_per_label, config.data.resolution
        )
        for name, method, cfg in (
            ("plain", "random", ft),
            ("active", "active", replace(ft, active=active)),
        ):
            finetune(
                tmp / "base",
                tuning,
                parse_method(method),
                0,
                cfg,
                config.prompt,
                config.diffusion,
                tmp / name,
                embedder,
            )
            log = json.loads((tmp / name / "training_log.json").read_text())
            seconds[name] = log["wall_time_s"] / args.steps
    rss = peak_memory_mb(pick_device(config.diffusion.device))
    print(
        f"demo preset: batch {ft.batch_size}, prior preservation {ft.with_prior_preservation}, "
        f"active: n_generate {ft.active.n_generate}, {ft.active.sampler_steps} sampler steps, "
        f"{embedder_name} embedder; {args.steps} steps each"
    )
    print(f"{'mode':<8} {'s/step':>8} {'steps/s':>8}")
    for name, s in seconds.items():
        print(f"{name:<8} {s:>8.3f} {1 / s:>8.3f}")
    print(f"peak RSS {rss:.0f} MB")
    print(
        f"RESULT finetune plain_steps_s={1 / seconds['plain']:.4f} "
        f"active_steps_s={1 / seconds['active']:.4f} "
        f"active_overhead={seconds['active'] / seconds['plain']:.3f} peak_rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
