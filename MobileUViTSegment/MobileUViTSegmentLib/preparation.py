"""From a user's image to the normalised array a network reads, through the same steps in training and inference.

Training and inference share this module on purpose: a model only works on inputs prepared exactly as its training
data were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .card import InputSpec
from .input_checks import check_compatible, check_geometry, check_model_grid_fits, check_values
from .intensity import normalize_intensity
from .spatial import ModelSpace, image_to_array, label_to_array, needs_resampling, reorient, resample_to_spacing


@dataclass
class PreparedImage:
    space: ModelSpace
    array: np.ndarray  # (channels, *spatial) float32, normalised


def prepare_image(image: sitk.Image, spec: InputSpec, name: str = "the input") -> PreparedImage:
    """Check, orient, resample and normalise ``image`` for a model with input ``spec``.

    Volumes for 2D models keep their grid (they are segmented slice by slice); a 3-channel 2D model receives a grey
    image repeated to three channels.
    """
    check_geometry(image, name)
    check_compatible(image, spec, name)
    check_model_grid_fits(image, spec, name)
    if spec.spatial_dims == 3:
        space = ModelSpace.from_image(image, spec.orientation, spec.spacing)
    else:
        space = ModelSpace(original=image, oriented=image, resampled=image)
    array = image_to_array(space.resampled)
    check_values(array, name)
    if spec.channels == 3 and array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return PreparedImage(space, normalize_intensity(array, spec.intensity))


def prepare_label(label: sitk.Image, spec: InputSpec, reference: sitk.Image) -> np.ndarray:
    """A training label brought into the same model space as its image (nearest-neighbour resampling)."""
    if label.GetSize() != reference.GetSize():
        raise ValueError(f"label size {label.GetSize()} differs from image size {reference.GetSize()}")
    label = sitk.Cast(label, sitk.sitkUInt8)
    label.CopyInformation(reference)  # labels share the image grid; headers may round differently
    if spec.spatial_dims == 3:
        label = reorient(label, spec.orientation)
        if needs_resampling(label, spec.spacing):
            label = resample_to_spacing(label, spec.spacing, is_label=True)
    return label_to_array(label)
