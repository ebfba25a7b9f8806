"""Model folders: build the tiny presets, fetch and validate a Stable Diffusion folder, and read
and write the model artifacts every diffusion stage passes on.

A **base model** folder is a diffusers ``save_pretrained`` layout plus ``tgap_model.json``::

    unet/  text_encoder/  tokenizer/  scheduler/  [vae/]   model_index.json   tgap_model.json

``vae/`` is absent for the pixel-space preset ``tiny-pixel``: a randomly initialised, frozen VAE
cannot decode anything, so the tiny preset denoises 1-channel pixels directly; its
``model_index.json`` names ``TgapPixelPipeline`` (``tgap.diffusion.pixel_pipeline``), a diffusers
pipeline class of its own. A Stable Diffusion base folder loads in
``StableDiffusionPipeline.from_pretrained`` as it is. ``tgap_model.json`` says plainly where the
weights came from (``pretrained``) and holds the folder's ``content_hash``.

A **fine-tuned model** folder stores only what training changed and references the rest
(``tgap_model.json["base_model"]``: the base's URI, local path and content hash):

- LoRA: ``pytorch_lora_weights.safetensors`` (diffusers/peft format, ``load_lora_weights``);
- full fine-tune: ``unet/`` (and ``text_encoder/`` when trained), in the storage dtype of the
  training precision (fp16/bf16 on a GPU, fp32 on the CPU);
- no fine-tune: the reference alone.

``load_model`` loads the base (checking its hash), then the stored components or the adapter;
``diffusers_pipeline`` does the same through diffusers' own loaders.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tgap.config import DiffusionConfig

log = logging.getLogger(__name__)

MODEL_INFO = "tgap_model.json"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
# component -> a file that must exist inside it (the one from_pretrained reads first)
REQUIRED = {
    "unet": "config.json",
    "text_encoder": "config.json",
    "tokenizer": "vocab.json",
    "scheduler": "scheduler_config.json",
    "vae": "config.json",
}
# The SD 1.x scheduler (runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json).
SD1_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
)


class ModelError(ValueError):
    """A base model or model folder is missing, incomplete or unusable; the message says why."""


@dataclass
class DiffusionModel:
    """The loaded components of a model folder. ``vae`` is None for pixel-space models."""

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    vae: Any | None
    info: dict[str, Any]
    # A learned embedding per label (tgap.diffusion.class_encoder) replacing the text encoder.
    class_encoder: Any | None = None

    def tokenize(self, prompts: list[str], device) -> torch.Tensor:
        """Token ids (n, tokens) of ``prompts``, padded to the model's length (the one
        tokenizer call: the text encoder and the class encoder both start from it)."""
        return self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)

    @property
    def resolution(self) -> int:
        """Image side the model generates (pixels)."""
        return int(self.info["resolution"])

    @property
    def vae_scale(self) -> int:
        """Pixels per latent (1 in pixel space)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae else 1

    @property
    def size_factor(self) -> int:
        """Image sides must be multiples of this (VAE scale x UNet downsampling)."""
        return self.vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)


# --------------------------------------------------------------------------- the tiny presets


