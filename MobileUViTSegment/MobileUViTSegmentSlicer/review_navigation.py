"""The review list of the worker's ``done`` event, and what clicking an item does: centre every slice view on it.

The worker ranks connected regions of high uncertainty (definitions in ``MobileUViTSegmentLib.confidence``); each
item carries its centroid in the input volume's RAS space. When the input volume sits under a transform, the point is
taken through it to world space, where the slice views live.

:func:`showUncertaintyOverlay` puts the uncertainty volume in the foreground layer of every slice view (the
background, usually the input volume, stays as it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import slicer
import vtk

DEFAULT_OVERLAY_OPACITY = 0.4


@dataclass(frozen=True)
class ReviewItem:
    """One uncertain region: rank 1 first; ``centroidRas`` in the input volume's (untransformed) RAS space."""

    rank: int
    labelValue: int
    labelName: str
    voxelCount: int
    meanUncertainty: float
    totalUncertainty: float
    centroidRas: tuple[float, float, float]
    sliceIndex: int

    @classmethod
    def fromEvent(cls, item: dict) -> ReviewItem:
        """From one entry of the ``done`` event's ``"review"`` list (the worker's snake_case keys)."""
        ras = tuple(float(value) for value in item["centroid_ras"])
        if len(ras) != 3:
            raise ValueError(f"a review item's centroid_ras has {len(ras)} values, not 3")
        return cls(rank=int(item["rank"]), labelValue=int(item["label_value"]), labelName=str(item["label_name"]),
                   voxelCount=int(item["voxel_count"]), meanUncertainty=float(item["mean_uncertainty"]),
                   totalUncertainty=float(item.get("total_uncertainty", 0.0)), centroidRas=ras,
                   sliceIndex=int(item.get("slice_index", 0)))

    def describe(self) -> str:
        """One line for the panel's list."""
        return (f"{self.rank}. {self.labelName}: {self.voxelCount} voxels, mean uncertainty "
                f"{self.meanUncertainty:.2f}, slice {self.sliceIndex}")


def reviewItemsFromEvent(event: dict) -> list[ReviewItem]:
    """The ``done`` event's review list, rank 1 first (empty when the run did not assess uncertainty)."""
    return sorted((ReviewItem.fromEvent(item) for item in event.get("review") or []), key=lambda item: item.rank)


def confidenceFromEvent(event: dict) -> dict[int, float]:
    """The ``done`` event's per-label confidence, keyed by label value (labels the run did not find are absent)."""
    return {int(value): float(score) for value, score in (event.get("confidence") or {}).items()}


def worldPoint(item: ReviewItem, volumeNode: Optional[slicer.vtkMRMLTransformableNode] = None
               ) -> tuple[float, float, float]:
    """The item's point in world RAS: through ``volumeNode``'s parent transform when it has one."""
    parent = volumeNode.GetParentTransformNode() if volumeNode is not None else None
    if parent is None:
        return item.centroidRas
    toWorld = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(parent, None, toWorld)
    return tuple(toWorld.TransformPoint(item.centroidRas))


def jumpToReviewItem(scene: slicer.vtkMRMLScene, item: ReviewItem,
                     volumeNode: Optional[slicer.vtkMRMLTransformableNode] = None) -> tuple[float, float, float]:
    """Centre every slice view of ``scene`` on the item (through ``volumeNode``'s transform, if given); returns the
    world point jumped to."""
    point = worldPoint(item, volumeNode)
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, *point, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
    return point


def _compositeNodes(scene: slicer.vtkMRMLScene) -> list[slicer.vtkMRMLSliceCompositeNode]:
    return [scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
            for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def showUncertaintyOverlay(scene: slicer.vtkMRMLScene, uncertaintyNode: slicer.vtkMRMLScalarVolumeNode,
                           opacity: float = DEFAULT_OVERLAY_OPACITY) -> int:
    """Make ``uncertaintyNode`` the foreground of every slice view at ``opacity``; returns how many views."""
    opacity = min(max(float(opacity), 0.0), 1.0)
    composites = _compositeNodes(scene)
    for composite in composites:
        wasModifying = composite.StartModify()
        composite.SetForegroundVolumeID(uncertaintyNode.GetID())
        composite.SetForegroundOpacity(opacity)
        composite.EndModify(wasModifying)
    return len(composites)


def hideUncertaintyOverlay(scene: slicer.vtkMRMLScene, uncertaintyNode: slicer.vtkMRMLScalarVolumeNode) -> int:
    """Clear the foreground of the slice views that show ``uncertaintyNode`` (others are left alone)."""
    hidden = 0
    for composite in _compositeNodes(scene):
        if composite.GetForegroundVolumeID() == uncertaintyNode.GetID():
            composite.SetForegroundVolumeID(None)
            hidden += 1
    return hidden
