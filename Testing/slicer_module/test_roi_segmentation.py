"""Segmenting only inside a markups ROI: the exact sub-grid sent to the worker, and segments changing only inside it.

The box is the block of whole voxels the ROI touches (in the volume's IJK coordinates, through any linear
transforms), clipped to the volume; what reaches the worker is that block with the volume's spacing and direction and
the origin moved. Scripted workers check the import rules quickly; the real model checks that a run inside an ROI
agrees with the whole-volume run and leaves everything outside the box alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from fake_workers import WorkerFactory, done_with, threshold_labels
from mrml_helpers import mask_dice, rotated_ijk_to_ras, segments_as_label_array, volume_array

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID
from MobileUViTSegmentSlicer.processing_state import ProcessingState
from MobileUViTSegmentSlicer.result_backup import restoreReplacedSegments
from MobileUViTSegmentSlicer.roi_crop import MIN_ROI_VOXELS, RoiError, VoxelBox, roiProblem, roiVoxelBox
from MobileUViTSegmentSlicer.segment_masks import segmentationReferenceGrid
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationLogic
from MobileUViTSegmentSlicer.volume_export import exportVolumeForWorker
from MobileUViTSegmentSlicer.volume_files import (
    arrayToMatrix,
    ijkToRasArray,
    imageToWorldArray,
    loadVolumeFile,
    matrixToArray,
)

TIMEOUT_S = 300.0


def make_roi(scene, center, size, rotation_degrees: float = 0.0, axis=(0.0, 0.0, 1.0), name: str = "R"):
    """A box ROI: ``size`` (mm, along its own axes) rotated about ``axis`` and centred on ``center`` (RAS)."""
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    roi.SetCenter(0.0, 0.0, 0.0)
    roi.SetSize(*size)
    transform = vtk.vtkTransform()
    transform.Translate(*center)
    transform.RotateWXYZ(rotation_degrees, *axis)
    roi.ApplyTransformMatrix(transform.GetMatrix())
    return roi


def roi_around_voxels(scene, volume, low, high, margin: float = 0.3, name: str = "R"):
    """An axis-aligned ROI from voxel ``low - margin`` to ``high + margin`` (i, j, k) of an axis-aligned volume."""
    matrix = ijkToRasArray(volume)
    corners = [matrix @ np.array([*(np.asarray(point, float)), 1.0]) for point in
               (np.asarray(low) - margin, np.asarray(high) + margin)]
    center = (corners[0][:3] + corners[1][:3]) / 2
    return make_roi(scene, center, np.abs(corners[1][:3] - corners[0][:3]), name=name)


def linear_transform(scene, degrees: float, axis, shift):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform = vtk.vtkTransform()
    transform.Translate(*shift)
    transform.RotateWXYZ(degrees, *axis)
    node.SetMatrixTransformToParent(transform.GetMatrix())
    return node, matrixToArray(transform.GetMatrix())


def voxel_centres_ras(volume) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    dims = volume.GetImageData().GetDimensions()
    k, j, i = np.indices((dims[2], dims[1], dims[0]))
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    return ijkToRasArray(volume) @ ijk, (i.ravel(), j.ravel(), k.ravel())


# -- the box ---------------------------------------------------------------------------------------------------------


def test_an_axis_aligned_roi_gives_the_block_of_voxels_it_touches(scene, sample_volume):
    roi = roi_around_voxels(scene, sample_volume, (5, 10, 3), (20, 30, 25))
    assert roiVoxelBox(roi, sample_volume) == VoxelBox((5, 20, 10, 30, 3, 25))
    # Just touching a voxel's face does not take it in; reaching into it does.
    touching = roi_around_voxels(scene, sample_volume, (5, 10, 3), (20, 30, 25), margin=0.5)
    assert roiVoxelBox(touching, sample_volume) == VoxelBox((5, 20, 10, 30, 3, 25))
    reaching = roi_around_voxels(scene, sample_volume, (5, 10, 3), (20, 30, 25), margin=0.6)
    assert roiVoxelBox(reaching, sample_volume) == VoxelBox((4, 21, 9, 31, 2, 26))


def test_an_roi_partly_outside_the_volume_is_clipped_to_it(scene, sample_volume):
    roi = roi_around_voxels(scene, sample_volume, (-10, 20, -3), (12, 80, 30))
    assert roiVoxelBox(roi, sample_volume) == VoxelBox((0, 12, 20, 48, 0, 30))


def test_a_rotated_roi_gets_the_voxel_aligned_block_around_it(scene, sample_volume):
    rotated_ijk_to_ras(sample_volume, 20.0, (0.1, 0.3, 0.9))  # an oblique volume too
    center = ijkToRasArray(sample_volume) @ np.array([17.0, 24.0, 19.0, 1.0])
    roi = make_roi(scene, center[:3], (14.0, 22.0, 11.0), rotation_degrees=35.0, axis=(0.6, -0.2, 0.7))
    box = roiVoxelBox(roi, sample_volume)
    ras, (i, j, k) = voxel_centres_ras(sample_volume)
    in_object = np.linalg.inv(matrixToArray(roi.GetObjectToNodeMatrix())) @ ras
    inside = (np.abs(in_object[:3]) <= np.array([7.0, 11.0, 5.5])[:, None]).all(axis=0)
    assert inside.sum() > 1000
    low, high = np.array(box.extent[0::2]), np.array(box.extent[1::2])
    for axis, index in enumerate((i, j, k)):  # every voxel centre inside the ROI lies in the block ...
        assert low[axis] <= index[inside].min() and index[inside].max() <= high[axis]
        # ... and the block is no more than the voxels the ROI reaches into (a voxel's half-width beyond the centres)
        assert index[inside].min() - low[axis] <= 1 and high[axis] - index[inside].max() <= 1


def test_linear_transforms_of_roi_and_volume_are_followed(scene, sample_volume):
    center = ijkToRasArray(sample_volume) @ np.array([15.0, 22.0, 18.0, 1.0])
    plain = roiVoxelBox(make_roi(scene, center[:3], (12.0, 18.0, 10.0), 25.0, (1.0, 0.2, 0.0)), sample_volume)
    transform, matrix = linear_transform(scene, 40.0, (0.3, 0.4, 0.8), (5.0, -12.0, 7.5))

    # Both under the same transform: the same block as without it.
    roi = make_roi(scene, center[:3], (12.0, 18.0, 10.0), 25.0, (1.0, 0.2, 0.0))
    roi.SetAndObserveTransformNodeID(transform.GetID())
    sample_volume.SetAndObserveTransformNodeID(transform.GetID())
    assert roiVoxelBox(roi, sample_volume) == plain

    # Only the ROI under it: the same block as the ROI with the transform hardened.
    sample_volume.SetAndObserveTransformNodeID(None)
    hardened = make_roi(scene, center[:3], (12.0, 18.0, 10.0), 25.0, (1.0, 0.2, 0.0))
    hardened.ApplyTransformMatrix(arrayToMatrix(matrix))
    assert roiVoxelBox(roi, sample_volume) == roiVoxelBox(hardened, sample_volume) != plain


def test_unusable_rois_are_refused_with_one_sentence(scene, sample_volume):
    volume_name = sample_volume.GetName()
    outside = roi_around_voxels(scene, sample_volume, (60, 60, 60), (80, 80, 80), name="far away")
    assert roiProblem(outside, sample_volume) == (f"The ROI 'far away' does not overlap the volume '{volume_name}'; "
                                                  "move it onto the volume.")
    thin = roi_around_voxels(scene, sample_volume, (5, 5, 5), (20, 20, 5 + MIN_ROI_VOXELS - 2), name="thin")
    assert roiProblem(thin, sample_volume) == (f"The ROI 'thin' covers only 16x16x{MIN_ROI_VOXELS - 1} voxels of the "
                                               f"volume; make it at least {MIN_ROI_VOXELS} voxels across in every "
                                               "direction.")
    unplaced = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "empty")
    assert roiProblem(unplaced, sample_volume) == ("The ROI 'empty' is not placed yet; place it around the region to "
                                                   "segment.")
    fiducials = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "points")
    assert "'points' is not a markups ROI" in roiProblem(fiducials, sample_volume)
    warped = roi_around_voxels(scene, sample_volume, (5, 5, 5), (20, 20, 20), name="warped")
    warped.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLGridTransformNode").GetID())
    assert roiProblem(warped, sample_volume) == ("The ROI 'warped' is under a non-linear (warping) transform, which "
                                                 "does not keep the ROI a box; harden or remove the transform first.")
    assert roiProblem(None, sample_volume) is None
    with pytest.raises(RoiError, match="does not overlap"):
        roiVoxelBox(outside, sample_volume)


@pytest.mark.parametrize("file_name", ["brain1_image.nrrd", "lung1_image.nrrd"])
def test_the_crop_of_a_rotated_real_volume_is_an_exact_sub_grid(scene, shared_volumes, file_name):
    path = shared_volumes / file_name
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared data")
    volume = loadVolumeFile(path, scene)
    rotated_ijk_to_ras(volume, 33.0, (0.4, -0.5, 0.75), shift=(3.25, -8.0, 12.5))
    matrix = ijkToRasArray(volume)
    assert np.count_nonzero(np.abs(matrix[:3, :3]) > 1e-6) > 3, "the volume should be oblique"
    dims = np.array(volume.GetImageData().GetDimensions())
    center = matrix @ np.array([*(dims * [0.45, 0.55, 0.5]), 1.0])
    size = np.linalg.norm(matrix[:3, :3], axis=0) * dims * 0.4
    box = roiVoxelBox(make_roi(scene, center[:3], size, 15.0, (0.0, 1.0, 0.3)), volume)
    assert all(0 < s < d for s, d in zip(box.size, dims))

    files = exportVolumeForWorker(volume, box=box)
    try:
        crop = loadVolumeFile(files.inputPath, scene, name="crop")
        as_worker_reads_it = sitk.ReadImage(str(files.inputPath))  # the worker reads with SimpleITK
    finally:
        files.remove()
    assert np.abs(ijkToRasArray(crop) - box.ijkToRas(matrix)).max() < 1e-9
    assert np.abs(ijkToRasArray(crop)[:3, :3] - matrix[:3, :3]).max() < 1e-12  # same spacing and direction
    expected = volume_array(volume)[box.arraySlices(volume.GetImageData().GetExtent())]
    cropped = volume_array(crop)
    assert cropped.dtype == expected.dtype and np.array_equal(cropped, expected)
    # In physical space: the file's first voxel is the volume's voxel at the box's start, its axes the volume's.
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix
    assert np.allclose(as_worker_reads_it.GetOrigin(), (lps @ np.array([*box.start, 1.0]))[:3], atol=1e-6)
    assert np.allclose(as_worker_reads_it.GetSpacing(), np.linalg.norm(lps[:3, :3], axis=0), atol=1e-9)
    direction = np.asarray(as_worker_reads_it.GetDirection()).reshape(3, 3)
    assert np.allclose(direction, lps[:3, :3] / np.linalg.norm(lps[:3, :3], axis=0), atol=1e-9)
    assert as_worker_reads_it.GetSize() == box.size


# -- importing inside the box ----------------------------------------------------------------------------------------


def second_labels(voxels: np.ndarray) -> np.ndarray:
    low, high = np.percentile(voxels, [60, 85])
    return ((voxels > low).astype(np.uint8) + (voxels > high).astype(np.uint8)).astype(np.uint8)


def labelling(rule, seen_shapes: list | None = None):
    def write(request: dict) -> None:
        image = sitk.ReadImage(request["input"])
        voxels = sitk.GetArrayFromImage(image)
        if seen_shapes is not None:
            seen_shapes.append(voxels.shape)
        labels = sitk.GetImageFromArray(rule(voxels))
        labels.CopyInformation(image)
        sitk.WriteImage(labels, request["output"])

    return WorkerFactory(done_with({}, write))


@pytest.fixture
def box_roi(scene, sample_volume):
    roi = roi_around_voxels(scene, sample_volume, (4, 12, 9), (25, 40, 30))
    return roi, roiVoxelBox(roi, sample_volume)


def expected_inside(volume, box: VoxelBox, rule) -> tuple[np.ndarray, tuple[slice, ...]]:
    """The rule applied to the box's voxels alone (the worker sees only them), placed on the whole grid."""
    slices = box.arraySlices(volume.GetImageData().GetExtent())
    labels = np.zeros(volume_array(volume).shape, np.uint8)
    labels[slices] = rule(volume_array(volume)[slices])
    return labels, slices


