"""What one run gives the reviewer besides the segments: the uncertainty volume, the review list and confidences.

The worker reports them in its ``done`` event when the run asked for uncertainty (or test-time flips). This module
turns that event into scene objects, after the segments were imported:

* the uncertainty map becomes a scalar volume on the input's exact grid (:mod:`.uncertainty_import`); with a region
  of interest the worker's map covers only that block, and the import resamples it onto the whole grid (zero
  outside), so the overlay lines up with the input everywhere;
* review items keep their centroid in RAS (physical, so unaffected by the crop); their slice index is moved from the
  block's numbering to the volume's;
* confidences are keyed by the segment IDs the import wrote, so the panel's table can show them per segment;
* probability maps (when asked for) become one scalar volume per label, "<volume> <label> probability", displayed
  like the uncertainty map (0..1).

A map that cannot be imported never undoes the segments: the run succeeds and :attr:`RunReview.problem` says why the
overlay is missing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import slicer

from .result_import import ImportedSegments
from .review_navigation import ReviewItem, confidenceFromEvent, reviewItemsFromEvent
from .roi_crop import VoxelBox
from .uncertainty_import import UNCERTAINTY_OF_TAG, UncertaintyImportError, importUncertaintyVolume

PROBABILITY_OF_TAG = "MobileUViTSegment.ProbabilityOf"  # attribute of a probability map: its input volume's ID
PROBABILITY_FILE_PREFIX = "probability_"  # the worker's file names in the run's probabilities folder


@dataclass
class RunReview:
    """The review material of one run (empty lists and None when the run did not assess uncertainty)."""

    uncertaintyVolumeNode: Optional[slicer.vtkMRMLScalarVolumeNode] = None
    items: list[ReviewItem] = field(default_factory=list)
    confidenceByLabelValue: dict[int, float] = field(default_factory=dict)
    confidenceBySegmentId: dict[str, float] = field(default_factory=dict)
    problem: str = ""
    probabilityVolumeNodes: dict[int, slicer.vtkMRMLScalarVolumeNode] = field(default_factory=dict)  # by label value
    volumeNode: Optional[slicer.vtkMRMLScalarVolumeNode] = None  # the run's input
    segmentationNode: Optional[slicer.vtkMRMLSegmentationNode] = None  # where its segments went

    @property
    def assessed(self) -> bool:
        """Whether the run measured uncertainty at all."""
        return bool(self.items or self.confidenceByLabelValue or self.uncertaintyVolumeNode or self.problem
                    or self.probabilityVolumeNodes)

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
                    region: Optional[VoxelBox] = None, probabilityFolder: Optional[os.PathLike | str] = None,
                    labelNames: Optional[dict[int, str]] = None) -> RunReview:
    """The review of a finished run; imports the uncertainty map at ``uncertaintyPath`` and the probability maps in
    ``probabilityFolder`` (named by ``labelNames``) when the worker wrote them."""
    labelNames = labelNames or {}
    confidence = confidenceFromEvent(event)
    bySegment = {imported.segmentIds[value - 1]: score for value, score in confidence.items()
                 if 1 <= value <= len(imported.segmentIds)}
    review = RunReview(items=_inVolumeNumbering(reviewItemsFromEvent(event), region),
                       confidenceByLabelValue=confidence, confidenceBySegmentId=bySegment,
                       volumeNode=inputVolumeNode, segmentationNode=imported.segmentationNode)
    problems = []
    if uncertaintyPath is not None and event.get("uncertainty"):
        try:
            review.uncertaintyVolumeNode = importUncertaintyVolume(uncertaintyPath, inputVolumeNode, scene)
        except UncertaintyImportError as error:
            problems.append(f"the uncertainty map was not added ({str(error).rstrip('.')})")
    if probabilityFolder is not None:
        for value, name in sorted(labelNames.items()):
            if str(value) not in (event.get("probabilities") or {}):
                continue
            path = Path(probabilityFolder) / f"{PROBABILITY_FILE_PREFIX}{value}.nrrd"  # our folder, not the event's
            try:
                review.probabilityVolumeNodes[value] = importUncertaintyVolume(
                    path, inputVolumeNode, scene, f"{inputVolumeNode.GetName()} {name} probability", PROBABILITY_OF_TAG)
            except UncertaintyImportError as error:
                problems.append(f"the probability map of {name} was not added ({str(error).rstrip('.')})")
    review.problem = "; ".join(problems)
    return review
