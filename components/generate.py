"""generate: the labelled synthetic set of one grid row (GPU node pool on a cluster)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def generate(
    model: Input[Model],
    retrieved: Input[Dataset],
    tuning: Input[Artifact],
    row: dict,
    data: dict,
    diffusion: dict,
    prompt: dict,
    generate: dict,
    synthetic: Output[Dataset],
) -> None:
    """Generate n images per label; for the `retrieval` method, the retrieved real images stand in.

    With tuning on, the tune-generation stage's best parameters replace generate's own, and its
    tuning.json + history plot travel beside the images into the FTER cell's assets.
    """
    import logging
    import shutil

    from tgap.config import DataConfig, DiffusionConfig, GenerateConfig, PromptConfig, section
    from tgap.diffusion.generate import generate_image_set
    from tgap.imageset import ImageSet, write_label_grids
    from tgap.provenance import timed_stage
    from tgap.tune import copy_tuning_record, tuned_generate

    generate_cfg = section(GenerateConfig, generate, "generate")
    if row["method"] == "retrieval":
        logging.getLogger("tgap").warning(
            "method retrieval: no images generated; the synthetic side is the retrieved real set"
        )
        shutil.copytree(retrieved.path, synthetic.path, dirs_exist_ok=True)
        write_label_grids(
            ImageSet(synthetic.path), synthetic.path, "grid", generate_cfg.grid_images
        )
        return
    generate_cfg = tuned_generate(generate_cfg, tuning.path)
    with timed_stage("generate", synthetic.path):
        generate_image_set(
            model.path,
            section(DataConfig, data, "data").labels,
            generate_cfg.n_per_label,
            prompt=section(PromptConfig, prompt, "prompt"),
            generate=generate_cfg,
            diffusion=section(DiffusionConfig, diffusion, "diffusion"),
            seed=int(row["seed"]),
            out_dir=synthetic.path,
        )
    copy_tuning_record(tuning.path, synthetic.path)