def build_tiny_pixel(diffusion: DiffusionConfig):
    """A Stable-Diffusion-shaped pixel-space model with random weights: (unet, text_encoder, tokenizer, scheduler).

    UNet2DConditionModel on 1-channel images, cross-attention only in the lowest-resolution block
    and the mid block (8x8 at 32 px; attention at 16x16 as well made a step 3.5x slower here),
    a small CLIPTextModel and the real CLIP tokenizer.
    """
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    channels = list(diffusion.block_out_channels)
    factor = 2 ** (len(channels) - 1)
    if diffusion.sample_size % factor:
        raise ModelError(
            f"diffusion.sample_size {diffusion.sample_size} is not a multiple of {factor} "
            f"(the UNet halves the image {len(channels) - 1} times for block_out_channels {channels})"
        )
    if not diffusion.tokenizer:
        raise ModelError(
            "diffusion.tokenizer: not set (the tiny-pixel model needs a CLIP tokenizer folder "
            "with vocab.json and merges.txt)"
        )
    tokenizer_dir = Path(diffusion.tokenizer)
    if not (tokenizer_dir / "vocab.json").is_file():
        raise ModelError(
            f"diffusion.tokenizer {diffusion.tokenizer}: no CLIP tokenizer there (vocab.json missing)"
        )
    torch.manual_seed(diffusion.seed)
    n = len(channels)
    unet = UNet2DConditionModel(
        sample_size=diffusion.sample_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=tuple(channels),
        layers_per_block=diffusion.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        cross_attention_dim=diffusion.cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=min(8, channels[0]),
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=diffusion.text_hidden_size,
            intermediate_size=2 * diffusion.text_hidden_size,
            num_hidden_layers=diffusion.text_layers,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=diffusion.cross_attention_dim,
        )
    )
    if diffusion.text_hidden_size != diffusion.cross_attention_dim:
        raise ModelError(
            f"diffusion.text_hidden_size {diffusion.text_hidden_size} must equal "
            f"diffusion.cross_attention_dim {diffusion.cross_attention_dim} (the UNet attends to "
            "the text encoder's hidden states)"
        )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule=diffusion.beta_schedule,
        prediction_type=diffusion.prediction_type,
        clip_sample=True,
    )
    return unet, text_encoder, tokenizer, scheduler


def build_tiny_sd(
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    sample_size: int = 64,
    seed: int = 0,
    unet_channels: tuple[int, ...] = (32, 64),
) -> Path:
    """Save a Stable Diffusion 1.x-shaped pipeline with random weights to ``out_dir``.

    diffusers' own ``StableDiffusionPipeline``: a latent UNet on 4 channels, an ``AutoencoderKL``
    with the SD factor of 8 (``sample_size`` px images -> ``sample_size / 8`` latents), a small
    ``CLIPTextModel``, the real CLIP tokenizer and SD 1.x's PNDM scheduler config. About 1.5 M
    parameters besides the text encoder's token embedding: a fine-tune step takes well under a
    second on one core. The test suite's fixture and the benchmarks build it.
    """
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=unet_channels,
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * (len(unet_channels) - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (len(unet_channels) - 1),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),  # 4 levels: 3 halvings, SD's factor 8
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size,
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=32,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SD1_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir)
    return Path(out_dir)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- folders


def content_hash(model_dir: str | Path) -> str:
    """sha256 over every file of the component folders (relative path and bytes), in order.

    This is what a fine-tuned artifact pins its base model by; metadata beside the components
    (``tgap_model.json``, stage timings) is not part of it.
    """
    root = Path(model_dir)
    digest = hashlib.sha256()
    for name in sorted(REQUIRED):
        if not (root / name).is_dir():
            continue
        for path in sorted(p for p in (root / name).rglob("*") if p.is_file()):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot be read ({exc})") from None


def check_components(path: str | Path) -> None:
    """Raise ModelError when the components of a model folder do not fit together.

    Read from the config files alone (before any weights are loaded): VAE latent channels vs
    UNet in/out channels, text-encoder width vs UNet cross-attention width, and tokenizer
    vocabulary vs text-encoder embedding table.
    """
    path = Path(path)
    unet = _read_json(path / "unet" / "config.json")
    text = _read_json(path / "text_encoder" / "config.json")
    if (path / "vae" / "config.json").is_file():
        vae = _read_json(path / "vae" / "config.json")
        latent = vae.get("latent_channels", 4)
        for key in ("in_channels", "out_channels"):
            if unet.get(key, 4) != latent:
                raise ModelError(
                    f"base model {path}: vae/config.json has latent_channels={latent} but "
                    f"unet/config.json has {key}={unet.get(key, 4)} (the UNet denoises the VAE's "
                    "latents: they must be equal)"
                )
    cross = unet.get("cross_attention_dim")
    hidden = text.get("hidden_size", text.get("text_config", {}).get("hidden_size"))
    if cross is not None and hidden is not None and cross != hidden:
        raise ModelError(
            f"base model {path}: unet/config.json has cross_attention_dim={cross} but "
            f"text_encoder/config.json has hidden_size={hidden} (the UNet attends to the text "
            "encoder's hidden states: they must be equal)"
        )
    tokens, vocab_name = _tokenizer_size(path / "tokenizer")
    size = text.get("vocab_size")
    if tokens is not None and size is not None and tokens > size:
        raise ModelError(
            f"base model {path}: tokenizer/{vocab_name} has {tokens} tokens but "
            f"text_encoder/config.json has vocab_size={size} (token ids up to {tokens - 1} "
            "would index past the text encoder's embedding table)"
        )


