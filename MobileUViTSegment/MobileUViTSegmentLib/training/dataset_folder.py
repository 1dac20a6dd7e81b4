"""The training-data layout ``train`` reads, and the recorded train/validation split.

Volumes follow nnU-Net's raw layout::

    DATASET/dataset.json          {"labels": {"0": "background", "1": "...", ...}, "modality": {"0": "MRI"}, ...}
    DATASET/imagesTr/<case>.nii.gz       (nnU-Net's "<case>_0000.nii.gz" is accepted too)
    DATASET/labelsTr/<case>.nii.gz

Any format SimpleITK reads works in place of ``.nii.gz``. A split file is JSON ``{"train": [...], "validation":
[...]}`` of case names; ``train`` writes the one it used next to the model so that anyone can re-run it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import DatasetError
from ..image_io import VOLUME_SUFFIXES, full_suffix, stem, write_text_atomically


@dataclass(frozen=True)
class Case:
    name: str
    image: Path
    label: Optional[Path]


@dataclass(frozen=True)
class VolumeDataset:
    folder: Path
    cases: tuple[Case, ...]
    labels: dict[int, str]
    modality: str
    description: dict

    def case(self, name: str) -> Case:
        for case in self.cases:
            if case.name == name:
                return case
        raise DatasetError(f"case {name!r} is not in {self.folder}")


def case_name(path: Path) -> str:
    """The case a volume file belongs to: its name without suffix and without nnU-Net's channel tag ``_0000``."""
    name = stem(path)
    return name[:-5] if name.endswith("_0000") else name


def read_volume_dataset(folder: str | Path) -> VolumeDataset:
    folder = Path(folder)
    description_file = folder / "dataset.json"
    if not description_file.is_file():
        raise DatasetError(f"{folder} has no dataset.json (expected the nnU-Net layout: dataset.json, imagesTr/, "
                           "labelsTr/)")
    try:
        description = json.loads(description_file.read_text(encoding="utf-8"))
        labels = {int(value): str(name) for value, name in description["labels"].items()}
    except (json.JSONDecodeError, KeyError, ValueError, AttributeError) as error:
        raise DatasetError(f"{description_file} must hold a 'labels' object mapping values to names") from error
    if sorted(labels) != list(range(len(labels))):
        raise DatasetError(f"{description_file}: label values must be 0..N-1, got {sorted(labels)}")
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    if not images_dir.is_dir():
        raise DatasetError(f"{folder} has no imagesTr/ folder")
    label_files = ({case_name(path): path for path in labels_dir.iterdir() if full_suffix(path) in VOLUME_SUFFIXES}
                   if labels_dir.is_dir() else {})
    cases = []
    for image in sorted(images_dir.iterdir()):
        if full_suffix(image) not in VOLUME_SUFFIXES or image.name.startswith("."):
            continue
        name = case_name(image)
        cases.append(Case(name, image, label_files.get(name)))
    if not cases:
        raise DatasetError(f"{images_dir} holds no images")
    modality = str(description.get("modality", {}).get("0", "")) if isinstance(description.get("modality"), dict) \
        else str(description.get("modality", ""))
    return VolumeDataset(folder, tuple(cases), labels, modality, description)


def make_split(names: list[str], validation_fraction: float, seed: int) -> dict[str, list[str]]:
    """Shuffle with ``seed`` and hold out ``validation_fraction`` of the cases (at least one)."""
    if not 0 < validation_fraction < 1:
        raise DatasetError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    count = max(1, round(len(shuffled) * validation_fraction))
    return {"train": sorted(shuffled[count:]), "validation": sorted(shuffled[:count])}


def read_split(path: str | Path, known: set[str]) -> dict[str, list[str]]:
    path = Path(path)
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
        train, validation = list(split["train"]), list(split["validation"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"{path} is not a split file with 'train' and 'validation' lists") from error
    unknown = sorted(set(train + validation) - known)
    if unknown:
        raise DatasetError(f"{path} names cases that are not in the dataset: {', '.join(unknown[:5])}")
    overlap = sorted(set(train) & set(validation))
    if overlap:
        raise DatasetError(f"{path} puts cases in both train and validation: {', '.join(overlap[:5])}")
    return {"train": train, "validation": validation}


def label_subset(split: dict[str, list[str]], fraction: float, seed: int) -> dict[str, list[str]]:
    """Keep a seeded ``fraction`` of the training cases (at least one); validation stays exactly as it is.

    For label-efficiency studies (MambaMIM's 10 % labels): runs at different fractions are measured on the same
    held-out cases, and a smaller fraction's cases are a subset of a larger one's with the same seed.
    """
    if not 0 < fraction <= 1:
        raise DatasetError(f"label fraction must be in (0, 1], got {fraction}")
    shuffled = sorted(split["train"])
    random.Random(seed).shuffle(shuffled)
    count = max(1, round(len(shuffled) * fraction))
    return {"train": sorted(shuffled[:count]), "validation": list(split["validation"])}


def write_split(split: dict[str, list[str]], path: str | Path, *, seed: Optional[int] = None,
                source: str = "", label_fraction: Optional[float] = None) -> None:
    payload = {"source": source, "seed": seed, "train": split["train"], "validation": split["validation"]}
    if label_fraction is not None:
        payload["label_fraction"] = label_fraction
    write_text_atomically(path, json.dumps(payload, indent=1) + "\n")
