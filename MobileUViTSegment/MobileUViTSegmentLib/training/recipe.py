"""A training recipe: the card template of the model to produce plus the training hyper-parameters.

Recipes are JSON files (``{"card": {...}, "training": {...}}``); the shipped models' recipes live in
``Resources/Models/recipes``. Without a recipe, ``train`` derives one from the dataset: for volumes, labels from
dataset.json, the median spacing, a patch that covers the median case, z-score (MR) or a soft-tissue window (CT); for
2D pictures, the papers' protocol (256 x 256 inputs, a single logit with BCE + Dice, SGD with poly decay, 90-degree
rotations and flips).

``training`` settings beyond the hyper-parameters (all optional; the defaults are what recipes meant before these
settings existed): ``task`` ``segmentation`` | ``reconstruction`` (the network learns to reproduce its input, MSE);
``loss`` ``dice_ce`` | ``bce_dice`` (see :mod:`.losses`); ``optimizer`` ``adamw`` (warm-up + cosine) | ``sgd``
(momentum, poly decay; see :mod:`.schedules`). A recipe that names ``sgd`` without ``learning_rate`` or
``weight_decay`` gets the papers' 0.01 and 1e-4.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from statistics import median
from typing import Any, Optional

import SimpleITK as sitk

from ..errors import DatasetError
from .augment import AugmentationConfig
from .dataset_folder import VolumeDataset
from .image_folder import ImageFolderDataset
from .losses import LOSSES
from .schedules import OPTIMIZER_DEFAULTS, OPTIMIZERS

TASKS = ("segmentation", "reconstruction")

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
    gradient_clip: Optional[float] = 12.0  # null: no clipping (the 2D papers do not clip)
    validation_fraction: float = 0.2
    validation_every: int = 5
    seed: int = 0
    weights_dtype: str = "float16"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    task: str = "segmentation"
    loss: str = "dice_ce"
    optimizer: str = "adamw"
    momentum: float = 0.9  # sgd only
    poly_power: float = 0.9  # sgd only

    def __post_init__(self):
        for name, value, known in (("task", self.task, TASKS), ("loss", self.loss, LOSSES),
                                   ("optimizer", self.optimizer, OPTIMIZERS)):
            if value not in known:
                raise DatasetError(f"unknown {name} {value!r} in recipe; known: {', '.join(known)}")
        if (self.task == "reconstruction") != (self.loss == "mse"):
            raise DatasetError(f"task {self.task} cannot use loss {self.loss}: reconstruction trains with mse, "
                               "segmentation with dice_ce or bce_dice")

    @classmethod
    def from_dict(cls, data: dict) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise DatasetError(f"unknown training settings in recipe: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["augmentation"] = AugmentationConfig.from_dict(data.get("augmentation", {}))
        if data.get("task") == "reconstruction":
            data.setdefault("loss", "mse")
        for key, value in OPTIMIZER_DEFAULTS.get(data.get("optimizer", "adamw"), {}).items():
            data.setdefault(key, value)
        return cls(**data)

    @property
    def is_reconstruction(self) -> bool:
        return self.task == "reconstruction"

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
    def from_dataset(cls, dataset: VolumeDataset | ImageFolderDataset, model_id: str) -> Recipe:
        if isinstance(dataset, ImageFolderDataset):
            return cls.from_picture_dataset(dataset, model_id)
        images = [sitk.ReadImage(str(case.image)) for case in dataset.cases[:50]]
        spacing = [round(median(image.GetSpacing()[axis] for image in images), 3) for axis in range(3)]
        extent = [median(image.GetSize()[axis] * image.GetSpacing()[axis] / spacing[axis] for image in images)
                  for axis in range(3)]
        patch = [min(96, max(32, 16 * -(-int(size) // 16))) for size in extent]
        is_ct = dataset.modality.upper() == "CT"
        labels = _generic_labels(dataset.labels)
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

    @classmethod
    def from_picture_dataset(cls, dataset: ImageFolderDataset, model_id: str) -> Recipe:
        """The papers' 2D protocol on ``dataset``: grey or RGB as most of its pictures are."""
        components = [_components(case.image) for case in dataset.cases[:50]]
        channels = 3 if sum(count >= 3 for count in components) > len(components) / 2 else 1
        labels = _generic_labels(dataset.labels)
        binary = len(labels) == 1
        modality = dataset.modality.upper()
        card = {
            "id": model_id, "version": "1.0.0", "title": model_id,
            "description": f"Trained with MobileUViTSegment on {dataset.folder.name}.",
            "task": f"segmentation of {', '.join(label['name'] for label in labels)}",
            "modality": modality if modality in ("MR", "CT", "US", "ES", "XC", "PT") else "OT",
            "labels": labels,
            "architecture": {"name": "mobileuvit_s",
                             "config": {"spatial_dims": 2, "in_channels": channels,
                                        "out_channels": 1 if binary else len(labels) + 1}},
            "input": {"spatial_dims": 2, "channels": channels, "spacing": None, "orientation": None,
                      "intensity": {"method": "unit"}, "patch_size": [256, 256]},
            "inference": {"postprocessing": {"largest_component": False, "fill_holes": False}},
            "licenses": {"weights": "same terms as the training data", "training_data": "see the dataset"},
        }
        training = TrainingConfig.from_dict({
            "epochs": 300, "batch_size": 8, "optimizer": "sgd", "loss": "bce_dice" if binary else "dice_ce",
            "gradient_clip": None, "seed": 41,
            "augmentation": {"flip_axes": [0, 1], "rotate90": True, "affine_probability": 0.0, "intensity": False},
        })
        return cls(card=card, training=training)


def _components(path: Path) -> int:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetNumberOfComponents()


def _generic_labels(names: dict[int, str]) -> list[dict]:
    return [{"value": value, "name": name, "color": list(PALETTE[(value - 1) % len(PALETTE)]),
             "terminology": {"category": GENERIC_CATEGORY, "type": GENERIC_TYPE}}
            for value, name in sorted(names.items()) if value != 0]
