"""Comparing a segmentation with a reference: hand-computed scores, ``evaluate --prediction --reference``, names."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
import torch

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.comparison import (
    COMPARED,
    COMPARISON_COLUMNS,
    NOT_IN_REFERENCE,
    ONLY_IN_REFERENCE,
    compare_segmentations,
    write_comparison_csv,
)
from MobileUViTSegmentLib.errors import InputError
from MobileUViTSegmentLib.evaluation import evaluate_cases, summarize
from MobileUViTSegmentLib.image_io import read_image
from MobileUViTSegmentLib.metrics import score_labels
from MobileUViTSegmentLib.outputs import ijk_to_lps
from MobileUViTSegmentLib.resources import sample_data_dir

MODULE_DIR = Path(__file__).resolve().parents[2] / "MobileUViTSegment"
SAMPLE_IMAGE = sample_data_dir() / "hippocampus_046.nii.gz"
SAMPLE_LABEL = sample_data_dir() / "hippocampus_046_label.nii.gz"
CARD = Catalog().get(DEFAULT_MODEL_ID)
CARD_NAMES = {label.value: label.name for label in CARD.labels}
SCORES = ("dice", "iou", "hd95")


def label_image(array: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(spacing)
    return image


def two_cubes() -> tuple[sitk.Image, sitk.Image]:
    """4x4x4 cubes of label 1, the reference shifted by one voxel along x; label 2 only in the reference."""
    prediction, reference = np.zeros((10, 10, 10)), np.zeros((10, 10, 10))
    prediction[2:6, 2:6, 2:6] = 1
    reference[2:6, 2:6, 3:7] = 1
    reference[7:9, 7:9, 7:9] = 2
    return label_image(prediction), label_image(reference)


def shifted_sample(tmp_path: Path) -> Path:
    """The sample's label moved one voxel along x: a plausible imperfect segmentation on the same grid."""
    reference = read_image(SAMPLE_LABEL)
    moved = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(reference), 1, axis=2))
    moved.CopyInformation(reference)
    path = tmp_path / "shifted.nii.gz"
    sitk.WriteImage(moved, str(path))
    return path


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def evaluate_files(prediction: Path, reference: Path, output: Path, *extra: str) -> int:
    return main(["evaluate", "--prediction", str(prediction), "--reference", str(reference), "-o", str(output),
                 *extra])


def test_scores_and_volumes_match_hand_computed_values_on_small_masks():
    rows = compare_segmentations(*two_cubes(), {1: "cube", 2: "missed"})
    cube, missed = rows
    # 64 voxels each, 48 shared: Dice 2*48/128, IoU 48/80; voxels of 1 x 1 x 2 mm.
    assert (cube.dice, cube.iou) == (0.75, 0.6)
    assert cube.hd95 == 1.0  # the two x faces lie one millimetre apart; all other surface voxels coincide
    assert (cube.predicted_voxels, cube.reference_voxels) == (64, 64)
    assert cube.volume_ml == cube.reference_volume_ml == pytest.approx(0.128)
    assert cube.volume_difference_ml == 0.0 and cube.relative_volume_difference == 0.0
    assert (missed.dice, missed.iou, missed.predicted_voxels, missed.reference_voxels) == (0.0, 0.0, 0, 8)
    assert math.isnan(missed.hd95) and missed.relative_volume_difference == -1.0
    assert missed.volume_difference_ml == pytest.approx(-0.016)
    assert all(row.status == COMPARED for row in rows)


def test_identical_inputs_give_dice_1_hd95_0_and_no_volume_difference():
    labels = read_image(SAMPLE_LABEL)
    for row in compare_segmentations(labels, labels, CARD_NAMES):
        assert (row.dice, row.iou, row.hd95, row.volume_difference_ml, row.relative_volume_difference) == \
            (1.0, 1.0, 0.0, 0.0, 0.0)


def test_an_empty_prediction_writes_an_empty_hd95_cell_and_a_relative_difference_of_minus_one(tmp_path: Path):
    reference = read_image(SAMPLE_LABEL)
    empty = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(reference)
    write_comparison_csv(compare_segmentations(empty, reference, CARD_NAMES), tmp_path / "table.csv")
    rows = csv_rows(tmp_path / "table.csv")
    assert list(rows[0]) == list(COMPARISON_COLUMNS)
    for row in rows:
        assert (row["dice"], row["hd95_mm"], row["relative_volume_difference"], row["predicted_voxels"]) == \
            ("0.000000", "", "-1.000000", "0")


