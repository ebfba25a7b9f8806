"""select: the tuning set of one grid row, and its retrieval stand-in."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def select_tuning_set(
    pool: Input[Dataset],
    embeddings: Input[Artifact],
    reference_classifier: Input[Model],
    row: dict,
    select: dict,
    generate: dict,
    tuning_set: Output[Dataset],
    retrieved: Output[Dataset],
) -> None:
    """Select `row.size` images per label from the pool with `row.method`, seeded by `row.seed`."""
    from tgap.config import GenerateConfig, SelectConfig, section
    from tgap.imageset import ImageSet
    from tgap.methods import parse_method
    from tgap.provenance import timed_stage
    from tgap.select import select_tuning_set as run_select

    select_cfg = section(SelectConfig, select, "select")
    with timed_stage("select", tuning_set.path):
        run_select(
            ImageSet(pool.path),
            embeddings.path,
            parse_method(row["method"], select_cfg.default_embedder),
            size=int(row["size"]),
            seed=int(row["seed"]),
            select=select_cfg,
            n_retrieve_per_label=section(GenerateConfig, generate, "generate").n_per_label,
            classifier_dir=reference_classifier.path,
            tuning_dir=tuning_set.path,
            retrieved_dir=retrieved.path,
        )
