"""A segmentation against a reference (a manual one, or an earlier run): Dice, IoU, HD95 and volumes per segment.

Dice, IoU and HD95 are :func:`.metrics.score_labels`' (the numbers ``evaluate`` reports when it runs a model), so
this table, ``evaluate --prediction --reference`` and the Slicer panel agree by construction. Added here:

* **volume_ml / reference_volume_ml**: voxel count times the voxel volume (NaN for 2D images, see
  :mod:`.measurements`); **volume_difference_ml** = segmentation minus reference (positive: the segmentation is
  larger).
* **relative_volume_difference** = (segmentation - reference) / reference, from the voxel counts: -1 when the
  segmentation is empty, NaN when the reference is (a relative change from nothing is undefined).
* **status**: ``compared``, or, when segments are paired by name (:mod:`.named_segments`), ``not in reference`` /
  ``only in reference`` for a segment the other side has no segment of that name for. Those rows carry their own
  side's voxels and volume and leave every other column empty.

Label maps are compared label value by label value; both-empty labels score Dice 1 and IoU 1 with HD95 undefined,
as in ``evaluate``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .grid_checks import require_same_grid
from .measurements import label_name, label_values, voxel_volume_ml
from .metrics import LabelScores, score_labels
from .named_segments import Segment, match_by_name
from .tables import write_csv_atomically

COMPARED = "compared"
NOT_IN_REFERENCE = "not in reference"
ONLY_IN_REFERENCE = "only in reference"


@dataclass(frozen=True)
class SegmentComparison:
    """One row of the comparison table; the CSV header is :data:`COMPARISON_COLUMNS` (``hd95`` as ``hd95_mm``)."""

    label_value: int
    name: str
    status: str
    dice: float
    iou: float
    hd95: float  # mm; NaN when either side is empty
    volume_ml: float
    reference_volume_ml: float
    volume_difference_ml: float
    relative_volume_difference: float
    predicted_voxels: Optional[int]
    reference_voxels: Optional[int]


COMPARISON_COLUMNS = tuple("hd95_mm" if field.name == "hd95" else field.name for field in fields(SegmentComparison))


def _compared_row(value: int, name: str, scores: LabelScores, voxel_ml: float) -> SegmentComparison:
    predicted, referenced = scores.predicted_voxels, scores.reference_voxels
    volume, reference_volume = predicted * voxel_ml, referenced * voxel_ml
    return SegmentComparison(
        label_value=value, name=name, status=COMPARED, dice=scores.dice, iou=scores.iou, hd95=scores.hd95,
        volume_ml=volume, reference_volume_ml=reference_volume, volume_difference_ml=volume - reference_volume,
        relative_volume_difference=(predicted - referenced) / referenced if referenced else math.nan,
        predicted_voxels=predicted, reference_voxels=referenced)


def _one_sided_row(segment: Segment, status: str) -> SegmentComparison:
    mask = segment.mask()
    count = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    volume = count * voxel_volume_ml(mask)
    in_prediction = status == NOT_IN_REFERENCE
    return SegmentComparison(
        label_value=segment.label_value, name=segment.name, status=status, dice=math.nan, iou=math.nan,
        hd95=math.nan, volume_ml=volume if in_prediction else math.nan,
        reference_volume_ml=math.nan if in_prediction else volume, volume_difference_ml=math.nan,
        relative_volume_difference=math.nan, predicted_voxels=count if in_prediction else None,
        reference_voxels=None if in_prediction else count)


def compare_segmentations(prediction: sitk.Image, reference: sitk.Image,
                          names: Mapping[int, str]) -> list[SegmentComparison]:
    """Two label maps on one grid, label value by label value: the values of ``names`` in its order, then any
    other value either map holds ("label N")."""
    reference = require_same_grid(prediction, reference, "the segmentation", "the reference")
    present = sorted(set(label_values(prediction)) | set(label_values(reference)))
    order = [int(value) for value in names] + [value for value in present if value not in names]
    scores = score_labels(prediction, reference, order)
    voxel_ml = voxel_volume_ml(prediction)
    return [_compared_row(value, names.get(value, label_name(value)), scores[value], voxel_ml) for value in order]


def compare_segments(prediction: Sequence[Segment], reference: Sequence[Segment]) -> list[SegmentComparison]:
    """Segments paired by name, each pair scored as two one-label maps (so overlapping segments are compared
    whole); rows in the segmentation's order, then the reference's segments it lacks."""
    match = match_by_name(prediction, reference)
    partners = {id(predicted): referenced for predicted, referenced in match.pairs}
    rows = []
    for segment in prediction:
        partner = partners.get(id(segment))
        if partner is None:
            rows.append(_one_sided_row(segment, NOT_IN_REFERENCE))
            continue
        row = compare_segmentations(segment.mask(), partner.mask(), {1: segment.name})[0]
        rows.append(replace(row, label_value=segment.label_value))
    rows.extend(_one_sided_row(segment, ONLY_IN_REFERENCE) for segment in match.only_in_reference)
    return rows


def write_comparison_csv(rows: Sequence[SegmentComparison], path: str | os.PathLike) -> None:
    """The table as CSV (header :data:`COMPARISON_COLUMNS`), written atomically; undefined values are empty."""
    write_csv_atomically(path, COMPARISON_COLUMNS, [astuple(row) for row in rows])
