"""Engine paths beyond a plain 3D file: DICOM series folders, 2D models slice by slice, progress and cancel."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.errors import Cancelled
from MobileUViTSegmentLib.image_io import read_image
from MobileUViTSegmentLib.inference.engine import Segmenter
from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.progress import CancelToken
from MobileUViTSegmentLib.resources import models_dir, sample_data_dir
from MobileUViTSegmentLib.weights import save_state_dict

SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"


def write_dicom_series(image: sitk.Image, folder: Path) -> None:
    """One DICOM file per slice with the geometry tags a reader needs (position, orientation, spacing)."""
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    orientation = "\\".join(str(v) for v in (direction[0], direction[3], direction[6],
                                             direction[1], direction[4], direction[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.99.1"
    for index in range(image.GetDepth()):
        slice_image = image[:, :, index]
        for tag, value in {"0020|000d": "1.2.826.0.1.3680043.2.1125.99", "0020|000e": series, "0008|0060": "MR",
                           "0020|0037": orientation, "0018|0050": str(image.GetSpacing()[2]),
                           "0020|0032": "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, index))),
                           "0020|0013": str(index + 1), "0008|0018": f"{series}.{index + 1}"}.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{index:03d}.dcm"))
        writer.Execute(slice_image)


def test_a_dicom_series_folder_is_segmented_onto_the_series_grid(tmp_path: Path):
    # DICOM stores integers; the sample's voxels are floats, so both paths start from the same rounded voxels.
    integer_volume = tmp_path / "integer_volume.nrrd"
    sitk.WriteImage(sitk.Cast(sitk.Round(read_image(SAMPLE)), sitk.sitkInt16), str(integer_volume))
    series = tmp_path / "series"
    series.mkdir()
    write_dicom_series(read_image(integer_volume), series)
    output = tmp_path / "result.nrrd"
    assert main(["segment", str(series), "-o", str(output), "--quiet"]) == 0
    labels, volume = sitk.ReadImage(str(output)), read_image(series)
    assert labels.GetSize() == volume.GetSize()
    assert np.allclose(labels.GetOrigin(), volume.GetOrigin()) and np.allclose(labels.GetDirection(),
                                                                              volume.GetDirection())
    # Same voxels as the file it was made from, so the same segmentation.
    from_file = tmp_path / "from_file.nrrd"
    assert main(["segment", str(integer_volume), "-o", str(from_file), "--quiet"]) == 0
    assert np.array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(sitk.ReadImage(str(from_file))))


@pytest.fixture
def two_dimensional_card(tmp_path: Path) -> Path:
    """A binary 2D Mobile U-ViT card with untrained weights: it exercises the 2D engine path only (no figures)."""
    card = json.loads((models_dir() / f"{DEFAULT_MODEL_ID}.card.json").read_text())
    card.update(id="test-2d", title="2D engine test", modality="US", task="engine test only")
    card["labels"] = card["labels"][:1]
    card["architecture"] = {"name": "mobileuvit_s", "config": {"spatial_dims": 2, "in_channels": 3,
                                                                 "out_channels": 1}}
    card["input"] = {"spatial_dims": 2, "channels": 3, "spacing": None, "orientation": None,
                     "intensity": {"method": "unit"}, "patch_size": [64, 64]}
    torch.manual_seed(0)
    card["weights"] = asdict(save_state_dict(create_model("mobileuvit_s", spatial_dims=2).state_dict(),
                                      tmp_path / "test-2d.safetensors"))
    card["metrics"] = {}
    path = tmp_path / "test-2d.card.json"
    path.write_text(json.dumps(card))
    return path


def test_a_2d_model_segments_a_png_into_a_png_label_map_of_the_same_size(two_dimensional_card: Path, tmp_path: Path):
    picture = tmp_path / "picture.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(1).integers(0, 255, (75, 90, 3), np.uint8),
                                           isVector=True), str(picture))
    output = tmp_path / "labels.png"
    assert main(["segment", str(picture), "-o", str(output), "--model", str(two_dimensional_card), "--quiet",
                 "--no-postprocess"]) == 0
    labels = sitk.ReadImage(str(output))
    assert labels.GetSize() == (90, 75)
    assert set(np.unique(sitk.GetArrayViewFromImage(labels))) <= {0, 1}


def test_a_2d_model_segments_a_volume_slice_by_slice_on_its_grid(two_dimensional_card: Path):
    image = read_image(SAMPLE)
    result = Segmenter(load_card(two_dimensional_card), torch.device("cpu")).segment(image)
    assert result.labels.GetSize() == image.GetSize() and result.labels.GetDirection() == image.GetDirection()


def test_progress_rises_through_the_stages_and_ends_at_one():
    events = []
    Segmenter(Catalog().get(DEFAULT_MODEL_ID), torch.device("cpu")).segment(read_image(SAMPLE),
                                                                           progress=events.append)
    fractions = [event.fraction for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [stage for stage in dict.fromkeys(event.stage for event in events)] == [
        "preparing", "inferring", "restoring", "postprocessing"]


def test_cancelling_during_inference_raises_cancelled_and_returns_nothing():
    token = CancelToken()

    def cancel_when_inferring(event):
        if event.stage == "inferring":
            token.cancel()

    segmenter = Segmenter(Catalog().get(DEFAULT_MODEL_ID), torch.device("cpu"))
    with pytest.raises(Cancelled, match="nothing was written"):
        segmenter.segment(read_image(SAMPLE), progress=cancel_when_inferring, cancel=token)
