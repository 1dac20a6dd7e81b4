"""Which segments a model made, for which of its labels, and whether the user has changed their voxels since.

Every segment an import writes carries three tags (segment tags are saved in ``.seg.nrrd`` files and scenes, so
they survive saving and reloading):

* :data:`MODEL_ID_TAG`: the model's ID. Segments without it (drawn by the user, made by other tools) are never
  touched by any import mode.
* :data:`LABEL_VALUE_TAG`: the label value of the model's output it holds, so "replace" finds the segment of a label
  even after the user renamed or recoloured it.
* :data:`FINGERPRINT_TAG`: a digest of its voxels when the import wrote them (:func:`segmentFingerprint`). A
  segment whose digest differs now, or that has none (written by an older version), counts as edited: when unsure,
  say the user's work could be lost.

The fingerprint is a digest of the segment's voxel indices on the grid its labelmap is stored on (plus that grid's
IJK-to-RAS matrix), so it does not depend on how Slicer shares labelmap layers between segments or on the stored
extent, only on which voxels belong to the segment.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from .volume_files import imageToWorldArray

MODEL_ID_TAG = "MobileUViTSegment.ModelId"
LABEL_VALUE_TAG = "MobileUViTSegment.LabelValue"
FINGERPRINT_TAG = "MobileUViTSegment.Fingerprint"
DICOM_ALGORITHM_TYPE_TAG = "DICOM.SegmentAlgorithmType"
DICOM_ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmName"
EMPTY_FINGERPRINT = "empty"


def segmentTag(segment: slicer.vtkSegment, name: str) -> str:
    """The tag's value, or "" when the segment does not have it."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else ""


def segmentLabelValue(segment: slicer.vtkSegment) -> Optional[int]:
    """The model label value a segment holds, or None (no tag, or not a number)."""
    text = segmentTag(segment, LABEL_VALUE_TAG)
    return int(text) if text.isdigit() else None


def segmentFingerprint(segmentationNode: slicer.vtkMRMLSegmentationNode, segmentId: str) -> str:
    """A digest of which voxels belong to the segment (see the module docstring)."""
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    layer = segmentationNode.GetBinaryLabelmapInternalRepresentation(segmentId)
    if segment is None or layer is None or layer.GetPointData() is None or layer.GetPointData().GetScalars() is None:
        return EMPTY_FINGERPRINT
    extent = layer.GetExtent()
    if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:
        return EMPTY_FINGERPRINT
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    voxels = vtk_to_numpy(layer.GetPointData().GetScalars()).reshape(shape)
    k, j, i = np.nonzero(voxels == segment.GetLabelValue())
    if i.size == 0:
        return EMPTY_FINGERPRINT
    indices = np.stack([i + extent[0], j + extent[2], k + extent[4]]).astype(np.int64)
    digest = hashlib.sha256(np.ascontiguousarray(indices).tobytes())
    # Rounded: Slicer stores the reference geometry as text, an oblique matrix may come back an ulp away.
    digest.update(np.round(imageToWorldArray(layer), 6).astype(np.float64).tobytes())
    return digest.hexdigest()


def tagModelSegment(segmentationNode: slicer.vtkMRMLSegmentationNode, segmentId: str, modelId: str,
                    labelValue: int) -> None:
    """Mark a segment as the model's output for ``labelValue``, with the fingerprint of its voxels now."""
    segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
    if modelId:
        segment.SetTag(MODEL_ID_TAG, modelId)
        # Slicer's DICOM SEG export (QuantitativeReporting) reads these; without them it writes MANUAL.
        segment.SetTag(DICOM_ALGORITHM_TYPE_TAG, "AUTOMATIC")
        segment.SetTag(DICOM_ALGORITHM_NAME_TAG, modelId[:64])  # DICOM LO holds 64 characters
    segment.SetTag(LABEL_VALUE_TAG, str(int(labelValue)))
    segment.SetTag(FINGERPRINT_TAG, segmentFingerprint(segmentationNode, segmentId))


def modelSegmentIds(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode], modelId: str) -> list[str]:
    """IDs of the segments ``modelId`` created in the segmentation, in segment order."""
    if segmentationNode is None or not modelId:
        return []
    segmentation = segmentationNode.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    return [segmentId for segmentId in ids if segmentTag(segmentation.GetSegment(segmentId), MODEL_ID_TAG) == modelId]


def editedModelSegmentIds(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode], modelId: str) -> list[str]:
    """IDs of the model's segments whose voxels changed since the model wrote them (or of unknown state)."""
    segmentation = segmentationNode.GetSegmentation() if segmentationNode is not None else None
    return [segmentId for segmentId in modelSegmentIds(segmentationNode, modelId)
            if segmentTag(segmentation.GetSegment(segmentId), FINGERPRINT_TAG)
            != segmentFingerprint(segmentationNode, segmentId)]


def segmentsToReplace(segmentationNode: slicer.vtkMRMLSegmentationNode, modelId: str) -> dict[int, str]:
    """Label value -> ID of the model's segment that "replace" overwrites for it.

    The first segment (in segment order) tagged with the label value; segments of earlier "add beside" runs (later in
    the order) stay as they are. Segments written before label values were tagged (no tag on any of the model's
    segments) are matched by position: the n-th of the model's segments holds label n, as imports write them.
    """
    segmentation = segmentationNode.GetSegmentation()
    own = modelSegmentIds(segmentationNode, modelId)
    values = [segmentLabelValue(segmentation.GetSegment(segmentId)) for segmentId in own]
    if all(value is None for value in values):
        return {position: segmentId for position, segmentId in enumerate(own, start=1)}
    chosen: dict[int, str] = {}
    for segmentId, value in zip(own, values):
        if value is not None and value not in chosen:
            chosen[value] = segmentId
    return chosen
