"""The panel's "Measure" table: per segment voxel count, volume, intensity statistics and confidence.

A thin layer over :func:`MobileUViTSegmentLib.measurements.measure_segment_masks`: each segment is exported on the
volume's exact grid (:mod:`.segment_images`) and measured by the core, so the numbers are those of
``mobileuvit-segment measure`` for the same files by construction, and :func:`writeStatisticsCsv` writes the
command line's CSV columns. Definitions (volume from the spacing, population standard deviation, confidence as
mean of 1 - uncertainty) are in the core module.

Segments are measured whole even where they overlap, only inside the volume (voxels drawn outside its extent are
not counted), in the volume's own grid (a parent transform is not applied to either node). The user's nodes are
never modified.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import slicer

from MobileUViTSegmentLib.errors import InputError, SegmentationError
from MobileUViTSegmentLib.measurements import SegmentMeasurement, measure_segment_masks, write_measurements_csv

from .messages import as_sentence
from .segment_images import segmentationProblem, segmentsOf, volumeImage
from .volume_files import ijkToRasArray

# Two grids whose IJK-to-RAS differ by less than this (mm) are the same grid (text round-trips of oblique matrices).
GRID_TOLERANCE = 1e-6


class StatisticsError(Exception):
    """The segments cannot be measured; the message is one sentence for the user."""


@dataclass(frozen=True)
class SegmentStatistics:
    """One row of the table (camelCase mirror of the core's ``SegmentMeasurement``).

    ``labelValue`` is the segment's position in the segmentation (1, 2, ...): the value an export to a label map
    gives it, and the CSV's ``label_value`` column.
    """

    segmentId: str
    labelValue: int
    name: str
    voxelCount: int
    volumeMl: float
    intensityMean: float
    intensityStd: float
    intensityMin: float
    intensityMax: float
    meanUncertainty: Optional[float] = None
    confidence: Optional[float] = None

    @classmethod
    def fromMeasurement(cls, segmentId: str, row: SegmentMeasurement) -> SegmentStatistics:
        return cls(segmentId, row.label_value, row.name, row.voxel_count, row.volume_ml, row.intensity_mean,
                   row.intensity_std, row.intensity_min, row.intensity_max, row.mean_uncertainty, row.confidence)

    def toMeasurement(self) -> SegmentMeasurement:
        return SegmentMeasurement(
            label_value=self.labelValue, name=self.name, voxel_count=self.voxelCount, volume_ml=self.volumeMl,
            area_mm2=float("nan"), intensity_mean=self.intensityMean, intensity_std=self.intensityStd,
            intensity_min=self.intensityMin, intensity_max=self.intensityMax,
            mean_uncertainty=self.meanUncertainty, confidence=self.confidence)


def _uncertaintyProblem(uncertaintyVolumeNode: slicer.vtkMRMLScalarVolumeNode,
                        volumeNode: slicer.vtkMRMLScalarVolumeNode) -> Optional[str]:
    name = uncertaintyVolumeNode.GetName()
    imageData = uncertaintyVolumeNode.GetImageData()
    if imageData is None or imageData.GetPointData().GetScalars() is None:
        return f"The uncertainty map '{name}' has no voxels."
    if imageData.GetNumberOfScalarComponents() != 1:
        return f"The uncertainty map '{name}' has more than one value per voxel."
    sameGrid = (imageData.GetDimensions() == volumeNode.GetImageData().GetDimensions()
                and np.abs(ijkToRasArray(uncertaintyVolumeNode) - ijkToRasArray(volumeNode)).max() < GRID_TOLERANCE)
    if not sameGrid:
        return f"The uncertainty map '{name}' is not on the voxel grid of the volume '{volumeNode.GetName()}'."
    return None


def segmentStatistics(segmentationNode: slicer.vtkMRMLSegmentationNode, volumeNode: slicer.vtkMRMLScalarVolumeNode,
                      uncertaintyVolumeNode: Optional[slicer.vtkMRMLScalarVolumeNode] = None,
                      confidenceBySegmentId: Optional[Mapping[str, float]] = None) -> list[SegmentStatistics]:
    """One row per segment, in the segmentation's order; :class:`StatisticsError` when they cannot be measured.

    :param uncertaintyVolumeNode: an uncertainty map on the volume's grid (as the panel imports it): adds mean
        uncertainty, and confidence where ``confidenceBySegmentId`` does not give it.
    :param confidenceBySegmentId: confidence the segmentation run reported, by segment ID.
    """
    problem = segmentationProblem(segmentationNode, volumeNode)
    if problem is None and volumeNode.GetImageData().GetNumberOfScalarComponents() != 1:
        problem = (f"The volume '{volumeNode.GetName()}' is a colour image; intensity statistics need a grey-scale "
                   "volume.")
    if problem is None and uncertaintyVolumeNode is not None:
        problem = _uncertaintyProblem(uncertaintyVolumeNode, volumeNode)
    if problem:
        raise StatisticsError(problem)
    segments = segmentsOf(segmentationNode, volumeNode)
    byId = dict(confidenceBySegmentId or {})
    confidence = {segment.label_value: byId[segmentId] for segmentId, segment in segments if segmentId in byId}
    uncertainty = volumeImage(uncertaintyVolumeNode) if uncertaintyVolumeNode is not None else None
    try:
        rows = measure_segment_masks([segment for _, segment in segments], volumeImage(volumeNode), uncertainty,
                                     confidence)
    except InputError as error:
        raise StatisticsError(as_sentence(str(error))) from error
    return [SegmentStatistics.fromMeasurement(segmentId, row) for (segmentId, _), row in zip(segments, rows)]


def writeStatisticsCsv(rows: Sequence[SegmentStatistics], path: os.PathLike | str) -> None:
    """The table as CSV with exactly the command line's columns (``measure -o``), written atomically."""
    try:
        write_measurements_csv([row.toMeasurement() for row in rows], path)
    except SegmentationError as error:
        raise StatisticsError(as_sentence(str(error))) from error
