"""Overlap and surface metrics per label, in physical units.

HD95 follows MONAI's ``compute_hausdorff_distance(percentile=95)``: the larger of the two directed 95th-percentile
distances between the surfaces, in millimetres (image spacing applied). It is computed with SimpleITK distance maps
so no extra dependency is needed. When either mask is empty, HD95 is undefined (NaN) and is left out of means.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from .errors import InputError


@dataclass(frozen=True)
class LabelScores:
    dice: float
    iou: float
    hd95: float
    reference_voxels: int
    predicted_voxels: int

    def to_dict(self) -> dict:
        return asdict(self)


def _surface_distances(source: sitk.Image, target: sitk.Image) -> np.ndarray:
    """Distances (mm) from every surface voxel of ``source`` to the surface of ``target``."""
    # |signed Maurer distance| is 0 on the target's boundary voxels and grows with the distance to that boundary,
    # inside and outside, so sampling it on the source's boundary voxels gives the directed surface distances.
    distance = sitk.Abs(sitk.SignedMaurerDistanceMap(target, squaredDistance=False, useImageSpacing=True,
                                                     insideIsPositive=False))
    # A copy, not a view: the contour image is a temporary and would be freed under a view.
    contour = sitk.GetArrayFromImage(sitk.LabelContour(source, fullyConnected=True)) > 0
    return sitk.GetArrayViewFromImage(distance)[contour]


def hd95(predicted: sitk.Image, reference: sitk.Image) -> float:
    if not sitk.GetArrayViewFromImage(predicted).any() or not sitk.GetArrayViewFromImage(reference).any():
        return math.nan
    # A mask that touches the image's edge has its surface there: pad both with one background voxel so that
    # surface exists (a mask filling the whole image would otherwise have no contour at all).
    margin = [1] * predicted.GetDimension()
    predicted, reference = (sitk.ConstantPad(mask, margin, margin, 0) for mask in (predicted, reference))
    forward = _surface_distances(predicted, reference)
    backward = _surface_distances(reference, predicted)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def check_same_grid(prediction: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Return ``reference`` on ``prediction``'s grid; refuse references on a different grid."""
    if prediction.GetSize() != reference.GetSize():
        raise InputError(f"reference size {reference.GetSize()} differs from the prediction's {prediction.GetSize()}")
    tolerance = 1e-3 * min(prediction.GetSpacing())
    for ours, theirs, what in ((prediction.GetSpacing(), reference.GetSpacing(), "spacing"),
                               (prediction.GetOrigin(), reference.GetOrigin(), "origin"),
                               (prediction.GetDirection(), reference.GetDirection(), "direction")):
        if np.abs(np.subtract(ours, theirs)).max() > tolerance:
            raise InputError(f"reference {what} {tuple(round(v, 4) for v in theirs)} differs from the prediction's")
    reference = sitk.Image(reference)
    reference.CopyInformation(prediction)
    return reference


def score_labels(prediction: sitk.Image, reference: sitk.Image, values: list[int]) -> dict[int, LabelScores]:
    reference = check_same_grid(prediction, reference)
    predicted_array = sitk.GetArrayViewFromImage(prediction)
    reference_array = sitk.GetArrayViewFromImage(reference)
    scores = {}
    for value in values:
        predicted_mask, reference_mask = predicted_array == value, reference_array == value
        intersection = int(np.logical_and(predicted_mask, reference_mask).sum())
        predicted_count, reference_count = int(predicted_mask.sum()), int(reference_mask.sum())
        union = predicted_count + reference_count - intersection
        both_empty = predicted_count + reference_count == 0
        scores[value] = LabelScores(
            dice=1.0 if both_empty else 2 * intersection / (predicted_count + reference_count),
            iou=1.0 if both_empty else intersection / union,
            hd95=hd95(sitk.Cast(prediction == value, sitk.sitkUInt8), sitk.Cast(reference == value, sitk.sitkUInt8)),
            reference_voxels=reference_count,
            predicted_voxels=predicted_count,
        )
    return scores
