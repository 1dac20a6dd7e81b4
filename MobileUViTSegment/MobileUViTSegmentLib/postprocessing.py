"""Clean-up of a label map: keep each class's largest connected component and fill its enclosed holes.

Both steps are switchable (model card defaults, ``--no-postprocess`` on the command line). Holes are filled only
where the map is background, so one class never overwrites another.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import SimpleITK as sitk


def _mask_image(mask: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def largest_component(mask: np.ndarray, reference: sitk.Image) -> np.ndarray:
    components = sitk.RelabelComponent(sitk.ConnectedComponent(_mask_image(mask, reference)), sortByObjectSize=True)
    return sitk.GetArrayViewFromImage(components) == 1


def filled(mask: np.ndarray, reference: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.BinaryFillhole(_mask_image(mask, reference))).astype(bool)  # copy: temporary


def postprocess_labels(labels: sitk.Image, values: Iterable[int], *, keep_largest: bool = True,
                       fill_holes: bool = True) -> sitk.Image:
    if not (keep_largest or fill_holes):
        return labels
    array = sitk.GetArrayFromImage(labels)
    for value in values:
        if not (array == value).any():
            continue
        if keep_largest:
            array[(array == value) & ~largest_component(array == value, labels)] = 0
        if fill_holes:
            array[filled(array == value, labels) & (array == 0)] = value
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(labels)
    return result
