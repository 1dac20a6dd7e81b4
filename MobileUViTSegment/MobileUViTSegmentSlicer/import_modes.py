"""How a result goes into a segmentation that already holds segments: the three import modes.

* ``"add"``: new segments beside the existing ones (unique names such as ``"... (2)"``); nothing existing changes.
* ``"replace"``: the segments this model created earlier in the segmentation (found by their model and label-value
  tags, see :mod:`.model_segments`) get the new voxels and keep their IDs, names, colours and terminology, which the
  user may have changed; a label the earlier run lacked is added as a new segment. Segments the model did not create
  are never touched. What was overwritten is kept so it can be restored (:mod:`.result_backup`).
* ``"fillEmpty"``: new segments beside the existing ones, holding the result only where no existing segment has a
  voxel; nothing existing changes.

With a region of interest (:class:`~.roi_crop.VoxelBox`) every mode changes voxels only inside it: new segments hold
voxels only there, and replaced segments keep their voxels outside it.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

import numpy as np
import slicer

from .roi_crop import VoxelBox
from .segment_masks import occupiedMask, referenceGrid, segmentMask, writeSegmentMask


class ImportMode(str, Enum):
    ADD = "add"
    REPLACE = "replace"
    FILL_EMPTY = "fillEmpty"


IMPORT_MODES = tuple(mode.value for mode in ImportMode)


def importModeProblem(mode: object) -> Optional[str]:
    """Why ``mode`` is not an import mode, or None."""
    if isinstance(mode, ImportMode) or mode in IMPORT_MODES:
        return None
    return f"Unknown import mode '{mode}'; use one of {', '.join(IMPORT_MODES)}."


def boxGrid(volumeNode: slicer.vtkMRMLVolumeNode, box: VoxelBox) -> slicer.vtkOrientedImageData:
    """The volume's grid restricted to the box (same IJK-to-RAS, the box as extent)."""
    grid = referenceGrid(volumeNode)
    grid.SetExtent(box.extent)
    return grid


def clearOccupiedVoxels(labels: np.ndarray, segmentationNode: slicer.vtkMRMLSegmentationNode,
                        volumeNode: slicer.vtkMRMLVolumeNode, box: VoxelBox) -> np.ndarray:
    """``labels`` (the box's (k, j, i) label array) with 0 wherever an existing segment holds a voxel."""
    cleared = labels.copy()
    cleared[occupiedMask(segmentationNode, boxGrid(volumeNode, box))] = 0
    return cleared


def replaceInsideBox(segmentationNode: slicer.vtkMRMLSegmentationNode, segmentId: str, inside: np.ndarray,
                     volumeNode: slicer.vtkMRMLVolumeNode, box: VoxelBox) -> None:
    """The segment holds ``inside`` (a boolean (k, j, i) array of the box) in the box and keeps its voxels outside."""
    grid = referenceGrid(volumeNode)
    mask = segmentMask(segmentationNode, segmentId, grid)
    mask[box.arraySlices(grid.GetExtent())] = inside
    writeSegmentMask(segmentationNode, segmentId, mask, grid)
