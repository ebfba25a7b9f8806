"""What a run was made of: config, data and model sources, versions, seeds, stage times."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from tgap.config import Config

PACKAGES = (
    "tgap",
    "kfp",
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "open_clip_torch",
    "scikit-learn",
    "numpy",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _model_sources(cell_dirs: list[Path]) -> dict[str, Any]:
    """Model descriptions the stages left in the cells (first occurrence of each file)."""
    sources: dict[str, Any] = {}
    for cell in cell_dirs:
        for name in ("tgap_model.json", "classifier.json", "embedder.json"):
            path = cell / "assets" / name
            if name not in sources and path.is_file():
                sources[name.removesuffix(".json")] = json.loads(path.read_text())
    return sources


def collect_provenance(config: Config, grid_rows: list[dict], cell_dirs: list[Path]) -> dict:
    """The provenance block of the report."""
    return {
        "run_name": config.name,
        "config": config.to_dict(),
        "data_source": config.data.source,
        "models": _model_sources(cell_dirs),
        "base_model": config.diffusion.base_model,
        "classifier": {
            "arch": config.classifier.arch,
            "weights": config.classifier.weights or None,
        },
        "versions": package_versions(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "seeds": sorted({int(r["seed"]) for r in grid_rows}),
        "grid_rows": len(grid_rows),
    }
