"""`tgap plan`'s cost model: what one device does per second (``cluster.throughput``), with
the published or measured figures it defaults to."""

from __future__ import annotations

from dataclasses import dataclass

from tgap.config.constraints import param


@dataclass
class DeviceThroughput:
    """What one device does per second: `tgap plan`'s cost model (0 = not known).

    Figures are at the thesis's reference sizes (Stable Diffusion 1.5 at 512 px, DenseNet-121 and
    CLIP ViT-B/32 at 224 px); `tgap plan` scales them by pixel count for other resolutions.
    """

    # DreamBooth: images through one UNet forward + backward per second (instance + class).
    finetune_images_per_s: float = param(0.0, ge=0)
    # Sampling: UNet evaluations per second, one per image per sampler step (guidance: two).
    sample_unet_evals_per_s: float = param(0.0, ge=0)
    # Classifier training: image-epochs per second.
    classifier_train_images_per_s: float = param(0.0, ge=0)
    # Classifier / embedder inference: images per second.
    classifier_eval_images_per_s: float = param(0.0, ge=0)
    embed_images_per_s: float = param(0.0, ge=0)
    # Ingest: images read, decoded, resized and written per second.
    ingest_images_per_s: float = param(0.0, ge=0)
    # Where the figures come from (a published benchmark, or the benchmark that measured them).
    source: str = ""


def _default_throughput() -> dict[str, DeviceThroughput]:
    # Published figures, and how each number is derived from one, so a reader can check them.
    # Override any entry with what `benchmarks/*.py` measured on your own nodes.
    a100_note = (
        "sampling: fal-ai/stable-diffusion-benchmarks, SD 1.5 on an A100 80G, diffusers + torch "
        "2.1 SDPA, batch 1 with guidance: 31.19 it/s = 62 UNet evaluations/s. fine-tune: that "
        "figure / 3 (forward + backward = 3 forwards, Kaplan et al. 2020) = 20 images/s. "
        "classifier: NVIDIA DeepLearningExamples ResNet-50 v1.5 AMP training on one A100 "
        "(about 2,700 img/s), halved for DenseNet-121 (concatenations are memory-bound) = 1,350; "
        "inference 3x training. CLIP ViT-B/32: 4.4 GFLOPs per image against ResNet-50's 4.1 "
        "GFLOPs, taken at ResNet-50's training rate (a conservative stand-in for inference). ingest: docs/ingest.md (S3, measured)."
    )
    cpu_note = (
        "measured on this project's 2-core machine: DenseNet-121 at 224 px trains at 3.2 img/s "
        "per core (docs/evaluation.md, benchmarks/classify.py) = 7 img/s on 2 cores; inference "
        "3x that; CLIP ViT-B/32 at the same FLOPs rate; ingest 1,015 img/s from S3 "
        "(docs/ingest.md). Stable Diffusion on a CPU: 0.5 UNet evaluations/s at 512 px (the "
        "UNet's ~0.8 TFLOPs per evaluation at ~0.4 TFLOP/s), fine-tune a third of that."
    )
    return {
        "nvidia-a100": DeviceThroughput(20.0, 62.0, 1350.0, 4000.0, 2700.0, 1015.0, a100_note),
        "cpu-2-cores": DeviceThroughput(0.17, 0.5, 7.0, 21.0, 20.0, 1015.0, cpu_note),
    }
