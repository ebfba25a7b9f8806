"""prepare-base-model: the generator every fine-tune starts from (built, or fetched from a URI)."""

from kfp.dsl import Dataset, Input, Model, Output


def prepare_base_model(
    diffusion: dict,
    prompt: dict,
    pool: Input[Dataset],
    base_model: Output[Model],
    fingerprint: str = "",
) -> None:
    """Build the configured preset or fetch pretrained weights; the pool is its pretraining set
    (tiny preset with `diffusion.pretrain_steps` > 0: class prompt only, labels unused).
    `fingerprint` is the hash of the base model's listing (a new cache key when it changes)."""
    from tgap.config import DiffusionConfig, PromptConfig, section
    from tgap.diffusion.base_model import prepare_base_model as run_prepare
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage

    with timed_stage("prepare-base-model", base_model.path):
        run_prepare(
            section(DiffusionConfig, diffusion, "diffusion"),
            base_model.path,
            pretrain_set=ImageSet(pool.path),
            prompt=section(PromptConfig, prompt, "prompt"),
        )
