"""generate: the labelled synthetic set of one work item (GPU node pool on a cluster)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def generate(
    model: Input[Model],
    item: dict,
    data: dict,
    diffusion: dict,
    prompt: dict,
    generate: dict,
    synthetic: Output[Dataset],
    tuning: Input[Artifact] = None,
) -> None:
    """Generate n images per label with `model`, seeded by `item.seed`.

    The item is a fine-tuning row, or a `no-finetune` per-seed item (the base model generates
    once per seed, shared by every tuning-set size). With tuning on (fine-tuning rows), the
    tune-generation stage's best parameters replace generate's own, and its tuning.json +
    history plot travel beside the images into the FTER cell's assets, as do the model's
    description, training log and stage time (`tgap.provenance.copy_generator_record`).
    """
    import json
    from pathlib import Path

    from tgap.config import DataConfig, DiffusionConfig, GenerateConfig, PromptConfig, section
    from tgap.diffusion.generate import generate_image_set
    from tgap.grid import work_item
    from tgap.provenance import copy_generator_record, timed_stage
    from tgap.tune import copy_tuning_record, tuned_generate

    work = work_item(item)
    generate_cfg = section(GenerateConfig, generate, "generate")
    if tuning is not None:
        generate_cfg = tuned_generate(generate_cfg, tuning.path)
    with timed_stage("generate", synthetic.path):
        generate_image_set(
            model.path,
            section(DataConfig, data, "data").labels,
            generate_cfg.n_per_label,
            prompt=section(PromptConfig, prompt, "prompt"),
            generate=generate_cfg,
            diffusion=section(DiffusionConfig, diffusion, "diffusion"),
            seed=work.seed,
            out_dir=synthetic.path,
        )
    # The model's description, training log and stage time travel beside the images into the
    # FTER cell, so compute-FTER never downloads the model.
    copy_generator_record(model.path, synthetic.path)
    if work.kind == "no-finetune":
        # What the report shows for a model that was not fine-tuned.
        log = {
            "method": work.method.name,
            "fine_tuned": False,
            "message": f"not fine-tuned: method {work.method.name} uses the base model",
            "base_model": model.path,
        }
        (Path(synthetic.path) / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    if tuning is not None:
        copy_tuning_record(tuning.path, synthetic.path)
