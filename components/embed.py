"""embed: embeddings of the pool for every available embedder, computed once per run."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def embed(
    pool: Input[Dataset],
    reference_classifier: Input[Model],
    select: dict,
    embeddings: Output[Artifact],
    clip_fingerprint: str = "",
) -> None:
    """Embed the pool with pixels, the reference classifier's features and (given weights) CLIP.
    `clip_fingerprint` is the CLIP weights' hash (a new cache key when they change)."""
    from tgap.config import SelectConfig, section
    from tgap.embed import embed_pool
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage

    with timed_stage("embed", embeddings.path):
        embed_pool(
            ImageSet(pool.path),
            section(SelectConfig, select, "select"),
            reference_classifier.path,
            embeddings.path,
        )
