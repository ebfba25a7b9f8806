"""generate: the labelled synthetic set of one grid row (GPU node pool on a cluster)."""

from kfp.dsl import Dataset, Input, Model, Output


def generate(
    model: Input[Model],
    retrieved: Input[Dataset],
    row: dict,
    data: dict,
    diffusion: dict,
    prompt: dict,
    generate: dict,
    synthetic: Output[Dataset],
) -> None:
    """Generate n images per label; for the `retrieval` method, the retrieved real images stand in."""
    import logging
    import shutil

    from tgap.config import DataConfig, DiffusionConfig, GenerateConfig, PromptConfig, section
    from tgap.diffusion.generate import generate_image_set
    from tgap.provenance import timed_stage

    if row["method"] == "retrieval":
        logging.getLogger("tgap").warning(
            "method retrieval: no images generated; the synthetic side is the retrieved real set"
        )
        shutil.copytree(retrieved.path, synthetic.path, dirs_exist_ok=True)
        return
    with timed_stage("generate", synthetic.path):
        generate_image_set(
            model.path,
            section(DataConfig, data, "data").labels,
            section(GenerateConfig, generate, "generate").n_per_label,
            prompt=section(PromptConfig, prompt, "prompt"),
            generate=section(GenerateConfig, generate, "generate"),
            diffusion=section(DiffusionConfig, diffusion, "diffusion"),
            seed=int(row["seed"]),
            out_dir=synthetic.path,
        )
