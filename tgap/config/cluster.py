"""Compile-time checks of a cluster spec: Kubernetes memory quantities, and stages whose
device says ``cuda`` placed on the GPU pool."""

from __future__ import annotations

import re

from tgap.config.errors import ConfigError
from tgap.config.run import Config

# The stages that compute with a configured `device` key, and which key: a stage that says
# `cuda` there must be placed on the GPU pool (checked by `check_placement`).
STAGE_DEVICE_KEYS = {
    "class-images": "diffusion.device",
    "fine-tune": "diffusion.device",
    "tune-generation": "diffusion.device",
    "generate": "diffusion.device",
    "train-classifier": "classifier.device",
    "evaluate-classifier": "classifier.device",
    "supplementation": "classifier.device",
    "learning-curve": "classifier.device",
}


_QUANTITY_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                   "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}  # fmt: skip


def quantity_bytes(quantity: str, key: str) -> float:
    """A Kubernetes memory quantity (``16G``, ``15Gi``, ``8000M``, ``1e9``) in bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([KMGTPE]i?)?\s*", quantity)
    if m is None:
        raise ConfigError(
            f"{key}: {quantity!r} is not a memory quantity (expected e.g. 16G, 15Gi, 8000M)"
        )
    return float(m.group(1)) * _QUANTITY_UNITS[m.group(2) or ""]


def check_placement(config: Config) -> None:
    """Compile-time check: a stage whose device key says ``cuda`` runs on the GPU pool, and
    the pools' memory requests are quantities Kubernetes reads.

    Only for compiling a cluster spec: local runs ignore placement.
    """
    for pool in ("gpu", "cpu"):
        request = getattr(config.cluster, pool).memory_request
        if request:
            quantity_bytes(request, f"cluster.{pool}.memory_request")
    for stage, key in STAGE_DEVICE_KEYS.items():
        section_name, name = key.split(".")
        if getattr(getattr(config, section_name), name) == "cuda" and (
            stage not in config.cluster.gpu_stages
        ):
            raise ConfigError(
                f"{key} is 'cuda' but stage {stage!r} is not in cluster.gpu_stages "
                f"({config.cluster.gpu_stages}): add it there, or set {key} to auto or cpu"
            )
