"""The worker's label map → named, coloured, terminology-coded segments on the input volume's exact grid.

Rules (the user's work always wins):

* One segment per label of the model card, in card order, with the card's name, colour and ``TerminologyEntry`` tag,
  even when the network found nothing for a label (the user may want to draw it).
* Segments the user already has are never modified or removed; new segments get unique IDs, and a name that already
  exists gets a suffix such as ``" (2)"``.
* The output node is the segmentation the user chose, or a new one created here, at import time, so a failed or
  cancelled run creates nothing. A new node sits beside the input volume in the subject hierarchy (when the scene has
  one) and under the same parent transform.
* The reference image geometry is the input volume's, and the voxels are stored on exactly its grid: a result whose
  header matches the volume within rounding is handed over with the volume's own matrix (no resampling); any other
  grid (e.g. an axis flipped by Slicer's reader for a left-handed file) is mapped with nearest-neighbour resampling,
  exact when the voxel centres coincide. (Slicer keeps the reference geometry as text with 16 significant digits, so
  an oblique matrix may come back one unit in the last place away.)
* Importing is all or nothing: on any error the segments added so far (or the new node) are removed again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from .volume_files import VolumeFileError, arrayToMatrix, ijkToRasArray, readOrientedImageFile

MODEL_ID_TAG = "MobileUViTSegment.ModelId"
BINARY_LABELMAP = "Binary labelmap"


class ResultImportError(Exception):
    """The result could not be added to the scene; the message is one sentence for the user."""


@dataclass(frozen=True)
class LabelDescription:
    """One label of the ``done`` event: value in the label map, and how its segment looks and is coded."""

    value: int
    name: str
    color: tuple[int, int, int]
    terminology: str = ""

    @classmethod
    def fromEvent(cls, item: dict) -> LabelDescription:
        return cls(int(item["value"]), str(item["name"]), tuple(int(c) for c in item["color"]),
                   str(item.get("terminology") or ""))

    @property
    def colorFloat(self) -> tuple[float, float, float]:
        return tuple(channel / 255.0 for channel in self.color)


@dataclass
class ImportedSegments:
    segmentationNode: slicer.vtkMRMLSegmentationNode
    segmentIds: list[str]
    createdNode: bool

    def summary(self) -> str:
        where = "new segmentation" if self.createdNode else "segmentation"
        count = len(self.segmentIds)
        return f"{count} segment{'s' if count != 1 else ''} added to {where} '{self.segmentationNode.GetName()}'."


def uniqueSegmentName(name: str, existingNames: Iterable[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``, ... whichever is not taken yet."""
    taken = set(existingNames)
    if name not in taken:
        return name
    number = 2
    while f"{name} ({number})" in taken:
        number += 1
    return f"{name} ({number})"


def outputSegmentationProblem(outputSegmentationNode: Optional[slicer.vtkMRMLSegmentationNode],
                              inputVolumeNode: slicer.vtkMRMLVolumeNode) -> Optional[str]:
    """Why the chosen output segmentation cannot receive the result, or None (checked before a run starts)."""
    if outputSegmentationNode is None:
        return None
    name = outputSegmentationNode.GetName()
    # GetParentTransformNode, not GetTransformNodeID: the latter can fire a ModifiedEvent on the user's node.
    if outputSegmentationNode.GetParentTransformNode() is not inputVolumeNode.GetParentTransformNode():
        return (f"The output segmentation '{name}' is under a different transform than the input volume; choose "
                "another segmentation or create a new one.")
    segmentation = outputSegmentationNode.GetSegmentation()
    if segmentation.GetNumberOfSegments() and segmentation.GetSourceRepresentationName() != BINARY_LABELMAP:
        return (f"The output segmentation '{name}' is edited as {segmentation.GetSourceRepresentationName()}, not as "
                "a binary labelmap; choose another segmentation or create a new one.")
    return None


def _referenceGeometry(volumeNode: slicer.vtkMRMLVolumeNode) -> slicer.vtkOrientedImageData:
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(volumeNode.GetImageData().GetExtent())
    reference.SetImageToWorldMatrix(arrayToMatrix(ijkToRasArray(volumeNode)))
    return reference


def labelMapOnVolumeGrid(image: slicer.vtkOrientedImageData,
                         volumeNode: slicer.vtkMRMLVolumeNode) -> slicer.vtkOrientedImageData:
    """``image`` on exactly the volume's voxel grid (see the module docstring for how)."""
    resample = slicer.vtkOrientedImageDataResample
    reference = _referenceGeometry(volumeNode)
    if resample.DoGeometriesMatch(reference, image) and resample.DoExtentsMatch(reference, image):
        image.SetImageToWorldMatrix(arrayToMatrix(ijkToRasArray(volumeNode)))
        return image
    onGrid = slicer.vtkOrientedImageData()
    if not resample.ResampleOrientedImageToReferenceOrientedImage(image, reference, onGrid, False, True):
        raise ResultImportError("The result could not be mapped onto the input volume's grid.")
    return onGrid


def _checkLabelValues(image: slicer.vtkOrientedImageData, labels: Sequence[LabelDescription]) -> None:
    values = vtk_to_numpy(image.GetPointData().GetScalars())
    known = {0, *(label.value for label in labels)}
    unknown = sorted(set(np.unique(values).tolist()) - known)
    if unknown:
        raise ResultImportError(f"The result holds label values {unknown} that the model does not describe.")


