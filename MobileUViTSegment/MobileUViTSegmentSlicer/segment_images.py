"""A volume node and a segmentation's segments as SimpleITK images on the volume's exact voxel grid.

Why: the panel's measurements and comparisons must be the command line's numbers, so the Slicer side computes
nothing itself; it hands the core (:mod:`MobileUViTSegmentLib.measurements`, :mod:`~MobileUViTSegmentLib.comparison`)
the same kind of images the command line reads from files. Each segment is exported on its own
(:func:`.segment_masks.segmentMask`), so overlapping segments are each whole, and only when the core asks for it,
so two masks at a time are in memory, not one per segment.

Geometry: the node's own IJK-to-RAS (without parent transforms) becomes spacing (column lengths), direction and
origin in LPS, as ITK describes the file the node was read from. Nothing here changes a node: voxels are copied
out, segments are read through ``GetBinaryLabelmapRepresentation`` into new images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import numpy as np
import SimpleITK as sitk
import slicer
from vtk.util.numpy_support import vtk_to_numpy

from MobileUViTSegmentLib.named_segments import Segment

from .segment_masks import referenceGrid, segmentMask
from .volume_export import volumeProblem
from .volume_files import ijkToRasArray

BINARY_LABELMAP = "Binary labelmap"
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def gridImage(voxels: np.ndarray, ijkToRas: np.ndarray) -> sitk.Image:
    """A (k, j, i) array on the grid an IJK-to-RAS matrix describes, as an ITK image (LPS geometry)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(voxels))
    spacing = np.linalg.norm(ijkToRas[:3, :3], axis=0)
    image.SetSpacing([float(value) for value in spacing])
    image.SetDirection([float(value) for value in (LPS_FROM_RAS @ (ijkToRas[:3, :3] / spacing)).ravel()])
    image.SetOrigin([float(value) for value in LPS_FROM_RAS @ ijkToRas[:3, 3]])
    return image


def volumeImage(volumeNode: slicer.vtkMRMLScalarVolumeNode) -> sitk.Image:
    """The volume's voxels (a copy) and geometry; one value per voxel (callers refuse colour volumes first)."""
    imageData = volumeNode.GetImageData()
    dimensions = imageData.GetDimensions()
    voxels = vtk_to_numpy(imageData.GetPointData().GetScalars()).reshape(dimensions[::-1])
    return gridImage(voxels.copy(), ijkToRasArray(volumeNode))


def segmentationProblem(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode],
                        volumeNode: Optional[slicer.vtkMRMLNode], what: str = "segmentation") -> Optional[str]:
    """Why the segments of ``segmentationNode`` cannot be read on ``volumeNode``'s grid, or None."""
    if segmentationNode is None:
        return f"Select a {what}."
    if volumeNode is None:
        return "Select the volume the segmentation was drawn on."
    problem = volumeProblem(volumeNode)
    if problem:
        return problem
    name = segmentationNode.GetName()
    segmentation = segmentationNode.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        return f"The {what} '{name}' has no segments."
    if not segmentation.ContainsRepresentation(BINARY_LABELMAP):
        return (f"The {what} '{name}' holds only {segmentation.GetSourceRepresentationName().lower()}s, no voxels; "
                "show it in the slice views or convert it to a binary labelmap in the Segmentations module first.")
    # GetParentTransformNode, not GetTransformNodeID: the latter can fire a ModifiedEvent on the user's node.
    if segmentationNode.GetParentTransformNode() is not volumeNode.GetParentTransformNode():
        return (f"The {what} '{name}' and the volume '{volumeNode.GetName()}' are under different transforms; "
                "place both under the same transform (or harden it) first.")
    return None


def segmentIdsOf(segmentationNode: slicer.vtkMRMLSegmentationNode) -> list[str]:
    segmentation = segmentationNode.GetSegmentation()
    return [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]


def segmentsOf(segmentationNode: slicer.vtkMRMLSegmentationNode,
               volumeNode: slicer.vtkMRMLScalarVolumeNode) -> list[tuple[str, Segment]]:
    """(segment ID, core segment) in the segmentation's order; the label value is the segment's position (1, 2,
    ...), the value Slicer gives it when exporting the segmentation to a label map."""
    reference = referenceGrid(volumeNode)
    ijkToRas = ijkToRasArray(volumeNode)
    segmentation = segmentationNode.GetSegmentation()

    def maskFunction(segmentId: str) -> Callable[[], sitk.Image]:
        return lambda: gridImage(segmentMask(segmentationNode, segmentId, reference).astype(np.uint8), ijkToRas)

    return [(segmentId, Segment(number, segmentation.GetSegment(segmentId).GetName(), maskFunction(segmentId)))
            for number, segmentId in enumerate(segmentIdsOf(segmentationNode), start=1)]
