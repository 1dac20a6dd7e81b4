"""Which device a run uses: ``auto`` picks CUDA when PyTorch sees a GPU.

PyTorch is imported only when a device is resolved, so commands that run no network (``measure``, ``evaluate
--prediction``) can build their ``--device`` options without loading it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import SegmentationError

if TYPE_CHECKING:
    import torch

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SegmentationError("the GPU was asked for but PyTorch sees no CUDA GPU; choose the CPU or automatic "
                                "device")
    return torch.device(name)


def describe_devices() -> str:
    import torch

    if torch.cuda.is_available():
        return f"CUDA GPU: {torch.cuda.get_device_name(0)}"
    return "no CUDA GPU detected; CPU only"
