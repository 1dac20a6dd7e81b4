"""Official Mobile U-ViT / MobileUtr checkpoints (FengheTan9/Mobile-U-ViT, U-Bench) mapped onto ``mobileuvit_*`` and
``mobileutr_*``.

One renaming table serves every variant: S and L differ only in widths and depths, 2D and 3D only in that the 3D
file's InstanceNorms have no state-dict entries, and the 2024 (MobileUtr) code only in the bottleneck's prefix
(``adaptive_lgl_bottleneck`` instead of ``lklgl_bottleneck``; U-Bench's "MobileUViT" checkpoints use it). The table
maps module paths both ways, so the same rules rename official -> ours for ``convert`` and ours -> official for the
round-trip test. Input and output channels follow the checkpoint (stem and head shapes): the official 2D models have
one logit, the 3D ones 14.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

import torch

from ..models import create_model
from .registry import OfficialFormat, StateDict, register_format

LKLGL_PREFIX = "lklgl_bottleneck"  # Mobile U-ViT code (2025)
ADAPTIVE_LGL_PREFIX = "adaptive_lgl_bottleneck"  # MobileUtr-era code (2024) and U-Bench copies

_SELF_ATTENTION_PARTS = [
    ("pos_embed", "position"), ("norm1", "norm1"), ("attn.qkv", "attn.qkv"), ("attn.proj", "attn.proj"),
    ("attn.LocalProp", "attn.propagate"), ("attn.norm", "attn.propagate_norm"), ("norm2", "norm2"),
    ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.2"),
]
_LOCAL_AGGREGATION_PARTS = [
    ("pos_embed", "position"), ("norm1", "norm1"), ("conv1", "mix_in"), ("attn", "mix_spatial"),
    ("conv2", "mix_out"), ("norm2", "norm2"), ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.2"),
]
# conv_block is one nn.Sequential upstream (conv, norm, ReLU, conv, norm, ReLU); ours nests two ConvNormAct units.
_DOUBLE_CONVS = [("expend_dims", "expand_dims"), ("reduce_dims", "reduce_dims"), ("Up_conv4", "decode3"),
                 ("Up_conv3", "decode2"), ("Up_conv2", "decode1")]
_DOUBLE_CONV_LAYERS = [("0", "0.0"), ("1", "0.1"), ("3", "1.0"), ("4", "1.1")]
# up_conv: index 0 is the parameter-free up-sampler in both; upstream's conv and norm sit at 1 and 2.
_UP_CONVS = [("Up3", "up2"), ("Up2", "up1"), ("Up1", "up0")]
_UP_CONV_LAYERS = [("1", "1.0"), ("2", "1.1")]
_TENSOR_NAMES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def module_rules(bottleneck_prefix: str) -> list[tuple[str, str]]:
    """(official module path, our module path) templates; ``{name}`` stands for a block or layer index."""
    rules = [
        ("patch_embeddings.stem.{m}", "patch_embedding.stem.{m}"),
        ("patch_embeddings.layer{s}.block.{d}.{u}.fn.{m}", "patch_embedding.stage{s}.blocks.{d}.{u}.fn.{m}"),
        ("patch_embeddings.layer{s}.up.{m}", "patch_embedding.stage{s}.expand.{m}"),
        ("head", "head"),
    ]
    rules += [(f"{bottleneck_prefix}.{{i}}.LocalAgg.{official}", f"lgl_bottleneck.{{i}}.local.{ours}")
              for official, ours in _LOCAL_AGGREGATION_PARTS]
    for official_stage, our_stage in ((bottleneck_prefix, "lgl_bottleneck"),
                                      ("transformer_bottleneck", "transformer_bottleneck")):
        rules += [(f"{official_stage}.{{i}}.SelfAttn.{official}", f"{our_stage}.{{i}}.attention.{ours}")
                  for official, ours in _SELF_ATTENTION_PARTS]
    rules += [(f"{official}.conv.{layer}", f"{ours}.{our_layer}")
              for official, ours in _DOUBLE_CONVS for layer, our_layer in _DOUBLE_CONV_LAYERS]
    rules += [(f"{official}.up.{layer}", f"{ours}.{our_layer}")
              for official, ours in _UP_CONVS for layer, our_layer in _UP_CONV_LAYERS]
    return rules


def _template_pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ..., literal
    regex = "".join(re.escape(part) if index % 2 == 0 else rf"(?P<{part}>\d+)" for index, part in enumerate(parts))
    return re.compile(regex)


@lru_cache(maxsize=8)
def _compiled(bottleneck_prefix: str, to_ours: bool) -> list[tuple[re.Pattern, str]]:
    pairs = module_rules(bottleneck_prefix)
    return [(_template_pattern(source), target) for source, target in
            (pairs if to_ours else [(ours, official) for official, ours in pairs])]


def _rename(key: str, bottleneck_prefix: str, to_ours: bool) -> str | None:
    module, _, tensor = key.rpartition(".")
    if tensor not in _TENSOR_NAMES:
        return None
    for pattern, target in _compiled(bottleneck_prefix, to_ours):
        match = pattern.fullmatch(module)
        if match:
            return f"{target.format(**match.groupdict())}.{tensor}"
    return None


def official_to_ours(key: str, bottleneck_prefix: str = LKLGL_PREFIX) -> str | None:
    """Our key for an official one, or None when no rule knows it."""
    return _rename(key, bottleneck_prefix, to_ours=True)


def ours_to_official(key: str, bottleneck_prefix: str = LKLGL_PREFIX) -> str | None:
    """The official key for one of ours (the inverse table), or None when no rule knows it."""
    return _rename(key, bottleneck_prefix, to_ours=False)


def channels_from_checkpoint(state: Mapping[str, torch.Tensor]) -> dict:
    """Input and output channels as the official stem and head were built (2D default 3 -> 1, 3D 1 -> 14)."""
    for key in ("patch_embeddings.stem.0.weight", "head.weight"):
        if key not in state:
            raise ValueError(f"the official state dict lacks {key!r}; it is not a Mobile U-ViT checkpoint")
    return {"in_channels": int(state["patch_embeddings.stem.0.weight"].shape[1]),
            "out_channels": int(state["head.weight"].shape[0])}


def convert_official(state: Mapping[str, torch.Tensor], architecture: str, spatial_dims: int,
                     bottleneck_prefix: str) -> StateDict:
    """Rename an official state dict to ``architecture``'s keys, checking names, shapes and completeness."""
    config = {"spatial_dims": spatial_dims, **channels_from_checkpoint(state)}
    reference = create_model(architecture, **config).state_dict()
    network = f"{architecture} ({spatial_dims}D)"
    renamed: dict[str, str] = {}
    for key in state:  # names first: a file of another network is named as such, not as a shape mismatch
        ours = official_to_ours(key, bottleneck_prefix)
        if ours is None:
            raise ValueError(f"official key {key!r} is not part of {network} (is this the right file and format?)")
        if ours not in reference:
            raise ValueError(f"official key {key!r} has no place in {network}: the checkpoint has more blocks "
                             "(is it the L variant?)")
        if ours in renamed:
            raise ValueError(f"official keys {renamed[ours]!r} and {key!r} both map to {ours!r}")
        renamed[ours] = key
    converted: StateDict = {}
    for ours, key in renamed.items():
        tensor, expected = state[key], tuple(reference[ours].shape)
        if tuple(tensor.shape) != expected:
            raise ValueError(f"official key {key!r} has shape {tuple(tensor.shape)}, {network} expects {expected} "
                             f"(is this the S or the L variant?)")
        converted[ours] = tensor.to(reference[ours].dtype)
    missing = [key for key in reference if key not in converted]
    if missing:
        official = ours_to_official(missing[0], bottleneck_prefix)
        raise ValueError(f"the official state dict lacks {len(missing)} tensor(s) of {network}, first {official!r}")
    return converted


