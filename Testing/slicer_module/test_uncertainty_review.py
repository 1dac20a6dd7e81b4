"""Uncertainty volume import, review navigation and the overlay, against real MRML nodes.

The uncertainty maps of the shared volumes are written with SimpleITK from the original files (as the worker or the
command line would), with a value that travels with each voxel (its intensity scaled to 0..1): any flip, permutation
or shift between the volume and the imported map shows up as a value mismatch.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from mrml_helpers import scene_snapshot, volume_array

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID
from MobileUViTSegmentSlicer import uncertainty_import
from MobileUViTSegmentSlicer.review_navigation import (
    ReviewItem,
    confidenceFromEvent,
    hideUncertaintyOverlay,
    jumpToReviewItem,
    reviewItemsFromEvent,
    showUncertaintyOverlay,
)
from MobileUViTSegmentSlicer.uncertainty_import import (
    OVERLAY_LOWER_THRESHOLD,
    UncertaintyImportError,
    importUncertaintyVolume,
)
from MobileUViTSegmentSlicer.volume_export import exportVolumeForWorker
from MobileUViTSegmentSlicer.volume_files import arrayToMatrix, ijkToRasArray, loadVolumeFile

VOLUMES = ["brain1_image.nrrd", "lung1_image.nrrd", "sct_t2.nii.gz"]  # the last one is left-handed
SLICE_VIEWS = [("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")]


def scaled(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return ((values - values.min()) / (values.max() - values.min())).astype(np.float32)


def write_uncertainty_like_the_worker(source: Path, target: Path, orientation: str | None = None) -> None:
    """``orientation``: store the map on a permuted/flipped grid covering the same voxels (not the volume's grid)."""
    image = sitk.ReadImage(str(source))
    uncertainty = sitk.GetImageFromArray(scaled(sitk.GetArrayFromImage(image)))
    uncertainty.CopyInformation(image)
    if orientation:
        uncertainty = sitk.DICOMOrient(uncertainty, orientation)
    sitk.WriteImage(uncertainty, str(target), useCompression=True)


def add_slice_views(scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLSliceNode]:
    """The three slice views the application's layout creates: slice nodes and their composite nodes."""
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    slice_nodes = []
    for name, orientation in SLICE_VIEWS:
        slice_node = scene.CreateNodeByClass("vtkMRMLSliceNode")
        slice_node.SetName(name)
        slice_node.SetLayoutName(name)
        slice_node.SetSingletonTag(name)
        slice_node.SetOrientation(orientation)
        slice_nodes.append(scene.AddNode(slice_node))
        composite = scene.CreateNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
        composite.SetSingletonTag(name)
        scene.AddNode(composite)
    return slice_nodes


def composite_nodes(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def slice_centre(slice_node) -> np.ndarray:
    matrix = slice_node.GetSliceToRAS()
    return np.array([matrix.GetElement(row, 3) for row in range(3)])


@pytest.fixture
def colored_scene(scene):
    """The scene with the built-in colour tables, as the application has them."""
    logic = slicer.vtkMRMLColorLogic()
    logic.SetMRMLScene(scene)
    yield scene
    logic.SetMRMLScene(None)


@pytest.mark.parametrize("file_name", VOLUMES)
def test_the_uncertainty_map_of_a_real_volume_lands_on_its_exact_grid(colored_scene, shared_volumes, tmp_path,
                                                                       file_name):
    path = shared_volumes / file_name
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared data")
    scene = colored_scene
    volume = loadVolumeFile(path, scene)
    direction = ijkToRasArray(volume)[:3, :3]
    assert not np.allclose(direction / np.linalg.norm(direction, axis=0), np.eye(3)), "expected a non-trivial grid"
    map_path = tmp_path / "uncertainty.nii.gz"
    write_uncertainty_like_the_worker(path, map_path)

    node = importUncertaintyVolume(map_path, volume, scene)

    assert node.GetScene() is scene and node.IsA("vtkMRMLScalarVolumeNode")
    assert not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetName() == f"{volume.GetName()} uncertainty"
    assert np.array_equal(ijkToRasArray(node), ijkToRasArray(volume))  # the very same matrix, not a close one
    assert node.GetImageData().GetExtent() == volume.GetImageData().GetExtent()
    assert node.GetImageData().GetSpacing() == (1.0, 1.0, 1.0) and node.GetImageData().GetOrigin() == (0, 0, 0)
    assert node.GetImageData().GetScalarTypeAsString() == "float"
    # Each voxel's value is its own intensity scaled, whatever Slicer's reader did to the axes.
    assert np.allclose(volume_array(node), scaled(volume_array(volume)), atol=1e-6)
    display = node.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1.0, 0.5) and not display.GetAutoWindowLevel()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeIron"  # Inferno where Slicer's colour files exist
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(OVERLAY_LOWER_THRESHOLD)


def test_a_map_stored_on_another_grid_of_the_same_voxels_is_resampled_onto_the_volumes_grid(scene, shared_volumes,
                                                                                           tmp_path):
    path = shared_volumes / "brain1_image.nrrd"
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared data")
    volume = loadVolumeFile(path, scene)
    map_path = tmp_path / "uncertainty.nrrd"
    write_uncertainty_like_the_worker(path, map_path, orientation="SLA")  # axes permuted and flipped
    assert sitk.ReadImage(str(map_path)).GetSize() != sitk.ReadImage(str(path)).GetSize()
    node = importUncertaintyVolume(map_path, volume, scene)
    assert np.array_equal(ijkToRasArray(node), ijkToRasArray(volume))
    assert np.allclose(volume_array(node), scaled(volume_array(volume)), atol=1e-5)


def test_the_map_follows_the_input_volumes_parent_transform_and_gets_a_unique_name(scene, sample_volume, tmp_path,
                                                                                    sample_volume_path):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(arrayToMatrix(np.array([[1, 0, 0, 5.0], [0, 1, 0, -3.0], [0, 0, 1, 2.0],
                                                                 [0, 0, 0, 1]])))
    sample_volume.SetAndObserveTransformNodeID(transform.GetID())
    map_path = tmp_path / "uncertainty.nrrd"
    write_uncertainty_like_the_worker(sample_volume_path, map_path)
    first = importUncertaintyVolume(map_path, sample_volume, scene, name="map")
    second = importUncertaintyVolume(map_path, sample_volume, scene, name="map")
    assert first.GetParentTransformNode() is transform and second.GetParentTransformNode() is transform
    assert first.GetName() == "map" and second.GetName() != "map"
    assert first.GetAttribute(uncertainty_import.UNCERTAINTY_OF_TAG) == sample_volume.GetID()


def test_a_failed_import_leaves_the_scene_as_it_was(scene, sample_volume, sample_volume_path, tmp_path, monkeypatch):
    before = scene_snapshot(scene)
    with pytest.raises(UncertaintyImportError, match="does not exist"):
        importUncertaintyVolume(tmp_path / "missing.nrrd", sample_volume, scene)
    broken = tmp_path / "broken.nrrd"
    broken.write_text("NRRD0004\nnot really\n")
    with pytest.raises(UncertaintyImportError, match="could not be read"):
        importUncertaintyVolume(broken, sample_volume, scene)
    map_path = tmp_path / "uncertainty.nrrd"
    write_uncertainty_like_the_worker(sample_volume_path, map_path)

    def failing_display(node, scene):
        node.CreateDefaultDisplayNodes()
        raise UncertaintyImportError("The uncertainty volume could not be displayed.")

    monkeypatch.setattr(uncertainty_import, "_configureDisplay", failing_display)
    with pytest.raises(UncertaintyImportError):
        importUncertaintyVolume(map_path, sample_volume, scene)
    assert scene_snapshot(scene) == before


EVENT = {"event": "done", "confidence": {"1": 0.93, "2": 0.88}, "review": [
    {"rank": 2, "label_value": 1, "label_name": "anterior hippocampus", "voxel_count": 12, "mean_uncertainty": 0.6,
     "total_uncertainty": 7.2, "centroid_index": [1, 2, 3], "centroid_lps": [-1.0, -2.0, 3.0],
     "centroid_ras": [1.0, 2.0, 3.0], "slice_index": 3},
    {"rank": 1, "label_value": 2, "label_name": "posterior hippocampus", "voxel_count": 40, "mean_uncertainty": 0.7,
     "total_uncertainty": 28.0, "centroid_index": [4, 5, 6], "centroid_lps": [-12.5, 7.25, -30.0],
     "centroid_ras": [12.5, -7.25, -30.0], "slice_index": 6},
]}


def test_review_items_and_confidence_are_read_from_the_done_event_in_rank_order():
    items = reviewItemsFromEvent(EVENT)
    assert [item.rank for item in items] == [1, 2]
    assert items[0] == ReviewItem(rank=1, labelValue=2, labelName="posterior hippocampus", voxelCount=40,
                                  meanUncertainty=0.7, totalUncertainty=28.0, centroidRas=(12.5, -7.25, -30.0),
                                  sliceIndex=6)
    assert items[0].describe().startswith("1. posterior hippocampus: 40 voxels")
    assert confidenceFromEvent(EVENT) == {1: 0.93, 2: 0.88}
    assert reviewItemsFromEvent({"event": "done"}) == [] and confidenceFromEvent({"event": "done"}) == {}


def test_jumping_to_an_item_centres_every_slice_view_on_its_point(scene, sample_volume):
    slice_nodes = add_slice_views(scene)
    item = reviewItemsFromEvent(EVENT)[0]
    point = jumpToReviewItem(scene, item)
    assert point == item.centroidRas
    for slice_node in slice_nodes:
        assert slice_centre(slice_node) == pytest.approx(item.centroidRas)
        normal = np.array([slice_node.GetSliceToRAS().GetElement(row, 2) for row in range(3)])
        assert slice_node.GetSliceOffset() == pytest.approx(float(normal @ np.array(item.centroidRas)))
    assert slice_nodes[0].GetSliceOffset() == pytest.approx(-30.0)  # axial: S

    # Under a transform, the item's point moves with the volume into world space.
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(arrayToMatrix(np.array([[1, 0, 0, 10.0], [0, 1, 0, 0], [0, 0, 1, -5.0],
                                                                 [0, 0, 0, 1]])))
    sample_volume.SetAndObserveTransformNodeID(transform.GetID())
    moved = jumpToReviewItem(scene, item, sample_volume)
    assert moved == pytest.approx((22.5, -7.25, -35.0))
    assert all(slice_centre(node) == pytest.approx(moved) for node in slice_nodes)


def test_the_overlay_becomes_the_foreground_of_every_slice_view_and_can_be_hidden(scene, sample_volume,
                                                                                  sample_volume_path, tmp_path):
    add_slice_views(scene)
    for composite in composite_nodes(scene):
        composite.SetBackgroundVolumeID(sample_volume.GetID())
    map_path = tmp_path / "uncertainty.nrrd"
    write_uncertainty_like_the_worker(sample_volume_path, map_path)
    node = importUncertaintyVolume(map_path, sample_volume, scene)
    assert showUncertaintyOverlay(scene, node, opacity=0.3) == 3
    for composite in composite_nodes(scene):
        assert composite.GetForegroundVolumeID() == node.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.3)
        assert composite.GetBackgroundVolumeID() == sample_volume.GetID()
    assert hideUncertaintyOverlay(scene, node) == 3
    assert all(composite.GetForegroundVolumeID() is None for composite in composite_nodes(scene))


