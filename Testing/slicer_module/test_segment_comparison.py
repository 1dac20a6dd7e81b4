"""The panel's Compare table on real MRML nodes: ``evaluate --prediction --reference``'s numbers, names, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from mrml_helpers import rotated_ijk_to_ras, scene_snapshot, volume_array
from review_helpers import paintSegment, segmentationFromLabelFile, segmentationFromLabelNode

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.comparison import (
    COMPARED,
    COMPARISON_COLUMNS,
    NOT_IN_REFERENCE,
    ONLY_IN_REFERENCE,
    compare_segmentations,
)
from MobileUViTSegmentLib.image_io import read_image
from MobileUViTSegmentSlicer.segment_comparison import ComparisonError, compareSegmentations, writeComparisonCsv
from MobileUViTSegmentSlicer.volume_files import loadVolumeFile

CARD_NAMES = {label.value: label.name for label in Catalog().get(DEFAULT_MODEL_ID).labels}
FIGURES = ("dice", "iou", "hd95", "volumeMl", "referenceVolumeMl", "volumeDifferenceMl", "relativeVolumeDifference")
CORE_FIGURES = ("dice", "iou", "hd95", "volume_ml", "reference_volume_ml", "volume_difference_ml",
                "relative_volume_difference")


def figures(row, names=FIGURES) -> tuple:
    return tuple(getattr(row, name) for name in names)


@pytest.fixture
def shifted_label_path(sample_label_path: Path, tmp_path: Path) -> Path:
    """The sample's label moved one voxel along x: an imperfect segmentation on the same grid."""
    reference = read_image(sample_label_path)
    moved = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(reference), 1, axis=2))
    moved.CopyInformation(reference)
    path = tmp_path / "shifted.nii.gz"
    sitk.WriteImage(moved, str(path))
    return path


@pytest.fixture
def reference(scene, sample_label_path):
    return segmentationFromLabelFile(scene, sample_label_path, CARD_NAMES, "manual")


def test_the_panel_table_and_csv_are_evaluates_for_the_same_files(scene, sample_volume, reference,
                                                                  shifted_label_path, sample_label_path,
                                                                  tmp_path: Path):
    segmentation = segmentationFromLabelFile(scene, shifted_label_path, CARD_NAMES, "model")
    rows = compareSegmentations(segmentation, reference, sample_volume)
    expected = compare_segmentations(read_image(shifted_label_path), read_image(sample_label_path), CARD_NAMES)
    assert [(row.labelValue, row.name, row.status) for row in rows] == \
        [(row.label_value, row.name, COMPARED) for row in expected]
    for row, core in zip(rows, expected):
        assert figures(row) == pytest.approx(figures(core, CORE_FIGURES), abs=1e-9)
        assert (row.predictedVoxels, row.referenceVoxels) == (core.predicted_voxels, core.reference_voxels)
    assert 0.8 < rows[0].dice < 1.0 and rows[0].hd95 == 1.0
    writeComparisonCsv(rows, tmp_path / "panel.csv")
    assert main(["evaluate", "--prediction", str(shifted_label_path), "--reference", str(sample_label_path),
                 "--model", DEFAULT_MODEL_ID, "-o", str(tmp_path / "cli")]) == 0
    panel = (tmp_path / "panel.csv").read_text(encoding="utf-8")
    assert panel.splitlines()[0] == ",".join(COMPARISON_COLUMNS)
    assert panel == (tmp_path / "cli" / "per_label.csv").read_text(encoding="utf-8")


def test_segments_pair_by_name_ignoring_case_and_unpaired_segments_are_listed(scene, sample_volume, reference,
                                                                              sample_label_path):
    labels = volume_array(loadVolumeFile(sample_label_path, scene, labelMap=True))
    mine = segmentationFromLabelFile(scene, sample_label_path, {1: "ANTERIOR hippocampus", 2: "tail"}, "mine")
    rows = compareSegmentations(mine, reference, sample_volume)
    ids = [mine.GetSegmentation().GetNthSegmentID(i) for i in range(2)]
    referenceIds = [reference.GetSegmentation().GetNthSegmentID(i) for i in range(2)]
    assert [(row.name, row.status, row.segmentId, row.referenceSegmentId) for row in rows] == [
        ("ANTERIOR hippocampus", COMPARED, ids[0], referenceIds[0]),
        ("tail", NOT_IN_REFERENCE, ids[1], ""),
        ("posterior hippocampus", ONLY_IN_REFERENCE, "", referenceIds[1])]
    assert (rows[0].dice, rows[0].hd95, rows[0].matched) == (1.0, 0.0, True)
    assert rows[1].predictedVoxels == int((labels == 2).sum()) and math.isnan(rows[1].dice)
    assert rows[2].referenceVolumeMl == pytest.approx((labels == 2).sum() / 1000) and rows[2].predictedVoxels is None


