"""A training recipe: the card template of the model to produce plus the training hyper-parameters.

Recipes are JSON files (``{"card": {...}, "training": {...}}``); the shipped models' recipes live in
``Resources/Models/recipes``. Without a recipe, ``train`` derives one from the dataset: labels from dataset.json,
the median spacing, a patch that covers the median case, z-score (MR) or a soft-tissue window (CT).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from statistics import median
from typing import Any

import SimpleITK as sitk

from ..errors import DatasetError
from .augment import AugmentationConfig
from .dataset_folder import VolumeDataset

# Used for labels a dataset names but a recipe does not code: "Anatomical Structure" / "Anatomical structure".
GENERIC_CATEGORY = {"scheme": "SCT", "value": "123037004", "meaning": "Anatomical Structure"}
GENERIC_TYPE = {"scheme": "SCT", "value": "91723000", "meaning": "Anatomical structure"}
PALETTE = [(216, 101, 79), (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210), (220, 245, 20),
           (144, 238, 144), (230, 220, 70)]


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 100
    batch_size: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    warmup_epochs: int = 5
    gradient_clip: float = 12.0
    validation_fraction: float = 0.2
    validation_every: int = 5
    seed: int = 0
    weights_dtype: str = "float16"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise DatasetError(f"unknown training settings in recipe: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["augmentation"] = AugmentationConfig.from_dict(data.get("augmentation", {}))
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> TrainingConfig:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Recipe:
    card: dict
    training: TrainingConfig

    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"recipe {path} cannot be read as JSON: {error}") from error
        if "card" not in data:
            raise DatasetError(f"recipe {path} has no 'card' section")
        return cls(card=data["card"], training=TrainingConfig.from_dict(data.get("training", {})))

    @classmethod
    def from_dataset(cls, dataset: VolumeDataset, model_id: str) -> Recipe:
        images = [sitk.ReadImage(str(case.image)) for case in dataset.cases[:50]]
        spacing = [round(median(image.GetSpacing()[axis] for image in images), 3) for axis in range(3)]
        extent = [median(image.GetSize()[axis] * image.GetSpacing()[axis] / spacing[axis] for image in images)
                  for axis in range(3)]
        patch = [min(96, max(32, 16 * -(-int(size) // 16))) for size in extent]
        is_ct = dataset.modality.upper() == "CT"
        labels = []
        for value, name in sorted(dataset.labels.items()):
            if value == 0:
                continue
            labels.append({"value": value, "name": name, "color": list(PALETTE[(value - 1) % len(PALETTE)]),
                           "terminology": {"category": GENERIC_CATEGORY, "type": GENERIC_TYPE}})
        card = {
            "id": model_id, "version": "1.0.0", "title": model_id,
            "description": f"Trained with MobileUViTSegment on {dataset.folder.name}.",
            "task": f"segmentation of {', '.join(label['name'] for label in labels)}",
            "modality": "CT" if is_ct else "MR" if dataset.modality.upper() in ("MR", "MRI") else "OT",
            "labels": labels,
            "architecture": {"name": "mobileuvit_s",
                             "config": {"spatial_dims": 3, "in_channels": 1, "out_channels": len(labels) + 1}},
            "input": {"spatial_dims": 3, "channels": 1, "spacing": spacing, "orientation": "RAS",
                      "intensity": {"method": "window", "lower": -175.0, "upper": 250.0} if is_ct
                      else {"method": "zscore"},
                      "patch_size": patch},
            "licenses": {"weights": "same terms as the training data", "training_data": "see the dataset"},
        }
        return cls(card=card, training=TrainingConfig())
