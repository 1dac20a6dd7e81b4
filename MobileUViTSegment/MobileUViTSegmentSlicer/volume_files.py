"""Volume nodes to and from files, and their geometry, through MRML's own storage classes.

Why MRML's storage nodes and not ``slicer.util.loadVolume`` / ``saveNode``: those need the running application,
while the storage classes work the same inside Slicer and headless (slicer-core), so the tests exercise the code
Slicer runs. Writing uses a storage node that is never added to the scene, so exporting leaves the user's scene
untouched (no storage node, no modified flag).

Geometry always travels as the node's IJK-to-RAS matrix. Slicer's reader flips an axis of files whose direction
matrix is left-handed, so raw voxel arrays of the same file differ between readers; compare geometry and voxels in
physical space, never raw arrays across readers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import slicer
import vtk


class VolumeFileError(Exception):
    """A volume could not be written or read; the message is one sentence for the user."""


def matrixToArray(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])


def arrayToMatrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(array[row, column]))
    return matrix


def ijkToRasArray(volumeNode: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix (its own, without parent transforms)."""
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return matrixToArray(matrix)


def imageToWorldArray(image: slicer.vtkOrientedImageData) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return matrixToArray(matrix)


def writeVolumeFile(volumeNode: slicer.vtkMRMLVolumeNode, path: os.PathLike | str, compress: bool = False) -> None:
    """Write the node's voxels and exact geometry (NRRD keeps oblique directions to full double precision)."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()  # never added to the scene
    storage.SetFileName(str(path))
    storage.SetUseCompression(1 if compress else 0)
    if not storage.WriteData(volumeNode):
        raise VolumeFileError(f"the volume '{volumeNode.GetName()}' could not be written to {path}")


def readOrientedImageFile(path: os.PathLike | str) -> slicer.vtkOrientedImageData:
    """Read a label map file into an oriented image (voxels + IJK-to-RAS) without touching any scene."""
    if not Path(path).is_file():
        raise VolumeFileError(f"the file {path} does not exist")
    node = slicer.vtkMRMLLabelMapVolumeNode()  # a carrier, never added to a scene
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise VolumeFileError(f"the file {path} could not be read as a label map")
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(node.GetImageData())
    image.SetImageToWorldMatrix(arrayToMatrix(ijkToRasArray(node)))
    return image


def loadVolumeFile(path: os.PathLike | str, scene: slicer.vtkMRMLScene, name: Optional[str] = None,
                   labelMap: bool = False) -> slicer.vtkMRMLScalarVolumeNode:
    """Load a volume into ``scene`` as Slicer does (node + storage node + display node) and return the node."""
    path = Path(path)
    className = "vtkMRMLLabelMapVolumeNode" if labelMap else "vtkMRMLScalarVolumeNode"
    nodeName = name or path.name.split(".")[0]
    node = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(nodeName))
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise VolumeFileError(f"{path} could not be read as a volume")
    node.CreateDefaultDisplayNodes()
    return node
