"""select: the tuning set of one work item, and (for `retrieval`) its real stand-in set."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def select_tuning_set(
    pool: Input[Dataset],
    embeddings: Input[Artifact],
    reference_classifier: Input[Model],
    item: dict,
    select: dict,
    generate: dict,
    tuning_set: Output[Dataset],
    retrieved: Output[Dataset],
    curated_fingerprint: str = "",
) -> None:
    """Select `size` images per label from the pool with the item's method, seeded by its seed.

    A per-seed item (`no-finetune`) gets one tuning set per size, in `size-<n>/` sub-folders.
    Only `retrieval` retrieves (generate.n_per_label real images per label, with sample grids).
    `curated_fingerprint` is the curated source's hash (the `curated` method reads it).
    """
    import tempfile

    from tgap.config import GenerateConfig, SelectConfig, section
    from tgap.grid import work_item
    from tgap.imageset import ImageSet, write_label_grids
    from tgap.provenance import timed_stage
    from tgap.select import select_tuning_set as run_select

    select_cfg = section(SelectConfig, select, "select")
    generate_cfg = section(GenerateConfig, generate, "generate")
    work = work_item(item, select_cfg.default_embedder)
    with timed_stage("select", tuning_set.path), tempfile.TemporaryDirectory() as unused:
        for i, (row, folder) in enumerate(work.cell_folders(tuning_set.path)):
            retrieves = row.kind == "retrieval"
            run_select(
                ImageSet(pool.path),
                embeddings.path,
                row.method,
                size=row.size,
                seed=row.seed,
                select=select_cfg,
                n_retrieve_per_label=generate_cfg.n_per_label if retrieves else 0,
                classifier_dir=reference_classifier.path,
                tuning_dir=folder,
                # Only retrieval uses its retrieved set; the others leave an empty one.
                retrieved_dir=retrieved.path if retrieves or i == 0 else f"{unused}/{i}",
            )
            if retrieves:
                write_label_grids(
                    ImageSet(retrieved.path), retrieved.path, "grid", generate_cfg.grid_images
                )
