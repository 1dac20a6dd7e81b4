"""Build a card's network and load its verified weights."""

from __future__ import annotations

import torch

from .card import ModelCard
from .errors import WeightsError
from .models import create_model
from .weights import load_state_dict, verify_weights


def build_network(card: ModelCard) -> torch.nn.Module:
    return create_model(card.architecture, **card.architecture_config)


def load_network(card: ModelCard, device: torch.device) -> torch.nn.Module:
    """The card's network with its weights, in eval mode on ``device``; refuses unverified weights."""
    verify_weights(card.weights_path, card.weights)
    network = build_network(card)
    state = load_state_dict(card.weights_path)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise WeightsError(f"weights {card.weights_path.name} do not fit architecture {card.architecture}: "
                           f"{first}") from error
    return network.to(device).eval()
