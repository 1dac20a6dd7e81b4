"""The 2D training-data layout ``train`` reads: a folder of pictures and masks, as BUSI and Kvasir-SEG ship.

::

    DATASET/images/<id>.png|jpg        grey or RGB (mixed is fine; converted to the card's input channels)
    DATASET/masks/<id>.png|jpg         same <id>; label values 0..N, or 0/255 for one label (see below)
    DATASET/splits/<name>.txt          optional id lists, one id a line (``--train-list``/``--validation-list``)
    DATASET/dataset.json               optional: {"labels": {"0": "background", "1": "lesion"}, "modality": "US"}

A mask whose values exceed the number of labels, and every JPEG mask (compression smears the edges), is read as
binary: foreground where the grey value is above 127. Masks may be missing for a reconstruction task, which needs
only the pictures. Both pictures and masks are resized to the card's patch size, the papers' 2D protocol (bilinear for
pictures, exactly as inference does, nearest-neighbour for masks), so every prepared case is one network input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..card import InputSpec
from ..errors import DatasetError, InputError
from ..image_io import full_suffix, match_components, read_image, stem
from ..inference.predictor import INPUT_RESIZE
from ..preparation import prepare_image
from ..spatial import label_to_array
from .dataset_folder import Case

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
BINARY_THRESHOLD = 127


@dataclass(frozen=True)
class ImageFolderDataset:
    """A 2D dataset; the same interface as :class:`.dataset_folder.VolumeDataset` where the trainer uses it."""

    folder: Path
    cases: tuple[Case, ...]
    labels: dict[int, str]
    modality: str
    description: dict
    id_lists: dict[str, Path]

    spatial_dims = 2

    def case(self, name: str) -> Case:
        for case in self.cases:
            if case.name == name:
                return case
        raise DatasetError(f"image {name!r} is not in {self.folder / 'images'}")


def is_image_folder(folder: str | Path) -> bool:
    """True for the 2D layout (an ``images/`` folder and no nnU-Net ``imagesTr/``)."""
    folder = Path(folder)
    return (folder / "images").is_dir() and not (folder / "imagesTr").is_dir()


def _pictures(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {stem(path): path for path in sorted(folder.iterdir())
            if full_suffix(path) in PICTURE_SUFFIXES and not path.name.startswith(".")}


def read_image_folder(folder: str | Path) -> ImageFolderDataset:
    folder = Path(folder)
    images = _pictures(folder / "images")
    if not images:
        raise DatasetError(f"{folder / 'images'} holds no PNG/JPEG pictures (expected the 2D layout images/<id>.png, "
                           "masks/<id>.png)")
    masks = _pictures(folder / "masks")
    description: dict = {}
    labels = {0: "background", 1: "foreground"}
    description_file = folder / "dataset.json"
    if description_file.is_file():
        try:
            description = json.loads(description_file.read_text(encoding="utf-8"))
            labels = {int(value): str(name) for value, name in description.get("labels", labels).items()}
        except (json.JSONDecodeError, ValueError, AttributeError) as error:
            raise DatasetError(f"{description_file} must hold a 'labels' object mapping values to names") from error
    if sorted(labels) != list(range(len(labels))) or len(labels) < 2:
        raise DatasetError(f"{description_file}: label values must be 0..N-1 with N >= 2, got {sorted(labels)}")
    cases = tuple(Case(name, path, masks.get(name)) for name, path in images.items())
    id_lists = {path.name: path for path in sorted((folder / "splits").glob("*.txt"))} \
        if (folder / "splits").is_dir() else {}
    return ImageFolderDataset(folder, cases, labels, str(description.get("modality", "")), description, id_lists)


def read_id_list(path: str | Path, dataset: ImageFolderDataset) -> list[str]:
    """Ids of one list file (one id a line; an ``.png``/``.jpg`` suffix is ignored), all present in ``dataset``.

    A bare file name is looked up in the dataset's ``splits/`` folder, so ``--train-list busi_train1.txt`` works.
    """
    path = Path(path)
    if not path.is_file() and path.name in dataset.id_lists and path.parent == Path("."):
        path = dataset.id_lists[path.name]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"id list {path} cannot be read: {error.strerror}") from error
    names = [stem(Path(line.strip())) if full_suffix(Path(line.strip())) in PICTURE_SUFFIXES else line.strip()
             for line in lines if line.strip()]
    known = {case.name for case in dataset.cases}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise DatasetError(f"{path} names {len(unknown)} ids that are not in {dataset.folder / 'images'}: "
                           f"{', '.join(unknown[:5])}")
    return names


def resize_planes(array: np.ndarray, size: tuple[int, ...], *, nearest: bool = False) -> np.ndarray:
    """(channels, x, y) -> (channels, *size): bilinear as the predictor resizes network inputs, or nearest."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    resized = F.interpolate(tensor, size=tuple(size), mode="nearest") if nearest \
        else F.interpolate(tensor, size=tuple(size), **INPUT_RESIZE)
    return resized[0].numpy()


def read_mask(path: Path, num_labels: int) -> np.ndarray:
    """A mask file as (x, y) uint8 label values 0..num_labels (see the module docstring for the binary rule)."""
    values = np.rint(label_to_array(match_components(read_image(path), 1))).astype(np.int64)
    if full_suffix(path) in LOSSY_SUFFIXES or values.max() > num_labels:
        if num_labels != 1:
            raise DatasetError(f"mask {path.name} has values up to {int(values.max())} but the model has "
                               f"{num_labels} labels; only one-label masks may be stored as 0/255 or JPEG")
        return (values > BINARY_THRESHOLD).astype(np.uint8)
    return values.astype(np.uint8)


def prepare_picture_case(case: Case, spec: InputSpec, num_labels: int,
                         with_label: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A picture as the normalised (channels, *patch_size) array the network reads, prepared as inference
    prepares it, and (``with_label``) its mask as (*patch_size) uint8 labels."""
    image = match_components(read_image(case.image), spec.channels)
    if image.GetDimension() != 2:
        raise DatasetError(f"{case.image.name} is not a 2D picture (size {image.GetSize()})")
    try:
        prepared = prepare_image(image, spec, name=case.image.name)
    except InputError as error:
        raise DatasetError(str(error)) from error
    array = resize_planes(prepared.array, spec.patch_size)
    if not with_label:
        return array, None
    if case.label is None:
        raise DatasetError(f"{case.image.name} has no mask in masks/; a segmentation task needs one for every image")
    mask = read_mask(case.label, num_labels)
    if mask.shape != tuple(image.GetSize()):
        raise DatasetError(f"mask {case.label.name} is {mask.shape[0]}x{mask.shape[1]} but its image is "
                           f"{image.GetSize()[0]}x{image.GetSize()[1]}")
    label = resize_planes(mask[None], spec.patch_size, nearest=True)[0].astype(np.uint8)
    return array, label
