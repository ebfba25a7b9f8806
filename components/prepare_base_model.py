"""prepare-base-model: the generator every fine-tune starts from (built, or fetched from a URI)."""

from kfp.dsl import Dataset, Input, Model, Output


def prepare_base_model(diffusion: dict, pool: Input[Dataset], base_model: Output[Model]) -> None:
    """Build the configured preset or fetch pretrained weights; the pool is its pretraining set."""
    from tgap.config import DiffusionConfig, section
    from tgap.diffusion.build import prepare_base_model as run_prepare
    from tgap.imageset import ImageSet

    run_prepare(
        section(DiffusionConfig, diffusion, "diffusion"), base_model.path, ImageSet(pool.path)
    )
