"""report: every grid cell into report.html, summary.md, results.csv/json and flat run metrics."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def report(
    pool: Input[Dataset],
    embeddings: Input[Artifact],
    base_model: Input[Model],
    reference_classifier: Input[Model],
    run_name: str,
    data: dict,
    select: dict,
    diffusion: dict,
    prompt: dict,
    finetune: dict,
    generate: dict,
    classifier: dict,
    evaluation: dict,
    results: Output[Artifact],
    html: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    fingerprints: str = "{}",
    cells_finetune: Input[list[Artifact]] = None,
    cells_no_finetune: Input[list[Artifact]] = None,
    cells_retrieval: Input[list[Artifact]] = None,
    rows_finetune: list = [],  # noqa: B006 (KFP reads the literal default)
    rows_no_finetune: list = [],  # noqa: B006
    rows_retrieval: list = [],  # noqa: B006
) -> None:
    """Build the report from the cells collected from each kind's loop (`tgap.grid`); `results`
    holds every file, the rest are views. `fingerprints` (JSON) goes into the provenance."""
    import json
    import shutil
    from pathlib import Path

    from tgap.config import Config, section
    from tgap.grid import work_item
    from tgap.imageset import ImageSet
    from tgap.provenance import collect_provenance, read_stage_times
    from tgap.report import build_report

    grid = [
        row
        for items in (rows_finetune, rows_no_finetune, rows_retrieval)
        for item in items
        for row in work_item(item).rows
    ]
    sections = {
        "name": run_name,
        # The grid arrives as its flat rows; rebuild the section for the provenance table.
        "grid": {
            "methods": list(dict.fromkeys(r.method.name for r in grid)),
            "sizes": list(dict.fromkeys(r.size for r in grid)),
            "seeds": list(dict.fromkeys(r.seed for r in grid)),
        },
        "data": data,
        "select": select,
        "diffusion": diffusion,
        "prompt": prompt,
        "finetune": finetune,
        "generate": generate,
        "classifier": classifier,
        "evaluation": evaluation,
    }
    config = section(Config, sections, "config")
    # A per-seed item's artifact holds one cell per size, in sub-folders.
    cell_dirs = sorted(
        p.parent
        for cells in (cells_finetune, cells_no_finetune, cells_retrieval)
        for c in cells or []
        for p in Path(c.path).glob("**/cell.json")
    )
    provenance = collect_provenance(
        config,
        grid,
        cell_dirs,
        base_model_dir=base_model.path,
        reference_classifier_dir=reference_classifier.path,
        embeddings_dir=embeddings.path,
    )
    provenance["fingerprints"] = json.loads(fingerprints)
    # The stages that run once per run (the per-branch ones come from the cells).
    provenance["run_stage_seconds"] = read_stage_times(
        {
            "ingest": pool.path,
            "train-reference-classifier": reference_classifier.path,
            "embed": embeddings.path,
            "prepare-base-model": base_model.path,
        }
    )
    # How ingest split the data (patients known or not, official splits, skipped files).
    provenance["ingest"] = ImageSet(pool.path).info.get("ingest", {})
    out = build_report(cell_dirs, config, provenance, results.path)
    shutil.copyfile(Path(results.path) / "report.html", html.path)
    shutil.copyfile(Path(results.path) / "summary.md", summary.path)
    for key, value in out["metrics"].items():
        metrics.log_metric(key, float(value))
