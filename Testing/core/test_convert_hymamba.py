"""Official MambaMIM / HyMamba state dicts (synthetic tensors of the listed shapes) convert onto ``hymamba``."""

from __future__ import annotations

import pytest
import torch
from official_keys import official_state_dict

from MobileUViTSegmentLib.conversion import get_format
from MobileUViTSegmentLib.models import create_model


@pytest.fixture(scope="module")
def hymamba_network():
    return create_model("hymamba")


def test_official_hymamba_loads_strictly_and_every_tensor_is_used(hymamba_network):
    state = official_state_dict("mambamim_hybird_finetune_net.txt")
    converted = get_format("hymamba_official").convert(state)
    assert len(converted) == len(state) == 225
    hymamba_network.load_state_dict(converted, strict=True)
    backward = hymamba_network.mae.blocks[2].mamba.unused_backward
    assert torch.equal(backward.A_log, state["mae.blocks.2.mamba.A_b_log"])
    assert torch.equal(hymamba_network.mae.blocks[0].mamba.in_proj.weight, state["mae.blocks.0.mamba.in_proj.weight"])


def test_official_encoder_checkpoint_fills_every_encoder_tensor_and_drops_only_the_mask_token(hymamba_network):
    state = official_state_dict("mambamim_pretrained_encoder_ckpt.txt")
    converted = get_format("mambamim_encoder_official").convert(state)
    assert set(state) - {official for official in state if official in converted or "_b" in official} == \
        {"mae.mask_token"}
    assert len(converted) == len(state) - 1
    result = hymamba_network.load_state_dict(converted, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(key.startswith("decoder.") for key in result.missing_keys)
    assert len(result.missing_keys) == 30


def test_wrong_shape_is_refused_with_the_key_named():
    state = official_state_dict("mambamim_hybird_finetune_net.txt")
    state["mae.blocks.1.mamba.A_log"] = torch.zeros(768, 8)
    with pytest.raises(ValueError, match=r"mae\.blocks\.1\.mamba\.A_log.*\(768, 8\)"):
        get_format("hymamba_official").convert(state)


def test_foreign_key_is_refused():
    state = official_state_dict("mambamim_hybird_finetune_net.txt")
    state["blocks.0.attn.qkv.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="not part of hymamba"):
        get_format("hymamba_official").convert(state)
