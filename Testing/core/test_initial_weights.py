"""``--init-weights``: a safetensors file loads into a network under a prefix, and says what it loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from MobileUViTSegmentLib.errors import WeightsError
from MobileUViTSegmentLib.training.initial_weights import load_initial_weights
from MobileUViTSegmentLib.weights import save_state_dict


def small_network() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))


class Composite(nn.Module):
    """A pretrained part under ``reconstruction.`` next to a fresh head, as the SRSNet composite is built."""

    def __init__(self):
        super().__init__()
        self.reconstruction = small_network()
        self.head = nn.Conv2d(1, 2, 1)


def test_weights_load_under_a_prefix_and_the_report_lists_what_stayed(tmp_path: Path):
    source = small_network()
    path = tmp_path / "r.safetensors"
    save_state_dict(source.state_dict(), path)
    target = Composite()
    head_before = target.head.weight.clone()

    report = load_initial_weights(target, path, prefix="reconstruction")  # the dot is optional

    for key, value in source.state_dict().items():
        assert torch.equal(target.reconstruction.state_dict()[key], value)
    assert torch.equal(target.head.weight, head_before)
    assert report.prefix == "reconstruction."
    assert report.loaded == len(source.state_dict())
    assert set(report.left_at_initialisation) == {"head.weight", "head.bias"}
    assert report.unused_in_file == ()
    assert report.to_dict()["loaded_tensors"] == report.loaded


def test_file_tensors_the_network_lacks_are_reported_as_unused(tmp_path: Path):
    state = small_network().state_dict()
    state["extra.weight"] = torch.ones(2)
    path = tmp_path / "w.safetensors"
    save_state_dict(state, path)
    report = load_initial_weights(small_network(), path)
    assert report.unused_in_file == ("extra.weight",)
    assert report.left_at_initialisation == ()
    assert "1 file tensors unused (extra.weight)" in report.summary()


def test_a_wrong_prefix_matching_nothing_is_refused(tmp_path: Path):
    path = tmp_path / "r.safetensors"
    save_state_dict(small_network().state_dict(), path)
    with pytest.raises(WeightsError, match="no tensor .* matches the network with prefix 'segmentation.'"):
        load_initial_weights(Composite(), path, prefix="segmentation.")


def test_a_shape_mismatch_is_refused_with_the_shapes(tmp_path: Path):
    path = tmp_path / "w.safetensors"
    save_state_dict(nn.Sequential(nn.Conv2d(1, 4, 3)).state_dict(), path)  # 1 input channel, network wants 3
    with pytest.raises(WeightsError, match=r"0\.weight \(4, 1, 3, 3\) vs \(4, 3, 3, 3\)"):
        load_initial_weights(small_network(), path)


def test_a_missing_or_invalid_file_is_a_weights_error(tmp_path: Path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_initial_weights(small_network(), tmp_path / "absent.safetensors")
    pickled = tmp_path / "model.safetensors"
    torch.save(small_network().state_dict(), pickled)  # a pickle under the wrong name is never unpickled
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        load_initial_weights(small_network(), pickled)
