"""Official SRSNet checkpoints (``SRS_R`` / ``SRS_RTS`` and ``SRS_S`` state dicts) mapped onto ``srsnet_r`` and
``srsnet_s``.

The official names (``shared/reference/models/keys/srs_*.txt``) are renamed by a table of patterns; tensors keep their
shapes. Every official tensor must land on exactly one of our keys and every key of ours must be filled, so a file
from a different network or width fails with the first offending key named instead of loading half a model.

The deployable composite ``srsnet`` needs no format of its own: convert R and S separately and join them with
:func:`assemble_srsnet` (the official release also ships them as two files).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

import torch

from ..models import create_model
from .loading import strip_wrapper_prefixes
from .registry import OfficialFormat, StateDict, fit_to_reference, register_format

# Inside a residual block (``Dense_BasicBlock_MALC``), wherever it sits. Inner groups are named so that they
# do not shift the numbered groups of the pattern they are appended to.
_BLOCK_PARTS = [
    (r"conv1", "conv1"), (r"bn1", "norm1"), (r"CONV", "conv2"), (r"bn2", "norm2"),
    (r"shortcut\.(?P<part>[01])", r"shortcut.\g<part>"), (r"ca\.fc1", "channel_attention.reduce"),
    (r"ca\.fc2", "channel_attention.expand"), (r"sa\.conv1", "spatial_attention.conv"),
]
_BLAM_PARTS = [
    (r"bn1", "unused_norm1"), (r"bn2", "unused_norm2"), (r"conv1", "local.0.0"), (r"bn3", "local.0.1"),
    (r"conv2", "local.1.0"), (r"bn4", "local.1.1"), (r"ECALayer\.conv", "eca.conv"),
    (r"finalconv\.(?P<part>[01])", r"fuse.\g<part>"),
]
_IPATR_PARTS = [
    (r"conv1", "estimators.0"), (r"conv2", "estimators.1"), (r"conv3", "estimators.2"),
    (r"tr", "unused_fuse3"), (r"tr_1", "unused_fuse2"),
]
_DPCONV_PARTS = [
    (r"Conv\.0", "guide_projection"), (r"Conv\.2", "kernel_generator"),
    (r"ca\.fc1", "channel_attention.reduce"), (r"ca\.fc2", "channel_attention.expand"),
    (r"sa\.conv1", "spatial_attention.conv"),
]
_TENSOR = r"\.(?P<tensor>weight|bias|running_mean|running_var|num_batches_tracked)"


@lru_cache(maxsize=2)
def _rules(ipatr_prefix: str) -> list[tuple[re.Pattern, str]]:
    """(official pattern, our replacement) pairs; a key must match one pattern in full."""
    rules: list[tuple[str, str]] = [
        (r"conv1\.([01])", r"stem.\1"),
        (r"mask_head_1x1", "head"),
        (r"conv0_3_1x1", "unused_project3"),
        (r"conv0_2_1x1", "project2"),
        (r"conv0_1_1x1", "project1"),
        (r"fup([123])\.conv\.([01])", r"fuse_up\1.project.\2"),
    ]
    for official, ours in _BLOCK_PARTS:
        rules.append((rf"conv([0-3])_([0-3])\.(\d+)\.{official}", rf"node\1_\2.\3.{ours}"))
        rules.append((rf"finalconv\.0\.{official}", f"fuse_block.0.{ours}"))
    for official, ours in _BLAM_PARTS:
        rules.append((rf"bottomuplocal_fpn_([123])\.{official}", rf"blam\1.{ours}"))
    for official, ours in _IPATR_PARTS:
        rules.append((rf"IPATR([012])\.{official}", rf"{ipatr_prefix}ipatr\1.{ours}"))
    for official, ours in _DPCONV_PARTS:
        rules.append((rf"PKernel_D2\.{official}", f"dynamic_conv.{ours}"))
    return [(re.compile(official + _TENSOR), ours + r".\g<tensor>") for official, ours in rules]


def official_to_ours(key: str, ipatr_prefix: str) -> str | None:
    """Our name for an official key, or None when no rule knows it."""
    for pattern, replacement in _rules(ipatr_prefix):
        if pattern.fullmatch(key):
            return pattern.sub(replacement, key)
    return None


def convert_official(state: Mapping[str, torch.Tensor], architecture: str) -> StateDict:
    """Rename an official R or S state dict to ``architecture``'s keys, checking names and shapes both ways."""
    reference = create_model(architecture).state_dict()
    ipatr_prefix = "" if architecture == "srsnet_r" else "unused_"
    renamed: dict[str, tuple[str, torch.Tensor]] = {}
    for key, tensor in strip_wrapper_prefixes(state).items():  # names first: a foreign file is named as such
        ours = official_to_ours(key, ipatr_prefix)
        if ours is None or ours not in reference:
            raise ValueError(f"official key {key!r} is not part of {architecture} (is this the right file?)")
        renamed[ours] = (key, tensor)
    return fit_to_reference(renamed, reference, architecture)


def assemble_srsnet(reconstruction_state: Mapping[str, torch.Tensor],
                    segmentation_state: Mapping[str, torch.Tensor]) -> StateDict:
    """State dict of the ``srsnet`` composite from converted (our-name) ``srsnet_r`` and ``srsnet_s`` state dicts."""
    joined = {f"reconstruction.{key}": value for key, value in reconstruction_state.items()}
    joined.update({f"segmentation.{key}": value for key, value in segmentation_state.items()})
    return joined


SRSNET_R_OFFICIAL = register_format(OfficialFormat(
    name="srsnet_r_official",
    description="SRSNet reconstruction network R (fidshu/SRSNet SRS_R / SRS_RTS state dict, e.g. "
                "KBT2019_SRS_R_model.pth)",
    architecture="srsnet_r",
    convert=lambda state: convert_official(state, "srsnet_r"),
))

SRSNET_S_OFFICIAL = register_format(OfficialFormat(
    name="srsnet_s_official",
    description="SRSNet segmentation network S with DPConv (fidshu/SRSNet SRS_S state dict, e.g. "
                "KBT2019_SRS_S_model.pth)",
    architecture="srsnet_s",
    convert=lambda state: convert_official(state, "srsnet_s"),
))
