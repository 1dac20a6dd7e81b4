"""Keeping what "replace" overwrote, so that the last replaced state can be restored exactly.

Where the backup lives, and why: in a hidden segmentation node of the scene, referenced from the segmentation it
belongs to (node reference role :data:`BACKUP_REFERENCE_ROLE`). So it outlives the panel and the Logic (restoring
works after closing and reopening the module), it is saved with the scene like any node (a scene bundle holds it
with its voxels), and node references are remapped when a scene is loaded, so it stays attached to its segmentation.
The node is hidden from editors (node selectors, the subject hierarchy and the Data module do not show it) and has
no display node, so no view shows it. :class:`BackupCleanup` removes a backup whose segmentation was deleted.

A backup holds full copies of the replaced segments (IDs, names, colours, tags, every voxel) and the IDs of the
segments the same run added for labels the earlier run lacked. Restoring puts the replaced segments back as they
were (in place, keeping their IDs, or re-added if the user deleted them since), removes the added segments, and then
the backup. Each "replace" keeps only the state it overwrote: the previous backup is dropped when a new one is
committed. Restoring is all or nothing like importing.
"""

from __future__ import annotations

import json
from typing import Optional

import slicer

from .model_segments import MODEL_ID_TAG, segmentTag
from .segment_masks import SegmentWriteError, segmentationReferenceGrid, segmentMask, writeSegmentMask

BACKUP_REFERENCE_ROLE = "MobileUViTSegment.ReplacedSegmentsBackup"
BACKUP_ATTRIBUTE = "MobileUViTSegment.ReplacedSegmentsBackupOf"  # on the backup node: the segmentation's name
ADDED_IDS_ATTRIBUTE = "MobileUViTSegment.AddedSegmentIds"  # on the backup node: JSON list of IDs


class RestoreError(Exception):
    """The replaced segments could not be restored; the message is one sentence for the user."""


def backupNode(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode]
               ) -> Optional[slicer.vtkMRMLSegmentationNode]:
    """The backup of the last "replace" into the segmentation, or None."""
    if segmentationNode is None or segmentationNode.GetScene() is None:
        return None
    node = segmentationNode.GetNodeReference(BACKUP_REFERENCE_ROLE)
    return node if node is not None and node.GetAttribute(BACKUP_ATTRIBUTE) is not None else None


def canRestoreReplacedSegments(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode]) -> bool:
    """Whether :func:`restoreReplacedSegments` has something to bring back."""
    backup = backupNode(segmentationNode)
    return backup is not None and backup.GetSegmentation().GetNumberOfSegments() > 0


def copySegments(segmentationNode: slicer.vtkMRMLSegmentationNode,
                 segmentIds: list[str]) -> slicer.vtkMRMLSegmentationNode:
    """A new backup node (not in any scene yet) holding copies of the segments; see :func:`commitBackup`."""
    backup = slicer.vtkMRMLSegmentationNode()
    backup.SetHideFromEditors(True)
    backup.SetName(f"{segmentationNode.GetName()} (replaced segments)")
    backup.SetAttribute(BACKUP_ATTRIBUTE, segmentationNode.GetName())
    segmentation = backup.GetSegmentation()
    segmentation.CopyConversionParameters(segmentationNode.GetSegmentation())
    for segmentId in segmentIds:
        if not segmentation.CopySegmentFromSegmentation(segmentationNode.GetSegmentation(), segmentId, False):
            raise SegmentWriteError("The segments to replace could not be copied for restoring them later.")
    return backup


class PendingBackup:
    """A backup made before "replace" changes anything, attached to the segmentation only when the run succeeds."""

    def __init__(self, segmentationNode: slicer.vtkMRMLSegmentationNode, replacedIds: list[str]) -> None:
        self.segmentationNode = segmentationNode
        self.node = copySegments(segmentationNode, replacedIds) if replacedIds else None
        self._previous = backupNode(segmentationNode)
        self._committed = False

    def commit(self, addedIds: list[str]) -> None:
        """Attach the backup (dropping the previous one); nothing to do when nothing was replaced."""
        if self.node is None:
            return
        scene = self.segmentationNode.GetScene()
        self.node.SetAttribute(ADDED_IDS_ATTRIBUTE, json.dumps(list(addedIds)))
        scene.AddNode(self.node)
        self.segmentationNode.SetNodeReferenceID(BACKUP_REFERENCE_ROLE, self.node.GetID())
        self._committed = True
        if self._previous is not None and scene.IsNodePresent(self._previous):
            scene.RemoveNode(self._previous)

    def rollBack(self) -> None:
        """Undo :meth:`commit` (as far as it got): the previous backup stays the segmentation's backup."""
        if self.node is None:
            return
        scene = self.segmentationNode.GetScene()
        if self._committed or (scene is not None and scene.IsNodePresent(self.node)):
            previousId = self._previous.GetID() if self._previous is not None else None
            self.segmentationNode.SetNodeReferenceID(BACKUP_REFERENCE_ROLE, previousId)
            if scene.IsNodePresent(self.node):
                scene.RemoveNode(self.node)


