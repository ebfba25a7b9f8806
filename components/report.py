"""report: every grid cell into report.html, summary.md, results.csv/json and flat run metrics."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def report(
    cells: Input[list[Artifact]],
    pool: Input[Dataset],
    embeddings: Input[Artifact],
    base_model: Input[Model],
    reference_classifier: Input[Model],
    run_name: str,
    data: dict,
    grid: list,
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
) -> None:
    """Build the report from the collected cells; `results` holds every file, the rest are views."""
    import shutil
    from pathlib import Path

    from tgap.config import Config, section
    from tgap.provenance import collect_provenance, read_stage_times
    from tgap.report import build_report

    sections = {
        "name": run_name,
        # The grid arrives as its flat rows; rebuild the section for the provenance table.
        "grid": {
            "methods": list(dict.fromkeys(r["method"] for r in grid)),
            "sizes": list(dict.fromkeys(int(r["size"]) for r in grid)),
            "seeds": list(dict.fromkeys(int(r["seed"]) for r in grid)),
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
    cell_dirs = sorted(Path(c.path) for c in cells)
    provenance = collect_provenance(
        config,
        grid,
        cell_dirs,
        base_model_dir=base_model.path,
        reference_classifier_dir=reference_classifier.path,
        embeddings_dir=embeddings.path,
    )
    # The stages that run once per run (the per-branch ones come from the cells).
    provenance["run_stage_seconds"] = read_stage_times(
        {
            "ingest": pool.path,
            "train-reference-classifier": reference_classifier.path,
            "embed": embeddings.path,
            "prepare-base-model": base_model.path,
        }
    )
    out = build_report(cell_dirs, config, provenance, results.path)
    shutil.copyfile(Path(results.path) / "report.html", html.path)
    shutil.copyfile(Path(results.path) / "summary.md", summary.path)
    for key, value in out["metrics"].items():
        metrics.log_metric(key, float(value))
