"""Per-field constraints: ``param(800, ge=1)`` declares one beside its field, and
``check_constraints`` walks every field of a config or section to check them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tgap.config.errors import ConfigError

# --------------------------------------------------------------------------- constraints
#
# sklearn-style: a field's constraint is declared beside it, ``steps: int = param(800, ge=1)``,
# and one walk (``check_constraints``) checks every field of every section when a config loads.
# Relations between keys live in ``validate`` (``tgap.config.run``).


@dataclass(frozen=True)
class Constraint:
    """What a field's value must satisfy; ``describe()`` says it in words for the error.

    For lists, the bounds, ``choices``, ``multiple_of`` and ``check`` apply to every element;
    ``min_len`` and ``unique`` to the list itself.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    # For lists and strings: at least this many elements / characters.
    min_len: int | None = None
    choices: tuple[Any, ...] | None = None
    multiple_of: int | None = None
    # For lists: no value twice (a repeated grid size would run the same branch twice).
    unique: bool = False
    # A custom check: ``check(value)`` returns None when fine, else what was expected (words).
    check: Callable[[Any], str | None] | None = None

    def describe(self) -> str:
        parts = []
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(self, name)
            if bound is not None:
                parts.append(f"{symbol} {bound:g}")
        if self.multiple_of is not None:
            parts.append(f"a multiple of {self.multiple_of}")
        if self.choices is not None:
            parts.append(f"one of {', '.join(map(str, self.choices))}")
        if self.min_len is not None:
            parts.append(f"at least {self.min_len} element(s)")
        if self.unique:
            parts.append("no value twice")
        return " and ".join(parts)

    def check_value(self, value: Any, where: str) -> None:
        if value is None:
            return
        if isinstance(value, list | str):
            if self.min_len is not None and len(value) < self.min_len:
                raise ConfigError(f"{where}: {value!r} is too short (expected {self.describe()})")
        if isinstance(value, list):
            if self.unique and len(set(map(repr, value))) != len(value):
                raise ConfigError(f"{where}: {value!r} repeats a value (expected no value twice)")
            for i, item in enumerate(value):
                self._check_one(item, f"{where}[{i}]")
            return
        self._check_one(value, where)

    def _check_one(self, value: Any, where: str) -> None:
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}"
            )
        if self.check is not None:
            expected = self.check(value)
            if expected:
                raise ConfigError(f"{where}: {value!r} is not valid (expected {expected})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        ok = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
            and (self.multiple_of is None or value % self.multiple_of == 0)
        )
        if not ok:
            raise ConfigError(f"{where}: {value!r} is out of range (expected {self.describe()})")


def param(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    merge: bool = False,
    **constraint: Any,
) -> Any:
    """A dataclass field with its constraint declared beside it: ``param(800, ge=1)``.

    ``merge=True`` (mapping fields): a given mapping is merged into the default one, so a preset
    or ``--set`` changes single entries instead of replacing the whole table."""
    metadata: dict[str, Any] = {"constraint": Constraint(**constraint)} if constraint else {}
    if merge:
        metadata["merge"] = True
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_constraints(obj: Any, where: str = "") -> None:
    """Walk every field of a config (or one section) and check its declared constraint."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            check_constraints(value, path)
            continue
        constraint = f.metadata.get("constraint")
        if constraint is not None:
            constraint.check_value(value, path)
