"""The shipped HyMamba-small recipes shrunk to a tiny network and window (same structure, same keys), so MambaMIM
pre-training and fine-tuning run end to end in seconds."""

from __future__ import annotations

import json
from pathlib import Path

from MobileUViTSegmentLib.resources import models_dir

ARCHITECTURE = {"channels": [4, 8, 16, 24, 48], "d_state": 4, "mamba_depth": 1}
PATCH = [32, 48, 32]
SEGMENTATION_RECIPE = models_dir() / "recipes" / "hippocampus-mri-hymamba-small.recipe.json"


def tiny_recipes(folder: Path) -> tuple[Path, Path]:
    """(pre-training recipe, segmentation recipe) written into ``folder``."""
    pretrain = {
        "id": "tiny-mambamim",
        "architecture": {"name": "hymamba_small", "config": {**ARCHITECTURE, "img_size": PATCH}},
        "input": {"spatial_dims": 3, "channels": 1, "spacing": [1.0, 1.0, 1.0], "orientation": "RAS",
                  "intensity": {"method": "zscore"}, "patch_size": PATCH},
        "pretraining": {"epochs": 1, "batch_size": 2, "learning_rate": 0.003, "warmup_epochs": 1, "seed": 0},
    }
    segmentation = json.loads(SEGMENTATION_RECIPE.read_text(encoding="utf-8"))
    segmentation["card"]["architecture"]["config"].update({**ARCHITECTURE, "img_size": PATCH})
    segmentation["card"]["input"]["patch_size"] = PATCH
    paths = folder / "pretrain.json", folder / "segmentation.json"
    for path, recipe in zip(paths, (pretrain, segmentation)):
        path.write_text(json.dumps(recipe), encoding="utf-8")
    return paths
