"""Official MambaMIM checkpoints mapped onto ``hymamba``.

* ``hymamba_official``: the fine-tuning network ``Hybird`` (``build_hybird``, 225 tensors) -> ``hymamba`` with the
  official configuration (kept backward-scan tensors, quirk 5, so every official tensor has a place).
* ``mambamim_encoder_official``: the encoder-only pre-training checkpoint (196 tensors, e.g. ``mambamim_mask75.pth``
  converted to a state dict) -> ``hymamba`` encoder keys. ``mae.mask_token`` is dropped: it is the pre-training
  model's token for hidden positions, which the segmentation network never sees (quirk 12). The result is a partial
  state dict: load it with ``strict=False`` (or ``train --init-weights``); only ``decoder.*`` is missing.

Our names equal the official ones except the unused backward-scan tensors, which live under
``mamba.unused_backward``. Names and shapes are checked both ways so a foreign file fails with the first offending key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..models import create_model
from .loading import strip_wrapper_prefixes
from .registry import OfficialFormat, StateDict, fit_to_reference, register_format

_BACKWARD = re.compile(r"(?P<block>mae\.blocks\.\d+\.mamba)\.(?P<name>A_b_log|D_b|conv1d_b|x_proj_b|dt_proj_b)"
                       r"(?P<tensor>\.weight|\.bias)?")
_BACKWARD_NAMES = {"A_b_log": "A_log", "D_b": "D", "conv1d_b": "conv1d", "x_proj_b": "x_proj", "dt_proj_b": "dt_proj"}
DROPPED_FROM_ENCODER = ("mae.mask_token",)


def official_to_ours(key: str) -> str:
    match = _BACKWARD.fullmatch(key)
    if match:
        return f"{match['block']}.unused_backward.{_BACKWARD_NAMES[match['name']]}{match['tensor'] or ''}"
    return key


def convert_official(state: Mapping[str, torch.Tensor], *, encoder_only: bool) -> StateDict:
    reference = create_model("hymamba").state_dict()
    if encoder_only:
        reference = {key: value for key, value in reference.items() if not key.startswith("decoder.")}
    renamed: dict[str, tuple[str, torch.Tensor]] = {}
    for key, tensor in strip_wrapper_prefixes(state).items():
        if encoder_only and key in DROPPED_FROM_ENCODER:
            continue
        ours = official_to_ours(key)
        if ours not in reference:
            raise ValueError(f"official key {key!r} is not part of hymamba{' (encoder)' if encoder_only else ''} "
                             "(is this the right file?)")
        renamed[ours] = (key, tensor)
    return fit_to_reference(renamed, reference, "hymamba")


HYMAMBA_OFFICIAL = register_format(OfficialFormat(
    name="hymamba_official",
    description="HyMamba fine-tuning network (FengheTan9/MambaMIM Hybird / build_hybird state dict, 14 classes, "
                "96^3 windows)",
    architecture="hymamba",
    convert=lambda state: convert_official(state, encoder_only=False),
))

MAMBAMIM_ENCODER_OFFICIAL = register_format(OfficialFormat(
    name="mambamim_encoder_official",
    description="MambaMIM pre-trained encoder (FengheTan9/MambaMIM encoder-only checkpoint, e.g. mambamim_mask75.pth); "
                "a partial hymamba state dict without decoder.* (load non-strictly); mae.mask_token is dropped",
    architecture="hymamba",
    convert=lambda state: convert_official(state, encoder_only=True),
))
