"""The KFP components of tgap: one thin module per stage over the `tgap` package.

Components are lightweight Python components whose ``base_image`` is the project's own image
(``install_kfp_package=False``), so the same functions run in containers on a cluster and in
``kfp.local.SubprocessRunner(use_venv=False)`` on one machine. The images come from the run
config, so the decorator is applied here, at pipeline-build time, rather than at import.
"""

from __future__ import annotations

from types import SimpleNamespace

from kfp import dsl

from components.class_images import class_images
from components.compute_fter import compute_fter
from components.embed import embed
from components.evaluate_classifier import evaluate_classifier
from components.expand_grid import expand_grid, grid_items
from components.finetune import finetune
from components.fingerprint import fingerprint
from components.generate import generate
from components.ingest import ingest
from components.learning_curve import learning_curve
from components.prepare_base_model import prepare_base_model
from components.report import report
from components.select_tuning_set import select_tuning_set
from components.supplementation import supplementation
from components.train_classifier import train_classifier
from components.tune_generation import tune_generation
from components.validate_run import validate_run
from tgap import config

# Each stage's function is named after its stage (`fine-tune` -> `fine_tune`), but for these.
_NAMED_OTHERWISE = {"select": "select_tuning_set", "fine-tune": "finetune"}
_FUNCTIONS = {
    func.__name__: func
    for func in (
        class_images, compute_fter, embed, evaluate_classifier, expand_grid, finetune,
        fingerprint, generate, grid_items, ingest, learning_curve, prepare_base_model, report,
        select_tuning_set, supplementation, train_classifier, tune_generation, validate_run,
    )
}  # fmt: skip
# Stage name (the names are tgap.config.STAGES, what `cluster.gpu_stages` lists) -> function.
STAGES = {
    name: _FUNCTIONS[_NAMED_OTHERWISE.get(name, name.replace("-", "_"))] for name in config.STAGES
}
# Stages on the GPU image even when they ask for no GPU: preparing the base model loads it.
GPU_IMAGE = {"prepare-base-model"}


def build_components(cpu_image: str, gpu_image: str, gpu_stages=()) -> SimpleNamespace:
    """Wrap every stage function as a KFP component on its image: the GPU image for the
    stages in ``gpu_stages`` (and ``GPU_IMAGE``), the CPU image for the rest."""

    def wrap(func, image):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return SimpleNamespace(
        **{
            func.__name__: wrap(
                func, gpu_image if name in gpu_stages or name in GPU_IMAGE else cpu_image
            )
            for name, func in STAGES.items()
        }
    )
