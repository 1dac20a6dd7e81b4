"""Moving images between the user's voxel grid and the model's space, and back onto the exact original grid.

The model space of a card is "orientation + spacing": volumes are first permuted/flipped to the card's orientation
(an exact, lossless operation whatever the direction matrix, oblique ones included) and then resampled to the card's
spacing only when it differs. The way back mirrors it: class probabilities are resampled in physical space onto the
oriented grid, the label map is permuted back, and the original geometry (size, spacing, origin, direction) is copied
bit for bit, so a result always lands on the input's exact voxel grid.

Arrays handed to networks are channel-first with spatial axes in ITK index order (x, y, z), as MONAI's ITK reader
produces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk

SPACING_TOLERANCE = 1e-3  # relative; smaller differences are rounding in file headers, not a different grid


def orientation_code(image: sitk.Image) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def reorient(image: sitk.Image, orientation: Optional[str]) -> sitk.Image:
    """Permute and flip axes so that they point along ``orientation`` (DICOM letters, e.g. ``"RAS"``)."""
    if orientation is None or image.GetDimension() != 3 or orientation_code(image) == orientation:
        return image
    return sitk.DICOMOrient(image, orientation)


def needs_resampling(image: sitk.Image, spacing: Optional[Sequence[float]]) -> bool:
    if spacing is None:
        return False
    current = np.asarray(image.GetSpacing(), dtype=float)
    target = np.asarray(spacing, dtype=float)
    return bool(np.any(np.abs(current - target) > SPACING_TOLERANCE * target))


def resampled_size(image: sitk.Image, spacing: Sequence[float]) -> np.ndarray:
    """Voxels per axis of the grid that covers ``image``'s extent at ``spacing`` (at least one per axis)."""
    extent = np.asarray(image.GetSize(), dtype=float) * np.asarray(image.GetSpacing(), dtype=float)
    return np.maximum(np.round(extent / np.asarray(spacing, dtype=float)), 1)


def resample_to_spacing(image: sitk.Image, spacing: Sequence[float], *, is_label: bool = False) -> sitk.Image:
    """Resample onto a grid with the same origin and direction that covers the same extent at ``spacing``."""
    new_spacing = np.asarray(spacing, dtype=float)
    new_size = resampled_size(image, spacing).astype(int)
    interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    return sitk.Resample(image, [int(s) for s in new_size], sitk.Transform(), interpolator, image.GetOrigin(),
                         [float(s) for s in new_spacing], image.GetDirection(), 0.0,
                         image.GetPixelID() if is_label else sitk.sitkFloat32)


def image_to_array(image: sitk.Image) -> np.ndarray:
    """(channels, x, y[, z]) float32 array from a scalar or vector image."""
    array = sitk.GetArrayFromImage(image)
    spatial = image.GetDimension()
    if image.GetNumberOfComponentsPerPixel() == 1:
        array = array[..., None]
    # numpy order is (z, y, x, c); move to (c, x, y, z).
    return np.ascontiguousarray(np.moveaxis(array, -1, 0).transpose(0, *range(spatial, 0, -1)), dtype=np.float32)


def label_to_array(image: sitk.Image) -> np.ndarray:
    """(x, y[, z]) integer array of a label image."""
    return np.ascontiguousarray(sitk.GetArrayFromImage(image).T)


def array_to_image(array: np.ndarray, reference: sitk.Image, pixel_type: Optional[int] = None) -> sitk.Image:
    """Scalar image with ``reference``'s geometry from an (x, y[, z]) array."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T))
    if pixel_type is not None:
        image = sitk.Cast(image, pixel_type)
    image.CopyInformation(reference)
    return image


@dataclass
class ModelSpace:
    """An image prepared for a model, with what it takes to map predictions back onto the original grid."""

    original: sitk.Image
    oriented: sitk.Image
    resampled: sitk.Image

    @property
    def was_resampled(self) -> bool:
        return self.resampled is not self.oriented

    @classmethod
    def from_image(cls, image: sitk.Image, orientation: Optional[str],
                   spacing: Optional[Sequence[float]]) -> ModelSpace:
        oriented = reorient(image, orientation)
        resampled = resample_to_spacing(oriented, spacing) if needs_resampling(oriented, spacing) else oriented
        return cls(original=image, oriented=oriented, resampled=resampled)

    def probabilities_to_oriented_grid(self, probabilities: np.ndarray) -> np.ndarray:
        """Resample (classes, *spatial) probabilities from the model grid onto the oriented input grid (linear)."""
        if not self.was_resampled:
            return probabilities
        channels = []
        for channel in probabilities:
            moved = sitk.Resample(array_to_image(channel.astype(np.float32), self.resampled), self.oriented,
                                  sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            channels.append(label_to_array(moved))
        return np.stack(channels)

    def labels_to_original(self, labels: np.ndarray) -> sitk.Image:
        """An (x, y, z) label array on the oriented grid -> a uint8 label image on the original grid, exactly."""
        label_image = array_to_image(labels.astype(np.uint8), self.oriented, sitk.sitkUInt8)
        if self.oriented is not self.original:
            label_image = sitk.DICOMOrient(label_image, orientation_code(self.original))
        if label_image.GetSize() != self.original.GetSize():
            raise AssertionError(f"grid size changed: {label_image.GetSize()} != {self.original.GetSize()}")
        drift = np.abs(np.subtract(label_image.GetOrigin(), self.original.GetOrigin())).max()
        if drift > SPACING_TOLERANCE * min(self.original.GetSpacing()):
            raise AssertionError(f"grid origin moved by {drift} mm while reorienting back")
        # Reorientation is exact up to float rounding of the origin; copy the input's geometry bit for bit.
        label_image.CopyInformation(self.original)
        return label_image