def test_evaluate_with_two_files_gives_compare_segmentations_and_score_labels_numbers(tmp_path: Path, capsys):
    prediction = shifted_sample(tmp_path)
    assert evaluate_files(prediction, SAMPLE_LABEL, tmp_path / "out", "--model", DEFAULT_MODEL_ID) == 0
    assert "mean Dice" in capsys.readouterr().out
    rows = csv_rows(tmp_path / "out" / "per_label.csv")
    expected = compare_segmentations(read_image(prediction), read_image(SAMPLE_LABEL), CARD_NAMES)
    scores = score_labels(read_image(prediction), read_image(SAMPLE_LABEL), list(CARD_NAMES))
    assert [row["name"] for row in rows] == list(CARD_NAMES.values())
    for row, compared in zip(rows, expected):
        score = scores[compared.label_value]
        for column, field in (("dice", "dice"), ("iou", "iou"), ("hd95_mm", "hd95")):
            assert float(row[column]) == pytest.approx(getattr(compared, field), abs=1e-6)
            assert getattr(compared, field) == getattr(score, field)
        for column in ("volume_ml", "reference_volume_ml", "volume_difference_ml", "relative_volume_difference"):
            assert float(row[column]) == pytest.approx(getattr(compared, column), abs=1e-6)
        assert (int(row["predicted_voxels"]), int(row["reference_voxels"])) == \
            (score.predicted_voxels, score.reference_voxels)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["mean_dice"] == round(float(np.mean([round(row.dice, 4) for row in expected])), 4)  # as model mode
    assert summary["per_label"]["anterior hippocampus"]["dice"] == expected[0].dice


def test_the_two_file_mode_scores_a_segmentation_as_the_model_mode_scores_the_same_output(tmp_path: Path):
    """The model mode's path (evaluate_cases + summarize) on a fixed "network output" equals the two-file mode."""
    prediction = shifted_sample(tmp_path)
    fixed = SimpleNamespace(card=CARD, segment=lambda image, options=None, name="": SimpleNamespace(
        labels=sitk.Cast(read_image(prediction), sitk.sitkUInt8)))
    (evaluation,) = evaluate_cases(fixed, [("hippocampus_046", SAMPLE_IMAGE, SAMPLE_LABEL)])
    model_summary = summarize([evaluation], CARD, torch.device("cpu"))
    assert evaluate_files(prediction, SAMPLE_LABEL, tmp_path / "out", "--model", DEFAULT_MODEL_ID) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in ("mean_dice", "mean_iou", "mean_hd95_mm"):
        assert summary[key] == model_summary[key], key
    for label in CARD.labels:
        for metric in SCORES:
            assert summary["per_label"][label.name][metric] == getattr(evaluation.scores[label.value], metric)


def test_seg_nrrd_segments_pair_by_name_ignoring_case_and_unpaired_ones_get_rows_of_their_own(tmp_path: Path):
    reference = read_image(SAMPLE_LABEL)
    voxels = sitk.GetArrayFromImage(reference).transpose(2, 1, 0)  # slicerio's (i, j, k)
    segmentation = slicerio.create_segmentation(voxels.shape, ijk_to_lps(reference))
    slicerio.add_segment(segmentation, voxels == 1, {"name": "Anterior HIPPOCAMPUS"})
    slicerio.add_segment(segmentation, voxels > 0, {"name": "whole hippocampus"})  # overlaps: a second layer
    slicerio.write_segmentation(str(tmp_path / "mine.seg.nrrd"), segmentation)
    assert evaluate_files(tmp_path / "mine.seg.nrrd", SAMPLE_LABEL, tmp_path / "out", "--model",
                          DEFAULT_MODEL_ID) == 0
    rows = csv_rows(tmp_path / "out" / "per_label.csv")
    assert [(row["name"], row["status"]) for row in rows] == [
        ("Anterior HIPPOCAMPUS", COMPARED), ("whole hippocampus", NOT_IN_REFERENCE),
        ("posterior hippocampus", ONLY_IN_REFERENCE)]
    assert (rows[0]["dice"], rows[0]["hd95_mm"], rows[0]["predicted_voxels"]) == ("1.000000", "0.000000", "1611")
    assert (rows[1]["predicted_voxels"], rows[1]["volume_ml"], rows[1]["dice"]) == ("3292", "3.292000", "")
    assert (rows[2]["reference_voxels"], rows[2]["predicted_voxels"]) == ("1681", "")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["labels_compared"], summary["not_in_reference"], summary["only_in_reference"]) == \
        (1, ["whole hippocampus"], ["posterior hippocampus"])


