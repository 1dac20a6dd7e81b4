"""A small 2D model card for tests: a grey, single-logit Mobile U-ViT whose head is zeroed and biased, so that it marks
every pixel foreground (positive bias) or none (negative bias) and every expected figure follows from the input."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.weights import save_state_dict

LESION = {"value": 1, "name": "lesion", "color": [200, 60, 60],
          "terminology": {"category": {"scheme": "SCT", "value": "49755003",
                                       "meaning": "Morphologically Altered Structure"},
                          "type": {"scheme": "SCT", "value": "4147007", "meaning": "Mass"}}}


def write_card(folder: Path, *, head_bias: float = 0.0, kind: str | None = None, modality: str = "US") -> Path:
    """A grey single-logit 2D Mobile U-ViT card; ``head_bias`` pushes every logit up or down."""
    torch.manual_seed(0)
    network = create_model("mobileuvit_s", spatial_dims=2, in_channels=1, out_channels=1)
    with torch.no_grad():
        network.head.weight.zero_()
        network.head.bias.fill_(head_bias)
    card = {"id": "grey-2d", "version": "1.0.0", "title": "t", "description": "t", "task": "t", "modality": modality,
            "labels": [] if kind == "reconstruction" else [LESION],
            "architecture": {"name": "mobileuvit_s", "config": {"spatial_dims": 2, "in_channels": 1,
                                                                 "out_channels": 1}},
            "input": {"spatial_dims": 2, "channels": 1, "spacing": None, "orientation": None,
                      "intensity": {"method": "unit"}, "patch_size": [64, 64]},
            "inference": {"postprocessing": {"largest_component": False, "fill_holes": False}},
            "weights": save_state_dict(network.state_dict(), folder / "grey-2d.safetensors").to_dict(),
            "licenses": {"weights": "t", "training_data": "t"}, "training": {}, "metrics": {}}
    if kind:
        card["kind"] = kind
    path = folder / "grey-2d.card.json"
    path.write_text(json.dumps(card))
    return path
