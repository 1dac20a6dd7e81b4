"""A PNG montage of a result over its image, for a person to look at without Slicer.

Volumes are shown as sagittal slices through the segmented region (superior up), each slice magnified; a second
row shows the reference segmentation when one is given, and a last row the uncertainty map (0 black, 1 white, through
the "hot" colour map) when one is given, so a reviewer sees where the model hesitated next to what it drew.
Colours are the card's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .card import ModelCard
from .image_io import write_image
from .spatial import reorient

TILE_PIXELS = 240


def _grey_uint8(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayViewFromImage(image).astype(np.float32)
    low, high = np.percentile(array, [1, 99.5])
    scaled = np.clip((array - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    result = sitk.GetImageFromArray(scaled)
    result.CopyInformation(image)
    return result


def _slice_indices(labels: np.ndarray, count: int) -> list[int]:
    """Sagittal indices (first ITK axis) evenly spread over the labelled region, or the whole volume."""
    present = np.flatnonzero(labels.any(axis=(0, 1)))  # numpy order (z, y, x): x is the last axis
    low, high = (present.min(), present.max()) if present.size else (0, labels.shape[2] - 1)
    return sorted({int(round(v)) for v in np.linspace(low, high, num=min(count, high - low + 1))})


def _magnified(overlay: sitk.Image) -> sitk.Image:
    overlay = sitk.Flip(overlay, [False, True])  # superior up
    spacing = np.asarray(overlay.GetSpacing())
    size = np.asarray(overlay.GetSize()) * spacing
    factor = TILE_PIXELS / size.max()
    output_size = [max(int(round(extent * factor)), 1) for extent in size]
    return sitk.Resample(overlay, output_size, sitk.Transform(), sitk.sitkNearestNeighbor, overlay.GetOrigin(),
                         [float(s) for s in spacing * np.asarray(overlay.GetSize()) / output_size],
                         overlay.GetDirection())


def _tile(grey: sitk.Image, labels: sitk.Image, index: int, colormap: list[int]) -> sitk.Image:
    grey_slice, label_slice = grey[index, :, :], labels[index, :, :]
    return _magnified(sitk.LabelOverlay(grey_slice, label_slice, opacity=0.45, backgroundValue=0, colormap=colormap))


def _uncertainty_tile(uncertainty: sitk.Image, index: int) -> sitk.Image:
    """The map's slice on a fixed 0..1 scale (not stretched per slice, so tiles compare)."""
    scaled = sitk.Cast(sitk.Clamp(uncertainty[index, :, :] * 255.0, sitk.sitkFloat32, 0.0, 255.0), sitk.sitkUInt8)
    return _magnified(sitk.ScalarToRGBColormap(scaled, sitk.ScalarToRGBColormapImageFilter.Hot, False))


def render_overlay_montage(image: sitk.Image, labels: sitk.Image, card: ModelCard, path: Path, *,
                           reference: Optional[sitk.Image] = None, uncertainty: Optional[sitk.Image] = None,
                           slices: int = 6) -> None:
    if image.GetDimension() == 2:
        image, labels = sitk.JoinSeries([image]), sitk.JoinSeries([labels])
        reference = sitk.JoinSeries([reference]) if reference is not None else None
        uncertainty = sitk.JoinSeries([uncertainty]) if uncertainty is not None else None
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = sitk.VectorIndexSelectionCast(image, 0)
    image, labels = reorient(image, "RAS"), reorient(sitk.Cast(labels, sitk.sitkUInt8), "RAS")
    if reference is not None:
        reference = reorient(sitk.Cast(reference, sitk.sitkUInt8), "RAS")
        reference.CopyInformation(labels)
    colormap = [channel for label in card.labels for channel in label.color]
    grey = _grey_uint8(image)
    indices = _slice_indices(sitk.GetArrayViewFromImage(labels if reference is None else reference), slices)
    rows = [[_tile(grey, labels, i, colormap) for i in indices]]
    if reference is not None:
        rows.append([_tile(grey, reference, i, colormap) for i in indices])
    if uncertainty is not None:
        uncertainty = reorient(sitk.Cast(uncertainty, sitk.sitkFloat32), "RAS")
        uncertainty.CopyInformation(labels)
        rows.append([_uncertainty_tile(uncertainty, i) for i in indices])
    arrays = [[sitk.GetArrayFromImage(tile) for tile in row] for row in rows]  # (height, width, 3) each
    height = max(array.shape[0] for row in arrays for array in row)
    width = max(array.shape[1] for row in arrays for array in row)
    montage = np.zeros((height * len(arrays), width * len(indices), 3), np.uint8)
    for r, row in enumerate(arrays):
        for c, array in enumerate(row):
            montage[r * height:r * height + array.shape[0], c * width:c * width + array.shape[1]] = array
    write_image(sitk.GetImageFromArray(montage, isVector=True), path, compress=False)
