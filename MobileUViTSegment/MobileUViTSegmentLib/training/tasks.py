"""What a training run optimises and how it is validated: segmentation (labels) or reconstruction (the input itself).

The trainer's loop is the same for both; a task decides what a training item holds, the loss and the validation
figures. Validation runs in model space (the prepared arrays, no post-processing): volumes through the same sliding
window the engine uses, 2D pictures (already at the network's input size) through the engine's 2D path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..errors import DatasetError
from ..inference.predictor import autocast_context, slice_batch_probabilities, sliding_window_probabilities
from ..models import create_model
from ..progress import CancelToken
from .losses import build_loss


@dataclass
class PreparedCase:
    name: str
    image: np.ndarray  # (channels, *spatial) normalised
    label: Optional[np.ndarray]  # (*spatial) uint8; None for reconstruction


def overlap_per_class(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[list[float], list[float]]:
    """Dice and IoU of every foreground class; a class absent from both counts as a perfect 1.0."""
    dice, iou = [], []
    for value in range(1, num_classes):
        predicted, expected = prediction == value, target == value
        intersection = int((predicted & expected).sum())
        total = int(predicted.sum() + expected.sum())
        dice.append(1.0 if total == 0 else 2 * intersection / total)
        iou.append(1.0 if total == 0 else intersection / (total - intersection))
    return dice, iou


def dice_per_class(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> list[float]:
    return overlap_per_class(prediction, target, num_classes)[0]


class SegmentationTask:
    """Labels from masks; DiceCE or BCE + Dice; validation Dice and IoU per label (argmax, or sigmoid > 0.5)."""

    name = "segmentation"
    needs_labels = True
    keys = ("image", "label")
    headline = "validation_mean_dice"
    higher_is_better = True

    def __init__(self, loss: str, out_channels: int, num_classes: int, patch_size: tuple[int, ...]):
        self.loss_function = build_loss(loss, out_channels, num_classes)
        self.single_logit = out_channels == 1
        self.num_classes = num_classes
        self.patch_size = patch_size

    def item(self, case: PreparedCase) -> dict:
        return {"image": case.image, "label": case.label[None]}

    def loss(self, outputs: torch.Tensor, batch: dict, inputs: torch.Tensor) -> torch.Tensor:
        return self.loss_function(outputs, batch["label"].to(outputs.device))

    def probabilities(self, network: torch.nn.Module, case: PreparedCase, device: torch.device) -> np.ndarray:
        amp = device.type == "cuda"
        if len(self.patch_size) == 2:
            return slice_batch_probabilities(network, case.image, self.patch_size, device=device, amp=amp)
        return sliding_window_probabilities(network, case.image, self.patch_size, overlap=0.5, device=device, amp=amp)

    def validate(self, network: torch.nn.Module, cases: list[PreparedCase], device: torch.device,
                 cancel: CancelToken) -> dict:
        dice, iou = [], []
        for case in cases:
            cancel.raise_if_cancelled()
            scores = overlap_per_class(self.probabilities(network, case, device).argmax(0), case.label,
                                       self.num_classes)
            dice.append(scores[0])
            iou.append(scores[1])
        dice_means = [float(value) for value in np.mean(dice, axis=0)]
        iou_means = [float(value) for value in np.mean(iou, axis=0)]
        return {"validation_dice": dice_means, "validation_mean_dice": float(np.mean(dice_means)),
                "validation_iou": iou_means, "validation_mean_iou": float(np.mean(iou_means))}

    @staticmethod
    def describe(record: dict) -> str:
        return (f"validation Dice {record['validation_mean_dice']:.4f} "
                f"{[round(value, 4) for value in record['validation_dice']]} "
                f"IoU {record['validation_mean_iou']:.4f}")


class ReconstructionTask:
    """The network reproduces its own normalised input (SRSNet's R); MSE for training and validation."""

    name = "reconstruction"
    needs_labels = False
    keys = ("image",)
    headline = "validation_mse"
    higher_is_better = False

    def __init__(self, patch_size: tuple[int, ...]):
        self.loss_function = build_loss("mse", 0, 0)
        self.patch_size = patch_size

    @staticmethod
    def item(case: PreparedCase) -> dict:
        return {"image": case.image}

    def loss(self, outputs: torch.Tensor, batch: dict, inputs: torch.Tensor) -> torch.Tensor:
        if outputs.shape != inputs.shape:
            raise DatasetError(f"a reconstruction network must output its input's shape {tuple(inputs.shape[1:])}, "
                               f"got {tuple(outputs.shape[1:])}; set out_channels to the input channels")
        return self.loss_function(outputs.float(), inputs.float())

    @torch.inference_mode()
    def validate(self, network: torch.nn.Module, cases: list[PreparedCase], device: torch.device,
                 cancel: CancelToken) -> dict:
        errors = []
        for case in cases:
            cancel.raise_if_cancelled()
            inputs = torch.from_numpy(case.image[None]).to(device)
            with autocast_context(device, True):
                if len(self.patch_size) == 2:  # 2D pictures are prepared at the input size: one forward pass
                    outputs = network(inputs)
                else:
                    outputs = sliding_window_inference(inputs, self.patch_size, 2, network, overlap=0.5,
                                                       mode="gaussian")
            errors.append(float(torch.mean((outputs.float() - inputs.float()) ** 2)))
        return {"validation_mse": float(np.mean(errors))}

    @staticmethod
    def describe(record: dict) -> str:
        return f"validation MSE {record['validation_mse']:.6f}"


def build_task(training_config, card: dict) -> SegmentationTask | ReconstructionTask:
    patch_size = tuple(card["input"]["patch_size"])
    if training_config.task == "reconstruction":
        return ReconstructionTask(patch_size)
    return SegmentationTask(training_config.loss, _out_channels(card), len(card["labels"]) + 1, patch_size)


def _out_channels(card: dict) -> int:
    """The architecture's output channels: from its config, else from one forward pass of its default."""
    architecture = card["architecture"]
    config = architecture.get("config", {})
    if "out_channels" in config:
        return int(config["out_channels"])
    network = create_model(architecture["name"], **config).eval()
    with torch.no_grad():
        return int(network(torch.zeros(1, card["input"]["channels"], *card["input"]["patch_size"])).shape[1])