def _tokenizer_size(folder: Path) -> tuple[int | None, str]:
    """(number of token ids, the file it was read from): 1 + the largest id it can emit."""
    if (folder / "tokenizer.json").is_file():  # the fast tokenizer's one file
        spec = _read_json(folder / "tokenizer.json")
        ids = list(spec.get("model", {}).get("vocab", {}).values())
        ids += [t["id"] for t in spec.get("added_tokens", [])]
        return (max(ids) + 1 if ids else None), "tokenizer.json"
    if (folder / "vocab.json").is_file():
        ids = list(_read_json(folder / "vocab.json").values())
        if (folder / "added_tokens.json").is_file():
            ids += list(_read_json(folder / "added_tokens.json").values())
        return (max(ids) + 1 if ids else None), "vocab.json"
    return None, ""


def validate_model_dir(path: str | Path, pixel_space: bool | None = None) -> None:
    """Raise ModelError naming the first missing component of a diffusers model folder, or the
    first pair of components that do not fit together (``check_components``)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"base model {path}: not a folder")
    if pixel_space is None:
        info_file = path / MODEL_INFO
        pixel_space = info_file.is_file() and json.loads(info_file.read_text()).get("pixel_space")
    for name, marker in REQUIRED.items():
        if name == "vae" and pixel_space:
            continue
        if not (path / name / marker).is_file():
            alt = name == "tokenizer" and (path / name / "tokenizer.json").is_file()
            if not alt:
                raise ModelError(
                    f"base model {path}: component {name!r} is missing "
                    f"(expected {name}/{marker}; a diffusers Stable Diffusion folder has "
                    f"{', '.join(REQUIRED)})"
                )
    check_components(path)


def scheduler_from_config(config: dict[str, Any]):
    """The scheduler a config names (``_class_name``), so a model keeps its scheduler class."""
    import diffusers

    name = config.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ModelError(f"scheduler class {name!r} is not a diffusers scheduler")
    return cls.from_config(config)


def model_index(scheduler_class: str, pixel_space: bool) -> dict[str, Any]:
    """``model_index.json`` naming a pipeline class diffusers can load (``from_pretrained``)."""
    if pixel_space:
        return {
            "_class_name": "TgapPixelPipeline",  # tgap.diffusion.pixel_pipeline
            "unet": ["diffusers", "UNet2DConditionModel"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", scheduler_class],
        }
    return {
        "_class_name": "StableDiffusionPipeline",
        "vae": ["diffusers", "AutoencoderKL"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", scheduler_class],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
    }


def save_model(
    out_dir: str | Path,
    unet,
    text_encoder,
    tokenizer,
    scheduler_config: dict[str, Any],
    info: dict[str, Any],
    vae=None,
) -> None:
    """Write a base model folder; ``tgap_model.json`` goes last so its presence means complete.

    The scheduler keeps the class and config it came with; ``info`` gains the folder's
    ``content_hash``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_INFO).unlink(missing_ok=True)
    unet.save_pretrained(out_dir / "unet")
    text_encoder.save_pretrained(out_dir / "text_encoder")
    tokenizer.save_pretrained(out_dir / "tokenizer")
    scheduler = scheduler_from_config(scheduler_config)
    scheduler.save_pretrained(out_dir / "scheduler")
    if vae is not None:
        vae.save_pretrained(out_dir / "vae")
    index = model_index(type(scheduler).__name__, pixel_space=vae is None)
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    info["content_hash"] = content_hash(out_dir)
    (out_dir / MODEL_INFO).write_text(json.dumps(info, indent=2) + "\n")


