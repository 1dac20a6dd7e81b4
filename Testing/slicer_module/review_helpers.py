"""Helpers for the Measure / Compare tests: segmentations built from label map files the way a user draws them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import slicer
import vtk
from mrml_helpers import volume_array
from vtk.util.numpy_support import vtk_to_numpy

from MobileUViTSegmentSlicer.result_import import removeNodeWithDependents
from MobileUViTSegmentSlicer.volume_files import arrayToMatrix, ijkToRasArray, loadVolumeFile


def paintSegment(node: slicer.vtkMRMLSegmentationNode, name: str, voxels: np.ndarray, gridNode) -> str:
    """A new segment holding ``voxels`` (a boolean (k, j, i) array on ``gridNode``'s grid), as the user paints."""
    segmentId = node.GetSegmentation().AddEmptySegment("", name, (0.2, 0.6, 0.9))
    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetDimensions(gridNode.GetImageData().GetDimensions())
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(labelmap.GetPointData().GetScalars())[:] = voxels.astype(np.uint8).ravel()
    labelmap.SetImageToWorldMatrix(arrayToMatrix(ijkToRasArray(gridNode)))
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(labelmap, node, segmentId)
    return segmentId


def segmentationFromLabelNode(scene: slicer.vtkMRMLScene, labelNode: slicer.vtkMRMLLabelMapVolumeNode,
                              names: Mapping[int, str],
                              nodeName: str = "segmentation") -> slicer.vtkMRMLSegmentationNode:
    """One segment per label value of ``labelNode``, named by ``names``, in that order."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", nodeName)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(labelNode)
    voxels = volume_array(labelNode)
    for value, name in names.items():
        paintSegment(node, name, voxels == value, labelNode)
    return node


def segmentationFromLabelFile(scene: slicer.vtkMRMLScene, path: Path, names: Mapping[int, str],
                              nodeName: str = "segmentation") -> slicer.vtkMRMLSegmentationNode:
    """One segment per label value of the file, named by ``names``, in that order (the label node is removed)."""
    labelNode = loadVolumeFile(path, scene, labelMap=True)
    node = segmentationFromLabelNode(scene, labelNode, names, nodeName)
    removeNodeWithDependents(scene, labelNode)
    return node


def volumeLike(scene: slicer.vtkMRMLScene, gridNode, voxels: np.ndarray, name: str = "map",
               shift: float = 0.0) -> slicer.vtkMRMLScalarVolumeNode:
    """A float volume holding ``voxels`` ((k, j, i)) on ``gridNode``'s grid, moved by ``shift`` mm along R."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(gridNode.GetImageData().GetDimensions())
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    vtk_to_numpy(image.GetPointData().GetScalars())[:] = voxels.astype(np.float32).ravel()
    node.SetAndObserveImageData(image)
    matrix = ijkToRasArray(gridNode)
    matrix[0, 3] += shift
    node.SetIJKToRASMatrix(arrayToMatrix(matrix))
    return node
