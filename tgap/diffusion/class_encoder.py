"""Class-encoder conditioning (``diffusion.conditioning: class-encoder``).

One of the project's reference papers replaces Stable Diffusion's text encoder with a learned
class encoder. Here that is one learned embedding per label, of the cross-attention's shape
(tokens x ``unet.config.cross_attention_dim``), plus one label-free embedding (``NULL``) for the
class images of prior preservation and the unconditional half of classifier-free guidance.

- **Initialisation:** each label's embedding starts as the text encoder's hidden states of its
  instance prompt, the label-free one as those of ``prompt.class_prompt``: at step 0 the model
  generates exactly what the text-conditioned base model did, and fine-tuning moves the
  embeddings freely from there (trained with the UNet, never through the text encoder).
- **Routing:** the diffusion modules keep calling ``encode_prompts(model, prompts)``; with a
  class encoder on the model, a prompt is looked up as a label name, one of the instance prompts
  it was initialised from, or a label-free prompt (``""`` or the class prompt). Any other prompt
  is an error (the template cannot produce new conditionings once labels are embeddings).
- **Artifact:** ``class_encoder/`` in the model folder: ``class_encoder.safetensors`` (the
  embeddings, float32) + ``config.json`` (labels, routing, shape). The rest of the folder is an
  unchanged diffusers layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FOLDER = "class_encoder"
WEIGHTS = "class_encoder.safetensors"
CONFIG = "config.json"
NULL = "<null>"


class ClassEncoderError(ValueError):
    """A prompt or label the class encoder has no embedding for; the message lists the known."""


class ClassEncoder(torch.nn.Module):
    """``keys`` (labels, then ``NULL``) -> embeddings (tokens, dim); ``routes``: prompt -> key."""

    def __init__(self, keys: list[str], tokens: int, dim: int, routes: dict[str, str]) -> None:
        super().__init__()
        if NULL not in keys:
            raise ClassEncoderError(f"class encoder keys {keys} lack the label-free key {NULL!r}")
        self.keys = list(keys)
        self.routes = dict(routes)
        self.embeddings = torch.nn.Parameter(torch.zeros(len(keys), tokens, dim))

    @property
    def labels(self) -> list[str]:
        return [k for k in self.keys if k != NULL]

    def index(self, prompts: list[str]) -> torch.Tensor:
        """Rows of ``embeddings`` for ``prompts`` (label names or routed prompts)."""
        rows = []
        for text in prompts:
            key = text if text in self.keys else self.routes.get(text)
            if key is None:
                raise ClassEncoderError(
                    f"class-encoder conditioning has no embedding for prompt {text!r}: it knows "
                    f"the labels {self.labels}, their prompts {sorted(self.routes)} (label-free: "
                    f"{NULL!r}); with diffusion.conditioning class-encoder, prompt.template and "
                    "generate.negative_prompt must stay what the model was fine-tuned with"
                )
            rows.append(self.keys.index(key))
        return torch.as_tensor(rows, dtype=torch.long, device=self.embeddings.device)

    def forward(self, prompts: list[str]) -> torch.Tensor:
        """Conditioning (n, tokens, dim) for ``prompts``; differentiable (training)."""
        return self.embeddings[self.index(prompts)]

    @classmethod
    @torch.no_grad()
    def from_text(cls, model, prompts: dict[str, str], class_prompt: str) -> ClassEncoder:
        """Initialise from ``model``'s text encoder: label -> its prompt's hidden states."""
        device = model.unet.device
        labels = list(prompts)
        texts = [prompts[label] for label in labels] + [class_prompt]
        hidden = model.text_encoder(model.tokenize(texts, device))[0].float()
        dim = int(model.unet.config.cross_attention_dim)
        if hidden.shape[-1] != dim:
            raise ClassEncoderError(
                f"text encoder width {hidden.shape[-1]} != the UNet's cross_attention_dim {dim}"
            )
        routes = {prompts[label]: label for label in labels}
        routes.update({class_prompt: NULL, "": NULL})
        encoder = cls([*labels, NULL], hidden.shape[1], dim, routes).to(device)
        encoder.embeddings.copy_(hidden)
        return encoder

    def describe(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "keys": self.keys,
            "routes": self.routes,
            "tokens": int(self.embeddings.shape[1]),
            "dim": int(self.embeddings.shape[2]),
            "parameters": int(self.embeddings.numel()),
        }


def save_class_encoder(encoder: ClassEncoder, model_dir: str | Path) -> None:
    """Write ``class_encoder/`` into ``model_dir`` (weights first, config last)."""
    folder = Path(model_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{WEIGHTS}.partial"
    save_file({"embeddings": encoder.embeddings.detach().float().cpu().contiguous()}, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    (folder / CONFIG).write_text(json.dumps(encoder.describe(), indent=2) + "\n")


def load_class_encoder(
    model_dir: str | Path, device: torch.device | str = "cpu"
) -> ClassEncoder | None:
    """The class encoder of a model folder, or None when it conditions on text."""
    folder = Path(model_dir) / FOLDER
    if not (folder / CONFIG).is_file():
        return None
    config = json.loads((folder / CONFIG).read_text())
    weights = load_file(str(folder / WEIGHTS))["embeddings"]
    expected = (len(config["keys"]), config["tokens"], config["dim"])
    if tuple(weights.shape) != expected:
        raise ClassEncoderError(
            f"{folder / WEIGHTS}: embeddings of shape {tuple(weights.shape)}, config says {expected}"
        )
    encoder = ClassEncoder(config["keys"], config["tokens"], config["dim"], config["routes"])
    with torch.no_grad():
        encoder.embeddings.copy_(weights)
    return encoder.to(device).eval().requires_grad_(False)


def attach_class_encoder(model, prompts: dict[str, str], class_prompt: str) -> dict:
    """Fine-tune's hook: give ``model`` a class encoder (kept if the base already has one)."""
    if getattr(model, "class_encoder", None) is None:
        model.class_encoder = ClassEncoder.from_text(model, prompts, class_prompt)
    model.class_encoder.requires_grad_(True)
    return model.class_encoder.describe()
