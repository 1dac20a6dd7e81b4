"""The acquisition-shift study (``studies/picture_shifts.py``): every shifted copy keeps each mask on its picture's
grid, the shifts change what they claim to, and the study evaluates the shipped 2D model on its own held-out list."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MobileUViTSegmentLib.training.image_folder import read_image_folder

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "studies"))
sys.path.insert(0, str(REPOSITORY / "tools"))

import picture_shifts as study  # noqa: E402
import readme_tables  # noqa: E402

IDS = ["benign (131)", "benign (301)", "malignant (63)"]


@pytest.fixture
def small_busi(busi_dataset: Path, tmp_path: Path) -> Path:
    """Three BUSI pictures, listed as busi_val1.txt like the card's held-out list."""
    folder = tmp_path / "busi"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for name in IDS:
            shutil.copy(busi_dataset / sub / f"{name}.png", folder / sub / f"{name}.png")
    (folder / "splits").mkdir()
    (folder / "splits" / "busi_val1.txt").write_text("\n".join(IDS) + "\n", encoding="utf-8")
    return folder


def test_every_shift_keeps_the_masks_on_the_pictures_grid_and_changes_what_it_says(small_busi, tmp_path):
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(small_busi / "images" / f"{IDS[0]}.png"))).astype(float)
    pictures = read_image_folder(small_busi)
    for shift in study.SHIFTS:
        folder = study.write_shifted(pictures, IDS, shift, tmp_path / shift)
        for name in IDS:
            picture = sitk.ReadImage(str(next((folder / "images").glob(f"{name}.*"))))
            mask = sitk.ReadImage(str(next((folder / "masks").glob(f"{name}.*"))))
            assert picture.GetSize() == mask.GetSize(), (shift, name)
        pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(next((folder / "images").glob(f"{IDS[0]}.*")))))
        if shift == "darker":
            assert pixels.mean() < original.mean() - 10
        elif shift == "half-resolution":
            assert pixels.shape[:2] == tuple(extent // 2 for extent in original.shape[:2])
        elif shift == "low-contrast":
            assert pixels.std() < 0.7 * original.std()
    assert (tmp_path / "jpeg" / "images" / f"{IDS[0]}.jpg").is_file()


def test_the_study_evaluates_the_model_on_its_held_out_list_under_each_shift(small_busi, tmp_path):
    results_file = tmp_path / "results.json"
    results = study.run_study(study.parse_arguments(
        [str(small_busi), "--model", "breast-ultrasound", "--output", str(tmp_path / "run"), "--shifts", "darker",
         "half-resolution", "--device", "cpu", "--threads", "1", "--results", str(results_file)]))
    assert json.loads(results_file.read_text()) == results
    assert results["held_out"] == "busi_val1.txt" and results["cases"] == 3
    assert [row["shift"] for row in results["rows"]] == ["original", "darker", "half-resolution"]
    assert all(row["cases"] == 3 and 0 <= row["dice_at_patch_size"] <= 1 for row in results["rows"])
    direct = tmp_path / "direct"
    from MobileUViTSegmentLib.cli import main

    assert main(["evaluate", str(small_busi), "--model", "breast-ultrasound", "--id-list", "busi_val1.txt", "-o",
                 str(direct), "--device", "cpu"]) == 0
    measured = json.loads((direct / "summary.json").read_text())["mean_dice_at_patch_size"]
    assert results["rows"][0]["dice_at_patch_size"] == pytest.approx(measured, abs=1e-9)

    table = readme_tables.picture_shift_tables([results_file])
    assert "| original | the held-out pictures as they are |" in table and "| darker | under-exposed" in table
    assert f"| {np.round(0.0, 3):+.3f} |" in table  # the original row's change is zero
