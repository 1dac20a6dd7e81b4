"""Network evaluation on prepared arrays: 3D sliding window (MONAI, Gaussian blending) and 2D slice batches.

Both return class probabilities on the array's grid. The activation follows the network's output channels, not a card
field: a single-logit (binary) network gets a sigmoid and a two-channel (background, foreground) result, so the
argmax downstream is "sigmoid > 0.5" for it and softmax argmax for every multi-class network.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from ..progress import CancelToken

FractionCallback = Callable[[float], None]

# How a 2D input is resized to the network's input size and back; 2D training prepares its pictures the same way.
INPUT_RESIZE = {"mode": "bilinear", "align_corners": False}


def _to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        foreground = torch.sigmoid(logits)
        return torch.cat([1 - foreground, foreground], dim=1)
    return torch.softmax(logits, dim=1)


def count_windows(image_size: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """Number of windows MONAI's sliding window visits (used only to report progress)."""
    total = 1
    for size, roi in zip(image_size, roi_size):
        if size > roi:  # smaller axes are padded to one window
            interval = max(int(roi * (1 - overlap)), 1)
            total *= math.ceil((size - roi) / interval) + 1
    return total


def autocast_context(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def sliding_window_probabilities(
    model: torch.nn.Module,
    array: np.ndarray,
    roi_size: Sequence[int],
    *,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
    device: torch.device = torch.device("cpu"),
    amp: bool = True,
    on_fraction: Optional[FractionCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """(channels, x, y, z) array -> (classes, x, y, z) float32 probabilities."""
    inputs = torch.from_numpy(array[None]).to(device)
    total = max(count_windows(array.shape[1:], roi_size, overlap), 1)
    done = 0

    def predict(window: torch.Tensor) -> torch.Tensor:
        nonlocal done
        if cancel is not None:
            cancel.raise_if_cancelled()
        with autocast_context(device, amp):
            logits = model(window)
        done += window.shape[0]
        if on_fraction is not None:
            on_fraction(min(done / total, 1.0))
        return _to_probabilities(logits.float())

    probabilities = sliding_window_inference(inputs, roi_size, sw_batch_size, predict, overlap=overlap,
                                             mode="gaussian", device=torch.device("cpu"))
    return probabilities[0].numpy()


@torch.inference_mode()
def slice_batch_probabilities(
    model: torch.nn.Module,
    array: np.ndarray,
    input_size: Sequence[int],
    *,
    batch_size: int = 8,
    device: torch.device = torch.device("cpu"),
    amp: bool = True,
    on_fraction: Optional[FractionCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """2D model on (channels, x, y) or (channels, x, y, z): each slice is resized to ``input_size`` (the papers' 2D
    protocol), predicted, and its probabilities resized back."""
    volume = array if array.ndim == 4 else array[..., None]
    channels, width, height, depth = volume.shape
    slices = torch.from_numpy(np.ascontiguousarray(volume.transpose(3, 0, 1, 2)))  # (z, c, x, y)
    outputs = []
    for start in range(0, depth, batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        batch = slices[start:start + batch_size].to(device)
        resized = F.interpolate(batch, size=tuple(input_size), **INPUT_RESIZE)
        with autocast_context(device, amp):
            logits = model(resized).float()
        logits = F.interpolate(logits, size=(width, height), **INPUT_RESIZE)
        outputs.append(_to_probabilities(logits).cpu())
        if on_fraction is not None:
            on_fraction(min((start + batch.shape[0]) / depth, 1.0))
    probabilities = torch.cat(outputs).numpy().transpose(1, 2, 3, 0)  # (classes, x, y, z)
    return probabilities if array.ndim == 4 else probabilities[..., 0]
