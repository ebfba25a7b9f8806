"""The compiled pipeline's run parameters, from a config: what ``tgap submit`` and ``tgap
schedule`` send with every run.

It lives in the library (not in ``pipelines/``) so that ``tgap schedule --spec`` works from an
installed wheel, with no checkout: the spec comes compiled, the arguments are built here.
"""

from __future__ import annotations

from typing import Any

from tgap.config import Config

GRID_PARAMETERS = ("methods", "sizes", "seeds")
# Config sections sent as one dict parameter each (every section but `cluster`, which is
# compile-time only, and `grid`, which is the three GRID_PARAMETERS).
SECTIONS = (
    "data",
    "select",
    "diffusion",
    "prompt",
    "finetune",
    "generate",
    "classifier",
    "evaluation",
)


def without_nulls(value: Any) -> Any:
    """``value`` without None entries: KFP parameters cannot carry null; an absent key rebuilds
    to its dataclass default, which is None for every optional field (a test checks that)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def pipeline_arguments(config: Config) -> dict[str, Any]:
    """Every pipeline parameter for ``config``, explicitly (what the UI's compare view shows)."""
    values = without_nulls(config.to_dict())
    grid = config.grid
    arguments: dict[str, Any] = {
        "run_name": config.name,
        "methods": list(grid.methods),
        "sizes": list(grid.sizes),
        "seeds": list(grid.seeds),
    }
    arguments.update({name: values[name] for name in SECTIONS})
    return arguments
