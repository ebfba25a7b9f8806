"""Reading a run's config: a preset YAML file (``extends`` chains merged underneath) and
``--set key=value`` overrides, built and validated into a ``Config``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tgap.config.coerce import _merge, from_dict
from tgap.config.errors import ConfigError
from tgap.config.run import Config, validate


def parse_override(assignment: str) -> dict[str, Any]:
    """``finetune.steps=100`` -> ``{"finetune": {"steps": 100}}`` (value parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. finetune.steps=100")
    key, raw = assignment.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {key}: value {raw!r} is not valid YAML ({_yaml_problem(exc)})"
        ) from None
    out: dict[str, Any] = value
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: where and what (PyYAML's own message spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def _read_preset(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's values, with ``extends: <file>`` (relative to this file) merged underneath.

    A small override file, nanoGPT-style: ``demo-tuned.yaml`` says ``extends: demo.yaml`` and
    only what differs. Chains are allowed; a cycle is an error naming the files.
    """
    if not path.is_file():
        where = f"{seen[-1]}: extends: " if seen else "config file "
        raise ConfigError(f"{where}{path} does not exist")
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"{path}: extends itself ({chain})")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    parent = loaded.pop("extends", None)
    if parent is None:
        return loaded
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{path}: extends: expected a file name, got {parent!r}")
    base = _read_preset(path.parent / parent, (*seen, path.resolve()))
    return _merge(base, loaded)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a preset YAML file (or the defaults when ``path`` is None) and apply ``overrides``.

    A preset may start with ``extends: other.yaml`` (a path relative to the preset): the other
    file's values are read first and this file's are merged on top, section by section.
    Relative data paths inside a preset stay relative to the working directory, the way the
    README's commands run them from the repository root.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        values = _read_preset(path)
    for assignment in overrides or []:
        values = _merge(values, parse_override(assignment))
    where = f"{path}: " if path is not None else ""
    try:
        config = from_dict(Config, values)
        validate(config)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return config
