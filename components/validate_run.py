"""validate-run: every grid row against the ingested sets and the base model, before the fan-out."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def validate_run(
    rows: list,
    pool: Input[Dataset],
    real_train: Input[Dataset],
    base_model: Input[Model],
    data: dict,
    select: dict,
    generate: dict,
    evaluation: dict,
    checked: Output[Artifact],
) -> None:
    """Fail with one line per problem (size vs pool, generated count vs real-train, resolution
    vs model, curated source, real learning-curve sizes vs real-train) so that no select,
    fine-tune or generate task starts."""
    import dataclasses
    import json
    import os

    from tgap.config import (
        Config,
        DataConfig,
        EvaluationConfig,
        GenerateConfig,
        SelectConfig,
        section,
    )
    from tgap.grid import parse_rows
    from tgap.provenance import timed_stage
    from tgap.validate import validate_run as run_validate

    config = dataclasses.replace(
        Config(),
        data=section(DataConfig, data, "data"),
        select=section(SelectConfig, select, "select"),
        generate=section(GenerateConfig, generate, "generate"),
        evaluation=section(EvaluationConfig, evaluation, "evaluation"),
    )
    with timed_stage("validate-run", checked.path):
        grid = parse_rows(rows, config.select.default_embedder)
        result = run_validate(config, grid, pool.path, real_train.path, base_model.path)
        os.makedirs(checked.path, exist_ok=True)
        with open(os.path.join(checked.path, "validation.json"), "w") as fh:
            json.dump(result, fh, indent=2)
    print(f"validate-run: {len(rows)} grid rows can run")
