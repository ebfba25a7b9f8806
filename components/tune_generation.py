"""tune-generation: Bayesian optimisation of one fine-tuned model's sampling parameters.

Between fine-tune and generate (GPU node pool on a cluster). Off by default
(``generate.tune.trials: 0``): a spec compiled so has no tune-generation task, and generate
keeps its own parameters; expand-grid refuses a run whose trials disagree with the spec's.
"""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def tune_generation(
    model: Input[Model],
    real_val: Input[Dataset],
    row: dict,
    diffusion: dict,
    prompt: dict,
    generate: dict,
    classifier: dict,
    tuning: Output[Artifact],
) -> None:
    """Run the study, scored on real-val (ingest's validation split); real-test is not an input."""
    from tgap.config import (
        ClassifierConfig,
        DiffusionConfig,
        GenerateConfig,
        PromptConfig,
        section,
    )
    from tgap.grid import GridRow
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage
    from tgap.tune import tune_generation as run_tuning

    grid_row = GridRow.from_item(row)
    with timed_stage("tune-generation", tuning.path):
        run_tuning(
            model.path,
            ImageSet(real_val.path),
            method=grid_row.method.name,
            seed=grid_row.seed,
            prompt=section(PromptConfig, prompt, "prompt"),
            generate=section(GenerateConfig, generate, "generate"),
            diffusion=section(DiffusionConfig, diffusion, "diffusion"),
            classifier=section(ClassifierConfig, classifier, "classifier"),
            out_dir=tuning.path,
            size=grid_row.size,
        )
