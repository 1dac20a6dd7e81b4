"""Mobile U-ViT: one implementation for 2D and 3D with the official sizes, trainable, refusing bad shapes."""

from __future__ import annotations

import pytest
import torch

from MobileUViTSegmentLib.models import MobileUViT, create_model, list_models

OFFICIAL_PARAMETER_COUNTS = [
    # (factory, spatial_dims, in, out, official count from shared/reference/models/mobile_u_vit.md)
    ("mobileuvit_s", 2, 3, 1, 1_390_305),
    ("mobileuvit_l", 2, 3, 1, 6_209_217),
    ("mobileuvit_s", 3, 1, 14, 2_758_270),
    ("mobileuvit_l", 3, 1, 14, 11_060_206),
]


@pytest.mark.parametrize(("name", "dims", "in_channels", "out_channels", "official"), OFFICIAL_PARAMETER_COUNTS)
def test_parameter_count_matches_the_official_model_within_one_percent(name, dims, in_channels, out_channels,
                                                                       official):
    model = create_model(name, spatial_dims=dims, in_channels=in_channels, out_channels=out_channels)
    count = sum(parameter.numel() for parameter in model.parameters())
    assert abs(count - official) / official < 0.01
    assert count == official  # we match exactly; the 1 % margin above is the requirement


def test_2d_and_3d_are_the_same_class_configured_by_spatial_dims():
    two = create_model("mobileuvit_s", spatial_dims=2)
    three = create_model("mobileuvit_s", spatial_dims=3)
    assert type(two) is type(three) is MobileUViT
    assert isinstance(two.head, torch.nn.Conv2d) and isinstance(three.head, torch.nn.Conv3d)


@pytest.mark.parametrize(("dims", "shape"), [(2, (2, 3, 64, 96)), (3, (1, 1, 32, 48, 32))])
def test_forward_and_backward_give_logits_at_input_resolution_and_gradients_everywhere(dims, shape):
    torch.manual_seed(0)
    model = create_model("mobileuvit_s", spatial_dims=dims, out_channels=3)
    inputs = torch.randn(*shape)
    logits = model(inputs)
    assert logits.shape == (shape[0], 3, *shape[2:])
    logits.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without finite gradients: {missing[:5]}"


def test_a_grey_image_is_repeated_to_the_three_channels_the_2d_model_expects():
    model = create_model("mobileuvit_s", spatial_dims=2).eval()
    grey = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(grey), model(grey.repeat(1, 3, 1, 1)))


def test_input_not_divisible_by_16_is_refused_with_a_message_that_says_what_to_do():
    model = create_model("mobileuvit_s", spatial_dims=3, out_channels=2)
    with pytest.raises(ValueError, match="multiple of 16.*pad"):
        model(torch.zeros(1, 1, 40, 48, 48))


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(KeyError, match="mobileuvit_s"):
        create_model("unet_of_dreams")
    assert {"mobileuvit_s", "mobileuvit_l"} <= set(list_models())


@pytest.mark.parametrize(("alias", "original", "official"), [("mobileutr_s", "mobileuvit_s", 1_390_305),
                                                             ("mobileutr_l", "mobileuvit_l", 6_209_217)])
def test_mobileutr_names_build_the_same_2d_network_with_the_official_sizes(alias, original, official):
    utr = create_model(alias)
    uvit = create_model(original, spatial_dims=2)
    assert type(utr) is MobileUViT and utr.config == uvit.config  # same class, 2D by default
    assert sum(parameter.numel() for parameter in utr.parameters()) == official
    assert {k: v.shape for k, v in utr.state_dict().items()} == {k: v.shape for k, v in uvit.state_dict().items()}
    assert create_model(alias, spatial_dims=3).config.spatial_dims == 3
    assert {"mobileutr_s", "mobileutr_l"} <= set(list_models())
