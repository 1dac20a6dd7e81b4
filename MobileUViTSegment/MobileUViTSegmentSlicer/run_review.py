"""What one run gives the reviewer besides the segments: the uncertainty volume, the review list and confidences.

The worker reports them in its ``done`` event when the run asked for uncertainty (or test-time flips). This module
turns that event into scene objects, after the segments were imported:

* the uncertainty map becomes a scalar volume on the input's exact grid (:mod:`.uncertainty_import`); with a region
  of interest the worker's map covers only that block, and the import resamples it onto the whole grid (zero
  outside), so the overlay lines up with the input everywhere;
* review items keep their centroid in RAS (physical, so unaffected by the crop); their slice index is moved from the
  block's numbering to the volume's;
* confidences are keyed by the segment IDs the import wrote, so the panel's table can show them per segment.

A map that cannot be imported never undoes the segments: the run succeeds and :attr:`RunReview.problem` says why the
overlay is missing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Optional

import slicer

from .result_import import ImportedSegments
from .review_navigation import ReviewItem, confidenceFromEvent, reviewItemsFromEvent
from .roi_crop import VoxelBox
from .uncertainty_import import UNCERTAINTY_OF_TAG, UncertaintyImportError, importUncertaintyVolume


@dataclass
class RunReview:
    """The review material of one run (empty lists and None when the run did not assess uncertainty)."""

    uncertaintyVolumeNode: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    items: list[ReviewItem] = field(default_factory=list)
    confidenceByLabelValue: dict[int, float] = field(default_factory=dict)
    confidenceBySegmentId: dict[str, float] = field(default_factory=dict)
    problem: str = ""
    volumeNode: Optional[slicer.vtkMRMLScalarVolumeNode] = None  # the run's input
    segmentationNode: Optional[slicer.vtkMRMLSegmentationNode] = None  # where its segments went

    @property
    def assessed(self) -> bool:
        """Whether the run measured uncertainty at all."""
        return bool(self.items or self.confidenceByLabelValue or self.uncertaintyVolumeNode or self.problem)

    def uncertaintyFor(self, scene: slicer.vtkMRMLScene, volumeNode: Optional[slicer.vtkMRMLScalarVolumeNode]
                       ) -> Optional[slicer.vtkMRMLScalarVolumeNode]:
        """The run's uncertainty map when it belongs to ``volumeNode`` and is still in the scene, else None.

        The panel measures whatever volume is selected now; a map of another volume (or one the user deleted) must
        not be used, even when the grids happen to be the same size.
        """
        node = self.uncertaintyVolumeNode
        if node is None or volumeNode is None or not scene.IsNodePresent(node):
            return None
        return node if node.GetAttribute(UNCERTAINTY_OF_TAG) == volumeNode.GetID() else None

    def confidenceFor(self, segmentationNode: Optional[slicer.vtkMRMLSegmentationNode]) -> dict[str, float]:
        """Confidence by segment ID, only for the segmentation the run wrote into (IDs recur across segmentations)."""
        if segmentationNode is None or segmentationNode is not self.segmentationNode:
            return {}
        return dict(self.confidenceBySegmentId)


def _inVolumeNumbering(items: list[ReviewItem], region: Optional[VoxelBox]) -> list[ReviewItem]:
    if region is None:
        return items
    firstSlice = region.extent[4]
    return [dataclasses.replace(item, sliceIndex=item.sliceIndex + firstSlice) for item in items]


def reviewFromEvent(event: dict, imported: ImportedSegments, inputVolumeNode: slicer.vtkMRMLScalarVolumeNode,
                    scene: slicer.vtkMRMLScene, uncertaintyPath: Optional[os.PathLike | str],
                    region: Optional[VoxelBox] = None) -> RunReview:
    """The review of a finished run; imports the uncertainty map at ``uncertaintyPath`` when the worker wrote one."""
    confidence = confidenceFromEvent(event)
    bySegment = {imported.segmentIds[value - 1]: score for value, score in confidence.items()
                 if 1 <= value <= len(imported.segmentIds)}
    review = RunReview(items=_inVolumeNumbering(reviewItemsFromEvent(event), region),
                       confidenceByLabelValue=confidence, confidenceBySegmentId=bySegment,
                       volumeNode=inputVolumeNode, segmentationNode=imported.segmentationNode)
    if uncertaintyPath is None or not event.get("uncertainty"):
        return review
    try:
        review.uncertaintyVolumeNode = importUncertaintyVolume(uncertaintyPath, inputVolumeNode, scene)
    except UncertaintyImportError as error:
        review.problem = f"the uncertainty map was not added ({str(error).rstrip('.')})"
    return review
