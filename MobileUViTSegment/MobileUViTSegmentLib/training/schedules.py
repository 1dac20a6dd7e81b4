"""Optimisers and learning-rate schedules a recipe names (``training.optimizer``).

* ``adamw``: AdamW, linear warm-up then cosine decay (the UNETR/BTCV recipe; the default, the shipped model's);
* ``sgd``: SGD with momentum 0.9 and poly decay lr * (1 - step / total) ** 0.9 per iteration, no warm-up (the 2D
  recipe of Mobile U-ViT and SRSNet).

The rate is a function of the global step alone, so a run resumed from a checkpoint continues the same schedule.
Only parameters that require a gradient are optimised: frozen sub-networks (SRSNet's reconstruction network, modules
kept only so official checkpoints load) are neither updated nor decayed.
"""

from __future__ import annotations

import math

import torch

from ..errors import DatasetError

OPTIMIZERS = ("adamw", "sgd")
# What a recipe that names the optimiser but not these settings gets: the papers' values.
OPTIMIZER_DEFAULTS = {"adamw": {"learning_rate": 1e-3, "weight_decay": 1e-5},
                      "sgd": {"learning_rate": 1e-2, "weight_decay": 1e-4}}


def trainable_parameters(network: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [parameter for parameter in network.parameters() if parameter.requires_grad]


def build_optimizer(name: str, network: torch.nn.Module, learning_rate: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    parameters = trainable_parameters(network)
    if not parameters:
        raise DatasetError("the network has no trainable parameter (all are frozen); there is nothing to train")
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    raise DatasetError(f"unknown optimizer {name!r} in recipe; known: {', '.join(OPTIMIZERS)}")


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, base: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to zero at ``total_steps``."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def poly_learning_rate(step: int, total_steps: int, base: float, power: float = 0.9) -> float:
    """``base * (1 - step / total_steps) ** power``: the rate of the ``step``-th iteration (0-based)."""
    return base * max(1 - step / max(total_steps, 1), 0.0) ** power


def scheduled_learning_rate(optimizer_name: str, step: int, total_steps: int, warmup_steps: int, base: float,
                            power: float = 0.9) -> float:
    if optimizer_name == "sgd":
        return poly_learning_rate(step, total_steps, base, power)
    return learning_rate_at(step, total_steps, warmup_steps, base)
