"""Corrected cases: which segmentations the reviewer marked as corrected, and handing them to ``finetune`` as files.

A mark is a node attribute on the segmentation plus a node reference to the volume it was drawn on, so it is saved
with the scene and nothing else about the user's nodes changes. Exporting writes the volume (exact geometry, NRRD) and
the corrected segments as one label map on exactly the volume's voxel grid, with the label values of the model to
improve: each of the model card's labels is matched to one segment by name (``"anterior hippocampus"``, also with the
``" (2)"`` suffix an import adds), else by terminology (type and modifier codes), and segments the model made (tagged
with a model id) win a tie. A case that lacks a segment for any label is refused with one sentence, because a label
map that silently omits a structure would teach the model that the structure is background. Segments that match no
label are left out. Nothing is added to the scene: the label map is built with a carrier node that never joins it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import slicer
import vtk

from .result_import import BINARY_LABELMAP, MODEL_ID_TAG, ResultImportError, labelMapOnVolumeGrid
from .segment_masks import gridShape, referenceGrid, segmentationReferenceGrid
from .volume_export import volumeProblem
from .volume_files import VolumeFileError, arrayToMatrix, imageToWorldArray, writeVolumeFile

CORRECTED_ATTRIBUTE = "MobileUViTSegment.Corrected"
CORRECTED_VOLUME_REFERENCE = "MobileUViTSegment.CorrectedVolume"
_IMPORT_SUFFIX = re.compile(r" \(\d+\)$")
GRID_TOLERANCE_MM = 1e-4  # Slicer keeps the reference geometry as text with 16 significant digits


class CorrectedCaseError(Exception):
    """A corrected case cannot be used to improve the model; the message is one sentence for the user."""


@dataclass(frozen=True)
class CorrectedCase:
    """A segmentation the reviewer corrected and the volume it belongs to."""

    segmentationNode: slicer.vtkMRMLSegmentationNode
    volumeNode: slicer.vtkMRMLScalarVolumeNode

    @property
    def name(self) -> str:
        return self.volumeNode.GetName() or self.segmentationNode.GetName()


def markCorrected(segmentationNode: slicer.vtkMRMLSegmentationNode, volumeNode: slicer.vtkMRMLScalarVolumeNode,
                  corrected: bool = True) -> None:
    """Mark (or unmark) ``segmentationNode`` as a reviewed, corrected segmentation of ``volumeNode``."""
    if corrected:
        segmentationNode.SetAttribute(CORRECTED_ATTRIBUTE, "1")
        segmentationNode.SetNodeReferenceID(CORRECTED_VOLUME_REFERENCE, volumeNode.GetID())
    else:
        segmentationNode.RemoveAttribute(CORRECTED_ATTRIBUTE)
        segmentationNode.RemoveNodeReferenceIDs(CORRECTED_VOLUME_REFERENCE)


def isCorrected(segmentationNode: slicer.vtkMRMLSegmentationNode) -> bool:
    return segmentationNode.GetAttribute(CORRECTED_ATTRIBUTE) == "1"


def correctedCases(scene: slicer.vtkMRMLScene) -> list[CorrectedCase]:
    """Every segmentation marked corrected whose volume is still in the scene, in scene order."""
    cases = []
    nodes = scene.GetNodesByClass("vtkMRMLSegmentationNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        volume = node.GetNodeReference(CORRECTED_VOLUME_REFERENCE)
        if isCorrected(node) and volume is not None:
            cases.append(CorrectedCase(node, volume))
    return cases


# -- which segment is which label --------------------------------------------------------------------------------


def _tag(segment: slicer.vtkSegment, name: str) -> str:
    value = vtk.reference("")
    segment.GetTag(name, value)
    return str(value)


def _codes(entry: str) -> tuple[Optional[tuple[str, str]], Optional[tuple[str, str]]]:
    """(type, type modifier) as (scheme, value) from a Slicer ``TerminologyEntry`` tag, None where absent."""
    parts = entry.split("~")
    if len(parts) < 4:
        return None, None

    def code(text: str) -> Optional[tuple[str, str]]:
        fields = text.split("^")
        return (fields[0], fields[1]) if len(fields) >= 2 and fields[0] and fields[1] else None

    return code(parts[2]), code(parts[3])


def _labelCodes(label: Any) -> tuple[tuple[str, str], Optional[tuple[str, str]]]:
    terminology = label.terminology
    modifier = terminology.type_modifier
    return ((terminology.type.scheme, terminology.type.value),
            (modifier.scheme, modifier.value) if modifier else None)


def segmentIdsForLabels(segmentationNode: slicer.vtkMRMLSegmentationNode, card: Any, caseName: str) -> dict[int, str]:
    """Label value -> segment ID for every label of ``card`` (a ``ModelCard``); refuses missing or ambiguous ones."""
    segmentation = segmentationNode.GetSegmentation()
    segments = [(segmentation.GetNthSegmentID(index), segmentation.GetNthSegment(index))
                for index in range(segmentation.GetNumberOfSegments())]
    terminologyTag = slicer.vtkSegment.GetTerminologyEntryTagName()
    chosen: dict[int, str] = {}
    for label in sorted(card.labels, key=lambda item: item.value):
        wanted = label.name.strip().lower()
        codes = _labelCodes(label)
        tiers = [
            [sid for sid, seg in segments if seg.GetName().strip().lower() == wanted],
            [sid for sid, seg in segments if _codes(_tag(seg, terminologyTag)) == codes],
            [sid for sid, seg in segments if _IMPORT_SUFFIX.sub("", seg.GetName().strip()).lower() == wanted],
        ]
        candidates = next(([sid for sid in tier if sid not in chosen.values()] for tier in tiers
                           if any(sid not in chosen.values() for sid in tier)), [])
        if len(candidates) > 1:
            byModel = [sid for sid in candidates if _tag(segmentation.GetSegment(sid), MODEL_ID_TAG)]
            candidates = byModel if len(byModel) == 1 else candidates
        if not candidates:
            raise CorrectedCaseError(
                f"The corrected case '{caseName}' has no segment for '{label.name}', which the model segments; name "
                f"a segment '{label.name}' (or give it that terminology) so the model does not learn it is absent.")
        if len(candidates) > 1:
            names = ", ".join(f"'{segmentation.GetSegment(sid).GetName()}'" for sid in candidates)
            raise CorrectedCaseError(f"The corrected case '{caseName}' has several segments that could be "
                                     f"'{label.name}' ({names}); rename or remove all but one.")
        chosen[label.value] = candidates[0]
    return chosen


# -- export ------------------------------------------------------------------------------------------------------


def caseProblem(case: CorrectedCase) -> Optional[str]:
    """Why ``case`` cannot be exported at all (before looking at its segments), or None."""
    problem = volumeProblem(case.volumeNode)
    if problem:
        return f"Corrected case '{case.name}': {problem}"
    segmentationNode = case.segmentationNode
    if segmentationNode.GetParentTransformNode() is not case.volumeNode.GetParentTransformNode():
        return (f"The corrected segmentation '{segmentationNode.GetName()}' is under a different transform than its "
                f"volume '{case.volumeNode.GetName()}'; put both under the same transform.")
    if not segmentationNode.GetSegmentation().ContainsRepresentation(BINARY_LABELMAP):
        return (f"The corrected segmentation '{segmentationNode.GetName()}' has no binary labelmap representation; "
                "create it in the Segmentations module (Representations) first.")
    if not _drawnOnVolumeGrid(segmentationNode, case.volumeNode):
        return (f"The corrected segmentation '{segmentationNode.GetName()}' was drawn on another grid than the volume "
                f"'{case.volumeNode.GetName()}' it is marked with; mark it again with the volume it belongs to.")
    return None


def _drawnOnVolumeGrid(segmentationNode: slicer.vtkMRMLSegmentationNode,
                       volumeNode: slicer.vtkMRMLScalarVolumeNode) -> bool:
    """Whether the segmentation's reference geometry is the volume's grid (True when it records none): a pairing of
    a segmentation with the wrong volume would otherwise be resampled silently into wrong training labels."""
    reference = segmentationReferenceGrid(segmentationNode)
    if gridShape(reference) == (0, 0, 0) or 0 in gridShape(reference):
        return True
    volume = referenceGrid(volumeNode)
    return (gridShape(reference) == gridShape(volume)
            and np.allclose(imageToWorldArray(reference), imageToWorldArray(volume), atol=GRID_TOLERANCE_MM))


def labelMapOnVolume(case: CorrectedCase, segmentIds: dict[int, str]) -> slicer.vtkMRMLLabelMapVolumeNode:
    """The segments as one label map on the volume's exact grid, in a carrier node that is not in any scene."""
    volumeNode = case.volumeNode
    reference = referenceGrid(volumeNode)
    ids = vtk.vtkStringArray()
    values = vtk.vtkIntArray()
    for value, segmentId in sorted(segmentIds.items()):
        ids.InsertNextValue(segmentId)
        values.InsertNextValue(value)
    merged = slicer.vtkOrientedImageData()
    if not case.segmentationNode.GenerateMergedLabelmapForAllSegments(
            merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, reference, ids, values):
        raise CorrectedCaseError(f"The segments of the corrected case '{case.name}' could not be turned into a label "
                                 "map.")
    try:
        merged = labelMapOnVolumeGrid(merged, volumeNode)
    except ResultImportError as error:
        raise CorrectedCaseError(f"The segments of the corrected case '{case.name}' could not be put on its volume's "
                                 "grid.") from error
    cast = vtk.vtkImageCast()
    cast.SetInputData(merged)
    cast.SetOutputScalarTypeToUnsignedChar()
    cast.Update()
    image = vtk.vtkImageData()
    image.DeepCopy(cast.GetOutput())
    image.SetOrigin(0.0, 0.0, 0.0)
    image.SetSpacing(1.0, 1.0, 1.0)
    carrier = slicer.vtkMRMLLabelMapVolumeNode()  # never added to a scene
    carrier.SetAndObserveImageData(image)
    carrier.SetIJKToRASMatrix(arrayToMatrix(imageToWorldArray(merged)))
    return carrier


