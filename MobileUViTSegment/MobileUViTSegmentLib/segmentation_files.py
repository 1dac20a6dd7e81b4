"""Reading a segmentation to measure or compare: a label map file or a Slicer ``.seg.nrrd``.

* A **label map** (.nii, .nii.gz, .nrrd, .mha, ... : one whole number per voxel) has no names: its values are named
  by the model card when one is given (``--model``; every card label is listed, found or not), and "label N"
  otherwise.
* A **.seg.nrrd** (read with slicerio, the format :func:`.outputs.write_seg_nrrd` writes and Slicer saves) names
  its segments; each segment is the voxels of its layer equal to its ``labelValue``. Slicer stores overlapping
  segments in separate layers (a 4D voxel array), so segments are read one by one and each is whole, whatever
  overlaps it. A plain ``.nrrd`` whose header describes segments is read the same way.

Nothing is interpolated: the voxels are used on the grid the file stores, or moved voxel for voxel onto another
grid whose voxel centres they share (:meth:`SegmentationFile.on_grid`; a .seg.nrrd Slicer saved for a left-handed
image has one axis flipped against the image as ITK reads it). Any other grid is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .card import ModelCard
from .errors import InputError
from .grid_checks import on_grid
from .image_io import full_suffix, read_image
from .measurements import label_name, label_values
from .named_segments import Segment

SEG_NRRD_SUFFIX = ".seg.nrrd"
MODEL_ID_TAG = "MobileUViTSegment.ModelId"  # segment tag written by outputs.write_seg_nrrd and the Slicer import


@dataclass(frozen=True)
class FileSegment:
    """A segment a .seg.nrrd describes: where its voxels are (layer, label value) and its name."""

    layer: int
    label_value: int
    name: str


@dataclass(frozen=True)
class SegmentationFile:
    """The label maps of a file (one for a label map file, one per layer for a .seg.nrrd) and its named segments."""

    path: Path
    layers: tuple[sitk.Image, ...]
    file_segments: tuple[FileSegment, ...]
    is_seg_nrrd: bool
    model_id: Optional[str] = None  # the model whose run wrote it (a .seg.nrrd from ``segment`` or the panel)

    def on_grid(self, grid: sitk.Image, grid_name: str, own_name: str) -> SegmentationFile:
        """The same segments on ``grid``'s voxel grid (see :func:`.grid_checks.on_grid`: same voxels, or refused)."""
        return replace(self, layers=tuple(on_grid(grid, layer, grid_name, own_name) for layer in self.layers))

    def present_values(self) -> list[int]:
        """Non-zero values of a label map file (a .seg.nrrd's segments are listed whether drawn or not)."""
        return [] if self.is_seg_nrrd else label_values(self.layers[0])

    def label_map_names(self, card: Optional[ModelCard], extra_values: Iterable[int] = ()) -> dict[int, str]:
        """Names of a label map file's values: the card's labels in card order, then the other values present
        here or in ``extra_values`` (the other file of a comparison) as "label N"."""
        return label_names([*self.present_values(), *extra_values], card)

    def segments(self, card: Optional[ModelCard] = None, extra_values: Iterable[int] = ()) -> list[Segment]:
        """Every segment of the file, in the file's order, each with a function building its 0/1 mask."""
        if self.is_seg_nrrd:
            return [Segment(item.label_value, item.name, _mask_function(self.layers[item.layer], item.label_value))
                    for item in self.file_segments]
        names = self.label_map_names(card, extra_values)
        return [Segment(value, name, _mask_function(self.layers[0], value)) for value, name in names.items()]


def label_names(values: Iterable[int], card: Optional[ModelCard]) -> dict[int, str]:
    """The card's labels (all of them, in card order), then every other non-zero value in ``values`` as "label N"."""
    names = {label.value: label.name for label in card.labels} if card is not None else {}
    for value in sorted(set(int(v) for v in values) - set(names) - {0}):
        names[value] = label_name(value)
    return names


def _mask_function(labels: sitk.Image, value: int) -> Callable[[], sitk.Image]:
    return lambda: sitk.Cast(labels == value, sitk.sitkUInt8)


def is_seg_nrrd(path: Path) -> bool:
    """A ``.seg.nrrd``, or a ``.nrrd`` whose header describes Slicer segments."""
    suffix = full_suffix(path)
    if suffix == SEG_NRRD_SUFFIX:
        return True
    if suffix != ".nrrd":
        return False
    import nrrd  # pynrrd, slicerio's own dependency

    try:
        return "Segment0_ID" in nrrd.read_header(str(path))
    except Exception:  # noqa: BLE001 - an unreadable header is reported by the image reader with its reason
        return False


def _image_from_layer(voxels: np.ndarray, ijk_to_lps: np.ndarray) -> sitk.Image:
    """A slicerio voxel array (i, j, k order) and its IJK-to-LPS matrix as a SimpleITK image."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(voxels, (2, 1, 0))))
    matrix = np.asarray(ijk_to_lps, dtype=float)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    image.SetSpacing([float(value) for value in spacing])
    image.SetDirection([float(value) for value in (matrix[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(value) for value in matrix[:3, 3]])
    return image


def _read_seg_nrrd(path: Path) -> SegmentationFile:
    import slicerio

    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # noqa: BLE001 - slicerio raises plain IOError/ValueError/KeyError on bad files
        raise InputError(f"{path} cannot be read as a Slicer segmentation: {error}") from error
    voxels = np.asarray(segmentation["voxels"])
    layers = list(voxels) if voxels.ndim == 4 else [voxels]
    if voxels.ndim not in (3, 4):
        raise InputError(f"{path} holds a {voxels.ndim}D voxel array; a segmentation has 3 (or 4 with layers)")
    images = tuple(_image_from_layer(layer, segmentation["ijkToLPS"]) for layer in layers)
    segments = tuple(FileSegment(int(item.get("layer", 0)), int(item.get("labelValue", 1)),
                                 str(item.get("name") or item.get("id"))) for item in segmentation["segments"])
    for item in segments:
        if not 0 <= item.layer < len(images):
            raise InputError(f"{path}: segment '{item.name}' is in layer {item.layer}, which the file does not hold")
    models = {str((item.get("tags") or {}).get(MODEL_ID_TAG, "")) for item in segmentation["segments"]}
    model_id = models.pop() if len(models) == 1 and "" not in models else None  # one model wrote every segment
    return SegmentationFile(path, images, segments, is_seg_nrrd=True, model_id=model_id)


def recorded_model_card(files: Iterable[SegmentationFile]) -> Optional[ModelCard]:
    """The card of the one model the .seg.nrrd files say wrote them, when the catalog knows it; else None.

    So comparing a result ``segment`` wrote with a manual label map names the label map's values as that model
    does, without ``--model``.
    """
    from .catalog import Catalog
    from .errors import ModelError

    recorded = {item.model_id for item in files if item.is_seg_nrrd and item.model_id}
    if len(recorded) != 1:
        return None
    try:
        return Catalog().get(recorded.pop())
    except ModelError:
        return None


def read_segmentation_file(path: str | Path, role: str = "segmentation") -> SegmentationFile:
    """Read a label map file or a .seg.nrrd; :class:`InputError` naming its ``role`` (prediction, reference, ...)
    with one clear line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{role} {path} does not exist" if not path.exists() else
                         f"{role} {path} is a folder; give a label map or .seg.nrrd file")
    if is_seg_nrrd(path):
        return _read_seg_nrrd(path)
    labels = read_image(path)
    label_values(labels)  # refuses colour images and fractional values with a clear message
    return SegmentationFile(path, (labels,), (), is_seg_nrrd=False)

