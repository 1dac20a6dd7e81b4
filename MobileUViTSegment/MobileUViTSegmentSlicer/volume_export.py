"""Handing a volume node to the worker: a private temporary folder with the input file and the path for the result.

The worker reads files, so the volume is written (uncompressed NRRD: fast, exact geometry) into a folder made with
``tempfile.mkdtemp`` (readable by the user only) and the whole folder is removed when the run ends, whatever the
outcome. Only the checks that need the node are made here (including more than 3 components per voxel, which
Slicer's writer cannot export); what needs the voxels and the model (RGB for a grey model, constant, NaN, a single
slice) is checked by the worker against the model card, so those rules live in one place.

With a :class:`~.roi_crop.VoxelBox` only that block of the volume is written, as an exact sub-grid (same spacing and
direction, origin moved to the block's first voxel), so the worker segments only the region of interest.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import slicer

from .messages import as_sentence
from .roi_crop import VoxelBox, croppedVolume
from .volume_files import VolumeFileError, writeVolumeFile

TEMPORARY_PREFIX = "MobileUViTSegment-"
INPUT_FILE_NAME = "input.nrrd"
OUTPUT_FILE_NAME = "labels.nrrd"
UNCERTAINTY_FILE_NAME = "uncertainty.nrrd"  # written by the worker only when the run asks for it
PROBABILITY_FOLDER_NAME = "probabilities"  # likewise: probability_<value>.nrrd per label


class VolumeExportError(Exception):
    """The volume cannot be handed to the worker; the message is one sentence for the user."""


def volumeProblem(volumeNode: Optional[slicer.vtkMRMLNode]) -> Optional[str]:
    """Why ``volumeNode`` cannot be segmented at all, or None when it can be sent to the worker."""
    if volumeNode is None:
        return "Select an input volume."
    if not volumeNode.IsA("vtkMRMLScalarVolumeNode"):
        return f"'{volumeNode.GetName()}' is not a scalar volume; select an image volume."
    if volumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
        return f"'{volumeNode.GetName()}' is a label map; select an image volume."
    image = volumeNode.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        return f"'{volumeNode.GetName()}' has no voxels; load an image into it first."
    if any(size <= 0 for size in image.GetDimensions()):
        return f"'{volumeNode.GetName()}' is empty (size {image.GetDimensions()})."
    components = image.GetNumberOfScalarComponents()
    if components not in (1, 3):  # Slicer's volume writer exports only grey and RGB images
        return (f"'{volumeNode.GetName()}' has {components} components per voxel (a time series or multi-volume "
                "image); extract one frame, e.g. with the Sequences module, and segment that.")
    return None


@dataclass
class WorkerFiles:
    """One run's private folder: the exported input and where the worker writes its label map."""

    folder: Path

    @property
    def inputPath(self) -> Path:
        return self.folder / INPUT_FILE_NAME

    @property
    def outputPath(self) -> Path:
        return self.folder / OUTPUT_FILE_NAME

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def exportVolumeForWorker(volumeNode: slicer.vtkMRMLScalarVolumeNode, parentFolder: Optional[Path] = None,
                          box: Optional[VoxelBox] = None) -> WorkerFiles:
    """Write ``volumeNode`` (or only its ``box``) into a new private temporary folder; the caller removes it with
    ``WorkerFiles.remove``."""
    problem = volumeProblem(volumeNode)
    if problem:
        raise VolumeExportError(problem)
    source = volumeNode if box is None or box == VoxelBox.wholeVolume(volumeNode) else croppedVolume(volumeNode, box)
    files = WorkerFiles(Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, dir=parentFolder)))
    try:
        writeVolumeFile(source, files.inputPath)
    except VolumeFileError as error:
        files.remove()
        raise VolumeExportError(as_sentence(f"{error} (is the temporary folder full or not writable?)")) from error
    return files
