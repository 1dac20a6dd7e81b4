"""A few real cases of the shared hippocampus dataset copied into a new folder in the nnU-Net layout, so a test can
train, pre-train or evaluate on them in seconds."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path


def hippocampus_subset(source: Path, names: Iterable[str], folder: Path, *, image_suffix: str = "") -> Path:
    """``folder`` with dataset.json, imagesTr/ and labelsTr/ holding ``names``; ``image_suffix="_0000"`` names the
    images as nnU-Net's channel files."""
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for name in names:
        shutil.copy(source / "imagesTr" / f"{name}.nii.gz", folder / "imagesTr" / f"{name}{image_suffix}.nii.gz")
        shutil.copy(source / "labelsTr" / f"{name}.nii.gz", folder / "labelsTr" / f"{name}.nii.gz")
    shutil.copy(source / "dataset.json", folder / "dataset.json")
    return folder
