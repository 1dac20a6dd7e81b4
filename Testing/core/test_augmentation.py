"""The opt-in device-shift augmentations: off unless a recipe asks; when on, they change the picture, not the mask."""

from __future__ import annotations

import numpy as np
import pytest
from monai import transforms as mt

from MobileUViTSegmentLib.training.augment import AugmentationConfig, training_transforms

PAPERS_2D = {"flip_axes": [0, 1], "rotate90": True, "affine_probability": 0.0, "intensity": False}


def _item(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    image = rng.random((3, 64, 64), dtype=np.float32)
    label = np.zeros((1, 64, 64), dtype=np.float32)
    label[:, 20:40, 16:48] = 1
    return {"image": image, "label": label}


def test_a_recipe_without_the_new_fields_keeps_its_pipeline():
    steps = training_transforms((64, 64), AugmentationConfig.from_dict(PAPERS_2D)).transforms
    assert not any(isinstance(step, (mt.RandGaussianSmoothd, mt.RandScaleIntensityFixedMeand)) for step in steps)


@pytest.mark.parametrize("field", ["contrast_probability", "blur_probability"])
def test_each_shift_changes_the_picture_keeps_its_range_and_leaves_the_mask_alone(field: str):
    config = AugmentationConfig.from_dict({**PAPERS_2D, field: 1.0})
    pipeline = training_transforms((64, 64), config)
    item = _item()
    changed = 0
    for seed in range(6):
        pipeline.set_random_state(seed)
        out = pipeline(dict(item))
        image, label = np.asarray(out["image"]), np.asarray(out["label"])
        assert set(np.unique(label)) == {0.0, 1.0} and label.sum() == item["label"].sum()
        assert image.min() >= -1e-6 and image.max() <= 1 + 1e-6
        # flips and quarter turns permute pixels, so compare what they cannot change: the sorted values
        changed += not np.allclose(np.sort(image, axis=None), np.sort(item["image"], axis=None), atol=1e-4)
    assert changed >= 5  # a factor or sigma drawn near zero may leave one draw nearly untouched


def test_blur_lowers_the_pixel_to_pixel_variation():
    pipeline = training_transforms((64, 64), AugmentationConfig.from_dict({**PAPERS_2D, "blur_probability": 1.0}))
    item = _item()
    pipeline.set_random_state(3)
    image = np.asarray(pipeline(dict(item))["image"])
    assert np.abs(np.diff(image, axis=-1)).mean() < 0.7 * np.abs(np.diff(item["image"], axis=-1)).mean()
