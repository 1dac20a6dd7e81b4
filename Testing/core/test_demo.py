"""The demo: the bundled case segmented by the default model, a .seg.nrrd Slicer opens on the sample's exact
geometry, and an overlay a person can look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.metrics import score_labels
from MobileUViTSegmentLib.resources import sample_data_dir

slicer = pytest.importorskip("slicer", reason="slicer-core is needed to open the result with Slicer's own reader")
vtk = pytest.importorskip("vtk")

SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"
REFERENCE = sample_data_dir() / "hippocampus_046_label.nii.gz"


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    assert main(["demo", "-o", str(folder)]) == 0
    return folder


def matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def test_demo_segmentation_opens_in_slicer_with_the_cards_segments_on_the_samples_grid(demo_output: Path):
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    volume_storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    volume_storage.SetFileName(str(SAMPLE))
    assert volume_storage.ReadData(volume)
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(demo_output / "hippocampus_046.seg.nrrd"))
    assert storage.ReadData(segmentation_node)

    segmentation = segmentation_node.GetSegmentation()
    card = Catalog().get(DEFAULT_MODEL_ID)
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == [label.name for label in card.labels]
    for index, label in enumerate(card.labels):
        segment = segmentation.GetNthSegment(index)
        assert np.allclose(segment.GetColor(), label.color_float, atol=1e-5)
        entry = vtk.reference("")
        assert segment.GetTag("TerminologyEntry", entry)
        assert str(entry) == label.terminology.slicer_entry()

    # Every segment's labelmap sits on the volume's grid: same IJK-to-RAS, extent inside the volume.
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    dimensions = volume.GetImageData().GetDimensions()
    for index in range(segmentation.GetNumberOfSegments()):
        labelmap = segmentation.GetNthSegment(index).GetRepresentation("Binary labelmap")
        image_to_world = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(image_to_world)
        assert np.allclose(matrix(image_to_world), matrix(ijk_to_ras), atol=1e-6)
        extent = labelmap.GetExtent()
        assert all(0 <= extent[2 * a] <= extent[2 * a + 1] < dimensions[a] for a in range(3))

    # Exported back onto the volume, the segments equal the engine's own label map, voxel for voxel.
    exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    assert logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, exported, volume)
    from vtk.util.numpy_support import vtk_to_numpy

    voxels = vtk_to_numpy(exported.GetImageData().GetPointData().GetScalars()).reshape(dimensions[::-1])
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(demo_output / "hippocampus_046.seg.nrrd")))
    assert np.array_equal(voxels, written)


def test_demo_result_agrees_with_the_manual_reference(demo_output: Path):
    labels = sitk.ReadImage(str(demo_output / "hippocampus_046.seg.nrrd"))
    reference = sitk.Cast(sitk.ReadImage(str(REFERENCE)), sitk.sitkUInt8)
    scores = score_labels(labels, reference, [1, 2])
    assert min(score.dice for score in scores.values()) >= 0.8, scores


def test_demo_writes_an_overlay_picture(demo_output: Path):
    picture = sitk.ReadImage(str(demo_output / "hippocampus_046_overlay.png"))
    assert picture.GetNumberOfComponentsPerPixel() == 3
    assert min(picture.GetSize()) >= 200
    assert np.asarray(sitk.GetArrayViewFromImage(picture)).std() > 10  # not blank