def _segmentIds(segmentation: slicer.vtkSegmentation) -> list[str]:
    return [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]


def _restoreSegment(segmentationNode: slicer.vtkMRMLSegmentationNode, backup: slicer.vtkMRMLSegmentationNode,
                    segmentId: str, reference: slicer.vtkOrientedImageData) -> None:
    segmentation = segmentationNode.GetSegmentation()
    saved = backup.GetSegmentation().GetSegment(segmentId)
    if segmentation.GetSegment(segmentId) is None:  # the user deleted it since: add the copy back
        if not segmentation.CopySegmentFromSegmentation(backup.GetSegmentation(), segmentId, False):
            raise SegmentWriteError(f"The segment '{saved.GetName()}' could not be added back.")
        return
    writeSegmentMask(segmentationNode, segmentId, segmentMask(backup, segmentId, reference), reference)
    segment = segmentation.GetSegment(segmentId)
    labelValue = segment.GetLabelValue()  # belongs to the layer it now sits in, not to the copy
    segment.DeepCopyMetadata(saved)
    segment.SetLabelValue(labelValue)


def restoreReplacedSegments(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode]) -> int:
    """Bring back the segments the last "replace" overwrote; returns how many (0 when there is no backup).

    Raises :class:`RestoreError` (one sentence) and leaves every segment as it was when anything goes wrong.
    """
    backup = backupNode(segmentationNode)
    if backup is None or not canRestoreReplacedSegments(segmentationNode):
        return 0
    segmentation = segmentationNode.GetSegmentation()
    restoredIds = _segmentIds(backup.GetSegmentation())
    try:
        addedIds = [str(item) for item in json.loads(backup.GetAttribute(ADDED_IDS_ATTRIBUTE) or "[]")]
    except ValueError:
        addedIds = []
    snapshot = slicer.vtkSegmentation()
    snapshot.DeepCopy(segmentation)
    reference = segmentationReferenceGrid(segmentationNode)
    wasModifying = segmentationNode.StartModify()
    try:
        for segmentId in restoredIds:
            _restoreSegment(segmentationNode, backup, segmentId, reference)
        for segmentId in addedIds:
            segment = segmentation.GetSegment(segmentId)
            if segment is not None and segmentId not in restoredIds and segmentTag(segment, MODEL_ID_TAG):
                segmentation.RemoveSegment(segmentId)
    except Exception as error:
        segmentation.DeepCopy(snapshot)
        message = str(error) if isinstance(error, SegmentWriteError) else f"an unexpected error ({error})"
        raise RestoreError(f"The replaced segments could not be restored, so nothing was changed: "
                           f"{message[0].lower()}{message[1:].rstrip('.')}.") from error
    finally:
        segmentationNode.EndModify(wasModifying)
    segmentationNode.SetNodeReferenceID(BACKUP_REFERENCE_ROLE, None)
    segmentationNode.GetScene().RemoveNode(backup)
    return len(restoredIds)


def removeOrphanBackups(scene: slicer.vtkMRMLScene) -> int:
    """Remove backups whose segmentation is gone from the scene; returns how many were removed."""
    referenced = set()
    backups = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
        if node.GetAttribute(BACKUP_ATTRIBUTE) is not None:
            backups.append(node)
        referencedId = node.GetNodeReferenceID(BACKUP_REFERENCE_ROLE)
        if referencedId:
            referenced.add(referencedId)
    orphans = [node for node in backups if node.GetID() not in referenced]
    for node in orphans:
        scene.RemoveNode(node)
    return len(orphans)


def _onSceneChanged(scene: slicer.vtkMRMLScene, event: str) -> None:
    # A module-level function, not a bound method: the scene holds its observers, and an observer holding an object
    # that holds the scene would make a reference cycle the garbage collector tears down in an arbitrary order.
    if scene is None or scene.IsClosing() or scene.IsImporting() or scene.IsBatchProcessing():
        return  # None: the scene is being destroyed (VTK passes no caller then)
    removeOrphanBackups(scene)


class BackupCleanup:
    """Observes a scene and removes a backup once its segmentation has been removed (the Logic owns one).

    Removals during batch processing or scene import are handled when that ends (references may be in flux until
    then); closing the scene removes every node anyway.
    """

    EVENTS = ("NodeRemovedEvent", "EndBatchProcessEvent", "EndImportEvent")

    def __init__(self, scene: slicer.vtkMRMLScene) -> None:
        self.scene = scene
        self._tags = [scene.AddObserver(getattr(slicer.vtkMRMLScene, event), _onSceneChanged) for event in self.EVENTS]

    def stop(self) -> None:
        for tag in self._tags:
            self.scene.RemoveObserver(tag)
        self._tags = []
