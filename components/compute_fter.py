"""compute-FTER: one work item's cells: FTER, intervals, distribution and memorisation metrics.

A cheap CPU stage: it reads the evaluations and the supplementation curve, and trains nothing.
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def compute_fter(
    item: dict,
    s2r: Input[Artifact],
    r2s: Input[Artifact],
    r2r: Input[Artifact],
    supplementation: Input[Artifact],
    synthetic: Input[Dataset],
    real_test: Input[Dataset],
    tuning_set: Input[Dataset],
    model: Input[Model],
    reference_classifier: Input[Model],
    select: dict,
    evaluation: dict,
    cell: Output[Artifact],
    metrics: Output[Metrics],
    clip_fingerprint: str = "",
    real_curves: Input[Artifact] = None,
    synthetic_curve: Input[Artifact] = None,
) -> None:
    """Combine the two-way evaluation of a grid row into its results row (`cell/cell.json`).

    A per-seed item (`no-finetune`) gives one cell per size, in `size-<n>/` sub-folders.
    `model` is the generator (the base model for `no-finetune`; unused for `retrieval`).
    `clip_fingerprint` is the CLIP weights' hash (the distribution embedder may be CLIP).
    `real_curves` (every seed's real learning curve) and `synthetic_curve` (this item's) give the
    real-equivalent size and the saturation test.
    """
    import json
    import math
    import time
    from pathlib import Path

    from tgap.config import EvaluationConfig, SelectConfig, section
    from tgap.embed import get_embedder
    from tgap.evaluation import compute_cell, read_supplementation
    from tgap.grid import cell_folders, row_kind
    from tgap.imageset import ImageSet
    from tgap.learning_curve import read_curve, seed_folder
    from tgap.provenance import STAGE_SECONDS, STAGE_TIME, read_stage_times

    started = time.perf_counter()
    evaluation_cfg = section(EvaluationConfig, evaluation, "evaluation")
    embedder = get_embedder(
        evaluation_cfg.distribution_embedder,
        section(SelectConfig, select, "select"),
        reference_classifier.path,
    )
    kind = row_kind({"size": 0, **item})
    stage_folders = {
        "fine-tune": model.path,
        "generate": synthetic.path,
        "evaluate-S2R": s2r.path,
        "evaluate-R2S": r2s.path,
        "evaluate-R2R": r2r.path,
        "supplementation": supplementation.path,
        **({"synthetic-curve": synthetic_curve.path} if synthetic_curve is not None else {}),
    }
    if kind != "finetune":  # no fine-tune ran for this item; `model` is the base model
        del stage_folders["fine-tune"]
    if kind == "retrieval":  # the synthetic side is select's retrieved set
        del stage_folders["generate"]
    sources = [Path(synthetic.path)] + ([Path(model.path)] if kind != "retrieval" else [])
    curve = read_supplementation(supplementation.path)
    curves = None
    if real_curves is not None and synthetic_curve is not None:
        curves = (
            read_curve(seed_folder(real_curves.path, item["seed"])),
            read_curve(synthetic_curve.path),
        )
    cells = cell_folders(item, cell.path)
    for (row, tuning_dir), (_, cell_dir) in zip(
        cell_folders(item, tuning_set.path), cells, strict=True
    ):
        extras = {
            p.name: p
            for folder in (*sources, tuning_dir)
            for p in sorted(folder.glob("*"))
            if p.suffix in (".json", ".png") and p.name not in ("dataset.json", STAGE_TIME)
        }
        # Real test images beside the synthetic grids (drawn once, by ingest).
        extras.update({p.name: p for p in sorted(Path(real_test.path).glob("real_grid_*.png"))})
        result = compute_cell(
            row,
            s2r.path,
            r2s.path,
            r2r.path,
            ImageSet(synthetic.path),
            ImageSet(real_test.path),
            ImageSet(tuning_dir),
            evaluation_cfg,
            embedder,
            extras,
            cell_dir,
            supplementation=curve,
            curves=curves,
        )
        # This cell's stage times, for the report's provenance.
        seconds = read_stage_times({"select": tuning_set.path, **stage_folders})
        tuning = Path(synthetic.path) / "tuning.json"  # generate copies it there when it tuned
        if tuning.is_file():
            seconds["tune-generation"] = json.loads(tuning.read_text())["seconds"]
        seconds["compute-FTER"] = round(time.perf_counter() - started, 2)
        (cell_dir / "assets" / STAGE_SECONDS).write_text(json.dumps(seconds) + "\n")
        prefix = f"{row['size']}." if len(cells) > 1 else ""
        for key, value in result.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                if math.isfinite(value):
                    metrics.log_metric(prefix + key, float(value))
