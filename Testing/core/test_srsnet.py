"""SRSNet: official sizes, a frozen reconstruction network inside the composite, per-sample DPConv, clear refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from MobileUViTSegmentLib.models import create_model, list_models
from MobileUViTSegmentLib.models.srsnet import SRSNet, SRSReconstruction, SRSSegmentation
from MobileUViTSegmentLib.models.srsnet_blocks import DPConv

OFFICIAL_R_PARAMETERS = 795_586  # shared/reference/models/srsnet.md, SRS_R
OFFICIAL_S_PARAMETERS = 11_207_308  # SRS_S, including its never-called IPATR modules


def count(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trained_parameters_without_gradient(model: torch.nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum())]


@pytest.mark.parametrize(("name", "official"),
                         [("srsnet_r", OFFICIAL_R_PARAMETERS), ("srsnet_s", OFFICIAL_S_PARAMETERS)])
def test_parameter_count_matches_the_official_network_within_one_percent(name, official):
    parameters = count(create_model(name))
    assert abs(parameters - official) / official < 0.01
    assert parameters == official  # we match exactly


def test_the_composite_stores_r_and_s_but_trains_only_the_modules_s_calls():
    model = create_model("srsnet")
    assert count(model) == OFFICIAL_R_PARAMETERS + OFFICIAL_S_PARAMETERS
    # S's never-called modules (IPATRs, BLAM norms, ...) are frozen too: 1.33 M parameters no optimiser needs.
    assert count(model, trainable_only=True) == count(create_model("srsnet_s", official_unused_modules=False))
    assert count(model.reconstruction, trainable_only=True) == 0


def test_the_three_architectures_are_registered():
    assert {"srsnet", "srsnet_r", "srsnet_s"} <= set(list_models())
    assert isinstance(create_model("srsnet"), SRSNet)


def test_reconstruction_reproduces_the_input_shape_and_encodes_the_deepest_feature():
    torch.manual_seed(0)
    model = create_model("srsnet_r")
    images = torch.randn(2, 3, 64, 64)
    reconstruction = model(images)
    assert reconstruction.shape == images.shape
    F.mse_loss(reconstruction, images).backward()
    assert not trained_parameters_without_gradient(model)
    assert model.encode(images).shape == (2, 64, 8, 8)


def test_segmentation_alone_takes_the_guide_and_trains_every_parameter_it_calls():
    torch.manual_seed(0)
    model = create_model("srsnet_s")
    logits = model(torch.randn(2, 3, 64, 64), torch.randn(2, 64, 8, 8))
    assert logits.shape == (2, 1, 64, 64)
    logits.square().mean().backward()
    assert not trained_parameters_without_gradient(model)


def test_composite_trains_s_while_r_stays_frozen_and_in_eval_mode():
    torch.manual_seed(0)
    model = create_model("srsnet")
    assert model.train() is model
    assert model.segmentation.training and not any(m.training for m in model.reconstruction.modules())
    running_mean_before = model.reconstruction.stem[1].running_mean.clone()
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 1, 64, 64)
    logits.square().mean().backward()
    assert not trained_parameters_without_gradient(model.segmentation)
    assert all(p.grad is None and not p.requires_grad for p in model.reconstruction.parameters())
    assert torch.equal(model.reconstruction.stem[1].running_mean, running_mean_before)  # no BN update in R


def test_optimiser_built_from_trainable_parameters_never_sees_r():
    model = create_model("srsnet")
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable and not trainable & {id(p) for p in model.reconstruction.parameters()}


def test_a_trained_reconstruction_file_loads_into_the_composite_under_its_prefix():
    torch.manual_seed(0)
    trained_r = create_model("srsnet_r")
    with torch.no_grad():
        for parameter in trained_r.parameters():
            parameter.add_(1.0)
    prefixed = {f"reconstruction.{key}": value for key, value in trained_r.state_dict().items()}
    model = create_model("srsnet")
    result = model.load_state_dict(prefixed, strict=False)
    assert not result.unexpected_keys
    assert all(key.startswith("segmentation.") for key in result.missing_keys)
    loaded = model.reconstruction.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in trained_r.state_dict().items())


def test_composite_output_is_s_guided_by_rs_deepest_feature():
    torch.manual_seed(0)
    model = create_model("srsnet").eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model.segmentation(images, model.reconstruction.encode(images))
        assert torch.equal(model(images), expected)


def test_dpconv_applies_the_kernel_generated_from_each_samples_own_guide():
    torch.manual_seed(0)
    dpconv = DPConv(in_channels=4, out_channels=6, kernel_size=3, guide_channels=8)
    features, guides = torch.randn(3, 4, 8, 8), torch.randn(3, 8, 4, 4)
    out = dpconv(features, guides)
    assert out.shape == (3, 6, 8, 8)
    kernels = dpconv.generate_kernels(guides).reshape(3, 6, 4, 3, 3)
    for n in range(3):  # the grouped convolution over the batch equals one convolution per sample
        assert torch.allclose(out[n:n + 1], F.conv2d(features[n:n + 1], kernels[n], padding=1), atol=1e-5)


def test_segmentation_output_depends_on_the_guide_per_sample():
    torch.manual_seed(0)
    model = create_model("srsnet_s").eval()
    images, guides = torch.randn(2, 3, 32, 32), torch.randn(2, 64, 4, 4)
    with torch.no_grad():
        out = model(images, guides)
        other_guide = model(images, torch.randn(2, 64, 4, 4))
        swapped = model(images.flip(0), guides.flip(0))
    assert not torch.allclose(out, other_guide, atol=1e-4)
    assert torch.allclose(swapped, out.flip(0), atol=1e-5)


def test_input_not_divisible_by_8_is_refused_with_a_message_that_says_what_to_do():
    with pytest.raises(ValueError, match="multiple of 8.*pad"):
        create_model("srsnet")(torch.zeros(1, 3, 60, 64))
    with pytest.raises(ValueError, match="multiple of 8.*pad"):
        create_model("srsnet_r").encode(torch.zeros(1, 3, 64, 36))


def test_a_grey_image_is_repeated_to_the_three_channels_the_networks_expect():
    torch.manual_seed(0)
    model = create_model("srsnet").eval()
    grey = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(grey), model(grey.repeat(1, 3, 1, 1)))


def test_3d_is_refused_because_the_method_is_2d():
    with pytest.raises(ValueError, match="2D method.*spatial_dims=2"):
        create_model("srsnet_s", spatial_dims=3)


def test_dropping_the_official_unused_modules_changes_no_output():
    torch.manual_seed(0)
    full = create_model("srsnet_r").eval()
    lean = create_model("srsnet_r", official_unused_modules=False).eval()
    result = lean.load_state_dict(full.state_dict(), strict=False)
    assert not result.missing_keys and all("unused_" in key for key in result.unexpected_keys)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(full(images), lean(images))
    assert isinstance(full, SRSReconstruction) and isinstance(create_model("srsnet_s"), SRSSegmentation)