def test_overlapping_segments_are_compared_whole(scene, sample_volume, reference, sample_label_path):
    labels = volume_array(loadVolumeFile(sample_label_path, scene, labelMap=True))
    paintSegment(reference, "whole hippocampus", labels > 0, sample_volume)
    mine = segmentationFromLabelFile(scene, sample_label_path, CARD_NAMES, "mine")
    paintSegment(mine, "Whole hippocampus", np.roll(labels > 0, 1, axis=0), sample_volume)
    rows = compareSegmentations(mine, reference, sample_volume)
    assert [(row.dice, row.predictedVoxels) for row in rows[:2]] == [(1.0, 1611), (1.0, 1681)]
    whole = sitk.Cast(read_image(sample_label_path) > 0, sitk.sitkUInt8)
    moved = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(whole), 1, axis=0))
    moved.CopyInformation(whole)
    (expected,) = compare_segmentations(moved, whole, {1: "whole hippocampus"})
    assert rows[2].predictedVoxels == rows[2].referenceVoxels == 3292
    assert figures(rows[2]) == pytest.approx(figures(expected, CORE_FIGURES), abs=1e-9)


def test_a_rotated_volume_and_segmentations_give_the_same_scores_and_volumes(scene, sample_volume, reference,
                                                                            shifted_label_path, sample_volume_path,
                                                                            sample_label_path):
    straight = compareSegmentations(segmentationFromLabelFile(scene, shifted_label_path, CARD_NAMES), reference,
                                    sample_volume)
    nodes = [loadVolumeFile(sample_volume_path, scene, "rotated"),
             loadVolumeFile(shifted_label_path, scene, "rotated model", labelMap=True),
             loadVolumeFile(sample_label_path, scene, "rotated manual", labelMap=True)]
    for node in nodes:
        rotated_ijk_to_ras(node, -52.0, (0.9, 0.1, 0.4), shift=(-3.0, 11.0, 2.0))
    turned = compareSegmentations(segmentationFromLabelNode(scene, nodes[1], CARD_NAMES),
                                  segmentationFromLabelNode(scene, nodes[2], CARD_NAMES), nodes[0])
    np.testing.assert_allclose([figures(row) for row in turned], [figures(row) for row in straight], atol=1e-9)


def test_comparing_leaves_every_node_of_the_scene_as_it_was(scene, sample_volume, reference, shifted_label_path):
    segmentation = segmentationFromLabelFile(scene, shifted_label_path, CARD_NAMES, "model")
    before, count = scene_snapshot(scene), scene.GetNumberOfNodes()
    compareSegmentations(segmentation, reference, sample_volume)
    assert scene.GetNumberOfNodes() == count and scene_snapshot(scene) == before


def test_what_cannot_be_compared_is_said_in_one_sentence(scene, sample_volume, reference, sample_label_path):
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    other = segmentationFromLabelFile(scene, sample_label_path, {1: "left", 2: "right"}, "other")
    cases = [((reference, empty, sample_volume), "The reference segmentation 'empty' has no segments."),
             ((empty, reference, sample_volume), "The segmentation 'empty' has no segments."),
             ((reference, reference, sample_volume), "are the same node"),
             ((reference, other, None), "Select the volume the segmentation was drawn on."),
             ((reference, other, sample_volume), "No segment of the reference has the name of a segment")]
    for arguments, message in cases:
        with pytest.raises(ComparisonError, match=message.replace(".", r"\.")):
            compareSegmentations(*arguments)


def test_a_segmentation_slicer_saved_for_a_left_handed_volume_compares_with_its_label_file(scene, shared_volumes,
                                                                                           tmp_path: Path):
    """Slicer flips an axis of a left-handed file, so its .seg.nrrd is stored flipped; the voxels are the same."""
    image_path, label_path = shared_volumes / "brain1_image.nrrd", shared_volumes / "brain1_label.nrrd"
    if not image_path.is_file() or not label_path.is_file():
        pytest.skip("brain1 is not in the shared data")
    volume = loadVolumeFile(image_path, scene)
    segmentation = segmentationFromLabelFile(scene, label_path, {1: "label 1"})
    storage = slicer.vtkMRMLSegmentationStorageNode()  # never added to the scene
    storage.SetFileName(str(tmp_path / "saved.seg.nrrd"))
    assert storage.WriteData(segmentation)
    assert main(["evaluate", "--prediction", str(tmp_path / "saved.seg.nrrd"), "--reference", str(label_path),
                 "-o", str(tmp_path / "cli")]) == 0
    (row,) = compareSegmentations(segmentation, segmentationFromLabelFile(scene, label_path, {1: "Label 1"}), volume)
    assert (row.dice, row.hd95, row.predictedVoxels) == (1.0, 0.0, 4137)
    writeComparisonCsv([row], tmp_path / "panel.csv")
    assert (tmp_path / "panel.csv").read_text() == (tmp_path / "cli" / "per_label.csv").read_text()