def test_add_with_an_roi_sends_only_the_box_and_writes_only_inside_it(scene, sample_volume, box_roi):
    roi, box = box_roi
    shapes: list = []
    logic = SegmentationLogic(scene, labelling(threshold_labels, shapes))
    node = logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, roiNode=roi, timeout=30)
    assert shapes == [box.size[::-1]]
    labels = segments_as_label_array(node, logic.lastResult.segmentIds, sample_volume)
    expected, slices = expected_inside(sample_volume, box, threshold_labels)
    assert np.array_equal(labels, expected)
    outside = np.ones(labels.shape, bool)
    outside[slices] = False
    assert not labels[outside].any() and labels[slices].any()
    reference = segmentationReferenceGrid(node)  # the reference geometry stays the whole volume's grid
    assert tuple(reference.GetExtent()) == tuple(sample_volume.GetImageData().GetExtent())
    assert np.abs(imageToWorldArray(reference) - ijkToRasArray(sample_volume)).max() < 1e-9
    assert "inside the region of interest (22x29x22 voxels)" in logic.lastResult.summary()


def test_replace_with_an_roi_keeps_the_model_segments_outside_the_box(scene, sample_volume, box_roi):
    roi, box = box_roi
    first_logic = SegmentationLogic(scene, labelling(threshold_labels))
    node = first_logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    ids = first_logic.lastResult.segmentIds
    first = segments_as_label_array(node, ids, sample_volume)
    logic = SegmentationLogic(scene, labelling(second_labels))
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, outputSegmentationNode=node, mode="replace", roiNode=roi,
                         timeout=30)
    assert logic.lastResult.replacedSegmentIds == ids
    after = segments_as_label_array(node, ids, sample_volume)
    inside, slices = expected_inside(sample_volume, box, second_labels)
    expected = first.copy()
    expected[slices] = inside[slices]
    assert np.array_equal(after, expected)
    assert not np.array_equal(after[slices], first[slices])
    assert restoreReplacedSegments(node) == 2
    assert np.array_equal(segments_as_label_array(node, ids, sample_volume), first)


