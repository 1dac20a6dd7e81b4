"""``measure`` and the measurement table: volumes from the spacing, intensity statistics, confidence, CSV."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.errors import InputError
from MobileUViTSegmentLib.image_io import read_image
from MobileUViTSegmentLib.measurements import (
    MEASUREMENT_COLUMNS,
    measure_segments,
    write_measurements_csv,
)
from MobileUViTSegmentLib.outputs import write_seg_nrrd
from MobileUViTSegmentLib.resources import sample_data_dir
from MobileUViTSegmentLib.segmentation_files import read_segmentation_file

MODULE_DIR = Path(__file__).resolve().parents[2] / "MobileUViTSegment"
SAMPLE_IMAGE = sample_data_dir() / "hippocampus_046.nii.gz"
SAMPLE_LABEL = sample_data_dir() / "hippocampus_046_label.nii.gz"
CARD = Catalog().get(DEFAULT_MODEL_ID)
CARD_NAMES = {label.value: label.name for label in CARD.labels}


def image_from(array: np.ndarray, spacing=(0.5, 1.0, 2.0), direction=None, origin=(10.0, -20.0, 5.0)) -> sitk.Image:
    """A (z, y, x) array as an image with the given geometry."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def cube_case(direction=None) -> tuple[sitk.Image, sitk.Image, np.ndarray]:
    """A 10x10x10 cube (label 1) in a 20^3 image whose voxels count up from 0; the cube's intensities returned."""
    intensities = np.arange(20 ** 3, dtype=np.float32).reshape(20, 20, 20)
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:12, 5:15, 8:18] = 1
    return (image_from(labels, direction=direction), image_from(intensities, direction=direction),
            intensities[2:12, 5:15, 8:18])


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_a_cube_of_1000_voxels_at_half_by_1_by_2_mm_is_one_millilitre_with_its_own_intensities():
    labels, image, inside = cube_case()
    (row,) = measure_segments(labels, image, {1: "cube"})
    assert (row.label_value, row.name, row.voxel_count) == (1, "cube", 1000)
    assert row.volume_ml == pytest.approx(1.0, abs=1e-12) and math.isnan(row.area_mm2)
    assert row.intensity_mean == pytest.approx(float(inside.mean(dtype=np.float64)))
    assert row.intensity_std == pytest.approx(float(inside.std(dtype=np.float64)))  # population std
    assert (row.intensity_min, row.intensity_max) == (float(inside.min()), float(inside.max()))
    assert (row.intensity_min, row.intensity_max) == (2 * 400 + 5 * 20 + 8, 11 * 400 + 14 * 20 + 17)
    assert row.mean_uncertainty is None and row.confidence is None


def test_a_rotated_direction_matrix_does_not_change_volumes_or_intensities():
    angle = math.radians(30)
    rotated = (math.cos(angle), -math.sin(angle), 0.0, math.sin(angle), math.cos(angle), 0.0, 0.0, 0.0, 1.0)
    turned = [astuple(row) for row in measure_segments(*cube_case(rotated)[:2], {1: "cube"})]
    straight = [astuple(row) for row in measure_segments(*cube_case()[:2], {1: "cube"})]
    np.testing.assert_equal(turned, straight)  # NaN (the 3D image's area) equals NaN here
    assert turned[0][3] == pytest.approx(1.0)


