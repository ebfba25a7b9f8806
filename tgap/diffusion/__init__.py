"""The generator: model folders (``build``), the base-model stage with pretraining
(``base_model``), the shared training loop (``training``), DreamBooth fine-tune (``dreambooth``),
active data selection (``active``), sampling (``generate``).

See docs/diffusion.md. Submodules import torch/diffusers, so they are imported explicitly.
"""