def test_fill_empty_with_an_roi_writes_only_empty_voxels_inside_the_box(scene, sample_volume, box_roi):
    roi, box = box_roi
    first_logic = SegmentationLogic(scene, labelling(threshold_labels))
    node = first_logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    occupied = segments_as_label_array(node, first_logic.lastResult.segmentIds, sample_volume) > 0
    logic = SegmentationLogic(scene, labelling(second_labels))
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, outputSegmentationNode=node, mode="fillEmpty", roiNode=roi,
                         timeout=30)
    added = segments_as_label_array(node, logic.lastResult.segmentIds, sample_volume)
    inside, _ = expected_inside(sample_volume, box, second_labels)
    assert np.array_equal(added, np.where(occupied, 0, inside))
    assert added.any()


def test_an_unusable_roi_fails_the_run_before_any_worker_starts(scene, sample_volume):
    factory = labelling(threshold_labels)
    logic = SegmentationLogic(scene, factory)
    far = roi_around_voxels(scene, sample_volume, (60, 60, 60), (80, 80, 80), name="far away")
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID, roiNode=far)
    assert logic.state is ProcessingState.FAILED and "does not overlap" in logic.machine.error_message
    assert factory.workers == []


# -- the real model --------------------------------------------------------------------------------------------------


def test_the_real_model_inside_an_roi_agrees_with_the_whole_volume_run_and_leaves_the_outside(scene, sample_volume,
                                                                                           real_worker):
    full_logic = SegmentationLogic(scene, lambda: real_worker)
    node = full_logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=TIMEOUT_S)
    ids = full_logic.lastResult.segmentIds
    full = segments_as_label_array(node, ids, sample_volume)
    # A box that cuts off the front of the hippocampus (which starts near j = 5), so some of it lies outside.
    roi = roi_around_voxels(scene, sample_volume, (0, 12, 0), (35, 48, 37))
    box = roiVoxelBox(roi, sample_volume)
    logic = SegmentationLogic(scene, lambda: real_worker)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", outputSegmentationNode=node, mode="replace",
                         roiNode=roi, timeout=TIMEOUT_S)
    after = segments_as_label_array(node, ids, sample_volume)
    slices = box.arraySlices(sample_volume.GetImageData().GetExtent())
    outside = np.ones(full.shape, bool)
    outside[slices] = False
    assert np.array_equal(after[outside], full[outside])
    assert (full[outside] > 0).sum() > 50, "the box should leave part of the structure outside"
    # Inside, the network sees less context (and a cut structure), so voxels near the cut may differ: compare away
    # from the box's faces, where the two runs agree closely (Dice about 0.95 and 0.92 for this box).
    interior = np.zeros(full.shape, bool)
    margin = 4
    interior[tuple(slice(s.start + margin, s.stop - margin) for s in slices)] = True
    for value in (1, 2):
        score = mask_dice(after[interior] == value, full[interior] == value)
        assert score > 0.88, f"label {value}: Dice {score:.3f} inside the box"