def test_a_named_label_absent_from_the_map_has_no_voxels_and_empty_intensity_cells(tmp_path: Path):
    labels, image, _ = cube_case()
    rows = measure_segments(labels, image, {2: "not found", 1: "cube"})
    assert [(row.label_value, row.voxel_count) for row in rows] == [(2, 0), (1, 1000)]  # in the names' order
    assert rows[0].volume_ml == 0.0 and all(math.isnan(value) for value in (
        rows[0].intensity_mean, rows[0].intensity_std, rows[0].intensity_min, rows[0].intensity_max))
    write_measurements_csv(rows, tmp_path / "table.csv")
    lines = (tmp_path / "table.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(MEASUREMENT_COLUMNS)
    assert lines[1] == "2,not found,0,0.000000,,,,,,,"
    assert lines[2].startswith("1,cube,1000,1.000000,,")


def test_a_label_the_caller_does_not_name_is_reported_as_label_n():
    labels, image, _ = cube_case()
    labels = sitk.Cast(labels * 7, sitk.sitkUInt8)
    assert [(row.label_value, row.name, row.voxel_count) for row in measure_segments(labels, image, {})] == \
        [(7, "label 7", 1000)]


def test_a_segmentation_on_another_grid_is_refused_naming_both_grids():
    labels, image, _ = cube_case()
    labels.SetSpacing((0.5, 1.0, 3.0))
    with pytest.raises(InputError) as raised:
        measure_segments(labels, image, {1: "cube"})
    message = str(raised.value)
    assert "the segmentation is not on the voxel grid of the image" in message
    assert "0.5 x 1 x 3 mm" in message and "0.5 x 1 x 2 mm" in message


def test_a_colour_image_is_refused_with_a_clear_message():
    labels = sitk.Image([4, 4], sitk.sitkUInt8)
    colour = sitk.Image([4, 4], sitk.sitkVectorUInt8, 3)
    with pytest.raises(InputError, match="3 values per voxel"):
        measure_segments(labels, colour, {1: "lesion"})


def test_a_2d_picture_reports_an_area_in_mm2_and_no_volume():
    labels = np.zeros((8, 8), np.uint8)
    labels[:3, :4] = 1
    (row,) = measure_segments(image_from(labels, (0.5, 0.25), origin=(0, 0)),
                              image_from(np.ones((8, 8), np.float32), (0.5, 0.25), origin=(0, 0)), {1: "lesion"})
    assert row.voxel_count == 12 and row.area_mm2 == pytest.approx(12 * 0.125) and math.isnan(row.volume_ml)


def test_an_uncertainty_map_gives_mean_uncertainty_and_confidence_and_a_run_confidence_wins():
    labels, image, _ = cube_case()
    uncertainty = image_from(np.where(sitk.GetArrayFromImage(labels) == 1, 0.25, 0.9).astype(np.float32))
    (row,) = measure_segments(labels, image, {1: "cube"}, uncertainty=uncertainty)
    assert row.mean_uncertainty == pytest.approx(0.25) and row.confidence == pytest.approx(0.75)
    (given,) = measure_segments(labels, image, {1: "cube"}, uncertainty=uncertainty, confidence={1: 0.5})
    assert given.confidence == 0.5 and given.mean_uncertainty == pytest.approx(0.25)


def test_overlapping_segments_of_a_layered_seg_nrrd_are_each_measured_whole(tmp_path: Path):
    labels, image, _ = cube_case()
    first = sitk.GetArrayFromImage(labels).transpose(2, 1, 0) > 0  # slicerio works in (i, j, k)
    second = np.zeros_like(first)
    second[10:20, 10:20, 5:10] = True  # overlaps the cube on 5 x 5 x 5 voxels
    matrix = np.diag([0.5, 1.0, 2.0, 1.0])
    matrix[:3, 3] = image.GetOrigin()
    segmentation = slicerio.create_segmentation(first.shape, matrix)
    slicerio.add_segment(segmentation, first, {"name": "cube"})
    slicerio.add_segment(segmentation, second, {"name": "overlap"})
    slicerio.write_segmentation(str(tmp_path / "layers.seg.nrrd"), segmentation)
    assert segmentation["voxels"].ndim == 4  # two layers: the segments overlap
    assert main(["measure", str(tmp_path / "layers.seg.nrrd"), "--image", str(tmp_path / "image.nrrd"),
                 "-o", str(tmp_path / "t.csv")]) == 2  # the image does not exist yet: a clear error, exit 2
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))
    assert main(["measure", str(tmp_path / "layers.seg.nrrd"), "--image", str(tmp_path / "image.nrrd"),
                 "-o", str(tmp_path / "t.csv")]) == 0
    rows = csv_rows(tmp_path / "t.csv")
    assert [(row["name"], row["voxel_count"], row["volume_ml"]) for row in rows] == \
        [("cube", "1000", "1.000000"), ("overlap", "500", "0.500000")]


def test_a_seg_nrrd_from_segment_is_read_with_its_names_and_the_label_maps_numbers(tmp_path: Path):
    labels = read_image(SAMPLE_LABEL)
    write_seg_nrrd(labels, CARD, tmp_path / "result.seg.nrrd")
    segmentation = read_segmentation_file(tmp_path / "result.seg.nrrd")
    assert segmentation.is_seg_nrrd and [item.name for item in segmentation.file_segments] == list(CARD_NAMES.values())
    assert main(["measure", str(tmp_path / "result.seg.nrrd"), "--image", str(SAMPLE_IMAGE), "-o",
                 str(tmp_path / "seg.csv")]) == 0
    assert main(["measure", str(SAMPLE_LABEL), "--image", str(SAMPLE_IMAGE), "--model", DEFAULT_MODEL_ID, "-o",
                 str(tmp_path / "labels.csv")]) == 0
    assert (tmp_path / "seg.csv").read_text() == (tmp_path / "labels.csv").read_text()


