"""Evaluation of a 2D model on a picture folder (BUSI, Kvasir-SEG layout), under two protocols at once.

Why two: the papers report IoU and Dice per image at the network's input size (picture and mask both resized to
256 x 256, sigmoid > 0.5, no post-processing), averaged over images; that is the figure to set beside theirs. A user,
though, gets the result on the picture's own pixel grid, with the card's post-processing; that is what ``segment``
writes and what the other columns measure (Dice, IoU, HD95 in pixels, since pictures carry no spacing). The
model-space figure here is computed exactly as the trainer's validation computes it, so a card's training log and
its ``evaluate`` figure agree.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from .errors import DatasetError
from .evaluation import CaseEvaluation
from .image_io import read_image
from .inference.engine import SegmentationOptions, Segmenter
from .inference.predictor import slice_batch_probabilities
from .metrics import score_labels
from .spatial import array_to_image
from .training.dataset_folder import Case
from .training.image_folder import prepare_picture_case, read_mask
from .training.tasks import overlap_per_class

PATCH_PROTOCOL = ("picture and mask resized to the card's patch size (mask nearest-neighbour), sigmoid > 0.5 or "
                  "argmax, no post-processing, Dice and IoU per image averaged over images (the papers' protocol)")


def patch_protocol_scores(segmenter: Segmenter, case: Case) -> dict[int, tuple[float, float]]:
    """(Dice, IoU) per label value at the card's patch size, as the trainer validates."""
    card = segmenter.card
    array, label = prepare_picture_case(case, card.input, len(card.labels))
    probabilities = slice_batch_probabilities(segmenter.network, array, card.input.patch_size,
                                              device=segmenter.device, amp=segmenter.device.type == "cuda")
    dice, iou = overlap_per_class(probabilities.argmax(0), label, card.num_classes)
    return {label_spec.value: (dice[index], iou[index]) for index, label_spec in enumerate(card.labels)}


def evaluate_pictures(segmenter: Segmenter, cases: list[Case], *,
                      options: SegmentationOptions = SegmentationOptions(),
                      on_case: Optional[Callable[[CaseEvaluation], None]] = None) -> list[CaseEvaluation]:
    """Each picture segmented as ``segment`` does and scored on its own grid, plus its papers'-protocol scores."""
    card = segmenter.card
    values = [label.value for label in card.labels]
    evaluations = []
    for case in cases:
        if case.label is None:
            raise DatasetError(f"{case.image.name} has no mask in masks/, so it cannot be evaluated")
        started = time.perf_counter()
        result = segmenter.segment(read_image(case.image), options=options, name=case.image.name)
        seconds = time.perf_counter() - started
        mask = read_mask(case.label, len(card.labels))
        if mask.shape != tuple(result.labels.GetSize()):
            raise DatasetError(f"mask {case.label.name} is {'x'.join(map(str, mask.shape))} but its picture is "
                               f"{'x'.join(map(str, result.labels.GetSize()))}")
        reference = array_to_image(mask.astype(np.uint8), result.labels, sitk.sitkUInt8)
        evaluation = CaseEvaluation(case.name, score_labels(result.labels, reference, values), round(seconds, 3),
                                    patch_scores=patch_protocol_scores(segmenter, case))
        evaluations.append(evaluation)
        if on_case is not None:
            on_case(evaluation)
    return evaluations
