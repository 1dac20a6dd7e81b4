"""``--init-weights``: a safetensors file loads into a network under a prefix, and says what it loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from MobileUViTSegmentLib.errors import WeightsError
from MobileUViTSegmentLib.training.initial_weights import load_initial_weights, weights_provenance
from MobileUViTSegmentLib.weights import save_state_dict, sha256_of


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


def write_parent_card(folder: Path, weights: Path, sha256: str, **training) -> Path:
    card = {"id": "parent-model", "version": "1.0.0", "weights": {"file": weights.name, "sha256": sha256},
            "training": {"command": "mobileuvit-segment train data -o runs/parent --epochs 48",
                         "working_directory": "MobileUViTSegment", "epochs_run": 48, "config": {"epochs": 48},
                         **training}}
    path = folder / "parent-model.card.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    return path


def test_the_report_names_the_file_by_sha256_and_the_parent_card_that_vouches_for_it(tmp_path: Path):
    path = tmp_path / "parent-model.safetensors"
    save_state_dict(small_network().state_dict(), path)
    grandparent = {"file": "r.safetensors", "sha256": "ab" * 32}
    write_parent_card(tmp_path, path, sha256_of(path), initial_weights=grandparent)

    record = load_initial_weights(small_network(), path).to_dict()

    assert record["sha256"] == sha256_of(path)
    parent = record["parent"]
    assert (parent["id"], parent["version"], parent["card"]) == ("parent-model", "1.0.0", "parent-model.card.json")
    assert parent["training"]["command"] == "mobileuvit-segment train data -o runs/parent --epochs 48"
    assert parent["training"]["epochs_run"] == 48
    assert parent["training"]["initial_weights"] == grandparent  # the whole chain of commands, not just the last
    assert "config" not in parent["training"]  # the parent's card has the rest


def test_a_card_naming_the_file_with_another_sha256_is_no_parent(tmp_path: Path):
    path = tmp_path / "parent-model.safetensors"
    save_state_dict(small_network().state_dict(), path)
    write_parent_card(tmp_path, path, "00" * 32)  # the file was replaced after this card was written
    (tmp_path / "broken.card.json").write_text("{not json", encoding="utf-8")

    provenance = weights_provenance(path)

    assert provenance == {"sha256": sha256_of(path)}
    assert "parent" not in load_initial_weights(small_network(), path).to_dict()
