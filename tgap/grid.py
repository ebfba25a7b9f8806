"""The grid's rows by the work they need, so that each piece of work is done once.

A grid row is a ``GridRow`` (a parsed method, a size and a seed); between pipeline tasks it
travels as the dict ``{method, size, seed}`` (``GridRow.from_item`` / ``to_item``, the one
place a row is parsed). Rows fall into three kinds (``Method.kind``), each its own flat loop of
the pipeline:

- ``finetune``: the method fine-tunes; select -> fine-tune -> generate -> evaluate, per row.
  Their prior-preservation class images depend only on (base model, class prompt, count,
  seed), so one task makes them for every seed in ``class_image_seeds``.
- ``no-finetune``: the base model generates; that depends on the seed alone, so there is one
  work item per seed, a ``SeedItem`` (``{method, seed, sizes}``), generating once for all its sizes (the cells
  of one seed differ only in the tuning set their memorisation is measured against).
- ``retrieval``: real pool images (or an ``external:<name>`` set) stand in for the synthetic
  set; no fine-tune, no generation, nothing on a GPU.

Everything here is a pure function of the rows, so a task that expands the grid at run time
can call it as well as the pipeline builder does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tgap.methods import KINDS, Kind, Method, parse_method

if TYPE_CHECKING:
    from tgap.config import Config


class GridRowError(ValueError):
    """A grid row or work item handed to a task is malformed; the message names the key."""


def _integer(item: Mapping[str, Any], key: str, value: Any, minimum: int) -> int:
    """``value`` (``item[key]``, or one entry of it) as an int >= ``minimum``. KFP hands JSON
    numbers, so an int may arrive as an integral float (``5.0``), or from a run form as a
    string (``"5"``)."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            pass
    if number is None or number < minimum:
        raise GridRowError(
            f"grid item {dict(item)!r}: key {key!r}: expected an integer >= {minimum}, "
            f"got {value!r}"
        )
    return number


def _method(item: Mapping[str, Any], default_embedder: str) -> Method:
    name = item["method"]
    if not isinstance(name, str):
        raise GridRowError(f"grid item {dict(item)!r}: key 'method': expected a string")
    try:
        return parse_method(name, default_embedder)
    except ValueError as exc:
        raise GridRowError(f"grid item {dict(item)!r}: key 'method': {exc}") from None


def _require(item: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(item, Mapping):
        raise GridRowError(f"grid item {item!r}: expected a mapping with keys {', '.join(keys)}")
    for key in keys:
        if key not in item:
            raise GridRowError(f"grid item {dict(item)!r}: missing key {key!r}")


# The ranges GridConfig declares for grid.sizes and grid.seeds.
MIN_SIZE, MIN_SEED = 1, 0


@dataclass(frozen=True)
class GridRow:
    """One grid cell's coordinates: a parsed method, a tuning-set size per label and a seed.

    Pipeline tasks receive rows as JSON dicts (a ``dsl.ParallelFor`` item); ``from_item`` turns
    one into a row once, at the start of the task, and ``to_item`` gives the dict back.
    """

    method: Method
    size: int
    seed: int

    @classmethod
    def from_item(cls, item: Mapping[str, Any], default_embedder: str = "classifier") -> GridRow:
        """The row of a ``{method, size, seed}`` dict; ``default_embedder`` is what the
        ``active`` and ``retrieval`` methods embed with (``select.default_embedder``)."""
        _require(item, ("method", "size", "seed"))
        return cls(
            _method(item, default_embedder),
            _integer(item, "size", item["size"], MIN_SIZE),
            _integer(item, "seed", item["seed"], MIN_SEED),
        )

    def to_item(self) -> dict[str, Any]:
        return {"method": self.method.name, "size": self.size, "seed": self.seed}

    @property
    def kind(self) -> Kind:
        return self.method.kind

    @property
    def rows(self) -> tuple[GridRow, ...]:
        """As a work item: the one row it stands for."""
        return (self,)

    @property
    def label(self) -> str:
        """``method/size/seed``, how logs and errors name a row."""
        return f"{self.method.name}/{self.size}/{self.seed}"

    def cell_folders(self, root: str | Path) -> list[tuple[GridRow, Path]]:
        """As a work item: its artifact folder ``root`` holds the one cell."""
        return [(self, Path(root))]


@dataclass(frozen=True)
class SeedItem:
    """The ``no-finetune`` work item: one seed's base-model generation, shared by the cells of
    every size (one per size, in ``size-<n>/`` sub-folders of its artifacts)."""

    method: Method
    seed: int
    sizes: tuple[int, ...]

    @classmethod
    def from_item(cls, item: Mapping[str, Any], default_embedder: str = "classifier") -> SeedItem:
        _require(item, ("method", "seed", "sizes"))
        sizes = item["sizes"]
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable) or not sizes:
            raise GridRowError(
                f"grid item {dict(item)!r}: key 'sizes': expected a non-empty list of sizes"
            )
        return cls(
            _method(item, default_embedder),
            _integer(item, "seed", item["seed"], MIN_SEED),
            tuple(_integer(item, "sizes", size, MIN_SIZE) for size in sizes),
        )

    def to_item(self) -> dict[str, Any]:
        return {"method": self.method.name, "seed": self.seed, "sizes": list(self.sizes)}

    @property
    def kind(self) -> Kind:
        return self.method.kind

    @property
    def rows(self) -> tuple[GridRow, ...]:
        """The grid rows it stands for, one per size."""
        return tuple(GridRow(self.method, size, self.seed) for size in self.sizes)

    @property
    def label(self) -> str:
        return f"{self.method.name}/{','.join(map(str, self.sizes))}/{self.seed}"

    def cell_folders(self, root: str | Path) -> list[tuple[GridRow, Path]]:
        """``(row, root/size-<n>)`` per size."""
        return [(row, Path(root) / size_folder(row.size)) for row in self.rows]


