"""MambaMIM end to end: ``pretrain`` on hippocampus images, ``train --init-weights`` HyMamba from its encoder, then
``segment`` with the trained card. Tiny sizes so it runs in seconds; the real-scale run is in the README."""

from __future__ import annotations

import json

import SimpleITK as sitk
from dataset_subsets import hippocampus_subset
from tiny_hymamba import tiny_recipes

from MobileUViTSegmentLib.cli.main import main
from MobileUViTSegmentLib.resources import sample_data_dir


def test_pretrained_encoder_fine_tunes_through_train_and_the_model_segments(hippocampus_dataset, tmp_path):
    data = hippocampus_subset(hippocampus_dataset, ("hippocampus_001", "hippocampus_003", "hippocampus_004",
                                                    "hippocampus_006"), tmp_path / "data")
    pretrain_recipe, segmentation_recipe = tiny_recipes(tmp_path)

    assert main(["pretrain", str(data / "imagesTr"), "-o", str(tmp_path / "mim"), "--recipe", str(pretrain_recipe),
                 "--threads", "1"]) == 0
    encoder = tmp_path / "mim" / "tiny-mambamim.encoder.safetensors"
    assert main(["train", str(data), "-o", str(tmp_path / "run"), "--recipe", str(segmentation_recipe),
                 "--epochs", "1", "--batch-size", "2", "--validation-every", "1", "--device", "cpu",
                 "--init-weights", str(encoder)]) == 0

    card_path = tmp_path / "run" / "hippocampus-mri-hymamba-small.card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    report = card["training"]["initial_weights"]
    assert report["file"].endswith("tiny-mambamim.encoder.safetensors") and report["unused_in_file"] == []
    assert report["loaded_tensors"] > 0
    assert all(name.startswith("decoder.") for name in report["left_at_initialisation"])  # only the decoder is new
    assert card["architecture"]["name"] == "hymamba_small"

    sample = sample_data_dir() / "hippocampus_046.nii.gz"
    result = tmp_path / "labels.nii.gz"
    assert main(["segment", str(sample), "-o", str(result), "--model", str(card_path), "--quiet"]) == 0
    labels, image = sitk.ReadImage(str(result)), sitk.ReadImage(str(sample))
    assert labels.GetSize() == image.GetSize() and labels.GetOrigin() == image.GetOrigin()
    assert labels.GetSpacing() == image.GetSpacing() and labels.GetDirection() == image.GetDirection()
    assert set(sitk.GetArrayViewFromImage(labels).ravel().tolist()) <= {0, 1, 2}
