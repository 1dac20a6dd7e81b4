"""Checks that an image can be segmented by a model, each failing with one sentence that says what is wrong.

They run before any network work, so a bad input costs nothing and nothing is written.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from .card import InputSpec
from .errors import InputError
from .input_shape import fits_model_dims, fits_model_modality
from .spatial import resampled_size
from .system_memory import available_memory_bytes, describe_bytes

# From electron microscopy (nanometres) to a whole-body scout (tens of centimetres), with margin either side.
PLAUSIBLE_SPACING_MM = (1e-6, 1e4)


def check_geometry(image: sitk.Image, name: str) -> None:
    size = image.GetSize()
    if any(s == 0 for s in size):
        raise InputError(f"{name} is empty (size {size})")
    spacing = image.GetSpacing()
    if any(not math.isfinite(s) or s <= 0 for s in spacing):
        raise InputError(f"{name} has an invalid voxel spacing {spacing}; every spacing must be positive")
    if any(not PLAUSIBLE_SPACING_MM[0] <= s <= PLAUSIBLE_SPACING_MM[1] for s in spacing):
        raise InputError(f"{name} has an implausible voxel spacing {spacing} (mm); a broken header? Spacings "
                         f"between {PLAUSIBLE_SPACING_MM[0]:g} and {PLAUSIBLE_SPACING_MM[1]:g} mm are accepted")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(image.GetDimension(), image.GetDimension())
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1) > 1e-3:
        raise InputError(f"{name} has an invalid direction matrix (not a rotation)")
    if not all(math.isfinite(o) for o in image.GetOrigin()):
        raise InputError(f"{name} has a non-finite origin {image.GetOrigin()}")


def check_compatible(image: sitk.Image, spec: InputSpec, name: str) -> None:
    """Dimension and channel checks for the model's input specification."""
    dimension, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    if dimension > 4:
        raise InputError(f"{name} has {dimension} dimensions; only 2D and 3D images are supported")
    if dimension == 4 or components > 4:  # a time series, or volumes stacked as vector components
        raise InputError(f"{name} is a 4D (time series or multi-volume) image; this model segments one "
                         f"{spec.spatial_dims}D image at a time, so extract a single frame first")
    size = image.GetSize()
    if sum(extent == 1 for extent in size) >= dimension - 1:  # one voxel, or one line of them, in 2D or 3D
        raise InputError(f"{name} is {'x'.join(map(str, size))} voxels, a single voxel or a line, not an image; "
                         "this model needs at least 2 voxels along every axis")
    if not fits_model_dims(spec.spatial_dims, size):
        raise InputError(f"{name} is a single 2D slice but this model needs a 3D volume")
    if spec.spatial_dims == 2 and (size[0] == 1 or size[1] == 1):
        raise InputError(f"{name} is {'x'.join(map(str, size))} pixels, a line, not a picture")
    if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(f"{name} has complex-valued voxels; give a magnitude image")
    if components > 1:
        if spec.channels == 1:
            raise InputError(f"{name} is an RGB/vector image with {components} components but this model needs a "
                             "single-channel (grey) image")
        if components != spec.channels:
            raise InputError(f"{name} has {components} components per voxel; this model needs {spec.channels}")


def check_modality(image: sitk.Image, modality: str, name: str) -> None:
    """Refuse a grey volume for a model of colour photographs (see ``input_shape.fits_model_modality``).

    Runs first, before the image is read into an array; other dimensions and empty images are left to the checks
    that name those problems."""
    size, components = image.GetSize(), image.GetNumberOfComponentsPerPixel()
    if image.GetDimension() == 3 and min(size) > 0 and not fits_model_modality(modality, size, components):
        raise InputError(f"{name} is a grey volume of {size[2]} slices, but this model segments colour photographs "
                         f"(modality {modality}) one picture at a time; a CT or MR volume needs a 3D model")


def check_values(array: np.ndarray, name: str) -> None:
    """Refuse NaN/infinite voxels and constant images (there is nothing to segment in them)."""
    finite = np.isfinite(array)
    if not finite.all():
        raise InputError(f"{name} contains {int((~finite).sum())} NaN or infinite voxels")
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise InputError(f"{name} is constant (every voxel is {low:g}); there is nothing to segment")


def check_model_grid_fits(image: sitk.Image, spec: InputSpec, name: str) -> None:
    """Refuse, before resampling, an image whose copy at the model's spacing could not be held in memory.

    The model-space copy (float32, one value per channel) is the smallest thing inference holds; the sliding window's
    probabilities and the result take several times more, so a copy larger than a quarter of the available memory
    is refused with the estimate.
    """
    if spec.spacing is None or spec.spatial_dims != 3:
        return
    extent = np.asarray(image.GetSize(), dtype=float) * np.asarray(image.GetSpacing(), dtype=float)
    voxels = float(np.prod(resampled_size(image, spec.spacing)))  # float: a broken header can overflow integers
    needed = voxels * 4 * spec.channels
    available = available_memory_bytes()
    if available is not None and needed > available / 4:
        raise InputError(f"{name} covers {' x '.join(f'{e:g}' for e in extent)} mm, which at the model's "
                         f"{'x'.join(f'{s:g}' for s in spec.spacing)} mm spacing is {voxels:.3g} voxels "
                         f"({describe_bytes(needed)} before inference, several times that during it); this machine "
                         f"has {describe_bytes(available)} available")
