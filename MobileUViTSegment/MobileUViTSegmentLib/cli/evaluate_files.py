"""``evaluate --prediction FILE --reference FILE``: compare two segmentation files, no model, no PyTorch.

The scores are :func:`..comparison.compare_segmentations`' (two label maps, value by value) or
:func:`..comparison.compare_segments`' (when a .seg.nrrd is involved: segments paired by name, see
:mod:`..named_segments`), both built on the same :func:`..metrics.score_labels` the model mode uses, so a file
pair scores exactly as ``evaluate`` scores the model's output. Written: ``OUTPUT/per_label.csv`` (the comparison
table, the Slicer panel's columns) and ``OUTPUT/summary.json`` (the model mode's keys where they apply: ``per_label``,
``mean_dice``, ``mean_iou``, ``mean_hd95_mm``, computed and rounded as there).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Optional

import numpy as np

from ..card import ModelCard
from ..catalog import Catalog
from ..comparison import (
    COMPARED,
    NOT_IN_REFERENCE,
    ONLY_IN_REFERENCE,
    SegmentComparison,
    compare_segmentations,
    compare_segments,
    write_comparison_csv,
)
from ..errors import InputError
from ..image_io import write_text_atomically
from ..named_segments import NoCommonNames
from ..segmentation_files import SegmentationFile, label_names, read_segmentation_file, recorded_model_card
from ..tables import rounded, text_table

PER_LABEL_FILE = "per_label.csv"
SUMMARY_FILE = "summary.json"
# Options that only mean something when a model runs on a dataset: refused with the two-file mode, not ignored.
MODEL_RUN_OPTIONS = (("split", "--split"), ("id_list", "--id-list"), ("record_in_card", "--record-in-card"),
                     ("no_postprocess", "--no-postprocess"), ("threads", "--threads"))


def is_file_mode(args: argparse.Namespace) -> bool:
    """Whether the call compares two files; refuses every mix of the two modes with a sentence saying what to do."""
    files = args.prediction is not None or args.reference is not None
    if args.dataset is not None and files:
        raise InputError("give either DATASET (to run a model on labelled cases) or --prediction and --reference "
                         "(to compare two segmentation files), not both")
    if not files:
        if args.dataset is None:
            raise InputError("give a DATASET folder to evaluate a model, or --prediction and --reference to "
                             "compare two segmentation files")
        return False
    if args.prediction is None or args.reference is None:
        raise InputError("--prediction and --reference go together: give both segmentation files to compare")
    for attribute, option in MODEL_RUN_OPTIONS:
        if getattr(args, attribute, None):
            raise InputError(f"{option} applies when a model runs on a DATASET, not when comparing two files")
    return True


def compare_files(prediction: SegmentationFile, reference: SegmentationFile,
                  card: Optional[ModelCard] = None) -> list[SegmentComparison]:
    """Two label maps value by value; otherwise segment by segment, paired by name."""
    reference = reference.on_grid(prediction.layers[0], f"the prediction {prediction.path.name}",
                                  f"the reference {reference.path.name}")
    if not prediction.is_seg_nrrd and not reference.is_seg_nrrd:
        names = label_names([*prediction.present_values(), *reference.present_values()], card)
        if not names:
            raise InputError("neither label map holds a segment (every voxel is 0); give --model to list the "
                             "labels the prediction should have found")
        return compare_segmentations(prediction.layers[0], reference.layers[0], names)
    try:
        return compare_segments(prediction.segments(card, reference.present_values()),
                                reference.segments(card, prediction.present_values()))
    except NoCommonNames as error:
        if card is not None:
            raise
        raise InputError(f"{error}; give --model to name the label map's values as the model does") from error


def _number(value: Any) -> Any:
    """JSON has no NaN: undefined figures are null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def summarize_comparison(rows: Sequence[SegmentComparison], prediction: str, reference: str) -> dict[str, Any]:
    compared = [row for row in rows if row.status == COMPARED]
    hd95 = [row.hd95 for row in compared]

    def mean(values: list[float], decimals: int) -> Optional[float]:
        # As the model mode's summary: each label's figure rounded to 4 decimals, then their mean rounded.
        return round(float(np.mean([round(value, 4) for value in values])), decimals) if values else None

    return {
        "prediction": prediction,
        "reference": reference,
        "labels_compared": len(compared),
        "per_label": {row.name: {key: _number(value) for key, value in asdict(row).items() if key != "name"}
                      for row in rows},
        "mean_dice": mean([row.dice for row in compared], 4),
        "mean_iou": mean([row.iou for row in compared], 4),
        "mean_hd95_mm": mean(hd95, 3) if not any(math.isnan(value) for value in hd95) else None,
        "not_in_reference": [row.name for row in rows if row.status == NOT_IN_REFERENCE],
        "only_in_reference": [row.name for row in rows if row.status == ONLY_IN_REFERENCE],
    }


def format_comparison(rows: Sequence[SegmentComparison]) -> str:
    header = ["segment", "Dice", "IoU", "HD95 mm", "volume mL", "reference mL", "difference mL", "relative",
              "status"]
    lines = [[row.name, rounded(row.dice, 4), rounded(row.iou, 4), rounded(row.hd95, 2), rounded(row.volume_ml, 3),
              rounded(row.reference_volume_ml, 3), rounded(row.volume_difference_ml, 3),
              "-" if math.isnan(row.relative_volume_difference) else f"{row.relative_volume_difference:+.1%}",
              row.status] for row in rows]
    return text_table(header, lines)


def run_files(args: argparse.Namespace) -> int:
    prediction = read_segmentation_file(args.prediction, "prediction")
    reference = read_segmentation_file(args.reference, "reference")
    card = Catalog().get(args.model) if args.model else recorded_model_card([prediction, reference])
    if card is not None and not args.model and not (prediction.is_seg_nrrd and reference.is_seg_nrrd):
        print(f"label map values named as model {card.id} names them (recorded in the .seg.nrrd)")
    rows = compare_files(prediction, reference, card)
    summary = summarize_comparison(rows, str(args.prediction), str(args.reference))
    args.output.mkdir(parents=True, exist_ok=True)
    write_comparison_csv(rows, args.output / PER_LABEL_FILE)
    write_text_atomically(args.output / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    print(format_comparison(rows))
    hd95 = "undefined" if summary["mean_hd95_mm"] is None else f"{summary['mean_hd95_mm']:.2f} mm"
    print(f"mean Dice {summary['mean_dice']:.4f}, IoU {summary['mean_iou']:.4f}, HD95 {hd95} over "
          f"{summary['labels_compared']} labels")
    print(f"written {args.output / PER_LABEL_FILE} and {args.output / SUMMARY_FILE}")
    return 0
