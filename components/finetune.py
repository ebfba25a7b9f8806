"""fine-tune: DreamBooth on one tuning set (GPU node pool on a cluster)."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output


def finetune(
    base_model: Input[Model],
    tuning_set: Input[Dataset],
    reference_classifier: Input[Model],
    class_images: Input[Artifact],
    row: dict,
    select: dict,
    diffusion: dict,
    prompt: dict,
    finetune: dict,
    model: Output[Model],
    clip_fingerprint: str = "",
) -> None:
    """Fine-tune the base model on the tuning set; resumes from checkpoints when retried (from
    object storage under `finetune.checkpoint_uri` when set, so also on another node).

    Prior-preservation images come from the class-images stage (one folder per seed).
    `clip_fingerprint` is the CLIP weights' hash (active selection may embed with CLIP).
    """
    from pathlib import Path

    from tgap.config import DiffusionConfig, FinetuneConfig, PromptConfig, SelectConfig, section
    from tgap.diffusion.checkpoint_store import folder_sha256
    from tgap.diffusion.dreambooth import finetune as run_finetune
    from tgap.embed import get_embedder
    from tgap.grid import GridRow, seed_folder
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage

    select_cfg = section(SelectConfig, select, "select")
    finetune_cfg = section(FinetuneConfig, finetune, "finetune")
    grid_row = GridRow.from_item(row, select_cfg.default_embedder)
    method = grid_row.method
    embedder = None
    # Inputs the stored checkpoints' key hashes beside the row, settings and artifact contents.
    fingerprints = {"clip_weights": clip_fingerprint}
    if method.generator == "dreambooth-active":
        embedder = get_embedder(finetune_cfg.active.embedder, select_cfg, reference_classifier.path)
        if finetune_cfg.active.embedder == "classifier" and finetune_cfg.checkpoint_uri:
            fingerprints["reference_classifier"] = folder_sha256(Path(reference_classifier.path))
    with timed_stage("fine-tune", model.path):
        run_finetune(
            base_model.path,
            ImageSet(tuning_set.path),
            method,
            seed=grid_row.seed,
            finetune=finetune_cfg,
            prompt=section(PromptConfig, prompt, "prompt"),
            diffusion=section(DiffusionConfig, diffusion, "diffusion"),
            out_dir=model.path,
            embedder=embedder,
            class_images_dir=Path(class_images.path) / seed_folder(grid_row.seed),
            base_model_uri=base_model.uri,
            fingerprints=fingerprints,
        )
