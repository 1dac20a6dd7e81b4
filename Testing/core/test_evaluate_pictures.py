"""``evaluate`` on a 2D picture folder: figures on the picture's grid and at the network's input size (the papers'
protocol), per image, to CSV and a summary; the wrong kind of model is refused.

The model here is a Mobile U-ViT whose head is zeroed and biased, so it marks every pixel foreground (or none), and
every expected figure follows from the mask's area alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from picture_models import write_card

from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.resources import models_dir


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """Three 128x128 grey pictures; masks (0/255) of 64x64, 32x32 and 16x16 squares on even coordinates, so the
    nearest-neighbour resize to 64x64 keeps exactly a quarter of each square's pixels."""
    folder = tmp_path / "pictures"
    for sub in ("images", "masks", "splits"):
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, side in (("a", 64), ("b", 32), ("c", 16)):
        sitk.WriteImage(sitk.GetImageFromArray(rng.integers(0, 255, (128, 128), dtype=np.uint8)),
                        str(folder / "images" / f"{name}.png"))
        mask = np.zeros((128, 128), np.uint8)
        mask[32: 32 + side, 32: 32 + side] = 255
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(folder / "masks" / f"{name}.png"))
    (folder / "splits" / "val.txt").write_text("a.png\nb.png\n", encoding="utf-8")
    return folder


def test_pictures_are_scored_on_their_grid_and_at_the_input_size_per_image(pictures: Path, tmp_path: Path, capsys):
    card = write_card(tmp_path, head_bias=4.0)
    output = tmp_path / "eval"
    assert main(["evaluate", str(pictures), "--model", str(card), "-o", str(output), "--id-list", "val.txt",
                 "--threads", "1"]) == 0
    rows = list(csv.DictReader((output / "per_case.csv").open(encoding="utf-8")))
    assert [row["case"] for row in rows] == ["a", "b"]
    # Everything predicted: IoU = mask area / picture area, on the 128^2 grid and on the 64^2 input alike.
    expected_iou = {"a": 64**2 / 128**2, "b": 32**2 / 128**2}
    for row in rows:
        iou = expected_iou[row["case"]]
        assert float(row["iou"]) == pytest.approx(iou, abs=1e-4)
        assert float(row["iou_at_patch_size"]) == pytest.approx(iou, abs=1e-4)
        assert float(row["dice"]) == pytest.approx(2 * iou / (1 + iou), abs=1e-4)
        assert row["hd95_px"] != ""  # pictures carry no spacing: the distance is in pixels, and says so
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["cases"] == 2 and summary["id_list"] == "val.txt" and summary["hd95_unit"] == "pixels"
    assert summary["mean_iou_at_patch_size"] == pytest.approx(np.mean(list(expected_iou.values())), abs=1e-4)
    assert "papers' protocol" in summary["patch_size_protocol"]
    assert "at the network's input size (the papers' protocol)" in capsys.readouterr().out


def test_a_model_that_finds_nothing_scores_zero_and_an_undefined_distance(pictures: Path, tmp_path: Path):
    card = write_card(tmp_path, head_bias=-4.0)
    output = tmp_path / "eval"
    assert main(["evaluate", str(pictures), "--model", str(card), "-o", str(output), "--threads", "1"]) == 0
    rows = list(csv.DictReader((output / "per_case.csv").open(encoding="utf-8")))
    assert [row["case"] for row in rows] == ["a", "b", "c"]  # no list: every picture with a mask
    assert all(float(row["dice"]) == 0 == float(row["dice_at_patch_size"]) and row["hd95_px"] == "" for row in rows)


def test_the_wrong_kind_of_model_or_option_is_one_clear_line(pictures: Path, tmp_path: Path, capsys):
    assert main(["evaluate", str(pictures), "--model", str(models_dir() / "hippocampus-mri.card.json"),
                 "-o", str(tmp_path / "eval")]) == 2
    assert "is a 3D model but" in capsys.readouterr().err
    card = write_card(tmp_path, head_bias=4.0)
    (pictures / "masks" / "c.png").unlink()
    assert main(["evaluate", str(pictures), "--model", str(card), "-o", str(tmp_path / "eval"),
                 "--id-list", str(pictures / "splits" / "val.txt"), "--threads", "1"]) == 0
    (pictures / "splits" / "all.txt").write_text("a\nc\n", encoding="utf-8")
    assert main(["evaluate", str(pictures), "--model", str(card), "-o", str(tmp_path / "eval"),
                 "--id-list", "all.txt"]) == 2
    assert "have no reference mask, e.g. c" in capsys.readouterr().err
