"""Official SRSNet checkpoints: every official tensor lands in our R or S, and bad files fail with the key named.

The official weights live on Baidu Pan only, so the state dicts here are synthesised from the official key listings
(``shared/reference/models/keys/srs_*.txt``: every key with its official shape, random values).
"""

from __future__ import annotations

import pytest
import torch
from official_keys import official_state_dict

from MobileUViTSegmentLib.conversion import get_format, list_formats
from MobileUViTSegmentLib.conversion.srsnet_formats import assemble_srsnet
from MobileUViTSegmentLib.models import create_model

FORMATS = [("srsnet_r_official", "srs_R_reconstruction.txt"), ("srsnet_s_official", "srs_S_segmentation.txt")]


def total(state: dict[str, torch.Tensor]) -> float:
    return sum(float(value.double().sum()) for value in state.values())


@pytest.mark.parametrize(("format_name", "listing"), FORMATS)
def test_every_official_tensor_lands_in_our_network_which_loads_strictly(format_name, listing):
    official = official_state_dict(listing)
    official_format = get_format(format_name)
    converted = official_format.convert(official)
    model = create_model(official_format.architecture, **official_format.architecture_config)
    model.load_state_dict(converted, strict=True)
    loaded = model.state_dict()
    assert len(loaded) == len(official)
    assert total(loaded) == pytest.approx(total(official), rel=1e-12)
    assert sorted(round(float(v.double().sum()), 6) for v in loaded.values()) == \
        sorted(round(float(v.double().sum()), 6) for v in official.values())


def test_both_formats_are_registered_for_their_networks():
    assert {"srsnet_r_official", "srsnet_s_official"} <= set(list_formats())
    assert get_format("srsnet_r_official").architecture == "srsnet_r"
    assert get_format("srsnet_s_official").architecture == "srsnet_s"


def test_the_official_names_map_onto_the_matching_modules():
    converted = get_format("srsnet_s_official").convert(official_state_dict("srs_S_segmentation.txt"))
    official = official_state_dict("srs_S_segmentation.txt")
    pairs = {
        "conv2_1.5.CONV.weight": "node2_1.5.conv2.weight",
        "PKernel_D2.Conv.2.weight": "dynamic_conv.kernel_generator.weight",
        "bottomuplocal_fpn_3.finalconv.0.weight": "blam3.fuse.0.weight",
        "IPATR2.tr_1.weight": "unused_ipatr2.unused_fuse2.weight",
        "conv0_2_1x1.weight": "project2.weight",
        "fup1.conv.0.weight": "fuse_up1.project.0.weight",
        "finalconv.0.ca.fc1.weight": "fuse_block.0.channel_attention.reduce.weight",
    }
    for official_key, ours in pairs.items():
        assert torch.equal(converted[ours], official[official_key]), official_key


def test_a_data_parallel_checkpoint_is_accepted():
    official = official_state_dict("srs_R_reconstruction.txt")
    wrapped = {f"module.{key}": value for key, value in official.items()}
    assert get_format("srsnet_r_official").convert(wrapped).keys() == \
        get_format("srsnet_r_official").convert(official).keys()


def test_a_wrong_shape_is_refused_with_the_key_named():
    official = official_state_dict("srs_R_reconstruction.txt")
    official["conv1_2.3.CONV.weight"] = torch.zeros(16, 16, 1, 1)
    with pytest.raises(ValueError, match=r"'conv1_2\.3\.CONV\.weight' has shape \(16, 16, 1, 1\)"):
        get_format("srsnet_r_official").convert(official)


def test_a_missing_key_is_refused_with_the_key_named():
    official = official_state_dict("srs_R_reconstruction.txt")
    del official["mask_head_1x1.bias"]
    with pytest.raises(ValueError, match=r"lacks 1 tensor.*'head\.bias'"):
        get_format("srsnet_r_official").convert(official)


def test_the_other_networks_file_is_refused_with_the_first_foreign_key_named():
    with pytest.raises(ValueError, match=r"official key '\w+\.[\w.]+' is not part of srsnet_r"):
        get_format("srsnet_r_official").convert(official_state_dict("srs_S_segmentation.txt"))
    with pytest.raises(ValueError, match="is not part of srsnet_s"):  # R has 5 blocks where S has 3
        get_format("srsnet_s_official").convert(official_state_dict("srs_R_reconstruction.txt"))


def test_converted_r_and_s_assemble_into_the_composite():
    r_state = get_format("srsnet_r_official").convert(official_state_dict("srs_R_reconstruction.txt", seed=1))
    s_state = get_format("srsnet_s_official").convert(official_state_dict("srs_S_segmentation.txt", seed=2))
    model = create_model("srsnet")
    model.load_state_dict(assemble_srsnet(r_state, s_state), strict=True)
    assert torch.equal(model.reconstruction.head.weight, r_state["head.weight"])
    assert torch.equal(model.segmentation.head.weight, s_state["head.weight"])
    assert not any(p.requires_grad for p in model.reconstruction.parameters())  # loading does not unfreeze R
