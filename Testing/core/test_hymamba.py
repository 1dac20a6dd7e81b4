"""HyMamba: the official size, a CPU-trainable small variant, and the fixed input grid."""

from __future__ import annotations

import pytest
import torch

from MobileUViTSegmentLib.models import create_model, list_models
from MobileUViTSegmentLib.models.hymamba_blocks import sincos_position_embedding_3d


def test_default_hymamba_has_the_official_parameter_count():
    network = create_model("hymamba")
    assert sum(p.numel() for p in network.parameters()) == 41_841_134
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    assert trainable == 41_841_134 - 216 * 384 - 4 * 79_104  # fixed position embedding and unused backward scan
    assert network.mae.pos_embed.shape == (1, 216, 384)


def test_small_hymamba_trains_on_a_hippocampus_sized_batch():
    torch.manual_seed(0)
    network = create_model("hymamba_small", out_channels=3, img_size=[48, 64, 48])
    assert {"hymamba", "hymamba_small"} <= set(list_models())
    assert network.mae.pos_embed.shape == (1, 3 * 4 * 3, 96)
    assert not any("unused" in name for name, _ in network.named_parameters())
    images, labels = torch.randn(2, 1, 48, 64, 48), torch.randint(0, 3, (2, 48, 64, 48))
    logits = network(images)
    assert logits.shape == (2, 3, 48, 64, 48)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    mamba = network.mae.blocks[0].mamba
    for parameter in (mamba.A_log, mamba.dt_proj.weight, network.embeddings.stem.weight, network.decoder.out.conv.bias):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_an_input_of_another_size_is_refused_naming_the_expected_size():
    network = create_model("hymamba_small", img_size=(32, 32, 48))
    with pytest.raises(ValueError, match="32, 32, 48"):
        network(torch.zeros(1, 1, 32, 32, 32))


def test_img_size_must_be_a_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        create_model("hymamba_small", img_size=40)


def test_position_embedding_follows_the_token_grid():
    embedding = sincos_position_embedding_3d((2, 3, 4), 12)[0]
    assert embedding.shape == (24, 12)
    # token (h, w, d) = (1, 2, 3) is the last one; its h-sine of the first frequency is sin(1)
    assert torch.isclose(embedding[-1, 0], torch.sin(torch.tensor(1.0)))
    assert torch.isclose(embedding[-1, 8], torch.sin(torch.tensor(3.0)))
    assert len({tuple(row.tolist()) for row in embedding}) == 24


def test_official_linear_initialisation_and_the_mamba_timestep_option():
    official = create_model("hymamba_small", img_size=32)
    assert torch.count_nonzero(official.mae.blocks[0].mamba.dt_proj.bias) == 0  # Xavier + zero bias (quirk 6)
    mamba_init = create_model("hymamba_small", img_size=32, dt_init="mamba")
    dt = torch.nn.functional.softplus(mamba_init.mae.blocks[0].mamba.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.99 and dt.max() <= 0.1 * 1.01
