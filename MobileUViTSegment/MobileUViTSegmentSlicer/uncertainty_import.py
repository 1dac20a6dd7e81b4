"""The worker's uncertainty map (float32, 0 = certain, 1 = all classes equally likely) → a scalar volume node on the
input volume's exact grid, displayed for overlaying in the slice views.

* Grid: the same rule as the label map (:mod:`.result_import`): a file whose header matches the volume within
  rounding gets the volume's own IJK-to-RAS matrix and extent (no resampling); any other grid (e.g. an axis flipped
  by Slicer's reader for a left-handed file) is resampled onto the volume's grid, linearly since the map is
  continuous. The node sits under the input volume's parent transform and beside it in the subject hierarchy.
* Display: window/level fixed to 0..1 (so colours mean the same thing in every case), a warm colour map (the first
  of :data:`UNCERTAINTY_COLOR_NODE_IDS` the scene has: Inferno in Slicer; Iron where only the built-in tables
  exist), and values below :data:`OVERLAY_LOWER_THRESHOLD` hidden, so as a foreground layer only the uncertain
  voxels tint the image.
* All or nothing: any failure removes what was added and raises :class:`UncertaintyImportError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import slicer
import vtk

from .segment_masks import referenceGrid
from .volume_files import arrayToMatrix, ijkToRasArray

UNCERTAINTY_COLOR_NODE_IDS = (
    "vtkMRMLColorTableNodeFileInferno.txt",  # Slicer's colour files (the application)
    "vtkMRMLColorTableNodeFileMagma.txt",
    "vtkMRMLColorTableNodeIron",  # built-in tables (vtkMRMLColorLogic), also headless
    "vtkMRMLPETProceduralColorNodePET-Heat",
)
OVERLAY_LOWER_THRESHOLD = 0.05
UNCERTAINTY_OF_TAG = "MobileUViTSegment.UncertaintyOf"  # attribute: ID of the volume the map belongs to


class UncertaintyImportError(Exception):
    """The uncertainty map could not be added to the scene; the message is one sentence for the user."""


def _readOrientedScalarImage(path: Path) -> slicer.vtkOrientedImageData:
    """Voxels + IJK-to-RAS of a scalar file, read with MRML's storage class into a carrier node (no scene)."""
    if not path.is_file():
        raise UncertaintyImportError(f"The uncertainty map {path} does not exist.")
    carrier = slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(carrier) or carrier.GetImageData() is None:
        raise UncertaintyImportError(f"The uncertainty map {path} could not be read.")
    if carrier.GetImageData().GetNumberOfScalarComponents() != 1:
        raise UncertaintyImportError(f"The uncertainty map {path} has more than one value per voxel.")
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(carrier.GetImageData())
    image.SetImageToWorldMatrix(arrayToMatrix(ijkToRasArray(carrier)))
    return image


def _onVolumeGrid(image: slicer.vtkOrientedImageData,
                  volumeNode: slicer.vtkMRMLVolumeNode) -> slicer.vtkOrientedImageData:
    resample = slicer.vtkOrientedImageDataResample
    reference = referenceGrid(volumeNode)
    if resample.DoGeometriesMatch(reference, image) and resample.DoExtentsMatch(reference, image):
        return image
    onGrid = slicer.vtkOrientedImageData()
    if not resample.ResampleOrientedImageToReferenceOrientedImage(image, reference, onGrid, True, False):
        raise UncertaintyImportError("The uncertainty map could not be mapped onto the input volume's grid.")
    return onGrid


def _plainFloatImage(image: vtk.vtkImageData, extent: tuple[int, ...]) -> vtk.vtkImageData:
    """Float32 voxels with unit spacing, zero origin and identity direction, as volume nodes hold them (the geometry
    lives in the node's IJK-to-RAS matrix)."""
    cast = vtk.vtkImageCast()
    cast.SetInputData(image)
    cast.SetOutputScalarTypeToFloat()
    cast.Update()
    plain = vtk.vtkImageData()
    plain.DeepCopy(cast.GetOutput())
    plain.SetOrigin(0.0, 0.0, 0.0)
    plain.SetSpacing(1.0, 1.0, 1.0)
    plain.SetDirectionMatrix(1, 0, 0, 0, 1, 0, 0, 0, 1)
    if tuple(plain.GetExtent()) != tuple(extent):
        raise UncertaintyImportError("The uncertainty map does not cover the input volume's grid.")
    return plain


