"""Registry of official checkpoint formats that ``convert`` understands.

Each format knows which of our architectures (and configuration) it becomes and how to rename and reshape the official
state dict into ours. Formats are registered by the module that describes them, as architectures are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

import torch

StateDict = dict[str, torch.Tensor]
Converter = Callable[[Mapping[str, torch.Tensor]], StateDict]


@dataclass(frozen=True)
class OfficialFormat:
    """One official checkpoint layout.

    ``convert`` takes the official state dict (already loaded safely) and returns one that loads with
    ``strict=True`` into ``create_model(architecture, **architecture_config)``; it raises ``ValueError`` naming the
    first key or shape that does not fit.
    """

    name: str
    description: str
    architecture: str
    architecture_config: dict = field(default_factory=dict)
    convert: Converter = field(default=lambda state: dict(state), repr=False)
    # What the checkpoint itself decides about the architecture (e.g. the number of classes, read from the head's
    # shape); merged over ``architecture_config`` by :meth:`config_for`.
    checkpoint_config: Callable[[Mapping[str, torch.Tensor]], dict] = field(default=lambda state: {}, repr=False)

    def config_for(self, state: Mapping[str, torch.Tensor]) -> dict:
        """The architecture config that the official ``state``, once converted, loads into strictly."""
        return {**self.architecture_config, **self.checkpoint_config(state)}


_FORMATS: dict[str, OfficialFormat] = {}


def register_format(official_format: OfficialFormat) -> OfficialFormat:
    if official_format.name in _FORMATS:
        raise ValueError(f"official format {official_format.name!r} is registered twice")
    _FORMATS[official_format.name] = official_format
    return official_format


def list_formats() -> list[str]:
    return sorted(_FORMATS)


def get_format(name: str) -> OfficialFormat:
    try:
        return _FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown official format {name!r}; known: {', '.join(list_formats())}") from None


def fit_to_reference(renamed: Mapping[str, tuple[str, torch.Tensor]], reference: Mapping[str, torch.Tensor],
                     network: str) -> StateDict:
    """The renamed tensors (our key -> (official key, tensor)) once every shape matches ``reference`` and no tensor of
    it is missing; otherwise a ``ValueError`` naming the first official key or missing tensor."""
    converted: StateDict = {}
    for ours, (key, tensor) in renamed.items():
        if tuple(tensor.shape) != tuple(reference[ours].shape):
            raise ValueError(f"official key {key!r} has shape {tuple(tensor.shape)}, {network} expects "
                             f"{tuple(reference[ours].shape)} for {ours!r}")
        converted[ours] = tensor
    missing = [key for key in reference if key not in converted]
    if missing:
        raise ValueError(f"the official state dict lacks {len(missing)} tensor(s) of {network}, first {missing[0]!r}")
    return converted