@dataclass(frozen=True)
class ExportedCase:
    name: str
    image: Path
    label: Path

    def entry(self) -> dict[str, str]:
        return {"name": self.name, "image": str(self.image), "label": str(self.label)}


def exportCorrectedCase(case: CorrectedCase, card: Any, folder: Path, name: str) -> ExportedCase:
    """Write the case's volume and label map (the card's label values) into ``folder``; refuse unusable cases."""
    problem = caseProblem(case)
    if problem:
        raise CorrectedCaseError(problem)
    segmentIds = segmentIdsForLabels(case.segmentationNode, card, case.name)
    exported = ExportedCase(name, folder / "images" / f"{name}.nrrd", folder / "labels" / f"{name}.nrrd")
    exported.image.parent.mkdir(parents=True, exist_ok=True)
    exported.label.parent.mkdir(parents=True, exist_ok=True)
    try:
        writeVolumeFile(case.volumeNode, exported.image)
        writeVolumeFile(labelMapOnVolume(case, segmentIds), exported.label, compress=True)
    except VolumeFileError as error:
        raise CorrectedCaseError(f"The corrected case '{case.name}' could not be written to the temporary folder "
                                 f"({error}); is the disk full?") from error
    return exported


def fileSafeNames(cases: list[CorrectedCase]) -> list[str]:
    """A distinct, file-safe name per case, from its volume's name."""
    names: list[str] = []
    for case in cases:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", case.name).strip("_") or "case"
        name, number = base, 2
        while name in names:
            name, number = f"{base}_{number}", number + 1
        names.append(name)
    return names


def writeCaseList(cases: list[ExportedCase], path: Path) -> Path:
    """The JSON list ``finetune --cases`` reads."""
    path.write_text(json.dumps({"cases": [case.entry() for case in cases]}, indent=1) + "\n", encoding="utf-8")
    return path


MIN_CORRECTED_CASES = 2  # one to learn from and one held out to measure on (finetune's own rule)


def improvementProblem(cases: list[CorrectedCase], modelId: str) -> Optional[str]:
    """Why the panel cannot start improving ``modelId`` from ``cases`` yet (one sentence), or None."""
    if not modelId:
        return "Select the model to improve."
    if len(cases) < MIN_CORRECTED_CASES:
        have = "no case is" if not cases else "only one case is"
        return (f"Mark at least {MIN_CORRECTED_CASES} corrected segmentations ({have} marked): the model learns from "
                "some and is measured on one it never saw.")
    return None
