"""Post-processing keeps each class's largest piece and fills enclosed holes; metrics match hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from MobileUViTSegmentLib.errors import InputError
from MobileUViTSegmentLib.metrics import score_labels
from MobileUViTSegmentLib.postprocessing import postprocess_labels


def image(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    result = sitk.GetImageFromArray(array.astype(np.uint8))
    result.SetSpacing(spacing)
    return result


def test_small_islands_are_removed_and_holes_filled_without_touching_other_classes():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:10, 2:10, 2:10] = 1
    labels[5:7, 5:7, 5:7] = 0       # enclosed hole in class 1
    labels[4, 4, 4] = 2             # class 2 voxel inside class 1: a hole for class 1, but not background
    labels[15:18, 15:18, 15:18] = 1  # a smaller island of class 1
    labels[12:16, 2:6, 2:6] = 2     # class 2's main body
    result = sitk.GetArrayFromImage(postprocess_labels(image(labels), [1, 2]))
    assert (result[5:7, 5:7, 5:7] == 1).all()
    assert (result[15:18, 15:18, 15:18] == 0).all()
    assert result[4, 4, 4] == 0  # the lone class-2 voxel is not class 2's largest piece
    assert (result[12:16, 2:6, 2:6] == 2).all()
    assert not result[0].any() and not result[:, 0].any()  # nothing appears at the border


def test_post_processing_can_be_switched_off():
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[1, 1, 1] = labels[5, 5, 5] = 1
    result = postprocess_labels(image(labels), [1], keep_largest=False, fill_holes=False)
    assert np.array_equal(sitk.GetArrayFromImage(result), labels)


def test_dice_iou_and_hd95_on_a_shifted_cube_in_millimetres():
    reference = np.zeros((40, 40, 40), np.uint8)
    reference[10:20, 10:20, 10:20] = 1
    predicted = np.zeros_like(reference)
    predicted[10:20, 10:20, 13:23] = 1  # shifted 3 voxels along x, where spacing is 2 mm
    scores = score_labels(image(predicted, (2, 1, 1)), image(reference, (2, 1, 1)), [1])[1]
    assert scores.dice == pytest.approx(0.7)
    assert scores.iou == pytest.approx(700 / 1300)
    assert scores.hd95 == pytest.approx(6.0)



def test_hd95_of_masks_that_reach_the_image_edge_measures_the_edge_as_their_surface():
    reference = np.ones((20, 20), np.uint8)  # a 2D picture filled by its mask: its surface is the picture's edge
    assert score_labels(image(reference, (1, 1)), image(reference, (1, 1)), [1])[1].hd95 == 0.0
    predicted = np.zeros_like(reference)
    predicted[:, :17] = 1  # three columns short of the right edge: no surface point is further than 3 from the other
    assert 0 < score_labels(image(predicted, (1, 1)), image(reference, (1, 1)), [1])[1].hd95 <= 3.0

def test_hd95_is_undefined_when_the_prediction_is_empty():
    reference = np.zeros((10, 10, 10), np.uint8)
    reference[2:5, 2:5, 2:5] = 1
    scores = score_labels(image(np.zeros_like(reference)), image(reference), [1])[1]
    assert scores.dice == 0 and math.isnan(scores.hd95)


def test_a_reference_on_another_grid_is_refused():
    with pytest.raises(InputError, match="size"):
        score_labels(image(np.zeros((4, 4, 4))), image(np.zeros((4, 4, 5))), [1])