def test_measure_on_the_bundled_sample_prints_the_table_and_writes_what_measure_segments_computes(tmp_path: Path,
                                                                                                capsys):
    output = tmp_path / "table.csv"
    assert main(["measure", str(SAMPLE_LABEL), "--image", str(SAMPLE_IMAGE), "--model", DEFAULT_MODEL_ID,
                 "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "anterior hippocampus" in printed and "volume mL" in printed and f"written {output}" in printed
    expected = measure_segments(read_image(SAMPLE_LABEL), read_image(SAMPLE_IMAGE), CARD_NAMES)
    rows = csv_rows(output)
    assert [row["name"] for row in rows] == ["anterior hippocampus", "posterior hippocampus"]
    assert [int(row["voxel_count"]) for row in rows] == [1611, 1681]  # the sample's manual label
    for row, measured in zip(rows, expected):
        assert int(row["label_value"]) == measured.label_value and int(row["voxel_count"]) == measured.voxel_count
        for column in ("volume_ml", "intensity_mean", "intensity_std", "intensity_min", "intensity_max"):
            assert float(row[column]) == pytest.approx(getattr(measured, column), abs=1e-6), column
        assert row["area_mm2"] == row["mean_uncertainty"] == row["confidence"] == ""


def flipped_along_k(image: sitk.Image) -> sitk.Image:
    """The same voxels in physical space, stored with the last axis reversed (as Slicer stores left-handed files)."""
    flipped = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[::-1].copy())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    flipped.SetSpacing(image.GetSpacing())
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint((0, 0, image.GetSize()[2] - 1)))
    flipped.SetDirection((direction * [1, 1, -1]).ravel().tolist())
    return flipped


def test_a_flipped_or_cropped_segmentation_is_moved_voxel_for_voxel_and_another_grid_is_refused(tmp_path: Path,
                                                                                              capsys):
    labels = read_image(SAMPLE_LABEL)
    cropped = labels[:, 5:45, :]  # still holds every labelled voxel
    sitk.WriteImage(flipped_along_k(labels), str(tmp_path / "flipped.nrrd"))
    sitk.WriteImage(cropped, str(tmp_path / "cropped.nrrd"))
    beyond = sitk.ConstantPad(labels, (0, 0, 0), (0, 4, 0), 0)
    beyond[3, labels.GetSize()[1] + 2, 3] = 1  # a voxel drawn outside the image
    sitk.WriteImage(beyond, str(tmp_path / "beyond.nrrd"))
    half = sitk.Image(labels)
    half.SetOrigin(np.add(labels.GetOrigin(), (0.5, 0, 0)).tolist())
    sitk.WriteImage(half, str(tmp_path / "half.nrrd"))
    tables = {}
    for name in ("flipped", "cropped"):
        assert main(["measure", str(tmp_path / f"{name}.nrrd"), "--image", str(SAMPLE_IMAGE), "--model",
                     DEFAULT_MODEL_ID, "-o", str(tmp_path / f"{name}.csv")]) == 0
        tables[name] = (tmp_path / f"{name}.csv").read_text()
    assert main(["measure", str(SAMPLE_LABEL), "--image", str(SAMPLE_IMAGE), "--model", DEFAULT_MODEL_ID, "-o",
                 str(tmp_path / "original.csv")]) == 0
    assert tables["flipped"] == tables["cropped"] == (tmp_path / "original.csv").read_text()
    capsys.readouterr()
    assert main(["measure", str(tmp_path / "beyond.nrrd"), "--image", str(SAMPLE_IMAGE)]) == 2
    assert "has 1 segmented voxel outside the grid of the image" in capsys.readouterr().err
    assert main(["measure", str(tmp_path / "half.nrrd"), "--image", str(SAMPLE_IMAGE)]) == 2
    assert "is not on the voxel grid of the image" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["-o", "table.txt"], "must be a .csv file"),
    (["--model", "no-such-model"], "unknown model id"),
])
def test_measure_refuses_bad_calls_with_one_line_and_a_non_zero_exit(arguments, message, capsys, tmp_path):
    arguments = [str(tmp_path / a) if a.endswith(".txt") else a for a in arguments]
    assert main(["measure", str(SAMPLE_LABEL), "--image", str(SAMPLE_IMAGE), *arguments]) != 0
    assert message in capsys.readouterr().err


def test_measuring_never_imports_torch(tmp_path: Path):
    code = (
        "import sys\n"
        "import MobileUViTSegmentLib.measurements, MobileUViTSegmentLib.segmentation_files\n"
        "from MobileUViTSegmentLib.cli.main import main\n"
        f"assert main(['measure', {str(SAMPLE_LABEL)!r}, '--image', {str(SAMPLE_IMAGE)!r}, "
        f"'-o', {str(tmp_path / 't.csv')!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=MODULE_DIR, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
