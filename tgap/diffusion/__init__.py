"""The generator: base model (``build``), DreamBooth fine-tune (``dreambooth``), sampling (``generate``).

See docs/diffusion.md. Submodules import torch/diffusers, so they are imported explicitly.
"""
