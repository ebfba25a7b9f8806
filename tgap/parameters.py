"""The compiled pipeline's run parameters, from a config: what ``tgap submit`` and ``tgap
schedule`` send with every run.

It lives in the library (not in ``pipelines/``) so that ``tgap schedule --spec`` works from an
installed wheel, with no checkout: the spec comes compiled, the arguments are built here.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

from tgap.config import Config

GRID_PARAMETERS = ("methods", "sizes", "seeds")
_SECTION_TYPES = typing.get_type_hints(Config)
# Config sections sent as one dict parameter each: every section of `Config` but `cluster`,
# which is compile-time only, and `grid`, which is the three GRID_PARAMETERS.
SECTIONS = tuple(
    name
    for name, tp in _SECTION_TYPES.items()
    if dataclasses.is_dataclass(tp) and name not in ("grid", "cluster")
)
# The run form's help of each parameter; a section's is the first line of its docstring.
PARAMETER_HELP = {
    "run_name": "A name for this run, shown in the report.",
    "methods": "Tuning-set selection methods, e.g. [random, active]; one branch per method x size x seed.",
    "sizes": "Tuning-set sizes (images per label), e.g. [500, 1000].",
    "seeds": "Seeds, e.g. [0, 1, 2].",
    **{name: inspect.getdoc(_SECTION_TYPES[name]).splitlines()[0] for name in SECTIONS},
}


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
