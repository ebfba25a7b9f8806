"""Image embedders (pixel, CLIP, classifier features) and the pool embedding stage.

Every embedder maps grey uint8 images ``(n, r, r)`` to float32 vectors ``(n, d)`` in batches
without gradients, and depends only on the images it is given (never on the set they came
from), so the same embedder can embed the pool once and, later, the synthetic images that
DreamBooth's active selection and the distribution metrics compare against it.

- ``pixel``: bilinear (antialiased) downsample to ``select.pixel_side``², flatten, then
  per-image standardisation (subtract the image's mean, divide by its standard deviation).
  Per-image, not per-feature: it needs no fitted statistics, so a synthetic image gets the same
  vector whichever set it is embedded with, and cosine similarity of two vectors is the Pearson
  correlation of their downsampled pixels. It discards global brightness and contrast on
  purpose: clusters follow anatomy and texture rather than exposure.
- ``clip``: an open_clip image encoder (``select.clip_model``) with pretrained weights from
  ``select.clip_weights`` (a file path or a URI). No weights is an error, never random weights.
  Outputs are L2-normalised image embeddings.
- ``classifier``: penultimate-layer features of the reference classifier trained on the
  real-train split (``tgap.classify``): domain-specific, needs no download.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from tgap import storage
from tgap.artifacts import EMBEDDER_INFO, write_json
from tgap.config import SelectConfig
from tgap.imageset import ImageSet
from tgap.methods import EMBEDDERS

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings.npy"
EMBEDDER_JSON = EMBEDDER_INFO
BATCH_SIZE = 256


class EmbedderError(ValueError):
    """An embedder cannot be built or its embeddings are missing; the message says how to fix it."""


@dataclass
class Embedder:
    """A named image -> vector map. ``embed`` takes uint8 ``(n, r, r)`` and returns float32 ``(n, d)``."""

    name: str
    description: str
    fn: Callable[[np.ndarray], np.ndarray]
    batch_size: int = BATCH_SIZE

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed grey uint8 images ``(n, r, r)`` batch by batch; returns float32 ``(n, d)``."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise EmbedderError(
                f"{self.name} embedder: expected uint8 images of shape (n, r, r), "
                f"got {images.dtype} {images.shape}"
            )
        if len(images) == 0:
            raise EmbedderError(f"{self.name} embedder: no images to embed")
        parts = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                parts.append(self.fn(images[start : start + self.batch_size]))
        return np.concatenate(parts).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- pixel


def _pixel_fn(side: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).float().unsqueeze(1) / 255.0
        if x.shape[-1] != side or x.shape[-2] != side:
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
        x = x.flatten(1)
        # Per-image standardisation. The floor (a quarter of a grey level) keeps a flat image at
        # zero instead of blowing its float rounding noise up to unit variance.
        x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-3)
        return x.numpy()

    return fn


# --------------------------------------------------------------------------- clip


def _resolve_weights(uri: str) -> str:
    """A local file for ``uri``: a path as is, a URI (file://, s3://, gs://) through the cache."""
    if not storage.is_remote(uri):
        if not storage.local_path(uri).is_file():
            raise EmbedderError(f"select.clip_weights={uri!r}: no such file")
        return str(storage.local_path(uri))
    return str(storage.download_to_cache(uri))


def _clip_fn(select: SelectConfig, device: torch.device) -> tuple[Callable, str]:
    if not select.clip_weights:
        raise EmbedderError(
            "the clip embedder needs pretrained open_clip weights: set select.clip_weights to a "
            f"checkpoint file or URI for select.clip_model={select.clip_model!r} (e.g. "
            "--set select.clip_weights=s3://models/open_clip_ViT-B-32.safetensors), or use the "
            "pixel or classifier embedder, which need no download"
        )
    import open_clip

    weights = _resolve_weights(select.clip_weights)
    try:
        model = open_clip.create_model(
            select.clip_model, pretrained=weights, require_pretrained=True, device=device
        )
    except RuntimeError as exc:
        raise EmbedderError(
            f"select.clip_model={select.clip_model!r} with select.clip_weights="
            f"{select.clip_weights!r}: open_clip could not load them ({exc})"
        ) from None
    model.eval()
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg["size"] if isinstance(cfg["size"], int) else tuple(cfg["size"])
    size = (size, size) if isinstance(size, int) else size
    mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)

    def fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device).float().unsqueeze(1) / 255.0
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        x = (x.clamp(0, 1).expand(-1, 3, -1, -1) - mean) / std  # grey -> 3 equal channels
        return model.encode_image(x, normalize=True).float().cpu().numpy()

    description = (
        f"open_clip {select.clip_model} image encoder, pretrained weights "
        f"{select.clip_weights}, L2-normalised"
    )
    return fn, description


# --------------------------------------------------------------------------- classifier


