"""Embedders: pixel standardisation, CLIP loading rules, classifier features, pool embedding."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tgap.config import SelectConfig
from tgap.embed import EmbedderError, embed_pool, get_embedder, load_embeddings
from tgap.imageset import ImageSet, ImageSetWriter

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pneumoniamnist"
LABELS = ["No Finding", "Unhealthy"]


def real_images(n: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The first ``n // 2`` images of each label of a PneumoniaMNIST split."""
    path = DATA / "pneumoniamnist.npz"
    if not path.is_file():
        pytest.fail(f"real test data missing: expected {path}")
    with np.load(path) as data:
        images, labels = data[f"{split}_images"], data[f"{split}_labels"][:, 0]
    idx = np.concatenate([np.flatnonzero(labels == c)[: n // 2] for c in (0, 1)])
    return images[idx], labels[idx]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> ImageSet:
    images, labels = real_images(60)
    root = tmp_path_factory.mktemp("embed") / "pool"
    with ImageSetWriter(root, LABELS, 28, source_uri=str(DATA)) as writer:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            writer.add(image, LABELS[label], patient_id=str(i), split="pool", original_id=str(i))
    return ImageSet(root)


def test_pixel_embedding_is_per_image_standardised_downsample():
    images, _ = real_images(8)
    vectors = get_embedder("pixel", SelectConfig(pixel_side=8), None).embed(images)
    assert vectors.shape == (8, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(vectors.std(1, ddof=1), 1, atol=1e-3)
    # Known answer: a 2x2 checkerboard of 2x2 blocks downsampled 4x4 -> 2x2 is exact.
    board = np.kron(np.array([[0, 200], [200, 0]], dtype=np.uint8), np.ones((2, 2), np.uint8))
    vec = get_embedder("pixel", SelectConfig(pixel_side=2), None).embed(board[None])[0]
    np.testing.assert_allclose(
        vec, [-np.sqrt(0.75), np.sqrt(0.75), np.sqrt(0.75), -np.sqrt(0.75)], atol=1e-4
    )


def test_pixel_embedding_does_not_depend_on_the_batch_or_exposure():
    images, _ = real_images(300)
    embedder = get_embedder("pixel", SelectConfig(pixel_side=16), None)
    together = embedder.embed(images)  # more than one internal batch
    alone = np.concatenate([embedder.embed(images[i : i + 1]) for i in (0, 150, 299)])
    np.testing.assert_allclose(together[[0, 150, 299]], alone, atol=1e-5)
    # Per-image standardisation removes brightness and contrast (up to uint8 rounding).
    darker = (images[:4].astype(np.float32) * 0.5 + 20).round().astype(np.uint8)
    np.testing.assert_allclose(embedder.embed(darker), together[:4], atol=0.05)
    flat = np.full((1, 28, 28), 77, np.uint8)
    np.testing.assert_allclose(embedder.embed(flat), 0, atol=1e-4)


def test_unknown_embedder_and_bad_input_are_errors():
    with pytest.raises(EmbedderError, match="unknown embedder 'dino'"):
        get_embedder("dino", SelectConfig(), None)
    embedder = get_embedder("pixel", SelectConfig(), None)
    with pytest.raises(EmbedderError, match="uint8"):
        embedder.embed(np.zeros((2, 28, 28), np.float32))


def test_clip_without_weights_says_how_to_provide_them():
    with pytest.raises(EmbedderError, match=r"select\.clip_weights"):
        get_embedder("clip", SelectConfig(clip_weights=""), None)
    with pytest.raises(EmbedderError, match="no such file"):
        get_embedder("clip", SelectConfig(clip_weights="/nonexistent/clip.safetensors"), None)


def test_classifier_embedder_needs_the_reference_classifier():
    with pytest.raises(EmbedderError, match="classifier_dir"):
        get_embedder("classifier", SelectConfig(), None)


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def test_clip_embedder_loads_the_given_weights(tmp_path):
    """A tiny open_clip architecture with two different weight files: the loaded weights are used."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    (tmp_path / "tgap-tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / "tgap-tiny-clip.json")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = open_clip.create_model("tgap-tiny-clip")
        paths.append(tmp_path / f"w{seed}.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, paths[-1])
    images, _ = real_images(10)
    out = []
    for path in paths:
        select = SelectConfig(clip_model="tgap-tiny-clip", clip_weights=str(path))
        embedder = get_embedder("clip", select, None)
        assert embedder.name == "clip" and "open_clip tgap-tiny-clip" in embedder.description
        out.append(embedder.embed(images))
    assert out[0].shape == (10, 16) and out[0].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out[0], axis=1), 1, atol=1e-5)
    assert not np.allclose(out[0], out[1])
    again = get_embedder(
        "clip", SelectConfig(clip_model="tgap-tiny-clip", clip_weights=str(paths[0])), None
    )
    np.testing.assert_allclose(again.embed(images), out[0], atol=1e-6)


def test_embed_pool_writes_pixel_embeddings_in_manifest_order(pool, tmp_path):
    select = SelectConfig(pixel_side=8)
    summary = embed_pool(pool, select, None, tmp_path)
    assert set(summary) == {"pixel"}  # no classifier given, no clip weights set
    assert not (tmp_path / "clip").exists() and not (tmp_path / "classifier").exists()
    vectors = np.load(tmp_path / "pixel" / "embeddings.npy")
    assert vectors.shape == (len(pool), 64) and vectors.dtype == np.float32
    expected = get_embedder("pixel", select, None).embed(pool.load_many([0, 17, len(pool) - 1]))
    np.testing.assert_allclose(vectors[[0, 17, len(pool) - 1]], expected, atol=1e-6)
    info = json.loads((tmp_path / "pixel" / "embedder.json").read_text())
    assert info["count"] == len(pool) and info["content_hash"] == pool.info["content_hash"]
    np.testing.assert_array_equal(load_embeddings(tmp_path, "pixel", pool), vectors)
    with pytest.raises(EmbedderError, match=r"no clip embeddings.*select\.clip_weights"):
        load_embeddings(tmp_path, "clip", pool)


def test_embeddings_of_another_pool_are_refused(pool, tmp_path):
    embed_pool(pool, SelectConfig(pixel_side=8), None, tmp_path / "emb")
    images, labels = real_images(60, split="val")
    with ImageSetWriter(tmp_path / "other", LABELS, 28) as writer:
        for image, label in zip(images, labels, strict=True):
            writer.add(image, LABELS[label])
    with pytest.raises(EmbedderError, match="another image set"):
        load_embeddings(tmp_path / "emb", "pixel", ImageSet(tmp_path / "other"))


@pytest.mark.skipif(
    importlib.util.find_spec("tgap.classify") is None, reason="tgap.classify not written yet"
)
def test_classifier_embedder_gives_the_classifiers_features(pool, tmp_path):
    from tgap.classify import Classifier, train_classifier
    from tgap.config import ClassifierConfig

    config = ClassifierConfig(resolution=28, epochs=1, batch_size=32, augment=False)
    train_classifier(pool, config, 0, None, tmp_path / "clf")
    embedder = get_embedder("classifier", SelectConfig(), tmp_path / "clf")
    assert "classifier trained on real-train" in embedder.description
    assert "not CLIP" in embedder.description
    images = pool.load_many(range(10))
    vectors = embedder.embed(images)
    expected = np.asarray(Classifier.load(tmp_path / "clf").features(images))
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-5)
    summary = embed_pool(pool, SelectConfig(), tmp_path / "clf", tmp_path / "emb")
    assert set(summary) == {"pixel", "classifier"}
    assert np.load(tmp_path / "emb" / "classifier" / "embeddings.npy").shape[0] == len(pool)
