"""Class-encoder conditioning: trained with the UNet, saved in the model folder, used by generate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import real_image_set, tiny_diffusion

from tgap.config import (
    ActiveConfig,
    ConfigError,
    FinetuneConfig,
    GenerateConfig,
    PromptConfig,
    load_config,
)
from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.build import load_model
from tgap.diffusion.class_encoder import NULL, ClassEncoder, ClassEncoderError
from tgap.diffusion.dreambooth import finetune
from tgap.diffusion.generate import encode_prompts, generate_image_set, prompt_for
from tgap.imageset import ImageSet
from tgap.methods import parse_method

LABELS = ["No Finding", "Unhealthy"]
DIFFUSION = tiny_diffusion(conditioning="class-encoder")
FINETUNE = FinetuneConfig(
    steps=6, batch_size=4, learning_rate=3e-3, lr_warmup_steps=0, checkpoint_every=3,
    with_prior_preservation=True, num_class_images=4, class_sampler_steps=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("class-encoder")
    prepare_base_model(tiny_diffusion(), root / "base")
    tuning = real_image_set(root / "tuning", 4)
    log = finetune(
        root / "base", tuning, parse_method("random"), 0, FINETUNE, PromptConfig(), DIFFUSION,
        root / "model",
    )  # fmt: skip
    return root, log


def test_the_embeddings_train_with_the_unet_and_the_text_encoder_stays(tuned):
    root, log = tuned
    assert log["conditioning"]["kind"] == "class-encoder"
    assert log["conditioning"]["keys"] == [*LABELS, NULL]
    base, model = load_model(root / "base"), load_model(root / "model")
    assert base.class_encoder is None and model.class_encoder is not None
    assert json.loads((root / "model" / "tgap_model.json").read_text())["conditioning"] == (
        "class-encoder"
    )
    # the shape of the cross-attention's input: (tokens, cross_attention_dim) per key
    tokens = base.tokenizer.model_max_length
    assert model.class_encoder.embeddings.shape == (3, tokens, DIFFUSION.cross_attention_dim)
    # initialised from the text encoder's states of the prompts, then moved by training
    init = ClassEncoder.from_text(
        base, {label: prompt_for(label, PromptConfig()) for label in LABELS},
        PromptConfig().class_prompt,
    ).embeddings  # fmt: skip
    assert not torch.allclose(model.class_encoder.embeddings, init)
    before = base.text_encoder.state_dict()
    after = model.text_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_round_trip_through_save_load_and_generate_per_label(tuned, tmp_path):
    root, _ = tuned
    model = load_model(root / "model")
    stored = load_file(root / "model" / "class_encoder" / "class_encoder.safetensors")
    assert torch.equal(stored["embeddings"], model.class_encoder.embeddings)
    # the label, its instance prompt and the label-free prompts are routed to the embeddings
    e = model.class_encoder.embeddings
    prompts = [prompt_for(label, PromptConfig()) for label in LABELS]
    assert torch.equal(encode_prompts(model, prompts, "cpu"), e[:2])
    assert torch.equal(encode_prompts(model, LABELS, "cpu"), e[:2])
    assert torch.equal(encode_prompts(model, ["", PromptConfig().class_prompt], "cpu"), e[[2, 2]])
    with pytest.raises(ClassEncoderError, match="no embedding for prompt 'a cat'"):
        encode_prompts(model, ["a cat"], "cpu")

    gen = GenerateConfig(batch_size=4, steps=3, guidance_scale=2.0)
    generate_image_set(root / "model", LABELS, 3, PromptConfig(), gen, DIFFUSION, 1, tmp_path / "a")
    out = ImageSet(tmp_path / "a")
    assert out.counts() == {"No Finding": 3, "Unhealthy": 3}
    images = out.load_all()
    # same seeds per position, different label embeddings: the labels' images differ
    assert not np.array_equal(images[:3], images[3:])
    # a copy of the folder generates the same images
    generate_image_set(root / "model", LABELS, 3, PromptConfig(), gen, DIFFUSION, 1, tmp_path / "b")
    assert np.array_equal(images, ImageSet(tmp_path / "b").load_all())


def test_active_selection_probes_through_the_class_encoder(tuned, tmp_path):
    root, _ = tuned

    class PixelEmbedder:
        def embed(self, images):
            return images.reshape(len(images), -1).astype(np.float32)

    active = ActiveConfig(threshold=1.0, n_generate=2, sampler_steps=2, embedder="pixel")
    log = finetune(
        root / "base", ImageSet(root / "tuning"), parse_method("active"), 0,
        FinetuneConfig(steps=2, batch_size=4, lr_warmup_steps=0, active=active), PromptConfig(),
        DIFFUSION, tmp_path / "m", embedder=PixelEmbedder(),
    )  # fmt: skip
    assert len(log["active_summary"]) and log["conditioning"]["kind"] == "class-encoder"
    assert load_model(tmp_path / "m").class_encoder is not None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["finetune.train_text_encoder=true"], "finetune.train_text_encoder"),
        (["generate.negative_prompt=blurry"], "generate.negative_prompt 'blurry'"),
        (["diffusion.conditioning=clip"], "diffusion.conditioning"),
    ],
)
def test_bad_class_encoder_config_fails_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(
            "pipelines/configs/demo.yaml", ["diffusion.conditioning=class-encoder", *overrides]
        )
