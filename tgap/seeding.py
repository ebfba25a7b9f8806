"""One seeding helper for every stage: the same config and seed give the same numbers."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np


def derive_seed(seed: int, *keys: object) -> int:
    """A stable 31-bit seed for a named sub-task, e.g. ``derive_seed(0, "select", "random")``.

    Stable across processes and Python versions (unlike ``hash``), so a KFP task seeded this way
    gives the same result on a laptop and on a cluster.
    """
    text = "/".join([str(seed), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a NumPy generator for local use."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return np.random.default_rng(seed)


def torch_generator(seed: int, device: str | object = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    import torch

    return torch.Generator(device=str(device)).manual_seed(int(seed))
