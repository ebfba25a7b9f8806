"""The data-dependent checks of a run: every grid row against what ingest and the base model gave.

The static checks (ranges, choices, relations between keys) run when the config loads
(``tgap.config.run.validate``). What needs data runs here, once, right after ingest and
prepare-base-model and before the fan-out (the ``validate-run`` task), so that a grid row that
cannot work fails before any select, fine-tune or generate task is scheduled:

- the tuning-set size against the pool per label (and the clusters a clustered method needs);
- the generated count against the real images R→S and supplementation train on;
- the retrieval baseline against what the pool has left outside the tuning set;
- the data resolution against what the base model takes;
- the curated source: readable, and large enough for the size before its threshold drops any.

Stages keep the checks that need more than this (e.g. pseudo-labels above
``select.curated_threshold``, which needs the reference classifier).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tgap.config import Config
from tgap.grid import GridRow

MODEL_INFO = "tgap_model.json"  # written by tgap.diffusion.build (not imported: it loads torch)


class RunValidationError(ValueError):
    """One or more grid rows cannot run; the message has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def model_size_factor(model_dir: str | Path) -> int:
    """Image sides must be multiples of this: VAE scale x UNet downsampling (from the configs)."""
    model_dir = Path(model_dir)

    def levels(name: str) -> int:
        path = model_dir / name / "config.json"
        if not path.is_file():
            return 1
        return len(json.loads(path.read_text()).get("block_out_channels", [0]))

    return 2 ** (levels("vae") - 1) * 2 ** (levels("unet") - 1)


def _curated_count(config: Config) -> tuple[int | None, str]:
    from tgap.select import SelectionError, load_curated_images

    try:
        images, _ = load_curated_images(config.select, config.data.resolution)
    except (SelectionError, OSError, ValueError) as exc:
        return None, str(exc)
    return len(images), ""


def check_rows(
    config: Config,
    rows: list[GridRow],
    counts: dict[str, dict[str, int]],
    model_info: dict[str, Any],
    size_factor: int,
) -> list[str]:
    """Every problem of every row, one line each (empty: the run can start).

    ``counts`` is ``{split: {label: images}}`` for the splits ``pool`` and ``train`` (ingest's
    summary); ``model_info`` the base model's ``tgap_model.json``.
    """
    problems: list[str] = []
    labels = config.data.labels
    pool, train = counts["pool"], counts["train"]
    n = config.generate.n_per_label

    # Once per run: the real-trained classifier of R→S (and supplementation's real part) takes
    # generate.n_per_label real-train images per label, as many as the synthetic set has.
    for label in labels:
        if train.get(label, 0) < n:
            problems.append(
                f"generate.n_per_label: {n} but real-train has {train.get(label, 0)} {label!r} "
                f"images; R→S trains on as many real images per label as are generated "
                f"(expected <= {min(train.get(x, 0) for x in labels)})"
            )
            break
    resolution = config.data.resolution
    model_res = int(model_info.get("resolution", 0))
    kind = model_info.get("kind", "base model")
    if resolution % size_factor:
        problems.append(
            f"data.resolution: {resolution} cannot be used with the {kind} base model "
            f"(expected a multiple of {size_factor})"
        )
    elif model_info.get("pixel_space") and resolution != model_res:
        problems.append(
            f"data.resolution: {resolution} but the pixel-space {kind} base model generates "
            f"{model_res} px (expected {model_res})"
        )

    curated: tuple[int | None, str] | None = None
    for row in rows:
        method, size = row.method, row.size
        where = f"grid row {row.label}"
        if method.selection == "curated":
            curated = curated or _curated_count(config)
            count, error = curated
            if count is None:
                problems.append(f"{where}: select.curated_source: {error}")
            elif count < size * len(labels):
                problems.append(
                    f"{where}: select.curated_source {config.select.curated_source} holds {count} "
                    f"images, fewer than size {size} x {len(labels)} labels even before "
                    f"select.curated_threshold={config.select.curated_threshold} drops any"
                )
            continue
        smallest = min(labels, key=lambda label: pool.get(label, 0))
        available = pool.get(smallest, 0)
        if size > available:
            problems.append(
                f"{where}: grid.sizes: {size} per label but the pool has only {available} {smallest!r} "
                f"images (expected size <= {available})"
            )
            continue
        if method.selection in ("spectral", "kmeans") and config.select.k > available:
            problems.append(
                f"{where}: select.k={config.select.k} clusters but the pool has only {available} "
                f"{smallest!r} images"
            )
        if method.generator == "retrieval" and available - size < 2:
            problems.append(
                f"{where}: retrieval stands in real pool images outside the tuning set, but only "
                f"{available - size} {smallest!r} images are left (expected size <= "
                f"{available - 2})"
            )
    return problems


def validate_run(
    config: Config,
    rows: list[GridRow],
    pool_dir: str | Path,
    train_dir: str | Path,
    base_model_dir: str | Path,
) -> dict[str, Any]:
    """Check every row against the ingested sets and the base model; raise with every problem.

    Returns what was checked (written by the ``validate-run`` task as its summary).
    """
    from tgap.imageset import ImageSet

    counts = {"pool": ImageSet(pool_dir).counts(), "train": ImageSet(train_dir).counts()}
    info_path = Path(base_model_dir) / MODEL_INFO
    model_info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    factor = model_size_factor(base_model_dir)
    problems = check_rows(config, rows, counts, model_info, factor)
    if problems:
        raise RunValidationError(problems)
    return {
        "rows": len(rows),
        "counts": counts,
        "base_model": {"kind": model_info.get("kind"), "resolution": model_info.get("resolution")},
        "size_factor": factor,
        "problems": [],
    }
