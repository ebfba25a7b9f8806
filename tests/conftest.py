"""Fixtures shared by the test modules. Helpers that are not fixtures live in helper modules
(tiny.py, made_up.py, browser.py, servers.py), so no test module imports another."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from kfp import dsl

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def artifact() -> Callable[[type[dsl.Artifact], str | Path], dsl.Artifact]:
    """``artifact(dsl.Dataset, folder)``: a KFP artifact over ``folder``, the way the executor
    hands one to a component (for an output: its parent exists, the path itself not yet)."""

    def make(kind: type[dsl.Artifact], path: str | Path) -> dsl.Artifact:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return kind(name=path.name, uri=str(path))

    return make


@pytest.fixture(scope="session")
def pneumoniamnist() -> Path:
    """The real PneumoniaMNIST .npz of ../shared/data (the data every real-data test uses)."""
    path = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz"
    assert path.is_file(), f"{path}: the shared data folder is missing"
    return path


CLIP_TOKENIZER = SHARED_DATA / "clip-tokenizer"


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion 1.x folder, built once per test session.

    diffusers' own ``StableDiffusionPipeline`` with random weights (latent UNet on 4 channels,
    AutoencoderKL with SD's factor 8, CLIPTextModel, the real CLIP tokenizer, SD 1.x's PNDM
    scheduler config), written with ``save_pretrained``: 64 px images, 8x8 latents.
    """
    from tgap.diffusion.build import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd", CLIP_TOKENIZER, sample_size=64)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `slow` modules (whole kfp.local runs, minutes each) first, each module kept together.

    Under `make test` (pytest-xdist, `--dist loadfile --no-loadscope-reorder`: a worker takes a
    whole module, in this order) the workers start on the longest work and the many short tests
    fill in behind it, instead of a long run starting last on one worker while the others idle.
    The key is the module's own mark, so a module never splits (pytest would then build its
    module fixtures twice), and the sort is stable: the order inside a module is unchanged.
    """
    items.sort(key=lambda item: item.getparent(pytest.Module).get_closest_marker("slow") is None)


# optionalhook: without pytest-xdist (`pytest -p no:xdist`) the hook is simply unused.
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (make test): one worker per CPU this process may run on, whether the machine
    counts them as cores or hyperthreads (xdist's own default counts physical cores, which is 1
    on a 2-vCPU VM); the Makefile caps it at 4. PYTEST_XDIST_AUTO_NUM_WORKERS still wins."""
    return int(os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or len(os.sched_getaffinity(0)))
