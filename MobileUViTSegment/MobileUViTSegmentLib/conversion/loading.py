"""Reading official checkpoint files without trusting them.

Official checkpoints are PyTorch pickles. A pickle can run any code while it loads, so ``.pth/.pt/.bin/.ckpt`` files
go through ``torch.load(weights_only=True)``, PyTorch's restricted unpickler that builds only tensors and plain
containers; anything else is refused with a message, never loaded. ``.safetensors`` files hold tensors only.

Training scripts save state dicts in different wrappers (``{"state_dict": ...}``, ``{"model": ...}``, an
``nn.DataParallel`` ``module.`` prefix, a ``torch.compile`` ``_orig_mod.`` prefix); these are unwrapped so every
format sees the bare official key names.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
SAFETENSORS_SUFFIX = ".safetensors"
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "params")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_checkpoint(path: Path) -> dict:
    """The raw content of a checkpoint file, loaded safely (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise WeightsError(f"checkpoint {path} is not a valid safetensors file: {error}") from error
    if suffix not in PICKLE_SUFFIXES:
        raise WeightsError(f"checkpoint {path.name} has an unknown suffix; expected .safetensors or one of "
                           f"{', '.join(PICKLE_SUFFIXES)}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # PyTorch's message advises loading with weights_only=False; that is exactly what must not happen here.
        detail = next((line.split("error:", 1)[-1].split(". Please")[0].strip() for line in str(error).splitlines()
                       if "WeightsUnpickler" in line), "an object that is not a tensor")
        raise WeightsError(f"checkpoint {path.name} holds more than tensors ({detail}); only plain state dicts are "
                           "read, never arbitrary pickled objects") from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"checkpoint {path.name} cannot be read as a PyTorch file: {first}") from error
    if not isinstance(content, Mapping):
        raise WeightsError(f"checkpoint {path.name} holds a {type(content).__name__}, not a state dict")
    return dict(content)


def _is_state_dict(candidate: object) -> bool:
    return (isinstance(candidate, Mapping) and bool(candidate)
            and all(isinstance(value, torch.Tensor) for value in candidate.values()))


def unwrap_state_dict(content: Mapping, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside the usual training-script wrappers, with wrapper prefixes removed."""
    state: object = content
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if _is_state_dict(state):
            break
        inner = next((state[key] for key in CONTAINER_KEYS if isinstance(state, Mapping) and key in state), None)
        if inner is None:
            break
        state = inner
    if not _is_state_dict(state):
        keys = ", ".join(map(str, list(content)[:5])) if isinstance(content, Mapping) else type(content).__name__
        raise WeightsError(f"{source} holds no state dict of tensors (top-level keys: {keys or 'none'})")
    return strip_wrapper_prefixes(state)


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the prefix that (Distributed)DataParallel or ``torch.compile`` put on every key, when every key has it."""
    tensors = dict(state)
    for prefix in WRAPPER_PREFIXES:
        if tensors and all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix):]: value for key, value in tensors.items()}
    return tensors


def load_official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read ``path`` safely and return the bare official state dict it holds."""
    return unwrap_state_dict(read_checkpoint(Path(path)), f"checkpoint {Path(path).name}")
