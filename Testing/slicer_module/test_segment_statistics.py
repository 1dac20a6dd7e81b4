"""The panel's Measure table on real MRML nodes: the command line's numbers, any grid, overlaps, untouched nodes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from mrml_helpers import rotated_ijk_to_ras, scene_snapshot, volume_array
from review_helpers import paintSegment, segmentationFromLabelFile, segmentationFromLabelNode, volumeLike

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.image_io import read_image
from MobileUViTSegmentLib.measurements import MEASUREMENT_COLUMNS, measure_segments
from MobileUViTSegmentSlicer.segment_statistics import StatisticsError, segmentStatistics, writeStatisticsCsv
from MobileUViTSegmentSlicer.volume_files import loadVolumeFile

CARD_NAMES = {label.value: label.name for label in Catalog().get(DEFAULT_MODEL_ID).labels}
FIELDS = ("voxelCount", "volumeMl", "intensityMean", "intensityStd", "intensityMin", "intensityMax")
CORE_FIELDS = ("voxel_count", "volume_ml", "intensity_mean", "intensity_std", "intensity_min", "intensity_max")


def figures(rows) -> list[tuple]:
    return [tuple(getattr(row, field) for field in FIELDS) for row in rows]


@pytest.fixture
def sample_segmentation(scene, sample_label_path):
    return segmentationFromLabelFile(scene, sample_label_path, CARD_NAMES)


def test_the_panel_table_and_csv_are_the_command_lines_for_the_bundled_sample(scene, sample_volume,
                                                                             sample_segmentation, sample_volume_path,
                                                                             sample_label_path, tmp_path: Path):
    rows = segmentStatistics(sample_segmentation, sample_volume)
    core = measure_segments(read_image(sample_label_path), read_image(sample_volume_path), CARD_NAMES)
    assert [(row.labelValue, row.name) for row in rows] == [(row.label_value, row.name) for row in core]
    for row, expected in zip(rows, core):
        assert figures([row])[0] == pytest.approx(tuple(getattr(expected, f) for f in CORE_FIELDS), abs=1e-9)
    assert [row.voxelCount for row in rows] == [1611, 1681]
    writeStatisticsCsv(rows, tmp_path / "panel.csv")
    assert main(["measure", str(sample_label_path), "--image", str(sample_volume_path), "--model", DEFAULT_MODEL_ID,
                 "-o", str(tmp_path / "cli.csv")]) == 0
    panel = (tmp_path / "panel.csv").read_text(encoding="utf-8")
    assert panel.splitlines()[0] == ",".join(MEASUREMENT_COLUMNS)
    assert panel == (tmp_path / "cli.csv").read_text(encoding="utf-8")  # same header, same numbers


def test_a_rotated_volume_and_segmentation_give_the_same_volumes_and_intensities(scene, sample_volume,
                                                                                sample_segmentation,
                                                                                sample_volume_path,
                                                                                sample_label_path):
    straight = segmentStatistics(sample_segmentation, sample_volume)
    volume = loadVolumeFile(sample_volume_path, scene, "rotated")
    labels = loadVolumeFile(sample_label_path, scene, "rotated labels", labelMap=True)
    for node in (volume, labels):
        rotated_ijk_to_ras(node, 37.0, (0.3, 0.5, 0.8), shift=(4.0, -2.0, 7.5))
    turned = segmentStatistics(segmentationFromLabelNode(scene, labels, CARD_NAMES), volume)
    assert [row.voxelCount for row in turned] == [row.voxelCount for row in straight]
    np.testing.assert_allclose(figures(turned), figures(straight), rtol=0, atol=1e-9)


@pytest.mark.parametrize("image_file, label_file", [("sct_t2.nii.gz", "sct_t2_seg-manual.nii.gz"),
                                                    ("brain1_image.nrrd", "brain1_label.nrrd")])
def test_a_real_oblique_or_left_handed_volume_measures_as_the_command_line(scene, shared_volumes, image_file,
                                                                           label_file, tmp_path: Path):
    """Also for the .seg.nrrd Slicer saves: for a left-handed file it is stored flipped against the image."""
    image_path, label_path = shared_volumes / image_file, shared_volumes / label_file
    if not image_path.is_file() or not label_path.is_file():
        pytest.skip(f"{image_file} / {label_file} are not in the shared data")
    volume = loadVolumeFile(image_path, scene)
    segmentation = segmentationFromLabelFile(scene, label_path, {1: "lesion"})
    rows = segmentStatistics(segmentation, volume)
    (expected,) = measure_segments(read_image(label_path), read_image(image_path), {1: "lesion"})
    assert rows[0].voxelCount == expected.voxel_count > 0
    assert figures(rows)[0] == pytest.approx(tuple(getattr(expected, f) for f in CORE_FIELDS), abs=1e-9)
    storage = slicer.vtkMRMLSegmentationStorageNode()  # never added to the scene
    storage.SetFileName(str(tmp_path / "saved.seg.nrrd"))
    assert storage.WriteData(segmentation)
    writeStatisticsCsv(rows, tmp_path / "panel.csv")
    assert main(["measure", str(tmp_path / "saved.seg.nrrd"), "--image", str(image_path), "-o",
                 str(tmp_path / "cli.csv")]) == 0
    assert (tmp_path / "cli.csv").read_text() == (tmp_path / "panel.csv").read_text()


def test_overlapping_segments_are_each_measured_whole(scene, sample_volume, sample_segmentation,
                                                      sample_volume_path, sample_label_path):
    labels = volume_array(loadVolumeFile(sample_label_path, scene, labelMap=True))
    paintSegment(sample_segmentation, "whole hippocampus", labels > 0, sample_volume)  # overlaps both segments
    rows = segmentStatistics(sample_segmentation, sample_volume)
    whole = sitk.Cast(read_image(sample_label_path) > 0, sitk.sitkUInt8)
    (expected,) = measure_segments(whole, read_image(sample_volume_path), {1: "whole hippocampus"})
    assert [row.voxelCount for row in rows] == [1611, 1681, 3292]
    assert figures(rows[2:])[0] == pytest.approx(tuple(getattr(expected, f) for f in CORE_FIELDS), abs=1e-9)


def test_measuring_leaves_every_node_of_the_scene_as_it_was(scene, sample_volume, sample_segmentation):
    uncertainty = volumeLike(scene, sample_volume, np.full(volume_array(sample_volume).shape, 0.1), "uncertainty")
    before, count = scene_snapshot(scene), scene.GetNumberOfNodes()
    segmentStatistics(sample_segmentation, sample_volume, uncertainty)
    assert scene.GetNumberOfNodes() == count
    assert scene_snapshot(scene) == before


def test_an_uncertainty_map_adds_mean_uncertainty_and_confidence_and_the_runs_confidence_wins(
        scene, sample_volume, sample_segmentation, sample_label_path):
    labels = volume_array(loadVolumeFile(sample_label_path, scene, labelMap=True))
    uncertainty = volumeLike(scene, sample_volume, np.where(labels == 1, 0.25, 0.5), "uncertainty")
    posterior = sample_segmentation.GetSegmentation().GetNthSegmentID(1)
    rows = segmentStatistics(sample_segmentation, sample_volume, uncertainty, {posterior: 0.9})
    assert [row.meanUncertainty for row in rows] == pytest.approx([0.25, 0.5])
    assert [row.confidence for row in rows] == pytest.approx([0.75, 0.9])
    moved = volumeLike(scene, sample_volume, labels * 0.0, "moved map", shift=2.5)
    with pytest.raises(StatisticsError, match="is not on the voxel grid of the volume"):
        segmentStatistics(sample_segmentation, sample_volume, moved)


def test_what_cannot_be_measured_is_said_in_one_sentence(scene, sample_volume, sample_segmentation,
                                                         sample_label_path):
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    moved = segmentationFromLabelFile(scene, sample_label_path, {1: "anything"}, "moved")
    moved.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLLinearTransformNode").GetID())
    cases = [((None, sample_volume), "Select a segmentation."),
             ((sample_segmentation, None), "Select the volume the segmentation was drawn on."),
             ((empty, sample_volume), "The segmentation 'empty' has no segments."),
             ((moved, sample_volume), "are under different transforms")]
    for arguments, message in cases:
        with pytest.raises(StatisticsError, match=message.replace(".", r"\.")):
            segmentStatistics(*arguments)


def test_the_csv_leaves_undefined_values_empty(scene, sample_volume, sample_segmentation, tmp_path: Path):
    sample_segmentation.GetSegmentation().AddEmptySegment("", "not drawn yet", (1.0, 1.0, 0.0))
    rows = segmentStatistics(sample_segmentation, sample_volume)
    writeStatisticsCsv(rows, tmp_path / "table.csv")
    with (tmp_path / "table.csv").open(newline="", encoding="utf-8") as stream:
        written = list(csv.DictReader(stream))
    assert [row["name"] for row in written] == [*CARD_NAMES.values(), "not drawn yet"]
    assert (written[2]["voxel_count"], written[2]["volume_ml"], written[2]["intensity_mean"]) == \
        ("0", "0.000000", "")
    assert (rows[2].voxelCount, rows[2].volumeMl, rows[2].meanUncertainty) == (0, 0.0, None)
