"""Device and precision choice in one place."""

from __future__ import annotations

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {preference!r}: expected auto, cpu or cuda")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is visible")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def torch_dtype(mixed_precision: str, device: torch.device) -> torch.dtype:
    """Compute dtype for ``mixed_precision`` (``no``/``fp16``/``bf16``); the CPU always runs fp32."""
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision {mixed_precision!r}: expected no, fp16 or bf16")
    if device.type != "cuda" or mixed_precision == "no":
        return torch.float32
    return torch.float16 if mixed_precision == "fp16" else torch.bfloat16


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocator peak on a GPU, max RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
