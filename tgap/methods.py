"""Tuning-set selection methods: what each grid ``method`` value means.

A method is two choices: how the tuning set is selected, and what makes the synthetic set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Selection = Literal["random", "spectral", "kmeans", "curated"]
Generator = Literal["dreambooth", "dreambooth-active", "base", "retrieval"]
EMBEDDERS = ("pixel", "clip", "classifier")


@dataclass(frozen=True)
class Method:
    """A parsed grid method, e.g. ``spectral-pixel`` -> selection spectral on pixel embeddings."""

    name: str
    selection: Selection
    embedder: str | None
    generator: Generator

    @property
    def fine_tunes(self) -> bool:
        return self.generator in ("dreambooth", "dreambooth-active")


def method_names() -> list[str]:
    """Every valid grid method name."""
    clustered = [f"{c}-{e}" for c in ("spectral", "kmeans") for e in EMBEDDERS]
    return ["random", *clustered, "curated", "active", "no-finetune", "retrieval"]


def parse_method(name: str, default_embedder: str = "classifier") -> Method:
    """Parse a grid method name; ``default_embedder`` is what `active` clusters on.

    ``active`` is the thesis's spectral selection followed by DreamBooth with active data
    selection; ``no-finetune`` generates with the base model; ``retrieval`` replaces generation
    with real pool images retrieved as nearest neighbours of a random tuning set.
    """
    if default_embedder not in EMBEDDERS:
        raise ValueError(f"embedder {default_embedder!r}: expected one of {', '.join(EMBEDDERS)}")
    if name == "random":
        return Method(name, "random", None, "dreambooth")
    if name == "curated":
        return Method(name, "curated", None, "dreambooth")
    if name == "active":
        return Method(name, "spectral", default_embedder, "dreambooth-active")
    if name == "no-finetune":
        return Method(name, "random", None, "base")
    if name == "retrieval":
        return Method(name, "random", default_embedder, "retrieval")
    for clustering in ("spectral", "kmeans"):
        prefix = f"{clustering}-"
        if name.startswith(prefix) and name[len(prefix) :] in EMBEDDERS:
            return Method(name, clustering, name[len(prefix) :], "dreambooth")
    raise ValueError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
