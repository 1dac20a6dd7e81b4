"""MambaMIM: bottom-up consistent masks, TOKI, a loss on masked patches only, and an encoder that loads into HyMamba."""

from __future__ import annotations

import pytest
import torch

from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.models.hymamba import HyMambaConfig
from MobileUViTSegmentLib.models.mambamim import MambaMIM, MambaMIMConfig, masked_patch_loss, repeat_mask

TINY = dict(channels=(4, 8, 16, 24, 48), d_state=4, mamba_depth=1, official_unused_modules=False,
            img_size=(32, 48, 32))


@pytest.fixture(scope="module")
def model() -> MambaMIM:
    torch.manual_seed(0)
    return MambaMIM(HyMambaConfig(**TINY), MambaMIMConfig(mask_ratio=0.75))


def test_mask_ratio_is_respected_per_sample(model):
    mask = model.random_mask(5, torch.device("cpu"))
    assert mask.shape == (5, 1, 2, 3, 2)
    assert ((~mask).flatten(1).sum(1) == round(12 * 0.25)).all()
    assert len({tuple(row.tolist()) for row in mask.flatten(1)}) > 1  # drawn per sample


def test_masked_coarse_cells_are_masked_at_every_level(model):
    torch.manual_seed(1)
    mask = model.random_mask(2, torch.device("cpu"))
    captured = []
    hooks = [module.register_forward_hook(lambda _m, _i, output: captured.append(output))
             for module in (model.embeddings.expend1, model.embeddings.expend2, model.embeddings.expend3,
                            model.embeddings.layer5)]
    try:
        model(torch.randn(2, 1, 32, 48, 32) + 3, mask)
    finally:
        for hook in hooks:
            hook.remove()
    for feature in captured:
        hidden = repeat_mask(mask, tuple(feature.shape[2:]))
        assert torch.all(feature.masked_select(hidden.expand_as(feature)) == 0)
        assert feature.masked_select(~hidden.expand_as(feature)).abs().sum() > 0


def test_loss_is_finite_and_backpropagates_to_encoder_and_interpolation(model):
    model.zero_grad()
    loss, reconstruction, mask = model(torch.randn(2, 1, 32, 48, 32))
    assert torch.isfinite(loss) and reconstruction.shape == (2, 1, 32, 48, 32) and mask.dtype == torch.bool
    loss.backward()
    assert model.A_interpolation.grad.abs().sum() > 0
    assert model.mae.blocks[0].mamba.in_proj.weight.grad.abs().sum() > 0
    assert model.embeddings.stem.weight.grad.abs().sum() > 0


def test_only_masked_patches_count_in_the_loss():
    generator = torch.Generator().manual_seed(2)
    target, reconstruction = torch.randn(2, 1, 32, 32, 32, generator=generator), torch.randn(2, 1, 32, 32, 32,
                                                                                             generator=generator)
    mask = torch.zeros(2, 1, 2, 2, 2, dtype=torch.bool)
    mask[:, :, 0] = True  # first half along the first axis masked
    loss = masked_patch_loss(reconstruction, target, mask)
    changed_target, changed_reconstruction = target.clone(), reconstruction.clone()
    changed_target[:, :, 16:] = torch.randn(2, 1, 16, 32, 32, generator=generator) * 5
    changed_reconstruction[:, :, 16:] = 7.0
    assert torch.isclose(masked_patch_loss(changed_reconstruction, changed_target, mask), loss)
    changed_target[:, :, :16] += torch.randn(2, 1, 16, 32, 32, generator=generator)
    assert not torch.isclose(masked_patch_loss(reconstruction, changed_target, mask), loss)


def test_token_interpolation_keeps_visible_tokens_and_interpolates_linearly_at_identity(model):
    features = torch.randn(2, 48, 2, 3, 2)
    mask = model.random_mask(2, torch.device("cpu"))
    with torch.no_grad():
        filled = model.token_interpolation(features, mask)
    visible = ~mask.expand_as(features)
    assert torch.equal(filled[visible], features[visible])
    # with A = 0 (initial) a masked token right before a visible anchor takes that anchor's value
    tokens, masked = features.flatten(2).transpose(1, 2), mask.flatten(1)
    out = filled.flatten(2).transpose(1, 2)
    for sample in range(2):
        for position in range(11):
            if masked[sample, position] and not masked[sample, position + 1]:
                assert torch.allclose(out[sample, position], tokens[sample, position + 1])


def test_token_interpolation_places_tokens_at_their_own_positions():
    """The intended token-wise placement: each channel of an interpolated token comes from the same channel."""
    torch.manual_seed(3)
    model = MambaMIM(HyMambaConfig(**TINY))
    with torch.no_grad():
        model.A_interpolation.copy_(torch.eye(48)[None] * 0.5)
    features = torch.zeros(1, 48, 2, 3, 2)
    features[:, 5] = 1.0  # only channel 5 is non-zero anywhere
    mask = model.random_mask(1, torch.device("cpu"))
    with torch.no_grad():
        filled = model.token_interpolation(features, mask)
    other_channels = torch.cat([filled[:, :5], filled[:, 6:]], dim=1)
    assert torch.count_nonzero(other_channels) == 0


def test_pretrained_encoder_state_loads_into_hymamba_missing_only_the_decoder(model):
    network = create_model("hymamba_small", **{k: v for k, v in TINY.items() if k != "official_unused_modules"},
                           official_unused_modules=False)
    result = network.load_state_dict(model.encoder_state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(key.startswith("decoder.") for key in result.missing_keys)
