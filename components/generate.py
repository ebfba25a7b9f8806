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
    """Generate n images per label; for `retrieval` the retrieved real images stand in, for
    `external:<name>` the external set (select wrote both into `retrieved`)."""
    import logging
    import shutil

    from tgap.config import DataConfig, DiffusionConfig, GenerateConfig, PromptConfig, section
    from tgap.diffusion.generate import generate_image_set
    from tgap.imageset import ImageSet, write_label_grids
    from tgap.methods import parse_method
    from tgap.provenance import timed_stage

    generate_cfg = section(GenerateConfig, generate, "generate")
    stand_in = {
        "retrieval": "the retrieved real set",
        "external": "the external set (select.external_sets), read by select",
    }.get(parse_method(row["method"]).generator)
    if stand_in:
        logging.getLogger("tgap").warning(
            "method %s: no images generated; the synthetic side is %s", row["method"], stand_in
        )
        shutil.copytree(retrieved.path, synthetic.path, dirs_exist_ok=True)
        write_label_grids(
            ImageSet(synthetic.path), synthetic.path, "grid", generate_cfg.grid_images
        )
        return
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
