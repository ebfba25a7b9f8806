"""ingest: real images from a URI -> pool, real-train, real-val and real-test image sets.

real-val is where choices are made (tune-generation); real-test is read only by the tasks that
report on it (tests/test_pipeline.py lists them from the compiled spec).

The real test set's sample grids (``real_grid_<label>.png``, shown beside the synthetic grids)
are drawn here, once per run, not in every grid cell.
"""

from kfp.dsl import Dataset, Markdown, Output


def ingest(
    data: dict,
    generate: dict,
    pool: Output[Dataset],
    real_train: Output[Dataset],
    real_val: Output[Dataset],
    real_test: Output[Dataset],
    summary: Output[Markdown],
    fingerprint: str = "",
) -> None:
    """Read the source in `data`, map labels, split by patient, write four image sets.

    `fingerprint` is the hash of the source's listing: a changed bucket is a new cache key."""
    from tgap.config import DataConfig, GenerateConfig, section
    from tgap.imageset import ImageSet, write_label_grids
    from tgap.ingest import ingest as run_ingest
    from tgap.ingest import summary_markdown
    from tgap.provenance import timed_stage

    with timed_stage("ingest", pool.path):
        result = run_ingest(
            section(DataConfig, data, "data"),
            pool.path,
            real_train.path,
            real_val.path,
            real_test.path,
        )
        write_label_grids(
            ImageSet(real_test.path),
            real_test.path,
            "real_grid",
            section(GenerateConfig, generate, "generate").grid_images,
        )
    result["source_fingerprint"] = fingerprint
    with open(summary.path, "w") as fh:
        fh.write(summary_markdown(result))
