"""class-images: DreamBooth's prior-preservation images, once per seed for every fine-tune."""

from kfp.dsl import Artifact, Input, Model, Output


def class_images(
    base_model: Input[Model],
    rows: list,
    diffusion: dict,
    prompt: dict,
    finetune: dict,
    images: Output[Artifact],
) -> None:
    """Generate `finetune.num_class_images` class-prompt images with the base model for each
    seed of the fine-tuning rows (`images/seed-<s>/`); nothing without prior preservation.

    They depend only on (base model, class prompt, count, sampler steps, seed): every fine-tune
    of a seed reads the same images instead of generating its own.
    """
    from pathlib import Path

    from tgap.config import DiffusionConfig, FinetuneConfig, PromptConfig, section
    from tgap.device import pick_device
    from tgap.diffusion.build import load_model
    from tgap.diffusion.dreambooth import prior_class_images
    from tgap.grid import class_image_seeds, parse_rows, seed_folder
    from tgap.provenance import timed_stage

    finetune_cfg = section(FinetuneConfig, finetune, "finetune")
    prompt_cfg = section(PromptConfig, prompt, "prompt")
    with timed_stage("class-images", images.path):
        if not finetune_cfg.with_prior_preservation:
            return
        device = pick_device(section(DiffusionConfig, diffusion, "diffusion").device)
        model = load_model(base_model.path, device)
        for seed in class_image_seeds(parse_rows(rows)):
            out = Path(images.path) / seed_folder(seed)
            out.mkdir(parents=True, exist_ok=True)
            prior_class_images(
                model,
                out,
                prompt_cfg.class_prompt,
                finetune_cfg.num_class_images,
                finetune_cfg.class_sampler_steps,
                seed,
            )
