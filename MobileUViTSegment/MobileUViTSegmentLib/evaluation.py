"""Evaluation of a model on labelled cases: per case and per label Dice, IoU and HD95, a summary, CSV and JSON.

The same function fills a model card's measured figures, so a card's numbers are exactly what ``evaluate``
reproduces.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk
import torch

from .card import ModelCard
from .image_io import read_image, write_text_atomically
from .inference.engine import SegmentationOptions, Segmenter
from .metrics import LabelScores, score_labels


@dataclass
class CaseEvaluation:
    case: str
    scores: dict[int, LabelScores]
    seconds: float
    # 2D pictures only: label value -> (Dice, IoU) at the card's patch size, the papers' protocol
    # (see picture_evaluation.py); empty for volumes.
    patch_scores: dict[int, tuple[float, float]] = field(default_factory=dict)


def evaluate_cases(segmenter: Segmenter, cases: list[tuple[str, Path, Path]], *,
                   options: SegmentationOptions = SegmentationOptions(),
                   on_case: Optional[Callable[[CaseEvaluation], None]] = None) -> list[CaseEvaluation]:
    values = [label.value for label in segmenter.card.labels]
    evaluations = []
    for name, image_path, label_path in cases:
        started = time.perf_counter()
        result = segmenter.segment(read_image(image_path), options=options, name=image_path.name)
        seconds = time.perf_counter() - started
        reference = sitk.Cast(read_image(label_path), sitk.sitkUInt8)
        evaluation = CaseEvaluation(name, score_labels(result.labels, reference, values), round(seconds, 3))
        evaluations.append(evaluation)
        if on_case is not None:
            on_case(evaluation)
    return evaluations


def _stats(values: list[float]) -> dict:
    finite = [value for value in values if not math.isnan(value)]
    if not finite:
        return {"mean": None, "std": None, "median": None, "undefined_cases": len(values)}
    return {"mean": round(float(np.mean(finite)), 4), "std": round(float(np.std(finite)), 4),
            "median": round(float(np.median(finite)), 4), "undefined_cases": len(values) - len(finite)}


def summarize(evaluations: list[CaseEvaluation], card: ModelCard, device: torch.device) -> dict:
    per_label = {}
    for label in card.labels:
        per_label[label.name] = {metric: _stats([getattr(e.scores[label.value], metric) for e in evaluations])
                                 for metric in ("dice", "iou", "hd95")}
    label_means = {metric: [per_label[label.name][metric]["mean"] for label in card.labels]
                   for metric in ("dice", "iou", "hd95")}
    summary = {
        "cases": len(evaluations),
        "per_label": per_label,
        "mean_dice": round(float(np.mean(label_means["dice"])), 4),
        "mean_iou": round(float(np.mean(label_means["iou"])), 4),
        "mean_hd95_mm": (round(float(np.mean(label_means["hd95"])), 3)
                         if all(v is not None for v in label_means["hd95"]) else None),
        "seconds_per_case": round(float(np.mean([e.seconds for e in evaluations])), 3),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "postprocessing": "as the card says",
    }
    if evaluations and all(e.patch_scores for e in evaluations):
        for label in card.labels:
            per_label[label.name]["dice_at_patch_size"] = _stats([e.patch_scores[label.value][0] for e in evaluations])
            per_label[label.name]["iou_at_patch_size"] = _stats([e.patch_scores[label.value][1] for e in evaluations])
        summary["mean_dice_at_patch_size"] = round(float(np.mean(
            [per_label[label.name]["dice_at_patch_size"]["mean"] for label in card.labels])), 4)
        summary["mean_iou_at_patch_size"] = round(float(np.mean(
            [per_label[label.name]["iou_at_patch_size"]["mean"] for label in card.labels])), 4)
        summary["hd95_unit"] = "pixels" if card.input.spacing is None else "mm"
    return summary


def write_per_case_csv(evaluations: list[CaseEvaluation], card: ModelCard, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        hd95_column = "hd95_px" if card.input.spacing is None else "hd95_mm"  # pictures carry no spacing
        writer.writerow(["case", "label", "dice", "iou", hd95_column, "reference_voxels", "predicted_voxels",
                         "seconds", "dice_at_patch_size", "iou_at_patch_size"])
        for evaluation in evaluations:
            for label in card.labels:
                score = evaluation.scores[label.value]
                patch = evaluation.patch_scores.get(label.value)
                writer.writerow([evaluation.case, label.name, f"{score.dice:.4f}", f"{score.iou:.4f}",
                                 "" if math.isnan(score.hd95) else f"{score.hd95:.3f}", score.reference_voxels,
                                 score.predicted_voxels, evaluation.seconds,
                                 *([f"{patch[0]:.4f}", f"{patch[1]:.4f}"] if patch else ["", ""])])


def write_summary(summary: dict, path: Path) -> None:
    write_text_atomically(path, json.dumps(summary, indent=2) + "\n")


def record_in_card(card_path: Path, subset: str, summary: dict, command: str) -> None:
    """Store the figures and the command that measured them in a card file (model developers only)."""
    data = json.loads(card_path.read_text(encoding="utf-8"))
    data.setdefault("metrics", {})[subset] = {**summary, "command": command}
    timing_key = "cpu_seconds_per_case" if summary["device"] == "cpu" else "gpu_seconds_per_case"
    data.setdefault("timings", {})[timing_key] = summary["seconds_per_case"]
    data["timings"][f"{timing_key}_measured_on"] = f"{summary['machine']}, {summary['threads']} threads"
    write_text_atomically(card_path, json.dumps(data, indent=2) + "\n")  # never a half-written card
