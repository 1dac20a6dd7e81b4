"""Per-segment measurements for a radiologist's review: size, intensity statistics and, when known, confidence.

Definitions (the Slicer panel computes its table with these same functions, so both give the same numbers):

* **voxel_count**: voxels of the label map equal to the segment's label value.
* **volume_ml** (3D images): voxel count times the voxel volume from the image spacing (mm³ / 1000). The direction
  matrix does not enter: rotating a grid does not change its voxels' volume. **area_mm2** (2D images): voxel count
  times the pixel area. Each is empty for the other kind of image, so a column never mixes units. (PNG and JPEG
  files carry no pixel size; SimpleITK reads them as 1 mm pixels, so their area is in pixels.)
* **intensity_mean / std / min / max**: of the image's voxels inside the segment, in the image's own units (HU for
  CT, scanner units for MRI). The standard deviation is the population one (divided by N, as PyRadiomics and most
  viewers report it). NaN, written as an empty cell, for a segment without voxels.
* **mean_uncertainty**: mean of an uncertainty map (normalised entropy, see :mod:`.confidence`) inside the segment.
* **confidence**: as given by the run that made the segmentation, else derived from the uncertainty map with
  :func:`.confidence.label_confidence` (mean of 1 - uncertainty, rounded as the run reports it); None when unknown.

A label value the caller names but the label map does not hold is reported with 0 voxels (the model looked for it
and found nothing); a value the label map holds but the caller does not name is reported as "label N", never
dropped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .confidence import label_confidence
from .errors import InputError
from .grid_checks import require_same_grid, require_single_component
from .named_segments import Segment
from .tables import write_csv_atomically

MM3_PER_ML = 1000.0


@dataclass(frozen=True)
class SegmentMeasurement:
    """One row of the measurement table; the field names are the CSV header."""

    label_value: int
    name: str
    voxel_count: int
    volume_ml: float  # NaN for a 2D image
    area_mm2: float  # NaN for a 3D image
    intensity_mean: float
    intensity_std: float
    intensity_min: float
    intensity_max: float
    mean_uncertainty: Optional[float] = None
    confidence: Optional[float] = None


MEASUREMENT_COLUMNS = tuple(field.name for field in fields(SegmentMeasurement))


def voxel_volume_ml(image: sitk.Image) -> float:
    """Volume of one voxel in mL for a 3D image; NaN for a 2D one (it has an area, not a volume)."""
    if image.GetDimension() != 3:
        return math.nan
    return float(np.prod(image.GetSpacing(), dtype=np.float64)) / MM3_PER_ML


def pixel_area_mm2(image: sitk.Image) -> float:
    """Area of one pixel in mm² for a 2D image; NaN for a 3D one."""
    return float(np.prod(image.GetSpacing(), dtype=np.float64)) if image.GetDimension() == 2 else math.nan


def label_name(value: int) -> str:
    """The name of a label value nothing else names."""
    return f"label {value}"


def label_values(labels: sitk.Image) -> list[int]:
    """The non-zero values of a label map, sorted; refuses images that are not label maps."""
    array = sitk.GetArrayViewFromImage(labels)
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the segmentation has several values per voxel; give a label map or a .seg.nrrd")
    values = np.unique(array)
    if array.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise InputError("the segmentation holds fractional values; give a label map (whole numbers per voxel)")
    return [int(value) for value in values if value != 0]


def _intensity_statistics(intensities: np.ndarray) -> tuple[float, float, float, float]:
    if intensities.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    values = intensities.astype(np.float64, copy=False)
    return float(values.mean()), float(values.std()), float(values.min()), float(values.max())


def measure_segments(labels: sitk.Image, image: sitk.Image, names: Mapping[int, str],
                     uncertainty: Optional[sitk.Image] = None,
                     confidence: Optional[Mapping[int, float]] = None) -> list[SegmentMeasurement]:
    """One :class:`SegmentMeasurement` per label: the values of ``names`` in its order, then unnamed ones present.

    ``labels``, ``image`` and ``uncertainty`` must lie on one voxel grid (:class:`InputError` otherwise).
    """
    require_single_component(image, "the image")
    labels = require_same_grid(image, labels, "the image", "the segmentation")
    present = label_values(labels)
    if uncertainty is not None:
        require_single_component(uncertainty, "the uncertainty map")
        uncertainty = require_same_grid(image, uncertainty, "the image", "the uncertainty map")
    label_array = sitk.GetArrayViewFromImage(labels)
    intensity_array = sitk.GetArrayViewFromImage(image)
    uncertainty_array = sitk.GetArrayViewFromImage(uncertainty) if uncertainty is not None else None
    volume, area = voxel_volume_ml(image), pixel_area_mm2(image)
    order = [int(value) for value in names] + [value for value in present if value not in names]
    rows = []
    for value in order:
        mask = label_array == value
        count = int(np.count_nonzero(mask))
        mean, std, low, high = _intensity_statistics(intensity_array[mask])
        mean_uncertainty = score = None
        if uncertainty_array is not None:
            inside = uncertainty_array[mask]
            mean_uncertainty = float(inside.mean(dtype=np.float64)) if count else math.nan
            score = label_confidence(uncertainty_array, label_array, [value]).get(value)
        if confidence is not None and value in confidence:
            score = float(confidence[value])
        rows.append(SegmentMeasurement(
            label_value=value, name=names.get(value, label_name(value)), voxel_count=count,
            volume_ml=count * volume, area_mm2=count * area, intensity_mean=mean, intensity_std=std,
            intensity_min=low, intensity_max=high, mean_uncertainty=mean_uncertainty, confidence=score))
    return rows


def measure_segment_masks(segments: Sequence[Segment], image: sitk.Image, uncertainty: Optional[sitk.Image] = None,
                          confidence: Optional[Mapping[int, float]] = None) -> list[SegmentMeasurement]:
    """One row per segment, each measured on its own mask, so segments that overlap (a .seg.nrrd with several
    layers, a Slicer segmentation) are each measured whole. ``confidence`` is keyed by the segments' label values."""
    rows = []
    for segment in segments:
        row = measure_segments(segment.mask(), image, {1: segment.name}, uncertainty)[0]
        score = confidence.get(segment.label_value) if confidence is not None else None
        rows.append(replace(row, label_value=segment.label_value,
                            confidence=row.confidence if score is None else float(score)))
    return rows


def write_measurements_csv(rows: Sequence[SegmentMeasurement], path: str | os.PathLike) -> None:
    """The table as CSV (header :data:`MEASUREMENT_COLUMNS`), written atomically; unknown values are empty."""
    write_csv_atomically(path, MEASUREMENT_COLUMNS, [astuple(row) for row in rows])