def base_reference(base_dir: str | Path, uri: str = "") -> dict[str, str]:
    """What a fine-tuned artifact records of its base: URI, local path, content hash."""
    base_dir = Path(base_dir)
    info = _read_json(base_dir / MODEL_INFO)
    return {
        "uri": uri or str(base_dir),
        "path": str(base_dir.resolve()),
        "content_hash": info.get("content_hash") or content_hash(base_dir),
    }


def resolve_base(model_dir: str | Path, reference: dict[str, str]) -> Path:
    """The local folder of the base model ``reference`` names, its content hash checked.

    The recorded local path is used when it holds a model (kfp.local, or a task that mounts
    it); otherwise the URI is fetched (``s3://``, ``gs://``).
    """
    where = f"model {model_dir} ({MODEL_INFO})"
    path = Path(reference.get("path", ""))
    if not (path / MODEL_INFO).is_file():
        uri = reference.get("uri", "")
        try:
            path = fetch_model_dir(uri) if uri else path
        except ModelError as exc:
            raise ModelError(
                f"{where} references base model {uri} (local path {reference.get('path')}), "
                f"which is missing: {exc}"
            ) from None
    if not (path / MODEL_INFO).is_file():
        raise ModelError(
            f"{where} references base model {reference.get('uri')} "
            f"(local path {reference.get('path')}), which is missing"
        )
    actual = content_hash(path)
    if actual != reference.get("content_hash"):
        raise ModelError(
            f"{where} was trained on base model {reference.get('uri')} with content hash "
            f"{reference.get('content_hash')}, but the base model at {path} has content hash "
            f"{actual}: it is another model (or was changed since); use the base it was trained on"
        )
    return path


