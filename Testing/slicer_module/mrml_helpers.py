"""Helpers for MRML-backed assertions: scene snapshots, segment arrays on a volume's grid, physical-space checks."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from MobileUViTSegmentSlicer.result_import import MODEL_ID_TAG
from MobileUViTSegmentSlicer.volume_files import arrayToMatrix, ijkToRasArray, imageToWorldArray, matrixToArray

TERMINOLOGY_TAG = slicer.vtkSegment.GetTerminologyEntryTagName()


def mask_dice(found: np.ndarray, expected: np.ndarray) -> float:
    """Dice of two boolean masks; both empty counts as agreement (1.0), as in the core's metrics."""
    total = int(found.sum() + expected.sum())
    return 1.0 if total == 0 else 2.0 * int((found & expected).sum()) / total


def segment_tag(segment: slicer.vtkSegment, name: str) -> str:
    value = vtk.reference("")
    segment.GetTag(name, value)
    return str(value)


def volume_array(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """Voxels as (k, j, i), or (k, j, i, components) for a vector volume, as ``slicer.util.arrayFromVolume`` gives
    them (a copy)."""
    image = node.GetImageData()
    dims = image.GetDimensions()
    components = image.GetNumberOfScalarComponents()
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape).copy()


def segment_summary(node: slicer.vtkMRMLSegmentationNode) -> list[dict[str, Any]]:
    """ID, name, colour, tags, stored geometry and a digest of the voxels of every segment, in order."""
    segmentation = node.GetSegmentation()
    summary = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        labelmap = slicer.vtkOrientedImageData()
        node.GetBinaryLabelmapRepresentation(segment_id, labelmap)
        scalars = labelmap.GetPointData().GetScalars()
        voxels = vtk_to_numpy(scalars) if scalars is not None else np.zeros(0, np.uint8)
        summary.append({
            "id": segment_id,
            "name": segment.GetName(),
            "color": tuple(round(c, 6) for c in segment.GetColor()),
            "terminology": segment_tag(segment, TERMINOLOGY_TAG),
            "model": segment_tag(segment, MODEL_ID_TAG),
            "extent": tuple(labelmap.GetExtent()),
            "matrix": tuple(imageToWorldArray(labelmap).ravel()),
            "voxels": hashlib.sha256(np.ascontiguousarray(voxels > 0).tobytes()).hexdigest(),
            "count": int((voxels > 0).sum()),
        })
    return summary


def scene_snapshot(scene: slicer.vtkMRMLScene) -> dict[str, Any]:
    """Every node (ID, class, name, modification time) and every segment of every segmentation."""
    nodes = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        entry: dict[str, Any] = {"class": node.GetClassName(), "name": node.GetName()}
        if node.IsA("vtkMRMLVolumeNode") or node.IsA("vtkMRMLSegmentationNode"):
            entry["mtime"] = node.GetMTime()
            entry["storage"] = node.GetStorageNodeID()
        if node.IsA("vtkMRMLSegmentationNode"):
            entry["segments"] = segment_summary(node)
            geometry = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
            entry["reference_geometry"] = node.GetSegmentation().GetConversionParameter(geometry)
        nodes[node.GetID()] = entry
    hierarchy = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    return {"nodes": nodes, "subject_hierarchy_items": hierarchy.GetNumberOfItems() if hierarchy else None}


def segments_as_label_array(segmentation_node: slicer.vtkMRMLSegmentationNode, segment_ids: list[str],
                            volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The segments on the volume's grid as one (k, j, i) array: the n-th ID becomes label n (adds a node)."""
    scene = volume_node.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation_node, segment_ids, labelmap, volume_node, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    assert ok, "export of the segments failed"
    assert np.array_equal(ijkToRasArray(labelmap), ijkToRasArray(volume_node)), "export is not on the volume grid"
    return volume_array(labelmap)


def assert_stored_on_volume_grid(segmentation_node: slicer.vtkMRMLSegmentationNode, segment_ids: list[str],
                                 volume_node: slicer.vtkMRMLVolumeNode) -> None:
    """The labelmaps the segmentation stores lie on the volume's voxel grid, inside its extent.

    Equal to 1e-9 mm rather than bit for bit: Slicer keeps a segmentation's reference geometry as text with 16
    significant digits, so an oblique matrix can come back one unit in the last place away.
    """
    volume_extent = volume_node.GetImageData().GetExtent()
    for segment_id in segment_ids:
        stored = segmentation_node.GetBinaryLabelmapInternalRepresentation(segment_id)
        difference = np.abs(imageToWorldArray(stored) - ijkToRasArray(volume_node)).max()
        assert difference < 1e-9, (segment_id, difference)
        extent = stored.GetExtent()
        assert all(volume_extent[2 * a] <= extent[2 * a] and extent[2 * a + 1] <= volume_extent[2 * a + 1]
                   for a in range(3)), (segment_id, extent, volume_extent)


def rotated_ijk_to_ras(volume_node: slicer.vtkMRMLVolumeNode, degrees: float, axis: tuple[float, float, float],
                       shift: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
    """Make the volume oblique: rotate (and shift) its IJK-to-RAS in place."""
    transform = vtk.vtkTransform()
    transform.Translate(*shift)
    transform.RotateWXYZ(degrees, *axis)
    volume_node.SetIJKToRASMatrix(arrayToMatrix(matrixToArray(transform.GetMatrix()) @ ijkToRasArray(volume_node)))


def compare_in_physical_space(slicer_labels: np.ndarray, ijk_to_ras: np.ndarray, itk_labels: sitk.Image,
                              step: int = 1) -> tuple[int, int]:
    """Compare a (k, j, i) label array on a Slicer grid with an ITK label image voxel by voxel in physical space.

    Every Slicer voxel centre must fall on an ITK voxel centre (within 1e-3 voxel); returns (voxels compared,
    voxels that differ). ``step`` > 1 compares every step-th voxel along each axis (large volumes).
    """
    k, j, i = (axis[::step, ::step, ::step] for axis in np.indices(slicer_labels.shape, sparse=False))
    slicer_labels = slicer_labels[::step, ::step, ::step]
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    ras = ijk_to_ras @ ijk
    lps = np.stack([-ras[0], -ras[1], ras[2]])
    direction = np.asarray(itk_labels.GetDirection()).reshape(3, 3)
    physical_to_index = np.linalg.inv(direction @ np.diag(itk_labels.GetSpacing()))
    continuous = physical_to_index @ (lps - np.asarray(itk_labels.GetOrigin())[:, None])
    index = np.round(continuous).astype(int)
    assert np.abs(continuous - index).max() < 1e-3, "the grids do not share voxel centres"
    size = np.asarray(itk_labels.GetSize())[:, None]
    assert ((index >= 0) & (index < size)).all(), "a voxel falls outside the other grid"
    itk_array = sitk.GetArrayFromImage(itk_labels)  # (z, y, x)
    values = itk_array[index[2], index[1], index[0]]
    differing = int((values != slicer_labels.ravel()).sum())
    return values.size, differing
