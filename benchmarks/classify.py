"""Classifier training throughput on CPU: small CNN and DenseNet-121 at 64 and 224 px.

Times a few optimiser steps (forward, backward, Adam, with the training augmentation) on random
grey images, after one warm-up step, so the numbers compare architectures and resolutions, not
data loading. Run from the repository root:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/classify.py [--steps 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from tgap.classify import NORMALISATION, _augment, _normalise, build_model
from tgap.seeding import torch_generator


def images_per_second(arch: str, px: int, steps: int, batch_size: int) -> float:
    torch.manual_seed(0)
    model = build_model(arch, 2).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch_generator(0)
    x = torch.rand(batch_size, 1, px, px, generator=generator)
    y = torch.randint(0, 2, (batch_size,), generator=generator)

    def step() -> None:
        loss = F.cross_entropy(model(_normalise(_augment(x, generator), NORMALISATION[arch])), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()  # warm-up: allocator and kernel selection
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.steps} timed steps, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'arch':<12} {'px':>4} {'train img/s':>12}")
    results = {}
    for arch in ("small-cnn", "densenet121"):
        for px in (64, 224):
            value = images_per_second(arch, px, args.steps, args.batch_size)
            results[f"{arch.replace('-', '_')}_{px}_img_s"] = value
            print(f"{arch:<12} {px:>4} {value:>12.1f}")
    print("RESULT classify " + " ".join(f"{k}={v:.2f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
