"""``mobileuvit-segment convert``: an official checkpoint becomes weights and a card that ``segment`` uses; a bad file
fails with one line, exit code 2, and nothing written.

The official checkpoints are written here with ``torch.save`` under the official key names, produced from our own
network through the inverse renaming table (the format tests check that table against the official key listings).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.catalog import Catalog
from MobileUViTSegmentLib.cli.main import main
from MobileUViTSegmentLib.conversion.mobile_u_vit_formats import ours_to_official
from MobileUViTSegmentLib.model_loading import load_network
from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.resources import models_dir, sample_data_dir
from MobileUViTSegmentLib.weights import sha256_of

HIPPOCAMPUS_CARD = models_dir() / "hippocampus-mri.card.json"


def write_official_checkpoint(path: Path, architecture: str, wrap: bool = True, **config) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {ours_to_official(key): value for key, value in create_model(architecture, **config).state_dict().items()}
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 300} if wrap
               else state, path)
    return state


def test_plain_state_dict_pth_converts_into_a_card_that_segment_uses(tmp_path, capsys):
    checkpoint = tmp_path / "BTCV_mobileuvit.pth"
    official = write_official_checkpoint(checkpoint, "mobileuvit_s", wrap=False, spatial_dims=3, out_channels=3)
    output = tmp_path / "models"
    assert main(["convert", str(checkpoint), "--format", "mobileuvit_3d_s_official", "-o", str(output),
                 "--model-id", "hippocampus-official", "--card-template", str(HIPPOCAMPUS_CARD)]) == 0
    card_path = output / "hippocampus-official.card.json"
    card = load_card(card_path)
    assert card.architecture == "mobileuvit_s"
    assert card.architecture_config == {"spatial_dims": 3, "in_channels": 1, "out_channels": 3}
    assert [label.name for label in card.labels] == ["anterior hippocampus", "posterior hippocampus"]
    assert card.input.patch_size == (48, 64, 48)  # the template's input space
    assert card.training["official_format"] == "mobileuvit_3d_s_official"
    assert card.training["official_sha256"] == sha256_of(checkpoint)
    assert "converted" in card.description and "not measured" in card.description.lower()
    assert card.metrics == {"note": card.training["note"]}  # the template's figures are not carried over
    assert "validation" not in card.metrics and not card.timings
    assert (output / "hippocampus-official.safetensors.sha256").read_text().split()[0] == card.weights.sha256
    # The weights verify, load strictly, and equal the official tensors.
    network = load_network(Catalog().get(str(card_path)), torch.device("cpu"))
    for key, value in network.state_dict().items():
        assert torch.equal(value, official[ours_to_official(key)]), key
    capsys.readouterr()
    segmentation = tmp_path / "case.nii.gz"
    assert main(["segment", str(sample_data_dir() / "hippocampus_046.nii.gz"), "-o", str(segmentation),
                 "--model", str(card_path), "--quiet"]) == 0
    assert segmentation.is_file()


def test_2d_checkpoint_gets_a_binary_card_with_the_given_label(tmp_path):
    checkpoint = tmp_path / "busi.pth"
    write_official_checkpoint(checkpoint, "mobileuvit_s", spatial_dims=2)
    assert main(["convert", str(checkpoint), "--format", "mobileuvit_2d_s_official", "-o", str(tmp_path / "out"),
                 "--labels", "breast lesion"]) == 0
    data = json.loads((tmp_path / "out" / "busi.card.json").read_text())
    assert data["architecture"]["config"] == {"spatial_dims": 2, "in_channels": 3, "out_channels": 1}
    assert data["architecture"]["parameters"] == 1_390_305
    assert [label["name"] for label in data["labels"]] == ["breast lesion"]
    assert data["input"]["channels"] == 3 and data["input"]["patch_size"] == [256, 256]


def test_list_formats_names_every_mobile_u_vit_format(capsys):
    assert main(["convert", "--list-formats"]) == 0
    listed = capsys.readouterr().out
    for name in ("mobileuvit_2d_s_official", "mobileuvit_2d_l_official", "mobileuvit_3d_s_official",
                 "mobileuvit_3d_l_official", "mobileutr_l_2024_official", "mobileutr_s_2024_official"):
        assert name in listed


def assert_failed_cleanly(capsys, output: Path, *phrases: str) -> None:
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("mobileuvit-segment: error:"), error
    for phrase in phrases:
        assert phrase in error, error
    assert not output.exists()


def test_checkpoint_of_another_variant_fails_with_one_line_and_writes_nothing(tmp_path, capsys):
    checkpoint = tmp_path / "large.pth"
    write_official_checkpoint(checkpoint, "mobileuvit_l", spatial_dims=2)
    output = tmp_path / "out"
    assert main(["convert", str(checkpoint), "--format", "mobileuvit_2d_s_official", "-o", str(output)]) == 2
    assert_failed_cleanly(capsys, output, "large.pth is not a mobileuvit_2d_s_official checkpoint", "L variant")


def test_pickled_object_fails_with_one_line_and_writes_nothing(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    checkpoint = tmp_path / "evil.pth"
    torch.save({"state_dict": {"head.weight": torch.zeros(1)}, "payload": Payload()}, checkpoint)
    output = tmp_path / "out"
    assert main(["convert", str(checkpoint), "--format", "mobileuvit_2d_s_official", "-o", str(output)]) == 2
    assert_failed_cleanly(capsys, output, "holds more than tensors")


@pytest.mark.parametrize("arguments, phrase", [
    (["--format", "no_such_format"], "unknown official format"),
    (["--format", "mobileuvit_2d_s_official", "--labels", "a", "b"], "--labels names 2"),
    (["--format", "mobileuvit_2d_s_official", "--card-template", str(HIPPOCAMPUS_CARD)], "is for 3D input"),
])
def test_bad_options_fail_with_one_line_and_write_nothing(tmp_path, capsys, arguments, phrase):
    checkpoint = tmp_path / "small.pth"
    write_official_checkpoint(checkpoint, "mobileuvit_s", spatial_dims=2)
    output = tmp_path / "out"
    assert main(["convert", str(checkpoint), "-o", str(output), *arguments]) == 2
    assert_failed_cleanly(capsys, output, phrase)


def test_existing_model_is_not_overwritten(tmp_path, capsys):
    checkpoint = tmp_path / "small.pth"
    write_official_checkpoint(checkpoint, "mobileuvit_s", spatial_dims=2)
    output = tmp_path / "out"
    output.mkdir()
    (output / "small.card.json").write_text("{}")
    assert main(["convert", str(checkpoint), "--format", "mobileuvit_2d_s_official", "-o", str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(path.name for path in output.iterdir()) == ["small.card.json"]
