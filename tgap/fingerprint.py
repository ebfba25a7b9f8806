"""Fingerprints of the run's inputs, so a cached pipeline sees new data.

KFP caches a task on its inputs. A scheduled run with the same parameters would otherwise reuse
last week's ingest even after the bucket changed. The ``fingerprint`` stage, never cached,
hashes the listing (names, sizes, etags or mtimes, through ``tgap.storage.listing``) of every
source a stage reads, and hands each reader its source's hash as an input: KFP's cache then
reuses work exactly when the content is unchanged.
"""

from __future__ import annotations

import hashlib
import json

from tgap import storage
from tgap.config import ClassifierConfig, DataConfig, DiffusionConfig, SelectConfig

# Source name -> what it is, in the order the report's provenance lists them.
MODEL_PRESETS = ("tiny-pixel",)
SOURCES = ("data", "curated", "base_model", "clip_weights", "classifier_weights")


def fingerprint(uri: str) -> str:
    """``sha256:<hex>`` of the listing of ``uri``; "" for no source, ``preset:<name>`` for a
    model built from config (nothing to read)."""
    if not uri:
        return ""
    if uri in MODEL_PRESETS:
        return f"preset:{uri}"
    lines = [json.dumps(entry) for entry in storage.listing(uri)]
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def source_uris(
    data: DataConfig, select: SelectConfig, diffusion: DiffusionConfig, classifier: ClassifierConfig
) -> dict[str, str]:
    """Every source a stage of the run reads, by name (``SOURCES``)."""
    return {
        "data": data.source,
        "curated": select.curated_source,
        "base_model": diffusion.base_model,
        "clip_weights": select.clip_weights,
        "classifier_weights": classifier.weights,
    }


def fingerprints(uris: dict[str, str]) -> dict[str, dict[str, str]]:
    """``{name: {"uri", "fingerprint"}}`` for ``source_uris``' output."""
    return {name: {"uri": uri, "fingerprint": fingerprint(uri)} for name, uri in uris.items()}
