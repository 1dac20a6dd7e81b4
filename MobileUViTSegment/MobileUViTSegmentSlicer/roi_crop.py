"""Segmenting inside a markups ROI: the ROI box → an exact sub-grid of the input volume (a :class:`VoxelBox`).

Only that sub-grid is sent to the worker (less to segment, so faster), and the import changes segments only inside it
(see :mod:`.result_import`).

What is supported: a ``vtkMRMLMarkupsROINode`` of either ROI type (box or bounding box), rotated in any way, with the
ROI and the volume each under any chain of linear transforms (or none). The box is mapped into the volume's voxel
coordinates through those transforms; the sub-grid is the smallest block of whole voxels that touches the ROI box,
clipped to the volume. So for an ROI rotated against the volume's axes the block is larger than the ROI itself: the
voxel-aligned block around it is segmented, never part of the ROI left out. What is refused, each with one
sentence: an ROI or volume under a non-linear (warping) transform (the box would not stay a box), an ROI not placed
yet, one that does not overlap the volume, and one thinner than :data:`MIN_ROI_VOXELS` voxels along an axis (where
the volume itself is at least that thick), which gives a network almost nothing but padding to look at.

The sub-grid is exact: same voxels, spacing and direction as the volume, only the origin moved to the block's first
voxel, so the result maps back onto the volume's grid without resampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Optional

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

from .volume_files import arrayToMatrix, ijkToRasArray, matrixToArray

MIN_ROI_VOXELS = 8
# A voxel that only touches the ROI's face (within this fraction of a voxel) is outside it.
TOUCH_TOLERANCE = 1e-6


class RoiError(Exception):
    """The ROI cannot be used to limit the segmentation; the message is one sentence for the user."""


@dataclass(frozen=True)
class VoxelBox:
    """A block of whole voxels of a volume: inclusive bounds ``(iMin, iMax, jMin, jMax, kMin, kMax)`` (VTK order)."""

    extent: tuple[int, int, int, int, int, int]

    @classmethod
    def wholeVolume(cls, volumeNode: slicer.vtkMRMLVolumeNode) -> VoxelBox:
        return cls(tuple(int(value) for value in volumeNode.GetImageData().GetExtent()))

    @property
    def size(self) -> tuple[int, int, int]:
        """Voxels along I, J, K."""
        low, high = self.extent[0::2], self.extent[1::2]
        return tuple(int(h - lo + 1) for lo, h in zip(low, high))

    @property
    def start(self) -> tuple[int, int, int]:
        return tuple(int(value) for value in self.extent[0::2])

    def arraySlices(self, volumeExtent: tuple[int, ...]) -> tuple[slice, slice, slice]:
        """Index of the block in a (k, j, i) array of a volume with extent ``volumeExtent``."""
        i0, i1, j0, j1, k0, k1 = (value - volumeExtent[2 * (axis // 2)] for axis, value in enumerate(self.extent))
        return slice(k0, k1 + 1), slice(j0, j1 + 1), slice(i0, i1 + 1)

    def ijkToRas(self, volumeIjkToRas: np.ndarray) -> np.ndarray:
        """IJK-to-RAS of the block as a volume of its own (index 0 at the block's first voxel)."""
        shift = np.eye(4)
        shift[:3, 3] = self.start
        return volumeIjkToRas @ shift

    def describe(self) -> str:
        return "x".join(str(value) for value in self.size)


def _toWorld(node: slicer.vtkMRMLTransformableNode) -> Optional[np.ndarray]:
    """The node's parent transforms to world as a 4x4 matrix, or None when one of them is not linear."""
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        return None
    matrix = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(matrix)
    return matrixToArray(matrix)


def roiCornersInVolumeIjk(roiNode: slicer.vtkMRMLMarkupsROINode,
                          volumeNode: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The ROI box's 8 corners as continuous voxel coordinates (i, j, k) of the volume, shape (8, 3)."""
    roiToWorld, volumeToWorld = _toWorld(roiNode), _toWorld(volumeNode)
    if roiToWorld is None or volumeToWorld is None:
        which = "ROI" if roiToWorld is None else "volume"
        raise RoiError(f"The {which} '{(roiNode if which == 'ROI' else volumeNode).GetName()}' is under a non-linear "
                       "(warping) transform, which does not keep the ROI a box; harden or remove the transform first.")
    bounds = [0.0] * 6
    roiNode.GetObjectBounds(bounds)
    corners = np.array([[x, y, z, 1.0] for x, y, z in product(bounds[0:2], bounds[2:4], bounds[4:6])]).T
    objectToNode = matrixToArray(roiNode.GetObjectToNodeMatrix())
    rasToIjk = np.linalg.inv(ijkToRasArray(volumeNode))
    ijk = rasToIjk @ np.linalg.inv(volumeToWorld) @ roiToWorld @ objectToNode @ corners
    return ijk[:3].T


def roiVoxelBox(roiNode: slicer.vtkMRMLNode, volumeNode: slicer.vtkMRMLVolumeNode) -> VoxelBox:
    """The block of the volume's voxels the ROI touches, clipped to the volume (see the module docstring)."""
    name = roiNode.GetName()
    if not roiNode.IsA("vtkMRMLMarkupsROINode"):
        raise RoiError(f"'{name}' is not a markups ROI; choose a box ROI (Markups > ROI) to limit the segmentation.")
    if roiNode.GetNumberOfControlPoints() == 0 or min(roiNode.GetSize()) <= 0:
        raise RoiError(f"The ROI '{name}' is not placed yet; place it around the region to segment.")
    ijk = roiCornersInVolumeIjk(roiNode, volumeNode)
    low = np.floor(ijk.min(axis=0) - 0.5 + TOUCH_TOLERANCE).astype(int) + 1
    high = np.ceil(ijk.max(axis=0) + 0.5 - TOUCH_TOLERANCE).astype(int) - 1
    volumeExtent = volumeNode.GetImageData().GetExtent()
    low = np.maximum(low, volumeExtent[0::2])
    high = np.minimum(high, volumeExtent[1::2])
    if (low > high).any():
        raise RoiError(f"The ROI '{name}' does not overlap the volume '{volumeNode.GetName()}'; move it onto the "
                       "volume.")
    box = VoxelBox(tuple(int(value) for pair in zip(low, high) for value in pair))
    volumeSize = VoxelBox.wholeVolume(volumeNode).size
    if any(size < min(MIN_ROI_VOXELS, whole) for size, whole in zip(box.size, volumeSize)):
        raise RoiError(f"The ROI '{name}' covers only {box.describe()} voxels of the volume; make it at least "
                       f"{MIN_ROI_VOXELS} voxels across in every direction.")
    return box


def roiProblem(roiNode: Optional[slicer.vtkMRMLNode], volumeNode: slicer.vtkMRMLVolumeNode) -> Optional[str]:
    """Why the ROI cannot limit a segmentation of the volume, or None (also None without an ROI)."""
    if roiNode is None:
        return None
    try:
        roiVoxelBox(roiNode, volumeNode)
    except RoiError as error:
        return str(error)
    return None


def croppedVolume(volumeNode: slicer.vtkMRMLScalarVolumeNode, box: VoxelBox) -> slicer.vtkMRMLScalarVolumeNode:
    """The block as a volume node of its own, never added to a scene (a carrier for writing the worker's input)."""
    image = volumeNode.GetImageData()
    extent = image.GetExtent()
    dims = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    components = image.GetNumberOfScalarComponents()
    voxels = vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0], components)
    block = np.ascontiguousarray(voxels[box.arraySlices(extent)])
    cropped = vtk.vtkImageData()
    cropped.SetDimensions(*box.size)
    array = numpy_to_vtk(block.reshape(-1, components), deep=True, array_type=scalars.GetDataType())
    array.SetName(scalars.GetName() or "ImageScalars")
    cropped.GetPointData().SetScalars(array)
    carrier = slicer.vtkMRMLScalarVolumeNode()
    carrier.SetName(volumeNode.GetName())
    carrier.SetAndObserveImageData(cropped)
    carrier.SetIJKToRASMatrix(arrayToMatrix(box.ijkToRas(ijkToRasArray(volumeNode))))
    return carrier
