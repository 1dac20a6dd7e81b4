"""Which device a run uses: ``auto`` picks CUDA when PyTorch sees a GPU."""

from __future__ import annotations

import torch

from .errors import SegmentationError

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SegmentationError("the GPU was asked for but PyTorch sees no CUDA GPU; choose the CPU or automatic "
                                "device")
    return torch.device(name)


def describe_devices() -> str:
    if torch.cuda.is_available():
        return f"CUDA GPU: {torch.cuda.get_device_name(0)}"
    return "no CUDA GPU detected; CPU only"
