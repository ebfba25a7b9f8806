"""The KFP components of tgap: one thin module per stage over the `tgap` package.

Components are lightweight Python components whose ``base_image`` is the project's own image
(``install_kfp_package=False``), so the same functions run in containers on a cluster and in
``kfp.local.SubprocessRunner(use_venv=False)`` on one machine. The images come from the run
config, so the decorator is applied here, at pipeline-build time, rather than at import.
"""

from __future__ import annotations

from types import SimpleNamespace

from kfp import dsl

from components.compute_fter import compute_fter
from components.embed import embed
from components.evaluate_classifier import evaluate_classifier
from components.finetune import finetune
from components.generate import generate
from components.ingest import ingest
from components.prepare_base_model import prepare_base_model
from components.report import report
from components.select_tuning_set import select_tuning_set
from components.train_classifier import train_classifier
from components.tune_generation import tune_generation

CPU_STAGES = (
    ingest,
    train_classifier,
    evaluate_classifier,
    embed,
    select_tuning_set,
    compute_fter,
    report,
)
GPU_STAGES = (prepare_base_model, finetune, generate, tune_generation)


def build_components(cpu_image: str, gpu_image: str) -> SimpleNamespace:
    """Wrap every stage function as a KFP component on the right image."""

    def wrap(func, image):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    stages = {f.__name__: wrap(f, cpu_image) for f in CPU_STAGES}
    stages.update({f.__name__: wrap(f, gpu_image) for f in GPU_STAGES})
    return SimpleNamespace(**stages)
