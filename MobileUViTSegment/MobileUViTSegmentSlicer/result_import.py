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
* Importing is all or nothing: on any error the segments added so far (or the new node) are removed again, and a
  "replace" puts every segment back as it was.

Into an existing segmentation the result goes in one of three modes (:mod:`.import_modes`): ``"add"`` (the rules
above), ``"replace"`` (the segments this model made earlier get the new voxels, keeping their IDs, names, colours
and terminology; the overwritten state can be restored, see :mod:`.result_backup`) or ``"fillEmpty"`` (new segments
only where nothing is segmented). Segments the model did not create are never touched in any mode. With a region of
interest (a :class:`~.roi_crop.VoxelBox` of the volume, the block the worker segmented) voxels change only inside
it; the reference geometry stays the whole volume's grid. Every segment written is tagged with the model, its label
value and a fingerprint of its voxels (:mod:`.model_segments`), so later runs can tell whether the user edited it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from .import_modes import ImportMode, clearOccupiedVoxels, importModeProblem, replaceInsideBox
from .model_segments import (  # noqa: F401  (re-exported: the panel and tests use them from here)
    MODEL_ID_TAG,
    editedModelSegmentIds,
    modelSegmentIds,
    segmentsToReplace,
    tagModelSegment,
)
from .result_backup import PendingBackup
from .roi_crop import VoxelBox
from .segment_masks import SegmentWriteError, referenceGrid
from .volume_files import VolumeFileError, arrayToMatrix, ijkToRasArray, imageToWorldArray, readOrientedImageFile

BINARY_LABELMAP = "Binary labelmap"
# A result whose grid is the volume's within these (voxel units) is taken as lying on it, without resampling.
GRID_DIRECTION_TOLERANCE = 1e-4
GRID_OFFSET_TOLERANCE = 1e-3


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


def _segments(count: int) -> str:
    return f"{count} segment{'s' if count != 1 else ''}"


@dataclass
class ImportedSegments:
    """What an import wrote: ``segmentIds`` holds one segment per label in label order (replaced or added)."""

    segmentationNode: slicer.vtkMRMLSegmentationNode
    segmentIds: list[str]
    createdNode: bool
    replacedSegmentIds: list[str] = field(default_factory=list)
    mode: str = ImportMode.ADD.value
    region: Optional[VoxelBox] = None

    @property
    def addedSegmentIds(self) -> list[str]:
        return [segmentId for segmentId in self.segmentIds if segmentId not in self.replacedSegmentIds]

    def summary(self) -> str:
        where = "new segmentation" if self.createdNode else "segmentation"
        name = self.segmentationNode.GetName()
        inside = f" inside the region of interest ({self.region.describe()} voxels)" if self.region else ""
        added = len(self.addedSegmentIds)
        if self.replacedSegmentIds:
            also = f" and {added} added" if added else ""
            return (f"{_segments(len(self.replacedSegmentIds))} replaced{also}{inside} in {where} '{name}'; the "
                    "replaced segments can be restored.")
        if self.mode == ImportMode.FILL_EMPTY.value:
            return f"{_segments(added)} added to {where} '{name}'{inside}, only where nothing was segmented."
        return f"{_segments(added)} added to {where} '{name}'{inside}."


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


