"""The grid's rows by the work they need, so that each piece of work is done once.

A grid row is ``{method, size, seed}``. Rows fall into three kinds, each its own flat loop of
the pipeline:

- ``finetune``: the method fine-tunes; select -> fine-tune -> generate -> evaluate, per row.
  Their prior-preservation class images depend only on (base model, class prompt, count,
  seed), so one task makes them for every seed in ``class_image_seeds``.
- ``no-finetune``: the base model generates; that depends on the seed alone, so there is one
  work item per seed, ``{method, seed, sizes}``, generating once for all its sizes (the cells
  of one seed differ only in the tuning set their memorisation is measured against).
- ``retrieval``: real pool images stand in for the synthetic set; no fine-tune, no generation,
  nothing on a GPU.

Everything here is a pure function of the rows, so a task that expands the grid at run time
can call it as well as the pipeline builder does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tgap.methods import parse_method

KINDS = ("finetune", "no-finetune", "retrieval")


def row_kind(row: dict[str, Any]) -> str:
    """The kind of one grid row (``KINDS``)."""
    method = parse_method(row["method"])
    if method.fine_tunes:
        return "finetune"
    return "no-finetune" if method.generator == "base" else "retrieval"


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {"method": row["method"], "size": int(row["size"]), "seed": int(row["seed"])}


def split_rows(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{kind: work items}`` in the rows' order; every kind is present (possibly empty).

    ``finetune`` and ``retrieval`` items are the rows themselves; ``no-finetune`` items are one
    per (method, seed) with every size of that seed: ``{"method", "seed", "sizes"}``.
    """
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    per_seed: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        kind = row_kind(row)
        if kind != "no-finetune":
            out[kind].append(_row(row))
            continue
        key = (row["method"], int(row["seed"]))
        if key not in per_seed:
            per_seed[key] = {"method": row["method"], "seed": int(row["seed"]), "sizes": []}
            out[kind].append(per_seed[key])
        if int(row["size"]) not in per_seed[key]["sizes"]:
            per_seed[key]["sizes"].append(int(row["size"]))
    return out


def item_rows(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid rows one work item stands for (a row itself, or a per-seed item's sizes)."""
    if "sizes" in item:
        return [
            {"method": item["method"], "size": int(size), "seed": int(item["seed"])}
            for size in item["sizes"]
        ]
    return [_row(item)]


def class_image_seeds(rows: list[dict[str, Any]]) -> list[int]:
    """Seeds whose fine-tunes need prior-preservation class images (sorted, each once)."""
    return sorted({int(r["seed"]) for r in rows if row_kind(r) == "finetune"})


def size_folder(size: int) -> str:
    """Sub-folder of a per-seed item's artifact that holds one size's tuning set or cell."""
    return f"size-{int(size)}"


def seed_folder(seed: int) -> str:
    """Sub-folder of the class-images artifact that holds one seed's images."""
    return f"seed-{int(seed)}"


def cell_folders(item: dict[str, Any], root: str | Path) -> list[tuple[dict[str, Any], Path]]:
    """``(row, folder)`` per grid row of ``item`` inside an artifact folder ``root``: the folder
    itself for a row, ``root/size-<n>`` for each size of a per-seed item."""
    root = Path(root)
    if "sizes" not in item:
        return [(_row(item), root)]
    return [(row, root / size_folder(row["size"])) for row in item_rows(item)]


# A method of each kind, for the fix an error names.
KIND_EXAMPLE = {"finetune": "random", "no-finetune": "no-finetune", "retrieval": "retrieval"}


def loop_items(rows: list[dict[str, Any]], compiled_kinds: list[str]) -> dict[str, list]:
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
    methods = sorted({r["method"] for r in rows})
    for kind in KINDS:
        needing = sorted({r["method"] for r in rows if row_kind(r) == kind})
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