WorkItem = GridRow | SeedItem


def work_item(item: Mapping[str, Any], default_embedder: str = "classifier") -> WorkItem:
    """One ``dsl.ParallelFor`` item as handed to a task: a per-seed item when it has ``sizes``,
    else a grid row."""
    if isinstance(item, Mapping) and "sizes" in item:
        return SeedItem.from_item(item, default_embedder)
    return GridRow.from_item(item, default_embedder)


def parse_rows(
    items: Iterable[Mapping[str, Any]], default_embedder: str = "classifier"
) -> list[GridRow]:
    """Grid rows from their dicts (``Config.grid_rows()``, or expand-grid's output)."""
    return [GridRow.from_item(item, default_embedder) for item in items]


def config_rows(config: Config) -> list[GridRow]:
    """A config's grid rows (``Config.grid_rows()``, in its order), parsed."""
    return parse_rows(config.grid_rows(), config.select.default_embedder)


def row_kind(row: Mapping[str, Any]) -> Kind:
    """The kind of a dict that names a method (a cell read back by the report)."""
    return parse_method(row["method"]).kind


def split_rows(rows: Iterable[GridRow]) -> dict[Kind, list[WorkItem]]:
    """``{kind: work items}`` in the rows' order; every kind is present (possibly empty).

    ``finetune`` and ``retrieval`` items are the rows themselves; ``no-finetune`` items are one
    ``SeedItem`` per (method, seed) with every size of that seed, in the rows' order.
    """
    out: dict[Kind, list[WorkItem]] = {kind: [] for kind in KINDS}
    per_seed: dict[tuple[str, int], tuple[Method, list[int]]] = {}  # in first-seen order
    for row in rows:
        if row.kind != "no-finetune":
            out[row.kind].append(row)
            continue
        _, sizes = per_seed.setdefault((row.method.name, row.seed), (row.method, []))
        if row.size not in sizes:
            sizes.append(row.size)
    out["no-finetune"] = [
        SeedItem(method, seed, tuple(sizes)) for (_, seed), (method, sizes) in per_seed.items()
    ]
    return out


def class_image_seeds(rows: Iterable[GridRow]) -> list[int]:
    """Seeds whose fine-tunes need prior-preservation class images (sorted, each once)."""
    return sorted({r.seed for r in rows if r.kind == "finetune"})


def size_folder(size: int) -> str:
    """Sub-folder of a per-seed item's artifact that holds one size's tuning set or cell."""
    return f"size-{int(size)}"


def seed_folder(seed: int) -> str:
    """Sub-folder of the class-images artifact that holds one seed's images."""
    return f"seed-{int(seed)}"


# A method of each kind, for the fix an error names.
KIND_EXAMPLE = {"finetune": "random", "no-finetune": "no-finetune", "retrieval": "retrieval"}


def loop_items(rows: list[GridRow], compiled_kinds: list[str]) -> dict[Kind, list[WorkItem]]:
    """Each loop kind's work items for ``rows``, refusing, before any work, a run that needs a
    loop the compiled spec lacks or that leaves a compiled loop without items.

    An empty loop cannot run on the KFP backend: its driver collects a loop's outputs for the
    report only when the loop had iterations (``resolveUpstreamParameters`` and
    ``resolveUpstreamArtifacts`` in ``backend/src/v2/driver/resolve.go``, 2.17.0, test
    ``getParallelForIterationCount(...) > 0``); with none it looks for a producer task that was
    never created, so the report would fail after every GPU task had run.
    """
    from tgap.config import ConfigError

    items = split_rows(rows)
    methods = sorted({r.method.name for r in rows})
    for kind in KINDS:
        needing = sorted({r.method.name for r in rows if r.kind == kind})
        if items[kind] and kind not in compiled_kinds:
            raise ConfigError(
                f"methods: {', '.join(needing)} need the {kind} loop, which this compiled spec "
                f"lacks (compiled with loops: {', '.join(compiled_kinds)}); compile a spec whose "
                "grid.methods include such a method"
            )
    empty = [kind for kind in compiled_kinds if not items[kind]]
    if empty:
        raise ConfigError(
            f"methods: {', '.join(methods)} leave this compiled spec's "
            f"{' and '.join(empty)} loop without work items (compiled with loops: "
            f"{', '.join(compiled_kinds)}); the KFP backend cannot collect the outputs of a loop "
            "that ran no iteration, so the report would fail after all other work. Add a method "
            f"of that kind (e.g. {', '.join(KIND_EXAMPLE[k] for k in empty)}), or compile a spec "
            "for exactly these methods: tgap compile --config <config> --set "
            f"'grid.methods=[{', '.join(methods)}]'"
        )
    return items
