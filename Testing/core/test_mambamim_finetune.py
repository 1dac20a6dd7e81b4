"""MambaMIM end to end: ``pretrain`` on hippocampus images, ``train --init-weights`` HyMamba from its encoder, then
``segment`` with the trained card. Tiny sizes so it runs in seconds; the real-scale run is in the README."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import SimpleITK as sitk

from MobileUViTSegmentLib.cli.main import main
from MobileUViTSegmentLib.resources import models_dir, sample_data_dir

ARCHITECTURE = {"channels": [4, 8, 16, 24, 48], "d_state": 4, "mamba_depth": 1}
PATCH = [32, 48, 32]
SEGMENTATION_RECIPE = models_dir() / "recipes" / "hippocampus-mri-hymamba-small.recipe.json"


def tiny_recipes(folder: Path) -> tuple[Path, Path]:
    """The shipped HyMamba-small recipes, shrunk to a tiny network and window (same structure, same keys)."""
    pretrain = {
        "id": "tiny-mambamim",
        "architecture": {"name": "hymamba_small", "config": {**ARCHITECTURE, "img_size": PATCH}},
        "input": {"spatial_dims": 3, "channels": 1, "spacing": [1.0, 1.0, 1.0], "orientation": "RAS",
                  "intensity": {"method": "zscore"}, "patch_size": PATCH},
        "pretraining": {"epochs": 1, "batch_size": 2, "learning_rate": 0.003, "warmup_epochs": 1, "seed": 0},
    }
    segmentation = json.loads(SEGMENTATION_RECIPE.read_text(encoding="utf-8"))
    segmentation["card"]["architecture"]["config"].update({**ARCHITECTURE, "img_size": PATCH})
    segmentation["card"]["input"]["patch_size"] = PATCH
    paths = folder / "pretrain.json", folder / "segmentation.json"
    for path, recipe in zip(paths, (pretrain, segmentation)):
        path.write_text(json.dumps(recipe), encoding="utf-8")
    return paths


def test_pretrained_encoder_fine_tunes_through_train_and_the_model_segments(hippocampus_dataset, tmp_path):
    data = tmp_path / "data"
    for sub in ("imagesTr", "labelsTr"):
        (data / sub).mkdir(parents=True)
    for name in ("hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006"):
        for sub in ("imagesTr", "labelsTr"):
            shutil.copy(hippocampus_dataset / sub / f"{name}.nii.gz", data / sub / f"{name}.nii.gz")
    shutil.copy(hippocampus_dataset / "dataset.json", data / "dataset.json")
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
