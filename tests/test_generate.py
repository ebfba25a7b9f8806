"""Generation: per-image seeds, batched classifier-free guidance, samplers, the image-set output."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import tiny_diffusion

from tgap.config import GenerateConfig, PromptConfig
from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.build import load_model
from tgap.diffusion.generate import (
    SCHEDULERS,
    encode_prompts,
    generate_image_set,
    prompt_for,
    sample,
)
from tgap.imageset import ImageSet
from tgap.seeding import derive_seed

LABELS = ["No Finding", "Unhealthy"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "base"
    prepare_base_model(tiny_diffusion(), path)
    return path


def test_prompts_use_the_label_words_and_identifier():
    assert prompt_for("No Finding", PromptConfig()) == "an image of Healthy chest X-ray"
    assert prompt_for("Unhealthy", PromptConfig()) == "an image of Unhealthy chest X-ray"
    assert prompt_for("Unhealthy", PromptConfig(identifier="sks")) == (
        "an image of sks Unhealthy chest X-ray"
    )


def test_image_set_has_per_image_seeds_grids_and_is_deterministic(base, tmp_path):
    gen = GenerateConfig(batch_size=3, steps=3, grid_images=2)
    stats = generate_image_set(
        base, LABELS, 3, PromptConfig(), gen, tiny_diffusion(), 7, tmp_path / "a"
    )
    out = ImageSet(tmp_path / "a")
    assert out.counts() == {"No Finding": 3, "Unhealthy": 3} and out.resolution == 16
    assert [r.source for r in out.records] == ["synthetic"] * 6
    assert [r.original_id for r in out.records] == [
        str(derive_seed(7, label, i)) for label in LABELS for i in range(3)
    ]
    assert stats["grids"] == {
        "No Finding": "grid_no-finding.png",
        "Unhealthy": "grid_unhealthy.png",
    }
    assert all((tmp_path / "a" / name).is_file() for name in stats["grids"].values())
    assert stats["images_per_s"] > 0

    # another batch size: same images (each image depends only on its own seed)
    generate_image_set(
        base,
        LABELS,
        3,
        PromptConfig(),
        GenerateConfig(batch_size=4, steps=3),
        tiny_diffusion(),
        7,
        tmp_path / "b",
    )
    a, b = out.load_all().astype(int), ImageSet(tmp_path / "b").load_all().astype(int)
    assert np.abs(a - b).max() <= 1
    # another seed: other images
    generate_image_set(base, LABELS, 3, PromptConfig(), gen, tiny_diffusion(), 8, tmp_path / "c")
    assert not np.array_equal(out.load_all(), ImageSet(tmp_path / "c").load_all())


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_image_i_is_reproducible_alone_with_every_sampler(base, scheduler):
    model = load_model(base)
    embeds = encode_prompts(model, ["an image of Healthy chest X-ray"] * 3, "cpu")
    seeds = [11, 12, 13]
    batch = sample(model, embeds, seeds, scheduler, steps=4, guidance_scale=2.0)
    alone = sample(model, embeds[1:2], seeds[1:2], scheduler, steps=4, guidance_scale=2.0)
    assert batch.shape == (3, 16, 16) and batch.dtype == np.uint8
    assert np.abs(batch[1].astype(int) - alone[0].astype(int)).max() <= 1
    assert not np.array_equal(batch[0], batch[1])


def test_guidance_runs_one_batched_forward_and_skips_it_at_scale_one(base):
    model = load_model(base)
    sizes: list[int] = []
    model.unet.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    embeds = encode_prompts(model, ["a", "b", "c"], "cpu")
    sample(model, embeds, [1, 2, 3], "ddim", steps=5, guidance_scale=3.0)
    assert sizes == [6] * 5  # unconditional + conditional halves in one forward per step
    sizes.clear()
    sample(model, embeds, [1, 2, 3], "ddim", steps=5, guidance_scale=1.0)
    assert sizes == [3] * 5
    # guidance changes the images
    a = sample(model, embeds, [1, 2, 3], "ddim", steps=5, guidance_scale=1.0)
    b = sample(model, embeds, [1, 2, 3], "ddim", steps=5, guidance_scale=5.0)
    assert not np.array_equal(a, b)


def test_unknown_scheduler_and_empty_request_are_clear_errors(base, tmp_path):
    with pytest.raises(ValueError, match="generate.scheduler 'heun'"):
        generate_image_set(
            base,
            LABELS,
            2,
            PromptConfig(),
            GenerateConfig(scheduler="heun"),
            tiny_diffusion(),
            0,
            tmp_path / "x",
        )
    with pytest.raises(ValueError, match="n_per_label"):
        generate_image_set(
            base, LABELS, 0, PromptConfig(), GenerateConfig(), tiny_diffusion(), 0, tmp_path / "y"
        )


def test_negative_prompt_is_the_unconditional_half_of_guidance(base, tmp_path):
    gen = GenerateConfig(steps=3, guidance_scale=3.0, negative_prompt="an image of chest X-ray")
    generate_image_set(base, LABELS, 2, PromptConfig(), gen, tiny_diffusion(), 0, tmp_path / "neg")
    model = load_model(base)
    seeds = [derive_seed(0, "No Finding", i) for i in range(2)]
    embeds = encode_prompts(model, [prompt_for("No Finding", PromptConfig())] * 2, "cpu")
    uncond = encode_prompts(model, ["an image of chest X-ray"], "cpu")
    expected = sample(model, embeds, seeds, "ddim", 3, 3.0, uncond)
    plain = sample(model, embeds, seeds, "ddim", 3, 3.0)  # "" as the negative prompt
    got = ImageSet(tmp_path / "neg").load_many([0, 1])
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert not np.array_equal(expected, plain)