def _classifier_fn(classifier_dir: Path | None) -> tuple[Callable, str]:
    if classifier_dir is None:
        raise EmbedderError(
            "the classifier embedder needs the reference classifier trained on real-train "
            "(classifier_dir is None)"
        )
    from tgap.classify import Classifier  # lazy: classify imports this module's users

    classifier = Classifier.load(Path(classifier_dir))

    def fn(batch: np.ndarray) -> np.ndarray:
        return np.asarray(classifier.features(batch), dtype=np.float32)

    description = (
        f"penultimate-layer features of the classifier trained on real-train ({classifier_dir}); "
        "a domain-specific stand-in for CLIP, not CLIP"
    )
    return fn, description


# --------------------------------------------------------------------------- public


def get_embedder(name: str, select: SelectConfig, classifier_dir: Path | None = None) -> Embedder:
    """Build the embedder ``name`` (pixel, clip or classifier) from the select config."""
    if name == "pixel":
        if select.pixel_side < 1:
            raise EmbedderError(f"select.pixel_side={select.pixel_side}: expected >= 1")
        side = select.pixel_side
        description = (
            f"raw pixels: bilinear downsample to {side}x{side}, flattened, standardised per image "
            "(zero mean, unit standard deviation)"
        )
        return Embedder("pixel", description, _pixel_fn(side))
    if name == "clip":
        from tgap.device import pick_device

        fn, description = _clip_fn(select, pick_device("auto"))
        return Embedder("clip", description, fn, batch_size=64)
    if name == "classifier":
        fn, description = _classifier_fn(classifier_dir)
        return Embedder("classifier", description, fn)
    raise EmbedderError(f"unknown embedder {name!r}; expected one of {', '.join(EMBEDDERS)}")


def embed_pool(
    pool: ImageSet, select: SelectConfig, classifier_dir: Path | None, out_dir: str | Path
) -> dict[str, Any]:
    """Embed every pool image once with each available embedder.

    Writes ``out_dir/<embedder>/embeddings.npy`` (float32, manifest order) and ``embedder.json``
    for pixel, for classifier when ``classifier_dir`` is given, and for clip only when
    ``select.clip_weights`` is set. Returns ``{embedder: embedder.json contents}``.
    """
    out_dir = Path(out_dir)
    if len(pool) == 0:
        raise EmbedderError(f"{pool.root}: the pool is empty, nothing to embed")
    names = ["pixel"]
    if classifier_dir is not None:
        names.append("classifier")
    if select.clip_weights:
        names.append("clip")
    summary: dict[str, Any] = {}
    for name in names:
        embedder = get_embedder(name, select, classifier_dir)
        parts = [
            embedder.embed(images)
            for images, _ in tqdm(
                pool.iter_batches(1024),
                total=-(-len(pool) // 1024),
                desc=f"embed {name}",
                disable=None,
            )
        ]
        vectors = np.concatenate(parts)
        info = {
            "name": embedder.name,
            "description": embedder.description,
            "count": int(vectors.shape[0]),
            "dim": int(vectors.shape[1]),
            "image_set": str(pool.root),
            "content_hash": pool.info.get("content_hash", ""),
        }
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crashed stage never leaves a truncated embeddings file.
        tmp = folder / f".{EMBEDDINGS}.partial-{os.getpid()}.npy"
        np.save(tmp, vectors.astype(np.float32, copy=False))
        os.replace(tmp, folder / EMBEDDINGS)
        write_json(folder / EMBEDDER_JSON, info)
        summary[name] = info
    log.info(
        "embedded %d pool images with %s",
        len(pool),
        ", ".join(f"{n} (d={s['dim']})" for n, s in summary.items()),
    )
    return summary


def load_embeddings(embeddings_dir: str | Path, name: str, pool: ImageSet) -> np.ndarray:
    """The pool's ``name`` embeddings from ``embed_pool``, checked against the pool."""
    if name not in EMBEDDERS:
        raise EmbedderError(f"unknown embedder {name!r}; expected one of {', '.join(EMBEDDERS)}")
    folder = Path(embeddings_dir) / name
    path = folder / EMBEDDINGS
    if not path.is_file():
        hint = {
            "clip": "embed_pool writes clip embeddings only when select.clip_weights is set",
            "classifier": "embed_pool writes classifier embeddings only when given the "
            "reference classifier",
            "pixel": "run embed_pool on this pool first",
        }[name]
        raise EmbedderError(f"no {name} embeddings at {path}: {hint}")
    info = json.loads((folder / EMBEDDER_JSON).read_text())
    vectors = np.load(path)
    if vectors.shape[0] != len(pool):
        raise EmbedderError(
            f"{path}: {vectors.shape[0]} embeddings for a pool of {len(pool)} images ({pool.root})"
        )
    expected = pool.info.get("content_hash", "")
    if expected and info.get("content_hash") and info["content_hash"] != expected:
        raise EmbedderError(
            f"{folder / EMBEDDER_JSON}: embeddings of another image set "
            f"(content_hash {info['content_hash'][:12]}, pool has {expected[:12]})"
        )
    return vectors
