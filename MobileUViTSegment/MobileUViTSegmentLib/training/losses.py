"""Training losses a recipe names (``training.loss``), built for the network's output layout.

* ``dice_ce``: MONAI DiceCE with softmax over background + one channel per label (the UNETR/BTCV recipe Mobile
  U-ViT 3D follows; the default, and what the shipped model was trained with);
* ``bce_dice``: 0.5 * BCEWithLogits + (1 - soft Dice) on a single logit, the 2D recipe of Mobile U-ViT and SRSNet
  (soft Dice per sample with smoothing 1e-5, averaged over the batch, as their ``BCEDiceLoss``);
* ``mse``: mean squared error between the output and the (normalised) input, the reconstruction task.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from ..errors import DatasetError

LOSSES = ("dice_ce", "bce_dice", "mse")
SOFT_DICE_SMOOTHING = 1e-5


class BCEDiceLoss(nn.Module):
    """0.5 * BCEWithLogits + (1 - soft Dice) for (N, 1, ...) logits and {0, 1} targets of the same shape."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        probability, truth = torch.sigmoid(logits).flatten(1), target.flatten(1)
        dice = (2 * (probability * truth).sum(1) + SOFT_DICE_SMOOTHING) / (
            probability.sum(1) + truth.sum(1) + SOFT_DICE_SMOOTHING)
        return 0.5 * bce + (1 - dice.mean())


def build_loss(name: str, out_channels: int, num_classes: int) -> nn.Module:
    """The loss ``name`` for a network with ``out_channels`` outputs segmenting ``num_classes`` (with background)."""
    if name == "dice_ce":
        if out_channels != num_classes:
            raise DatasetError(f"loss dice_ce needs one output channel per class ({num_classes}, background "
                               f"included) but the architecture has out_channels {out_channels}; use bce_dice for "
                               "a single-logit model")
        return DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    if name == "bce_dice":
        if out_channels != 1 or num_classes != 2:
            raise DatasetError(f"loss bce_dice is for single-logit binary models (out_channels 1, one label); this "
                               f"one has out_channels {out_channels} and {num_classes - 1} labels")
        return BCEDiceLoss()
    if name == "mse":
        return nn.MSELoss()
    raise DatasetError(f"unknown loss {name!r} in recipe; known: {', '.join(LOSSES)}")
