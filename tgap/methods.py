"""Tuning-set selection methods: what each grid ``method`` value means.

A method is two choices: how the tuning set is selected, and what makes the synthetic set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Selection = Literal["random", "spectral", "kmeans", "curated", "external"]
# The work a method's grid rows need, one pipeline loop each (``tgap.grid``): fine-tune and
# generate; generate with the base model (a control); or no generation (a control whose
# synthetic side is real pool images, or an external set).
Kind = Literal["finetune", "no-finetune", "retrieval"]
KINDS: tuple[Kind, ...] = ("finetune", "no-finetune", "retrieval")
Generator = Literal["dreambooth", "dreambooth-active", "base", "retrieval", "external"]
EXTERNAL = "external:"
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

    @property
    def kind(self) -> Kind:
        """The loop this method's rows run in (``KINDS``): ``external:<name>`` shares
        ``retrieval``'s, as neither generates."""
        if self.fine_tunes:
            return "finetune"
        return "no-finetune" if self.generator == "base" else "retrieval"

    @property
    def external_name(self) -> str | None:
        """``external:<name>`` -> ``<name>``: the key of ``select.external_sets``; else None."""
        return self.name.removeprefix(EXTERNAL) if self.generator == "external" else None


def method_names() -> list[str]:
    """Every valid grid method name."""
    clustered = [f"{c}-{e}" for c in ("spectral", "kmeans") for e in EMBEDDERS]
    return [
        "random",
        *clustered,
        "curated",
        "active",
        "no-finetune",
        "retrieval",
        "external:<name>",
    ]


def parse_method(name: str, default_embedder: str = "classifier") -> Method:
    """Parse a grid method name; ``default_embedder`` is what `active` clusters on.

    ``active`` is the thesis's spectral selection followed by DreamBooth with active data
    selection; ``no-finetune`` generates with the base model; ``retrieval`` replaces generation
    with real pool images retrieved as nearest neighbours of a random tuning set;
    ``external:<name>`` evaluates an already generated set (``select.external_sets[name]``) with
    no selection, fine-tune or generation.
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
    if name.startswith(EXTERNAL) and len(name) > len(EXTERNAL):
        return Method(name, "external", None, "external")
    if name == "retrieval":
        return Method(name, "random", default_embedder, "retrieval")
    for clustering in ("spectral", "kmeans"):
        prefix = f"{clustering}-"
        if name.startswith(prefix) and name[len(prefix) :] in EMBEDDERS:
            return Method(name, clustering, name[len(prefix) :], "dreambooth")
    raise ValueError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")
