"""The engine on 2D pictures: single-logit models threshold sigmoid at 0.5, results land on the picture's own pixel
grid, colour pictures feed grey models, grey volumes run slice by slice except through a model of colour photographs,
and reconstruction cards are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from picture_models import write_card
from torch import nn

from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.errors import ModelError
from MobileUViTSegmentLib.image_io import match_components, read_image
from MobileUViTSegmentLib.inference.engine import Segmenter
from MobileUViTSegmentLib.inference.predictor import slice_batch_probabilities


class Identity2d(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]


def test_a_single_logit_is_foreground_exactly_where_its_sigmoid_exceeds_one_half():
    logits = np.full((1, 50, 70), -2.0, np.float32)
    logits[:, :, 35:] = 2.0
    probabilities = slice_batch_probabilities(Identity2d(), logits, (32, 32))
    assert probabilities.shape == (2, 50, 70)  # background, foreground on the input's own grid
    labels = probabilities.argmax(0)
    assert (labels[:, :30] == 0).all() and (labels[:, 40:] == 1).all()
    assert np.allclose(probabilities.sum(0), 1.0)


@pytest.mark.parametrize(("bias", "expected"), [(4.0, 1), (-4.0, 0)])
def test_a_colour_picture_is_segmented_by_a_grey_model_on_its_own_grid(tmp_path: Path, bias: float, expected: int):
    picture = tmp_path / "picture.png"
    rng = np.random.default_rng(0)
    sitk.WriteImage(sitk.GetImageFromArray(rng.integers(0, 255, (75, 90, 3), np.uint8), isVector=True),
                    str(picture))
    output = tmp_path / "labels.png"
    assert main(["segment", str(picture), "-o", str(output), "--model", str(write_card(tmp_path, head_bias=bias)),
                 "--quiet"]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))
    assert labels.shape == (75, 90) and set(np.unique(labels)) == {expected}  # label values, not 0/255


def test_a_2d_nrrd_result_keeps_the_pictures_spacing_and_origin(tmp_path: Path):
    image = sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 255, (40, 60)).astype(np.uint8))
    image.SetSpacing((0.3, 0.7))
    image.SetOrigin((12.0, -4.0))
    source, output = tmp_path / "scan.nrrd", tmp_path / "labels.nrrd"
    sitk.WriteImage(image, str(source))
    assert main(["segment", str(source), "-o", str(output), "--model", str(write_card(tmp_path, head_bias=4.0)),
                 "--quiet"]) == 0
    labels = sitk.ReadImage(str(output))
    assert labels.GetSize() == (60, 40) and labels.GetSpacing() == (0.3, 0.7) and labels.GetOrigin() == (12.0, -4.0)


def test_a_reconstruction_card_is_refused_before_any_network_work(tmp_path: Path):
    card = load_card(write_card(tmp_path, kind="reconstruction"))
    with pytest.raises(ModelError, match="grey-2d is a reconstruction network, not a segmenter"):
        Segmenter(card, torch.device("cpu"))


def test_colour_pictures_match_the_models_channels(tmp_path: Path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 100, 200, 50, 255
    path = tmp_path / "rgba.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(path))
    picture = read_image(path)
    grey = match_components(picture, 1)
    assert grey.GetNumberOfComponentsPerPixel() == 1
    assert np.allclose(sitk.GetArrayFromImage(grey), 0.299 * 100 + 0.587 * 200 + 0.114 * 50, atol=1e-3)
    colour = match_components(picture, 3)
    assert colour.GetNumberOfComponentsPerPixel() == 3
    assert sitk.GetArrayFromImage(colour)[0, 0].tolist() == [100, 200, 50]


def test_a_grey_volume_runs_slice_by_slice_through_an_ultrasound_model_but_not_a_colour_photography_one(
        tmp_path: Path, capsys):
    """A grey sweep suits an ultrasound model; for an endoscopy model a grey volume is a CT or MR picked by mistake."""
    volume = sitk.GetImageFromArray(np.random.default_rng(2).integers(0, 255, (6, 40, 50)).astype(np.uint8))
    volume.SetSpacing((0.5, 0.5, 2.0))
    source = tmp_path / "sweep.nrrd"
    sitk.WriteImage(volume, str(source))

    ultrasound = tmp_path / "us"
    ultrasound.mkdir()
    output = tmp_path / "labels.nrrd"
    assert main(["segment", str(source), "-o", str(output), "--model",
                 str(write_card(ultrasound, head_bias=4.0, modality="US")), "--quiet"]) == 0
    labels = sitk.ReadImage(str(output))
    assert labels.GetSize() == (50, 40, 6) and labels.GetSpacing() == (0.5, 0.5, 2.0)
    assert set(np.unique(sitk.GetArrayFromImage(labels))) == {1}

    endoscopy = tmp_path / "es"
    endoscopy.mkdir()
    refused = tmp_path / "refused.nrrd"
    capsys.readouterr()
    code = main(["segment", str(source), "-o", str(refused), "--model",
                 str(write_card(endoscopy, head_bias=4.0, modality="ES")), "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and not refused.exists()
    assert error.count("\n") == 0 and "is a grey volume of 6 slices" in error and "needs a 3D model" in error

    picture = tmp_path / "grey.png"  # one grey picture is still taken (repeated to three channels)
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(3).integers(0, 255, (40, 50)).astype(np.uint8)),
                    str(picture))
    assert main(["segment", str(picture), "-o", str(tmp_path / "picture-labels.png"), "--model",
                 str(endoscopy / "grey-2d.card.json"), "--quiet"]) == 0
