"""The panel's "Compare" table: a segmentation against a reference segmentation (manual, or an earlier run).

A thin layer over :func:`MobileUViTSegmentLib.comparison.compare_segments`: segments are paired by name (ignoring
case, :mod:`MobileUViTSegmentLib.named_segments`), each exported on the volume's exact grid and scored by the core,
so Dice, IoU, HD95 and the volumes are those of ``mobileuvit-segment evaluate --prediction --reference`` for the
same files. A segment without a partner of the same name is reported as a row of its own (status ``not in
reference`` or ``only in reference``) with its volume and empty scores, never silently dropped. The user's nodes
are never modified.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import slicer

from MobileUViTSegmentLib import comparison
from MobileUViTSegmentLib.errors import InputError, SegmentationError
from MobileUViTSegmentLib.named_segments import name_key

from .messages import as_sentence
from .segment_images import segmentationProblem, segmentsOf


class ComparisonError(Exception):
    """The segmentations cannot be compared; the message is one sentence for the user."""


@dataclass(frozen=True)
class SegmentComparison:
    """One row of the table (camelCase mirror of the core's row). A side the segment is missing from has an
    empty ID; ``status`` is ``compared``, ``not in reference`` or ``only in reference``."""

    segmentId: str
    referenceSegmentId: str
    labelValue: int
    name: str
    status: str
    dice: float
    iou: float
    hd95: float
    volumeMl: float
    referenceVolumeMl: float
    volumeDifferenceMl: float
    relativeVolumeDifference: float
    predictedVoxels: Optional[int]
    referenceVoxels: Optional[int]

    @property
    def matched(self) -> bool:
        return self.status == comparison.COMPARED

    def toCore(self) -> comparison.SegmentComparison:
        return comparison.SegmentComparison(
            label_value=self.labelValue, name=self.name, status=self.status, dice=self.dice, iou=self.iou,
            hd95=self.hd95, volume_ml=self.volumeMl, reference_volume_ml=self.referenceVolumeMl,
            volume_difference_ml=self.volumeDifferenceMl, relative_volume_difference=self.relativeVolumeDifference,
            predicted_voxels=self.predictedVoxels, reference_voxels=self.referenceVoxels)


def compareSegmentations(segmentationNode: slicer.vtkMRMLSegmentationNode,
                         referenceSegmentationNode: slicer.vtkMRMLSegmentationNode,
                         volumeNode: slicer.vtkMRMLScalarVolumeNode) -> list[SegmentComparison]:
    """Rows in the segmentation's order, then the reference's segments it lacks; :class:`ComparisonError` when
    the two cannot be compared (no segments, no volume, no segment name in common, ...)."""
    problem = (segmentationProblem(segmentationNode, volumeNode)
               or segmentationProblem(referenceSegmentationNode, volumeNode, "reference segmentation"))
    if problem is None and segmentationNode is referenceSegmentationNode:
        problem = "The segmentation and the reference are the same node; choose another reference segmentation."
    if problem:
        raise ComparisonError(problem)
    segments = segmentsOf(segmentationNode, volumeNode)
    references = segmentsOf(referenceSegmentationNode, volumeNode)
    try:
        rows = comparison.compare_segments([segment for _, segment in segments],
                                           [segment for _, segment in references])
    except InputError as error:
        raise ComparisonError(as_sentence(str(error))) from error
    ids = {name_key(segment.name): segmentId for segmentId, segment in segments}
    referenceIds = {name_key(segment.name): segmentId for segmentId, segment in references}
    return [SegmentComparison(
        segmentId="" if row.status == comparison.ONLY_IN_REFERENCE else ids[name_key(row.name)],
        referenceSegmentId="" if row.status == comparison.NOT_IN_REFERENCE else referenceIds[name_key(row.name)],
        labelValue=row.label_value, name=row.name, status=row.status, dice=row.dice, iou=row.iou, hd95=row.hd95,
        volumeMl=row.volume_ml, referenceVolumeMl=row.reference_volume_ml,
        volumeDifferenceMl=row.volume_difference_ml, relativeVolumeDifference=row.relative_volume_difference,
        predictedVoxels=row.predicted_voxels, referenceVoxels=row.reference_voxels) for row in rows]


def writeComparisonCsv(rows: Sequence[SegmentComparison], path: os.PathLike | str) -> None:
    """The table as CSV with exactly the command line's columns (``evaluate --prediction``'s per_label.csv)."""
    try:
        comparison.write_comparison_csv([row.toCore() for row in rows], path)
    except SegmentationError as error:
        raise ComparisonError(as_sentence(str(error))) from error