def uncertaintyColorNodeId(scene: slicer.vtkMRMLScene) -> Optional[str]:
    """The first of :data:`UNCERTAINTY_COLOR_NODE_IDS` present in ``scene`` (None: keep Slicer's default)."""
    return next((nodeId for nodeId in UNCERTAINTY_COLOR_NODE_IDS if scene.GetNodeByID(nodeId) is not None), None)


def _configureDisplay(node: slicer.vtkMRMLScalarVolumeNode, scene: slicer.vtkMRMLScene) -> None:
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is None:
        raise UncertaintyImportError("The uncertainty volume could not be displayed.")
    wasModifying = display.StartModify()
    colorNodeId = uncertaintyColorNodeId(scene)
    if colorNodeId:
        display.SetAndObserveColorNodeID(colorNodeId)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.AutoThresholdOff()
    display.SetLowerThreshold(OVERLAY_LOWER_THRESHOLD)
    display.SetUpperThreshold(1.0)
    display.ApplyThresholdOn()
    display.SetInterpolate(1)
    display.EndModify(wasModifying)


def _placeBesideInSubjectHierarchy(node: slicer.vtkMRMLNode, referenceNode: slicer.vtkMRMLNode,
                                   scene: slicer.vtkMRMLScene) -> None:
    # Only an existing hierarchy: GetSubjectHierarchyNode() would create one in a scene that has none.
    shNode = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if shNode is None or not shNode.GetItemByDataNode(referenceNode):
        return
    parentItem = shNode.GetItemParent(shNode.GetItemByDataNode(referenceNode))
    item = shNode.GetItemByDataNode(node)
    if item:
        shNode.SetItemParent(item, parentItem)
    else:
        shNode.CreateItem(parentItem, node)


def _removeWithDependents(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLDisplayableNode) -> None:
    dependentIds = [node.GetNthDisplayNodeID(index) for index in range(node.GetNumberOfDisplayNodes())]
    dependentIds.append(node.GetStorageNodeID())
    scene.RemoveNode(node)
    for nodeId in filter(None, dependentIds):
        dependent = scene.GetNodeByID(nodeId)
        if dependent is not None:
            scene.RemoveNode(dependent)


def importUncertaintyVolume(path: os.PathLike | str, inputVolumeNode: slicer.vtkMRMLScalarVolumeNode,
                            scene: slicer.vtkMRMLScene, name: Optional[str] = None,
                            ofTag: str = UNCERTAINTY_OF_TAG) -> slicer.vtkMRMLScalarVolumeNode:
    """Add the uncertainty map at ``path`` as a new scalar volume on ``inputVolumeNode``'s exact grid.

    Any 0..1 map of the worker goes the same way (a label's probability map: ``ofTag`` names the attribute that
    records the input volume's ID, so the panel can tell which map is which).

    The file is read and mapped before anything is added to ``scene``; raises :class:`UncertaintyImportError`
    (one sentence) and leaves the scene as it was when anything goes wrong.
    """
    if inputVolumeNode is None or inputVolumeNode.GetImageData() is None:
        raise UncertaintyImportError("The input volume has no voxels, so the uncertainty map has no grid to go on.")
    image = _onVolumeGrid(_readOrientedScalarImage(Path(path)), inputVolumeNode)
    voxels = _plainFloatImage(image, inputVolumeNode.GetImageData().GetExtent())

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                   scene.GenerateUniqueName(name or f"{inputVolumeNode.GetName()} uncertainty"))
    try:
        node.SetIJKToRASMatrix(arrayToMatrix(ijkToRasArray(inputVolumeNode)))
        node.SetAndObserveImageData(voxels)
        parentTransform = inputVolumeNode.GetParentTransformNode()
        node.SetAndObserveTransformNodeID(parentTransform.GetID() if parentTransform else None)
        node.SetAttribute(ofTag, inputVolumeNode.GetID() or "")
        _configureDisplay(node, scene)
        _placeBesideInSubjectHierarchy(node, inputVolumeNode, scene)
    except BaseException:
        _removeWithDependents(scene, node)
        raise
    return node

