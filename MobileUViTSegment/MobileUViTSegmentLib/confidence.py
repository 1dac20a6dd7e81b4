"""How sure the network was: a per-voxel uncertainty map, a confidence score per segment, and a review list.

Definitions (all deterministic, all in [0, 1]):

* **uncertainty** of a voxel: the entropy of its class probabilities divided by ``log(number of classes)``, so 0 is
  one class at probability 1 and 1 is all classes equally likely. A single-logit (sigmoid) network has the two
  classes (1 - p, p), which makes this the binary entropy in bits. With test-time flips the probabilities are the
  mean over the passes, so the entropy already grows where the passes disagree.
* **disagreement** of a voxel (test-time flips only): the fraction of passes whose argmax differs from the argmax of
  the mean probabilities (0: all passes agree; with 4 passes the values are 0, 0.25, 0.5 and 0.75).
* **confidence** of a segment: the mean of ``1 - uncertainty`` over the voxels of the final label map that carry
  its value (after post-processing). 1 means the network was certain everywhere it drew the segment. A label the
  run did not find has no voxels and is left out of the dict (never NaN, so the dict stays valid JSON).
* **review items**: connected regions (26-connected) of voxels whose uncertainty is at least
  :data:`REVIEW_THRESHOLD`, ranked by summed uncertainty (size times mean: large, very uncertain regions first),
  ties broken by the lowest voxel index, at most :data:`REVIEW_LIMIT` of them. Each names the segment most involved
  (the most frequent non-background label among its voxels; background when it has none) and where to look: the
  centroid in LPS and RAS millimetres (the input file's physical space) and the slice index along the slowest image
  axis (k, as SimpleITK reads the file).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from .spatial import ModelSpace, array_to_image, orientation_code

REVIEW_THRESHOLD = 0.5  # normalised entropy; for two classes: the top probability is below about 0.89
REVIEW_LIMIT = 10
BACKGROUND_NAME = "background"


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """(classes, *spatial) probabilities -> (*spatial) float32 entropy / log(classes), clipped to [0, 1].

    Computed one class at a time so the extra memory is a few spatial arrays, not another (classes, ...) one.
    """
    classes = probabilities.shape[0]
    entropy = np.zeros(probabilities.shape[1:], dtype=np.float32)
    if classes < 2:
        return entropy
    for channel in probabilities:
        channel = np.asarray(channel, dtype=np.float32)
        entropy -= channel * np.log(np.maximum(channel, np.float32(1e-12)))  # 0 log 0 = 0
    entropy /= np.float32(math.log(classes))
    return np.clip(entropy, 0.0, 1.0, out=entropy)


def flip_disagreement(pass_labels: Sequence[np.ndarray], consensus: np.ndarray) -> np.ndarray:
    """Fraction of passes whose argmax label differs from ``consensus`` (float32, same shape)."""
    disagreement = np.zeros(consensus.shape, dtype=np.float32)
    for labels in pass_labels:
        disagreement += labels != consensus
    if pass_labels:
        disagreement /= np.float32(len(pass_labels))
    return disagreement


def label_confidence(uncertainty: np.ndarray, labels: np.ndarray, values: Iterable[int]) -> dict[int, float]:
    """Mean ``1 - uncertainty`` over the voxels of each label value in ``values`` that occurs in ``labels``."""
    confidence: dict[int, float] = {}
    for value in values:
        mask = labels == value
        if mask.any():
            confidence[int(value)] = round(float(1.0 - uncertainty[mask].mean(dtype=np.float64)), 4)
    return confidence


def scalar_map_to_original(space: ModelSpace, array: np.ndarray, spatial_dims: int) -> sitk.Image:
    """A float array on the oriented input grid -> a float32 image on the input's exact grid.

    Mirrors :meth:`ModelSpace.labels_to_original` (the label map's way back): axes permuted back, geometry copied
    bit for bit, so the map and the label map share one grid.
    """
    if spatial_dims == 2:
        return array_to_image(array.astype(np.float32, copy=False), space.original, sitk.sitkFloat32)
    image = array_to_image(array.astype(np.float32, copy=False), space.oriented, sitk.sitkFloat32)
    if space.oriented is not space.original:
        image = sitk.DICOMOrient(image, orientation_code(space.original))
    if image.GetSize() != space.original.GetSize():
        raise AssertionError(f"grid size changed: {image.GetSize()} != {space.original.GetSize()}")
    image.CopyInformation(space.original)
    return image


@dataclass(frozen=True)
class ReviewItem:
    """One region worth a second look. JSON (the worker's ``done`` event) uses these field names."""

    rank: int  # 1 = look here first
    label_value: int  # segment most involved (0: background only)
    label_name: str
    voxel_count: int
    mean_uncertainty: float
    total_uncertainty: float  # the ranking key: sum over the region's voxels
    centroid_index: tuple[float, ...]  # continuous (i, j[, k]) on the input grid, SimpleITK order
    centroid_lps: tuple[float, float, float]  # mm; a 2D input gets z = 0
    centroid_ras: tuple[float, float, float]
    slice_index: int  # k of the centroid, rounded (0 for a 2D input)

    def to_json(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def review_regions(uncertainty: sitk.Image, labels: sitk.Image, names: Mapping[int, str], *,
                   threshold: float = REVIEW_THRESHOLD, limit: int = REVIEW_LIMIT) -> list[ReviewItem]:
    """The most uncertain connected regions of ``uncertainty`` (same grid as ``labels``), best first."""
    values = sitk.GetArrayViewFromImage(uncertainty)
    mask = sitk.Cast(uncertainty >= threshold, sitk.sitkUInt8)
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(mask, True)).ravel()  # numpy (z, y, x) order
    count = int(components.max()) if components.size else 0
    if count == 0 or limit <= 0:
        return []
    selected = np.flatnonzero(components)
    component = components[selected]
    weights = values.ravel()[selected].astype(np.float64)
    sizes = np.bincount(component, minlength=count + 1)
    totals = np.bincount(component, weights=weights, minlength=count + 1)
    # Index coordinates in SimpleITK order (i fastest), from the flat numpy index.
    shape = values.shape
    numpy_coordinates = np.unravel_index(selected, shape)
    itk_coordinates = numpy_coordinates[::-1]
    centroid_sums = [np.bincount(component, weights=axis.astype(np.float64), minlength=count + 1)
                     for axis in itk_coordinates]
    first_voxel = np.full(count + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_voxel, component, selected)
    order = sorted(range(1, count + 1), key=lambda c: (-round(totals[c], 9), first_voxel[c]))[:limit]

    label_values = sitk.GetArrayViewFromImage(labels).ravel()[selected].astype(np.int64)
    top_label = int(label_values.max()) + 1 if label_values.size else 1
    involvement = np.bincount(component * top_label + label_values, minlength=(count + 1) * top_label)
    involvement = involvement.reshape(count + 1, top_label)

    items = []
    for rank, c in enumerate(order, start=1):
        counts = involvement[c].copy()
        counts[0] = 0
        label_value = int(np.argmax(counts)) if counts.any() else 0
        centroid = tuple(float(sums[c] / sizes[c]) for sums in centroid_sums)
        point = uncertainty.TransformContinuousIndexToPhysicalPoint(centroid)
        lps = (float(point[0]), float(point[1]), float(point[2]) if len(point) > 2 else 0.0)
        items.append(ReviewItem(
            rank=rank, label_value=label_value,
            label_name=names.get(label_value, BACKGROUND_NAME if label_value == 0 else str(label_value)),
            voxel_count=int(sizes[c]), mean_uncertainty=round(float(totals[c] / sizes[c]), 4),
            total_uncertainty=round(float(totals[c]), 4), centroid_index=tuple(round(v, 3) for v in centroid),
            centroid_lps=tuple(round(v, 4) for v in lps), centroid_ras=(round(-lps[0], 4), round(-lps[1], 4),
                                                                         round(lps[2], 4)),
            slice_index=int(round(centroid[2])) if len(centroid) > 2 else 0))
    return items


def rank_slices(uncertainty: sitk.Image, limit: int = REVIEW_LIMIT) -> list[tuple[int, float]]:
    """(k, summed uncertainty) of the ``limit`` most uncertain slices along the slowest axis, most uncertain first
    (ties: lower k first); a 2D image is one slice, k = 0."""
    values = sitk.GetArrayViewFromImage(uncertainty)
    totals = values.reshape(values.shape[0], -1).sum(axis=1, dtype=np.float64) if values.ndim == 3 \
        else np.array([values.sum(dtype=np.float64)])
    order = sorted(range(len(totals)), key=lambda k: (-totals[k], k))[:limit]
    return [(k, round(float(totals[k]), 4)) for k in order]
