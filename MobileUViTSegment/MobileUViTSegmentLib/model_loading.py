"""Build a card's network and load its verified weights."""

from __future__ import annotations

from typing import Optional

import torch

from .card import ModelCard
from .errors import WeightsError
from .models import create_model
from .progress import CancelToken, ProgressCallback, ignore_progress
from .weights import load_state_dict
from .weights_cache import ensure_weights


def build_network(card: ModelCard) -> torch.nn.Module:
    return create_model(card.architecture, **card.architecture_config)


def load_network(card: ModelCard, device: torch.device, progress: ProgressCallback = ignore_progress,
                 cancel: Optional[CancelToken] = None) -> torch.nn.Module:
    """The card's network with its weights, in eval mode on ``device``; refuses unverified weights.

    Weights not beside the card are taken from the cache, or downloaded into it first when the card names a URL
    (``progress`` and ``cancel`` then follow the download).
    """
    path = ensure_weights(card, progress=progress, cancel=cancel)
    network = build_network(card)
    state = load_state_dict(path)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise WeightsError(f"weights {path.name} do not fit architecture {card.architecture}: "
                           f"{first}") from error
    return network.to(device).eval()