def load_model(
    model_dir: str | Path, device: torch.device | str = "cpu", info: dict[str, Any] | None = None
) -> DiffusionModel:
    """Load a base model folder, or a fine-tuned artifact on top of the base it references.

    ``info`` overrides the folder's tgap_model.json (used while preparing a base folder).
    Components are loaded in fp32 whatever their storage dtype; LoRA adapters are fused into
    the UNet, so the result is a plain diffusers UNet either way.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    model_dir = Path(model_dir)
    info_file = model_dir / MODEL_INFO
    if info is None:
        if not info_file.is_file():
            raise ModelError(f"model {model_dir}: {MODEL_INFO} is missing (not a complete model)")
        info = json.loads(info_file.read_text())
    reference = info.get("base_model")
    if isinstance(reference, dict):
        base = load_model(resolve_base(model_dir, reference), device)
        trained = info.get("trained", [])
        if "unet" in trained:
            base.unet = _from_pretrained(UNet2DConditionModel, model_dir / "unet", device)
        if "text_encoder" in trained:
            base.text_encoder = _from_pretrained(CLIPTextModel, model_dir / "text_encoder", device)
        if "unet_lora" in trained:
            base.unet.load_lora_adapter(
                str(model_dir), weight_name=LORA_WEIGHTS, prefix="unet", adapter_name="tgap"
            )
            base.unet.fuse_lora()
            base.unet.unload_lora()
        for module in (base.unet, base.text_encoder):
            module.eval().requires_grad_(False)
        base.info = info
        from tgap.diffusion.class_encoder import load_class_encoder

        # A class-encoder fine-tune stores its per-label embeddings beside the trained parts.
        base.class_encoder = load_class_encoder(model_dir, device)
        return base
    validate_model_dir(model_dir, pixel_space=bool(info.get("pixel_space")))
    unet = _from_pretrained(UNet2DConditionModel, model_dir / "unet", device)
    text_encoder = _from_pretrained(CLIPTextModel, model_dir / "text_encoder", device)
    tokenizer = CLIPTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    scheduler_config = _read_json(model_dir / "scheduler" / "scheduler_config.json")
    vae = None
    if not info.get("pixel_space"):
        vae = _from_pretrained(AutoencoderKL, model_dir / "vae", device)
    for module in (unet, text_encoder, vae):
        if module is not None:
            module.eval().requires_grad_(False)
    from tgap.diffusion.class_encoder import load_class_encoder

    model = DiffusionModel(unet, text_encoder, tokenizer, scheduler_config, vae, info)
    model.class_encoder = load_class_encoder(model_dir, device)
    return model


def _from_pretrained(cls, path: Path, device):
    return cls.from_pretrained(path, dtype=torch.float32).to(device)


def diffusers_pipeline(model_dir: str | Path, torch_dtype: torch.dtype = torch.float32):
    """Any tgap model folder as a diffusers pipeline, through diffusers' own loaders.

    Latent models give a ``StableDiffusionPipeline`` (pixel models a ``TgapPixelPipeline``):
    ``from_pretrained(base)`` with the fine-tuned ``unet``/``text_encoder`` passed in, then
    ``load_lora_weights(model_dir)`` for an adapter -- the recipe docs/diffusion.md gives.
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    model_dir = Path(model_dir)
    info = _read_json(model_dir / MODEL_INFO)
    reference = info.get("base_model")
    base_dir = resolve_base(model_dir, reference) if isinstance(reference, dict) else model_dir
    trained = info.get("trained", []) if isinstance(reference, dict) else []
    overrides = {}
    if "unet" in trained:
        overrides["unet"] = UNet2DConditionModel.from_pretrained(
            model_dir / "unet", dtype=torch_dtype
        )
    if "text_encoder" in trained:
        overrides["text_encoder"] = CLIPTextModel.from_pretrained(
            model_dir / "text_encoder", dtype=torch_dtype
        )
    if _read_json(base_dir / MODEL_INFO).get("pixel_space"):
        from tgap.diffusion.pixel_pipeline import TgapPixelPipeline as cls
    else:
        cls = StableDiffusionPipeline
    pipe = cls.from_pretrained(base_dir, dtype=torch_dtype, **overrides)
    if "unet_lora" in trained:
        pipe.load_lora_weights(model_dir, weight_name=LORA_WEIGHTS)
    return pipe


def fetch_model_dir(base_model: str) -> Path:
    """A local folder for ``base_model``: a path, an s3:// / gs:// URI, or a hub id."""
    if base_model.startswith(("s3://", "gs://", "file://")):
        from tgap.storage import download_to_cache  # written alongside; import only when used

        try:
            return Path(download_to_cache(base_model))
        except (OSError, ValueError) as exc:  # StorageError is a ValueError
            raise ModelError(
                f"diffusion.base_model {base_model}: could not be fetched: {exc}"
            ) from None
    path = Path(base_model)
    if path.exists() or base_model.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ModelError(f"diffusion.base_model {base_model}: no such folder")
        return path
    if base_model.count("/") == 1:  # looks like a Hugging Face hub id
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(base_model))
        except Exception as exc:  # noqa: BLE001 - any hub failure gets the same clear message
            raise ModelError(
                f"diffusion.base_model {base_model!r}: looks like a hub id but could not be "
                f"downloaded ({type(exc).__name__}); this machine may have no access to the hub. "
                "Give a local folder or an s3:// / gs:// URI of a diffusers Stable Diffusion layout."
            ) from None
    raise ModelError(
        f"diffusion.base_model {base_model!r}: expected 'tiny-pixel', a local folder, an s3:// or "
        "gs:// URI, or a hub id"
    )