def labelMapOnVolumeGrid(image: slicer.vtkOrientedImageData, volumeNode: slicer.vtkMRMLVolumeNode,
                         box: Optional[VoxelBox] = None) -> slicer.vtkOrientedImageData:
    """``image`` on exactly the volume's voxel grid, with the box (default: the whole volume) as its extent.

    A result whose voxels are the volume's shifted by whole voxels (the whole volume, or the block a region of
    interest sent to the worker) gets the volume's own matrix and the shifted extent, without resampling; any other
    grid is resampled (nearest neighbour, exact when the voxel centres coincide) and clipped to the box.
    """
    box = box or VoxelBox.wholeVolume(volumeNode)
    reference = referenceGrid(volumeNode)
    reference.SetExtent(box.extent)
    volumeMatrix = ijkToRasArray(volumeNode)
    relative = np.linalg.inv(volumeMatrix) @ imageToWorldArray(image)  # image IJK -> volume IJK
    offset = np.round(relative[:3, 3])
    if (np.allclose(relative[:3, :3], np.eye(3), atol=GRID_DIRECTION_TOLERANCE)
            and np.allclose(relative[:3, 3], offset, atol=GRID_OFFSET_TOLERANCE)):
        extent = image.GetExtent()
        shifted = tuple(int(extent[axis] + offset[axis // 2]) for axis in range(6))
        if shifted == tuple(box.extent):
            image.SetExtent(shifted)
            image.SetImageToWorldMatrix(arrayToMatrix(volumeMatrix))
            return image
    onGrid = slicer.vtkOrientedImageData()
    resample = slicer.vtkOrientedImageDataResample
    if (not resample.ResampleOrientedImageToReferenceOrientedImage(image, reference, onGrid, False, False)
            or tuple(onGrid.GetExtent()) != tuple(box.extent)):
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


def _addSegments(segmentationNode: slicer.vtkMRMLSegmentationNode, labels: Sequence[LabelDescription],
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


def _labelArray(image: slicer.vtkOrientedImageData) -> np.ndarray:
    """The image's label values as a (k, j, i) array (a view)."""
    extent = image.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape)


def _importIntoNewSegments(segmentationNode: slicer.vtkMRMLSegmentationNode, voxels: np.ndarray,
                           labels: Sequence[LabelDescription], segmentIds: Sequence[str],
                           grid: slicer.vtkOrientedImageData) -> None:
    """The voxels of each label into the (empty, just added) segment of the same position in ``segmentIds``."""
    if not labels:
        return
    relabelled = np.zeros(voxels.shape, np.uint8 if len(labels) < 256 else np.uint16)
    for number, label in enumerate(labels, start=1):  # the n-th ID receives label value n
        relabelled[voxels == label.value] = number
    image = slicer.vtkOrientedImageData()
    image.SetExtent(grid.GetExtent())
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR if relabelled.dtype == np.uint8 else vtk.VTK_UNSIGNED_SHORT, 1)
    vtk_to_numpy(image.GetPointData().GetScalars())[:] = relabelled.ravel()
    image.SetImageToWorldMatrix(arrayToMatrix(imageToWorldArray(grid)))
    ids = vtk.vtkStringArray()
    for segmentId in segmentIds:
        ids.InsertNextValue(segmentId)
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(image, segmentationNode, ids):
        raise ResultImportError("The label map could not be imported into the segmentation.")


def _readResult(labelMapPath: os.PathLike | str, labels: Sequence[LabelDescription],
                inputVolumeNode: slicer.vtkMRMLScalarVolumeNode, box: VoxelBox) -> slicer.vtkOrientedImageData:
    try:
        image = readOrientedImageFile(labelMapPath)
    except VolumeFileError as error:
        raise ResultImportError(f"The worker's result could not be read: {error}.") from error
    image = labelMapOnVolumeGrid(image, inputVolumeNode, box)
    _checkLabelValues(image, labels)
    return image


def importLabelMap(labelMapPath: os.PathLike | str, labels: Sequence[LabelDescription],
                   inputVolumeNode: slicer.vtkMRMLScalarVolumeNode, scene: slicer.vtkMRMLScene,
                   outputSegmentationNode: Optional[slicer.vtkMRMLSegmentationNode] = None, modelId: str = "",
                   show3D: bool = False, mode: str = ImportMode.ADD.value,
                   region: Optional[VoxelBox] = None) -> ImportedSegments:
    """Put the label map file's labels into ``outputSegmentationNode`` (or a new node) in the given import mode.

    :param mode: ``"add"``, ``"replace"`` or ``"fillEmpty"`` (see :mod:`.import_modes`).
    :param region: the block of the volume the label map covers (a region of interest); None: the whole volume.

    Raises :class:`ResultImportError` (one sentence) and leaves the scene as it was when anything goes wrong.
    """
    problem = importModeProblem(mode)
    if problem:
        raise ResultImportError(problem)
    mode = ImportMode(mode)
    labels = sorted(labels, key=lambda label: label.value)
    if [label.value for label in labels] != list(range(1, len(labels) + 1)):
        raise ResultImportError("The worker described the labels incorrectly (values must be 1, 2, ...).")
    problem = outputSegmentationProblem(outputSegmentationNode, inputVolumeNode)
    if problem:
        raise ResultImportError(problem)
    box = region or VoxelBox.wholeVolume(inputVolumeNode)
    image = _readResult(labelMapPath, labels, inputVolumeNode, box)
    voxels = _labelArray(image)

    created = outputSegmentationNode is None
    node = _newSegmentationNode(scene, inputVolumeNode, modelId) if created else outputSegmentationNode
    segmentation = node.GetSegmentation()
    geometryName = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    previousGeometry = segmentation.GetConversionParameter(geometryName)
    previousSource = segmentation.GetSourceRepresentationName()
    targets = segmentsToReplace(node, modelId) if mode is ImportMode.REPLACE and not created else {}
    replaced = {label.value: targets[label.value] for label in labels if label.value in targets}
    newLabels = [label for label in labels if label.value not in replaced]
    snapshot: Optional[slicer.vtkSegmentation] = None
    if replaced:  # existing segments change: keep an exact copy of the whole segmentation for rolling back
        snapshot = slicer.vtkSegmentation()
        snapshot.DeepCopy(segmentation)
    pending: Optional[PendingBackup] = None
    addedIds: list[str] = []
    wasModifying = node.StartModify()
    try:  # from here on, every failure is rolled back
        node.SetReferenceImageGeometryParameterFromVolumeNode(inputVolumeNode)
        if segmentation.GetNumberOfSegments() == 0:
            segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
        if mode is ImportMode.FILL_EMPTY and not created:
            voxels = clearOccupiedVoxels(voxels, node, inputVolumeNode, box)
        pending = PendingBackup(node, list(replaced.values()))
        _addSegments(node, newLabels, addedIds)
        _importIntoNewSegments(node, voxels, newLabels, addedIds, image)
        for value, segmentId in replaced.items():
            replaceInsideBox(node, segmentId, voxels == value, inputVolumeNode, box)
        written = {**replaced, **{label.value: segmentId for label, segmentId in zip(newLabels, addedIds)}}
        for value, segmentId in written.items():
            tagModelSegment(node, segmentId, modelId, value)
        if show3D:
            node.CreateClosedSurfaceRepresentation()
        pending.commit(addedIds)
    except BaseException as error:
        if pending is not None:
            pending.rollBack()
        if created:
            removeNodeWithDependents(scene, node)
        else:
            if snapshot is not None:
                segmentation.DeepCopy(snapshot)
            else:
                for segmentId in addedIds:
                    segmentation.RemoveSegment(segmentId)
            segmentation.SetConversionParameter(geometryName, previousGeometry)
            segmentation.SetSourceRepresentationName(previousSource)
        if isinstance(error, SegmentWriteError):
            raise ResultImportError(str(error)) from error
        raise
    finally:
        node.EndModify(wasModifying)
    return ImportedSegments(node, [written[label.value] for label in labels], created, list(replaced.values()),
                            mode.value, region)
