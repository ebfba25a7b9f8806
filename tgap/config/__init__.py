"""Run configuration: typed sections, YAML presets, ``--set key=value`` overrides.

One config describes a whole run. Each section is a dataclass; a preset in
``pipelines/configs/`` only lists what differs from the defaults in ``schema.py`` (nanoGPT-style
override files). Unknown keys and wrong types are errors that name the key, e.g.
``finetune.stpes: unknown key (known: batch_size, ...)``.

One module per job, each importing only those above it:

- ``errors``: ``ConfigError``
- ``constraints``: ``param(800, ge=1)`` beside a field, ``check_constraints`` walks them
- ``throughput``: ``tgap plan``'s cost model per device (``cluster.throughput``)
- ``schema``: the sections, every key with its default
- ``coerce``: values checked against the annotations (``from_dict``, ``section``)
- ``rules``: relations between keys of one section (split, data layout, tune space)
- ``run``: ``Config``, ``validate``, the grid fan-out, a config from pipeline parameters
- ``load``: preset YAML files, ``extends``, ``--set`` overrides (``load_config``)
- ``cluster``: compile-time placement and Kubernetes quantities

Here: the names the rest of tgap imports from ``tgap.config``.
"""

from __future__ import annotations

from tgap.config.cluster import check_placement, quantity_bytes
from tgap.config.coerce import from_dict, section
from tgap.config.constraints import check_constraints
from tgap.config.errors import ConfigError
from tgap.config.load import load_config, parse_override
from tgap.config.run import Config, config_from_parameters
from tgap.config.schema import (
    STAGES,
    ActiveConfig,
    ClassifierConfig,
    ClusterConfig,
    CsvFormatConfig,
    DataConfig,
    DiffusionConfig,
    EvaluationConfig,
    FinetuneConfig,
    GenerateConfig,
    GridConfig,
    PromptConfig,
    SelectConfig,
    SplitConfig,
    TuneConfig,
    TuneSpaceConfig,
)
from tgap.config.throughput import DeviceThroughput

__all__ = [
    "STAGES",
    "ActiveConfig",
    "ClassifierConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "CsvFormatConfig",
    "DataConfig",
    "DeviceThroughput",
    "DiffusionConfig",
    "EvaluationConfig",
    "FinetuneConfig",
    "GenerateConfig",
    "GridConfig",
    "PromptConfig",
    "SelectConfig",
    "SplitConfig",
    "TuneConfig",
    "TuneSpaceConfig",
    "check_constraints",
    "check_placement",
    "config_from_parameters",
    "from_dict",
    "load_config",
    "parse_override",
    "quantity_bytes",
    "section",
]