def _placeBesideInSubjectHierarchy(node: slicer.vtkMRMLNode, referenceNode: slicer.vtkMRMLNode,
                                   scene: slicer.vtkMRMLScene) -> None:
    # GetSubjectHierarchyNode() would create a hierarchy in a scene that has none; only use an existing one.
    shNode = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if shNode is None:
        return
    referenceItem = shNode.GetItemByDataNode(referenceNode)
    if not referenceItem:
        return
    parentItem = shNode.GetItemParent(referenceItem)
    item = shNode.GetItemByDataNode(node)
    if item:
        shNode.SetItemParent(item, parentItem)
    else:
        shNode.CreateItem(parentItem, node)


def _newSegmentationNode(scene: slicer.vtkMRMLScene, inputVolumeNode: slicer.vtkMRMLVolumeNode,
                         modelId: str) -> slicer.vtkMRMLSegmentationNode:
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{inputVolumeNode.GetName()} segmentation")
    try:
        node.CreateDefaultDisplayNodes()
        parentTransform = inputVolumeNode.GetParentTransformNode()
        node.SetAndObserveTransformNodeID(parentTransform.GetID() if parentTransform else None)
        if modelId:
            node.SetAttribute(MODEL_ID_TAG, modelId)
        _placeBesideInSubjectHierarchy(node, inputVolumeNode, scene)
    except BaseException:
        removeNodeWithDependents(scene, node)
        raise
    return node


def removeNodeWithDependents(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLDisplayableNode) -> None:
    """Remove ``node`` and its display and storage nodes (RemoveNode alone leaves those behind)."""
    dependentIds = [node.GetNthDisplayNodeID(index) for index in range(node.GetNumberOfDisplayNodes())]
    dependentIds.append(node.GetStorageNodeID())
    scene.RemoveNode(node)
    for nodeId in filter(None, dependentIds):
        dependent = scene.GetNodeByID(nodeId)
        if dependent is not None:
            scene.RemoveNode(dependent)


def _addSegments(segmentationNode: slicer.vtkMRMLSegmentationNode, labels: Sequence[LabelDescription], modelId: str,
                 addedIds: list[str]) -> None:
    segmentation = segmentationNode.GetSegmentation()
    names = {segmentation.GetNthSegment(index).GetName() for index in range(segmentation.GetNumberOfSegments())}
    for label in labels:
        name = uniqueSegmentName(label.name, names)
        names.add(name)
        segmentId = segmentation.AddEmptySegment(segmentation.GenerateUniqueSegmentID(label.name), name,
                                                 label.colorFloat)
        if not segmentId:
            raise ResultImportError(f"The segment '{name}' could not be created.")
        addedIds.append(segmentId)
        segment = segmentation.GetSegment(segmentId)
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        if label.terminology:
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), label.terminology)
        if modelId:
            segment.SetTag(MODEL_ID_TAG, modelId)


def importLabelMap(labelMapPath: os.PathLike | str, labels: Sequence[LabelDescription],
                   inputVolumeNode: slicer.vtkMRMLScalarVolumeNode, scene: slicer.vtkMRMLScene,
                   outputSegmentationNode: Optional[slicer.vtkMRMLSegmentationNode] = None, modelId: str = "",
                   show3D: bool = False) -> ImportedSegments:
    """Add one segment per label of ``labels`` to ``outputSegmentationNode`` (or a new node) from the label map file.

    Raises :class:`ResultImportError` (one sentence) and leaves the scene as it was when anything goes wrong.
    """
    labels = sorted(labels, key=lambda label: label.value)
    if [label.value for label in labels] != list(range(1, len(labels) + 1)):
        raise ResultImportError("The worker described the labels incorrectly (values must be 1, 2, ...).")
    problem = outputSegmentationProblem(outputSegmentationNode, inputVolumeNode)
    if problem:
        raise ResultImportError(problem)
    try:
        image = readOrientedImageFile(labelMapPath)
    except VolumeFileError as error:
        raise ResultImportError(f"The worker's result could not be read: {error}.") from error
    image = labelMapOnVolumeGrid(image, inputVolumeNode)
    _checkLabelValues(image, labels)

    created = outputSegmentationNode is None
    node = _newSegmentationNode(scene, inputVolumeNode, modelId) if created else outputSegmentationNode
    segmentation = node.GetSegmentation()
    geometryName = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    previousGeometry = segmentation.GetConversionParameter(geometryName)
    previousSource = segmentation.GetSourceRepresentationName()
    addedIds: list[str] = []
    wasModifying = node.StartModify()
    try:  # from here on, every failure is rolled back
        node.SetReferenceImageGeometryParameterFromVolumeNode(inputVolumeNode)
        if segmentation.GetNumberOfSegments() == 0:
            segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
        _addSegments(node, labels, modelId, addedIds)
        segmentIds = vtk.vtkStringArray()
        for segmentId in addedIds:  # label value v goes to the (v-1)-th ID
            segmentIds.InsertNextValue(segmentId)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(image, node, segmentIds):
            raise ResultImportError("The label map could not be imported into the segmentation.")
        if show3D:
            node.CreateClosedSurfaceRepresentation()
    except BaseException:
        if created:
            removeNodeWithDependents(scene, node)
        else:
            for segmentId in addedIds:
                segmentation.RemoveSegment(segmentId)
            segmentation.SetConversionParameter(geometryName, previousGeometry)
            segmentation.SetSourceRepresentationName(previousSource)
        raise
    finally:
        node.EndModify(wasModifying)
    return ImportedSegments(node, addedIds, created)