def test_names_in_common_are_needed_and_model_names_are_suggested_for_a_label_map(tmp_path: Path, capsys):
    reference = read_image(SAMPLE_LABEL)
    segmentation = slicerio.create_segmentation(reference.GetSize(), ijk_to_lps(reference))
    slicerio.add_segment(segmentation, sitk.GetArrayFromImage(reference).transpose(2, 1, 0) == 1,
                         {"name": "anterior hippocampus"})
    slicerio.write_segmentation(str(tmp_path / "mine.seg.nrrd"), segmentation)
    assert evaluate_files(tmp_path / "mine.seg.nrrd", SAMPLE_LABEL, tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "no segment of the reference has the name" in error and "give --model" in error


def test_files_on_different_grids_are_refused_naming_both_grids(tmp_path: Path, capsys):
    moved = read_image(SAMPLE_LABEL)
    moved.SetOrigin((5.5, 5.0, 5.0))  # half a voxel off: no voxel centre in common
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    assert evaluate_files(SAMPLE_LABEL, tmp_path / "moved.nii.gz", tmp_path / "out") == 2
    error = capsys.readouterr().err
    assert "the reference moved.nii.gz is not on the voxel grid of the prediction" in error
    assert "at (5.5, 5, 5)" in error and "at (-1, -1, 1)" in error
    moved.SetOrigin((5.0, 5.0, 5.0))  # whole voxels off: the same voxel centres, but the labels fall outside
    sitk.WriteImage(moved, str(tmp_path / "moved.nii.gz"))
    assert evaluate_files(SAMPLE_LABEL, tmp_path / "moved.nii.gz", tmp_path / "out") == 2
    assert "segmented voxels outside the grid of the prediction" in capsys.readouterr().err
    with pytest.raises(InputError, match="not on the voxel grid"):  # the core functions never move voxels
        compare_segmentations(read_image(SAMPLE_LABEL), moved, CARD_NAMES)


@pytest.mark.parametrize("arguments, message", [
    ([], "give a DATASET folder to evaluate a model, or --prediction and --reference"),
    (["dataset", "--prediction", "p.nii.gz", "--reference", "r.nii.gz"], "not both"),
    (["--prediction", "p.nii.gz"], "--prediction and --reference go together"),
    (["--reference", "r.nii.gz"], "--prediction and --reference go together"),
    (["--prediction", "p.nii.gz", "--reference", "r.nii.gz", "--split", "s.json"], "--split applies when a model"),
    (["--prediction", "p.nii.gz", "--reference", "r.nii.gz", "--record-in-card"], "--record-in-card applies"),
    (["--prediction", "missing.nii.gz", "--reference", "SAMPLE"], "prediction missing.nii.gz does not exist"),
])
def test_bad_combinations_of_arguments_exit_non_zero_with_a_clear_message(arguments, message, tmp_path, capsys):
    arguments = [str(SAMPLE_LABEL) if argument == "SAMPLE" else argument for argument in arguments]
    assert main(["evaluate", *arguments, "-o", str(tmp_path / "out")]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_comparing_files_never_imports_torch(tmp_path: Path):
    code = (
        "import sys\n"
        "import MobileUViTSegmentLib.comparison, MobileUViTSegmentLib.cli.evaluate_command\n"
        "from MobileUViTSegmentLib.cli.main import main\n"
        f"assert main(['evaluate', '--prediction', {str(SAMPLE_LABEL)!r}, '--reference', {str(SAMPLE_LABEL)!r}, "
        f"'-o', {str(tmp_path / 'out')!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=MODULE_DIR, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_a_result_segment_wrote_names_the_manual_label_map_without_model(tmp_path: Path, capsys):
    """``segment`` records its model in the .seg.nrrd, so comparing it with a label map needs no ``--model``."""
    from MobileUViTSegmentLib.outputs import write_result

    card = Catalog().get(DEFAULT_MODEL_ID)
    labels = read_image(SAMPLE_LABEL)
    write_result(labels, card, tmp_path / "run.seg.nrrd")
    assert evaluate_files(tmp_path / "run.seg.nrrd", SAMPLE_LABEL, tmp_path / "out") == 0
    assert f"named as model {DEFAULT_MODEL_ID} names them" in capsys.readouterr().out
    rows = csv_rows(tmp_path / "out" / "per_label.csv")
    assert [row["name"] for row in rows] == [label.name for label in card.labels]
    assert all(float(row["dice"]) == 1.0 for row in rows)
