"""Training-time augmentation with MONAI dictionary transforms.

Spatial: pad to the patch, random crop, mirror only along the axes a recipe allows (left-right for the hippocampus,
where anterior/posterior carry meaning), small rotations, scaling and shifts. Intensity: scale, shift, gamma and noise,
as in the UNETR/nnU-Net recipes. The default 2D recipe follows the papers' protocol instead: ``rotate90`` (a random
multiple of 90 degrees in the first two axes, half of the time) and flips along both axes, nothing else (albumentations'
RandomRotate90 + Flip, rebuilt with MONAI transforms: each axis flips independently with probability 0.5). Two opt-in
steps, off unless a recipe sets their probability, imitate other devices where a model must meet them:
``contrast_probability`` (contrast scaled by up to +-40 % around the picture's mean, the flatter or harsher image of
another scanner) and ``blur_probability`` (a Gaussian blur of 0.5 to 2 pixels, softer or out-of-focus optics); both come
from the picture-shift study, where a 2D model trained without them lost 0.06 to 0.11 Dice. Each epoch re-seeds the
pipeline so a resumed run sees the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from monai import transforms as mt

from ..errors import DatasetError


@dataclass(frozen=True)
class AugmentationConfig:
    flip_axes: tuple[int, ...] = ()
    rotate_degrees: float = 15.0
    scale: float = 0.15
    translate: float = 4.0
    affine_probability: float = 0.3
    intensity: bool = True
    rotate90: bool = False
    contrast_probability: float = 0.0
    blur_probability: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> AugmentationConfig:
        data = dict(data)
        data["flip_axes"] = tuple(data.get("flip_axes", ()))
        return cls(**data)


def training_transforms(patch_size: Sequence[int], config: AugmentationConfig,
                        keys: Sequence[str] = ("image", "label")) -> mt.Compose:
    """Augmentations of the items' ``keys`` (the label, when there is one, always gets nearest-neighbour)."""
    keys = list(keys)
    dims = len(patch_size)
    modes = tuple("nearest" if key == "label" else "bilinear" for key in keys)
    steps: list = [
        mt.SpatialPadd(keys, spatial_size=patch_size),
        mt.RandSpatialCropd(keys, roi_size=patch_size, random_size=False),
    ]
    for axis in config.flip_axes:
        steps.append(mt.RandFlipd(keys, prob=0.5, spatial_axis=axis))
    if config.rotate90:
        if patch_size[0] != patch_size[1]:
            raise DatasetError(f"rotate90 needs a patch square in its first two axes, got {tuple(patch_size)}")
        steps.append(mt.RandRotate90d(keys, prob=0.5, max_k=3, spatial_axes=(0, 1)))
    if config.affine_probability > 0:
        angle = math.radians(config.rotate_degrees)
        steps.append(mt.RandAffined(
            keys,
            prob=config.affine_probability,
            rotate_range=(angle,) * (3 if dims == 3 else 1),
            scale_range=(config.scale,) * dims,
            translate_range=(config.translate,) * dims,
            mode=modes,
            padding_mode="zeros",
        ))
    if config.intensity:
        steps += [
            mt.RandScaleIntensityd("image", factors=0.1, prob=0.3),
            mt.RandShiftIntensityd("image", offsets=0.1, prob=0.3),
            mt.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.2),
            mt.RandGaussianNoised("image", std=0.05, prob=0.15),
        ]
    if config.contrast_probability > 0:
        steps.append(mt.RandScaleIntensityFixedMeand("image", factors=0.4, preserve_range=True,
                                                     prob=config.contrast_probability))
    if config.blur_probability > 0:
        sigma = (0.5, 2.0)
        steps.append(mt.RandGaussianSmoothd("image", sigma_x=sigma, sigma_y=sigma, sigma_z=sigma,
                                            prob=config.blur_probability))
    steps.append(mt.EnsureTyped(keys, track_meta=False))
    return mt.Compose(steps)
