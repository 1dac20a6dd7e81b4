"""Segments as boolean voxel masks on one grid, and back: what replacing, filling and restoring compute with.

Slicer stores segments in shared labelmap layers with their own (effective) extents; these helpers hide that: a mask
is a (k, j, i) boolean array covering a reference grid (:func:`referenceGrid`: geometry and extent, no voxels), and
writing one back goes through ``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment``, which moves other
segments sharing the layer to a layer of their own instead of overwriting them (their voxels never change).
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from .volume_files import arrayToMatrix, ijkToRasArray, imageToWorldArray


class SegmentWriteError(Exception):
    """A segment's voxels could not be written; the message is one sentence for the user."""


def referenceGrid(volumeNode: slicer.vtkMRMLVolumeNode) -> slicer.vtkOrientedImageData:
    """The volume's voxel grid (its extent and own IJK-to-RAS, without parent transforms), without voxels."""
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(volumeNode.GetImageData().GetExtent())
    reference.SetImageToWorldMatrix(arrayToMatrix(ijkToRasArray(volumeNode)))
    return reference


def segmentationReferenceGrid(segmentationNode: slicer.vtkMRMLSegmentationNode) -> slicer.vtkOrientedImageData:
    """The segmentation's reference image geometry as a grid (empty extent when it has none)."""
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    reference = slicer.vtkOrientedImageData()
    text = segmentationNode.GetSegmentation().GetConversionParameter(name)
    if not text or not slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, reference, False):
        reference.SetExtent(0, -1, 0, -1, 0, -1)
    return reference


def gridShape(reference: slicer.vtkOrientedImageData) -> tuple[int, int, int]:
    extent = reference.GetExtent()
    return (max(extent[5] - extent[4] + 1, 0), max(extent[3] - extent[2] + 1, 0), max(extent[1] - extent[0] + 1, 0))


def _hasVoxels(image: slicer.vtkOrientedImageData) -> bool:
    extent = image.GetExtent()
    return (image.GetPointData() is not None and image.GetPointData().GetScalars() is not None
            and extent[0] <= extent[1] and extent[2] <= extent[3] and extent[4] <= extent[5])


def imageOnGrid(image: slicer.vtkOrientedImageData, reference: slicer.vtkOrientedImageData) -> np.ndarray:
    """``image``'s voxels on the reference grid as a (k, j, i) array: padded or cropped when the geometries match,
    nearest-neighbour resampled otherwise (0 outside ``image``)."""
    if not _hasVoxels(image):
        return np.zeros(gridShape(reference), np.uint8)
    onGrid = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            image, reference, onGrid, False, False):
        raise SegmentWriteError("A segment could not be mapped onto the reference grid.")
    if tuple(onGrid.GetExtent()) != tuple(reference.GetExtent()):  # defensive: must hold for any resampling
        raise SegmentWriteError("A segment could not be mapped onto the reference grid.")
    return vtk_to_numpy(onGrid.GetPointData().GetScalars()).reshape(gridShape(reference)).copy()


def segmentMask(segmentationNode: slicer.vtkMRMLSegmentationNode, segmentId: str,
                reference: slicer.vtkOrientedImageData) -> np.ndarray:
    """The segment's voxels on the reference grid, as a boolean (k, j, i) array."""
    labelmap = slicer.vtkOrientedImageData()
    segmentationNode.GetBinaryLabelmapRepresentation(segmentId, labelmap)
    return imageOnGrid(labelmap, reference) > 0


def occupiedMask(segmentationNode: slicer.vtkMRMLSegmentationNode,
                 reference: slicer.vtkOrientedImageData) -> np.ndarray:
    """Voxels of the reference grid that any segment holds (one pass per labelmap layer, not per segment)."""
    segmentation = segmentationNode.GetSegmentation()
    occupied = np.zeros(gridShape(reference), bool)
    binaryLabelmap = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if segmentation.GetSourceRepresentationName() != binaryLabelmap:
        return occupied  # only an empty segmentation gets here (outputSegmentationProblem refuses the rest)
    for layer in range(segmentation.GetNumberOfLayers()):
        ids = segmentation.GetSegmentIDsForLayer(layer)
        values = [segmentation.GetSegment(segmentId).GetLabelValue() for segmentId in ids]
        layerImage = segmentation.GetLayerDataObject(layer)
        if values and layerImage is not None:
            occupied |= np.isin(imageOnGrid(layerImage, reference), values)
    return occupied


def maskImage(mask: np.ndarray, reference: slicer.vtkOrientedImageData) -> slicer.vtkOrientedImageData:
    """A 0/1 labelmap on the reference grid from a boolean (k, j, i) array."""
    image = slicer.vtkOrientedImageData()
    image.SetExtent(reference.GetExtent())
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(image.GetPointData().GetScalars())[:] = np.ascontiguousarray(mask, dtype=np.uint8).ravel()
    image.SetImageToWorldMatrix(arrayToMatrix(imageToWorldArray(reference)))
    return image


def writeSegmentMask(segmentationNode: slicer.vtkMRMLSegmentationNode, segmentId: str, mask: np.ndarray,
                     reference: slicer.vtkOrientedImageData) -> None:
    """Make the segment hold exactly the mask's voxels (other segments keep theirs)."""
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.SetBinaryLabelmapToSegment(maskImage(mask, reference), segmentationNode, segmentId,
                                            logic.MODE_REPLACE, reference.GetExtent()):
        name = segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()
        raise SegmentWriteError(f"The voxels of the segment '{name}' could not be written.")