def test_a_real_worker_run_with_uncertainty_imports_onto_the_volume_and_jumps_to_its_top_item(
        colored_scene, sample_volume_path, real_worker):
    scene = colored_scene
    volume = loadVolumeFile(sample_volume_path, scene)
    files = exportVolumeForWorker(volume)
    try:
        uncertainty_path = files.folder / "uncertainty.nrrd"
        request_id = f"u-{uuid.uuid4().hex}"
        real_worker.send({"type": "segment", "id": request_id, "input": str(files.inputPath),
                          "output": str(files.outputPath), "model": DEFAULT_MODEL_ID, "device": "cpu",
                          "uncertainty": str(uncertainty_path), "tta": True})
        done = real_worker.wait_for(request_id, timeout=300)
        assert done["event"] == "done", done
        node = importUncertaintyVolume(done["uncertainty"], volume, scene)
    finally:
        files.remove()
    assert np.array_equal(ijkToRasArray(node), ijkToRasArray(volume))
    values = volume_array(node)
    assert values.shape == volume_array(volume).shape and 0.0 <= values.min() and values.max() <= 1.0
    assert all(score > 0.5 for score in confidenceFromEvent(done).values())
    items = reviewItemsFromEvent(done)
    assert items and items[0].rank == 1
    slice_nodes = add_slice_views(scene)
    jumpToReviewItem(scene, items[0], volume)
    # The point is inside the volume and the map is uncertain around it.
    ras_to_ijk = np.linalg.inv(ijkToRasArray(volume))
    ijk = (ras_to_ijk @ np.array([*items[0].centroidRas, 1.0]))[:3]
    dims = volume.GetImageData().GetDimensions()
    assert all(-0.5 <= value <= size - 0.5 for value, size in zip(ijk, dims))
    assert all(slice_centre(slice_node) == pytest.approx(items[0].centroidRas) for slice_node in slice_nodes)
