"""compute-FTER: one grid cell's row: FTER, intervals, distribution and memorisation metrics."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def compute_fter(
    row: dict,
    s2r: Input[Artifact],
    r2s: Input[Artifact],
    r2r: Input[Artifact],
    synthetic: Input[Dataset],
    real_test: Input[Dataset],
    real_train: Input[Dataset],
    tuning_set: Input[Dataset],
    model: Input[Model],
    reference_classifier: Input[Model],
    select: dict,
    classifier: dict,
    generate: dict,
    evaluation: dict,
    cell: Output[Artifact],
    metrics: Output[Metrics],
) -> None:
    """Combine the two-way evaluation of one (method, size, seed) into its results row."""
    import json
    import math
    import time
    from pathlib import Path

    from tgap.config import (
        ClassifierConfig,
        EvaluationConfig,
        GenerateConfig,
        SelectConfig,
        section,
    )
    from tgap.embed import get_embedder
    from tgap.evaluation import compute_cell
    from tgap.imageset import ImageSet, write_label_grids
    from tgap.provenance import STAGE_SECONDS, STAGE_TIME, read_stage_times

    started = time.perf_counter()
    evaluation_cfg = section(EvaluationConfig, evaluation, "evaluation")
    generate_cfg = section(GenerateConfig, generate, "generate")
    embedder = get_embedder(
        evaluation_cfg.distribution_embedder,
        section(SelectConfig, select, "select"),
        reference_classifier.path,
    )
    extras = {
        p.name: p
        for folder in (Path(model.path), Path(synthetic.path), Path(tuning_set.path))
        for p in sorted(folder.glob("*"))
        if p.suffix in (".json", ".png") and p.name not in ("dataset.json", STAGE_TIME)
    }
    result = compute_cell(
        {"method": row["method"], "size": int(row["size"]), "seed": int(row["seed"])},
        s2r.path,
        r2s.path,
        r2r.path,
        ImageSet(synthetic.path),
        ImageSet(real_test.path),
        ImageSet(tuning_set.path),
        evaluation_cfg,
        embedder,
        extras,
        cell.path,
        real_train=ImageSet(real_train.path),
        classifier=section(ClassifierConfig, classifier, "classifier"),
        size_per_label=generate_cfg.n_per_label,
    )
    # Real test images beside the synthetic grids in the report.
    write_label_grids(
        ImageSet(real_test.path),
        Path(cell.path) / "assets",
        "real_grid",
        generate_cfg.grid_images,
    )
    # This branch's stage times, for the report's provenance.
    stage_seconds = read_stage_times(
        {
            "select": tuning_set.path,
            "fine-tune": model.path,
            "generate": synthetic.path,
            "evaluate-S2R": s2r.path,
            "evaluate-R2S": r2s.path,
            "evaluate-R2R": r2r.path,
        }
    )
    tuning = Path(synthetic.path) / "tuning.json"  # generate copies it there when it tuned
    if tuning.is_file():
        stage_seconds["tune-generation"] = json.loads(tuning.read_text())["seconds"]
    stage_seconds["compute-FTER"] = round(time.perf_counter() - started, 2)
    (Path(cell.path) / "assets" / STAGE_SECONDS).write_text(json.dumps(stage_seconds) + "\n")
    for key, value in result.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            metrics.log_metric(key, float(value))
