"""Two images must share one voxel grid before their voxels are paired up; say which grids differ when they do not.

The rule is :func:`.metrics.check_same_grid`'s (the one ``evaluate`` scores with): same size, and spacing, origin
and direction equal to 1/1000 of the smallest voxel. Nothing is ever interpolated: measuring or scoring a mask that
was resampled onto another grid would report numbers for voxels the user never drew. The error names both files'
grids, so the user sees at once whether the size, the spacing or the position differs.

One exception, for files (:func:`on_grid`): two grids whose voxel centres coincide one for one, differing only in
axis order, axis direction or a whole-voxel shift of the origin, hold the same voxels, and are moved voxel for voxel
(nearest neighbour at exact centres, so no value changes). That is what Slicer makes of a left-handed file (its
reader flips an axis, so a .seg.nrrd saved there is flipped against the image as ITK reads it) and of a segmentation
saved cropped to its segments.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .metrics import check_same_grid


def describe_grid(image: sitk.Image) -> str:
    """Size, spacing, origin (and direction when it is not the identity) in a few words."""
    size = "x".join(str(n) for n in image.GetSize())
    spacing = " x ".join(f"{value:g}" for value in np.round(image.GetSpacing(), 4))
    origin = ", ".join(f"{value:g}" for value in np.round(image.GetOrigin(), 3))
    text = f"{size} voxels of {spacing} mm at ({origin})"
    direction = np.asarray(image.GetDirection())
    if not np.allclose(direction, np.eye(image.GetDimension()).ravel()):
        text += ", direction (" + ", ".join(f"{value:g}" for value in np.round(direction, 3)) + ")"
    return text


def require_same_grid(expected: sitk.Image, other: sitk.Image, expected_name: str, other_name: str) -> sitk.Image:
    """``other`` carrying ``expected``'s exact geometry; :class:`InputError` naming both grids when they differ."""
    try:
        return check_same_grid(expected, other)
    except InputError as error:
        raise InputError(f"{other_name} is not on the voxel grid of {expected_name}: {other_name} has "
                         f"{describe_grid(other)}, {expected_name} has {describe_grid(expected)}") from error


def _index_mapping(target: sitk.Image, source: sitk.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """(matrix, offset) taking a target voxel index to the source voxel at the same point, when every target voxel
    centre is a source voxel centre (matrix a signed permutation, offset whole voxels); None otherwise."""
    if target.GetDimension() != source.GetDimension():
        return None

    def index_to_physical(image: sitk.Image) -> np.ndarray:
        dimension = image.GetDimension()
        return np.asarray(image.GetDirection()).reshape(dimension, dimension) @ np.diag(image.GetSpacing())

    to_source = np.linalg.inv(index_to_physical(source))
    matrix = to_source @ index_to_physical(target)
    offset = to_source @ (np.asarray(target.GetOrigin()) - np.asarray(source.GetOrigin()))
    whole_matrix, whole_offset = np.round(matrix), np.round(offset)
    signed_permutation = (np.abs(whole_matrix).sum(axis=0) == 1).all() and (np.abs(whole_matrix).sum(axis=1) == 1).all()
    if (signed_permutation and np.allclose(matrix, whole_matrix, atol=1e-3)
            and np.allclose(offset, whole_offset, atol=1e-3)):
        return whole_matrix, whole_offset
    return None


def on_grid(target: sitk.Image, source: sitk.Image, target_name: str, source_name: str, *,
            is_label: bool = True) -> sitk.Image:
    """``source`` on ``target``'s grid: as it is on the same grid; moved voxel for voxel when the voxel centres
    coincide (see the module's docstring); :class:`InputError` naming both grids otherwise, and when a label map
    would lose drawn voxels outside ``target`` (or a map would not cover it)."""
    try:
        return require_same_grid(target, source, target_name, source_name)
    except InputError:
        mapping = _index_mapping(target, source)
        if mapping is None:
            raise
    grids = f"{source_name} has {describe_grid(source)}, {target_name} has {describe_grid(target)}"
    if not is_label and not _covers(source, target, *mapping):
        raise InputError(f"{source_name} does not cover the grid of {target_name}: {grids}")
    moved = sitk.Resample(source, target, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, source.GetPixelID())
    lost = np.count_nonzero(sitk.GetArrayViewFromImage(source)) - np.count_nonzero(sitk.GetArrayViewFromImage(moved))
    if is_label and lost:
        voxels = "voxel" if lost == 1 else "voxels"
        raise InputError(f"{source_name} has {lost} segmented {voxels} outside the grid of {target_name}: {grids}")
    return moved


def _covers(source: sitk.Image, target: sitk.Image, matrix: np.ndarray, offset: np.ndarray) -> bool:
    """Whether every target voxel maps onto a source voxel (the corners of the target's index box suffice)."""
    corners = np.array(np.meshgrid(*[(0, size - 1) for size in target.GetSize()], indexing="ij"))
    mapped = matrix @ corners.reshape(target.GetDimension(), -1) + offset[:, None]
    return bool(((mapped >= 0) & (mapped <= np.asarray(source.GetSize())[:, None] - 1)).all())


def require_single_component(image: sitk.Image, name: str) -> None:
    """Intensity statistics need one value per voxel; a colour or vector image has several."""
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise InputError(f"{name} has {components} values per voxel (a colour, vector or multi-frame image); "
                         "intensity statistics need a grey-scale image with one value per voxel")
