"""compute-FTER: one work item's cells: FTER, intervals, distribution and memorisation metrics.

A cheap CPU stage: it reads the evaluations and the supplementation curve, and trains nothing.
"""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def compute_fter(
    item: dict,
    s2r: Input[Artifact],
    r2s: Input[Artifact],
    r2r: Input[Artifact],
    supplementation: Input[Artifact],
    synthetic: Input[Dataset],
    real_test: Input[Dataset],
    tuning_set: Input[Dataset],
    reference_classifier: Input[Model],
    select: dict,
    evaluation: dict,
    cell: Output[Artifact],
    clip_fingerprint: str = "",
    real_curves: Input[Artifact] = None,
    synthetic_curve: Input[Artifact] = None,
) -> None:
    """Combine the two-way evaluation of a grid row into its results row (`cell/cell.json`).

    A per-seed item (`no-finetune`) gives one cell per size, in `size-<n>/` sub-folders.
    The generator's description, training log and stage time come from beside the synthetic
    set (generate copies them there), so no model is downloaded.
    `clip_fingerprint` is the CLIP weights' hash (the distribution embedder may be CLIP).
    No KFP Metrics output: the report's one Metrics artifact carries every cell's numbers under
    names the compare page can tell apart (`fter.<method>.<size>`); see evaluate_classifier.
    `real_curves` (every seed's real learning curve) and `synthetic_curve` (this item's) give the
    real-equivalent size and the saturation test.
    """
    import json
    import time
    from pathlib import Path

    from tgap.config import EvaluationConfig, SelectConfig, section
    from tgap.embed import get_embedder
    from tgap.evaluation import compute_cell, read_supplementation
    from tgap.grid import work_item
    from tgap.imageset import ImageSet
    from tgap.learning_curve import read_curve, seed_folder
    from tgap.provenance import (
        GENERATOR_STAGE_TIME,
        STAGE_SECONDS,
        STAGE_TIME,
        read_stage_times,
    )

    started = time.perf_counter()
    evaluation_cfg = section(EvaluationConfig, evaluation, "evaluation")
    embedder = get_embedder(
        evaluation_cfg.distribution_embedder,
        section(SelectConfig, select, "select"),
        reference_classifier.path,
    )
    work = work_item(item)
    stage_folders = {
        "generate": synthetic.path,
        "evaluate-S2R": s2r.path,
        "evaluate-R2S": r2s.path,
        "evaluate-R2R": r2r.path,
        "supplementation": supplementation.path,
        **({"synthetic-curve": synthetic_curve.path} if synthetic_curve is not None else {}),
    }
    if work.kind == "retrieval":  # the synthetic side is select's retrieved set
        del stage_folders["generate"]
    generator_time = Path(synthetic.path) / GENERATOR_STAGE_TIME
    curve = read_supplementation(supplementation.path)
    curves = None
    if real_curves is not None and synthetic_curve is not None:
        curves = (
            read_curve(seed_folder(real_curves.path, work.seed)),
            read_curve(synthetic_curve.path),
        )
    for (row, tuning_dir), (_, cell_dir) in zip(
        work.cell_folders(tuning_set.path), work.cell_folders(cell.path), strict=True
    ):
        extras = {
            p.name: p
            for folder in (Path(synthetic.path), tuning_dir)
            for p in sorted(folder.glob("*"))
            if p.suffix in (".json", ".png")
            and p.name not in ("dataset.json", STAGE_TIME, GENERATOR_STAGE_TIME)
        }
        # Real test images beside the synthetic grids (drawn once, by ingest).
        extras.update({p.name: p for p in sorted(Path(real_test.path).glob("real_grid_*.png"))})
        compute_cell(
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
        if work.kind == "finetune" and generator_time.is_file():  # the fine-tuned model's own time
            seconds["fine-tune"] = json.loads(generator_time.read_text())["seconds"]
        tuning = Path(synthetic.path) / "tuning.json"  # generate copies it there when it tuned
        if tuning.is_file():
            seconds["tune-generation"] = json.loads(tuning.read_text())["seconds"]
        seconds["compute-FTER"] = round(time.perf_counter() - started, 2)
        (cell_dir / "assets" / STAGE_SECONDS).write_text(json.dumps(seconds) + "\n")
