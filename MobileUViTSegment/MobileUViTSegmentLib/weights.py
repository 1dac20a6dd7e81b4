"""Weights as safetensors (never pickle), verified by size and sha256 before a single byte is trusted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .card import WeightsSpec
from .errors import WeightsError
from .image_io import atomic_output

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: Path, spec: WeightsSpec) -> None:
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing")
    size = path.stat().st_size
    if size != spec.size:
        raise WeightsError(f"weights file {path} has {size} bytes but its card says {spec.size}; it is truncated or "
                           "replaced, so it will not be used")
    actual = sha256_of(path)
    if actual != spec.sha256:
        raise WeightsError(f"weights file {path} has sha256 {actual[:12]}... but its card says {spec.sha256[:12]}...;"
                           " it is corrupted or replaced, so it will not be used")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load tensors as float32 (weights may be stored in half precision to stay small)."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"weights file {path} is not a valid safetensors file: {error}") from error
    return {key: value.float() if value.is_floating_point() else value for key, value in tensors.items()}


def save_state_dict(state: dict[str, torch.Tensor], path: Path, dtype: str = "float32") -> WeightsSpec:
    """Write ``state`` (floating tensors cast to ``dtype``) and return the card entry that verifies it."""
    target = _DTYPES[dtype]
    tensors = {key: (value.detach().to(target) if value.is_floating_point() else value.detach()).cpu().contiguous()
               for key, value in state.items()}
    with atomic_output(path) as temporary:  # also gives the file the user's umask, not safetensors' private mode
        save_file(tensors, str(temporary), metadata={"format": "pt", "dtype": dtype})
    return WeightsSpec(file=path.name, sha256=sha256_of(path), size=path.stat().st_size, dtype=dtype)
