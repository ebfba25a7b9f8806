"""Values checked against the schema's annotations by hand: ``from_dict`` builds a section
(or a whole config) from a mapping, naming the key of an unknown key or a wrong type;
``section`` rebuilds one received as a KFP dict parameter."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal

from tgap.config.errors import ConfigError

T = typing.TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, struct_numbers: bool = False) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted as floats).

    ``struct_numbers``: integral floats are accepted as ints (values that came through a KFP
    Struct, see ``section``)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where, struct_numbers)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, struct_numbers)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]", struct_numbers) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _coerce(
                k if not isinstance(k, int | float) else str(k), args[0], f"{where} key"
            ): _coerce(v, args[1], f"{where}.{k}", struct_numbers)
            for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        # KFP passes dict parameters as protobuf Structs, which turn every number into a float.
        if isinstance(value, float) and value.is_integer() and struct_numbers:
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def from_dict(
    cls: type[T], values: dict[str, Any], where: str = "", struct_numbers: bool = False
) -> T:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields)
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown key (known: {', '.join(names)})")
        if fields[key].metadata.get("merge") and isinstance(value, dict):
            default = json.loads(json.dumps(fields[key].default_factory(), default=_plain))
            value = _merge(default, value)
        kwargs[key] = _coerce(value, hints[key], path, struct_numbers)
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def section(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Rebuild one config section received as a KFP dict parameter (integral floats -> int)."""
    return from_dict(cls, values, where, struct_numbers=True)