def _register(name: str, description: str, architecture: str, spatial_dims: int, bottleneck_prefix: str):
    return register_format(OfficialFormat(
        name=name,
        description=description,
        architecture=architecture,
        architecture_config={"spatial_dims": spatial_dims},
        convert=lambda state: convert_official(state, architecture, spatial_dims, bottleneck_prefix),
        checkpoint_config=channels_from_checkpoint,
    ))


MOBILEUVIT_2D_S_OFFICIAL = _register(
    "mobileuvit_2d_s_official", "Mobile U-ViT 2D (mobileuvit, network/MobileUViT.py; 3 in, 1 logit by default)",
    "mobileuvit_s", 2, LKLGL_PREFIX)
MOBILEUVIT_2D_L_OFFICIAL = _register(
    "mobileuvit_2d_l_official", "Mobile U-ViT-L 2D (mobileuvit_l, network/MobileUViT.py; 3 in, 1 logit by default)",
    "mobileuvit_l", 2, LKLGL_PREFIX)
MOBILEUVIT_3D_S_OFFICIAL = _register(
    "mobileuvit_3d_s_official", "Mobile U-ViT 3D (mobileuvit, network/MobileUViT_3D.py; 1 in, 14 out by default)",
    "mobileuvit_s", 3, LKLGL_PREFIX)
MOBILEUVIT_3D_L_OFFICIAL = _register(
    "mobileuvit_3d_l_official", "Mobile U-ViT-L 3D (mobileuvit_l, network/MobileUViT_3D.py; 1 in, 14 out by default)",
    "mobileuvit_l", 3, LKLGL_PREFIX)
MOBILEUTR_L_2024_OFFICIAL = _register(
    "mobileutr_l_2024_official", "MobileUtr-L 2D, 2024 code (network/MobileUVit.py, adaptive_lgl_bottleneck keys); "
    "also U-Bench's MobileUViT checkpoints", "mobileutr_l", 2, ADAPTIVE_LGL_PREFIX)
MOBILEUTR_S_2024_OFFICIAL = _register(
    "mobileutr_s_2024_official", "MobileUtr 2D, 2024 code (network/MobileUVit.py, mobileuvit factory, "
    "adaptive_lgl_bottleneck keys)", "mobileutr_s", 2, ADAPTIVE_LGL_PREFIX)
