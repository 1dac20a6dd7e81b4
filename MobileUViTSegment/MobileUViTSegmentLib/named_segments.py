"""Segments known by name, and pairing two segmentations' segments by name.

Why by name: a model's output and a radiologist's manual segmentation rarely share label values (Slicer numbers
segments in the order they were created, layer by layer), but a comparison is only meaningful between segments of
the same structure, and the name is what both sides agree on. Names match ignoring case and surrounding spaces
("Anterior hippocampus" = "anterior hippocampus "). A name used twice on one side is refused rather than guessed.

Each segment's voxels are produced only when needed (:attr:`Segment.mask`), so comparing many segments of a large
volume holds two masks in memory at a time, not all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import SimpleITK as sitk

from .errors import InputError


class NoCommonNames(InputError):
    """Two segmentations share no segment name, so nothing can be compared."""


@dataclass(frozen=True)
class Segment:
    """A named segment: its label value (for the report) and a function returning its 0/1 uint8 mask."""

    label_value: int
    name: str
    mask: Callable[[], sitk.Image]


@dataclass(frozen=True)
class NameMatch:
    """Segments paired by name, in the prediction's order, and those found on one side only."""

    pairs: list[tuple[Segment, Segment]]
    only_in_prediction: list[Segment]
    only_in_reference: list[Segment]


def name_key(name: str) -> str:
    return name.strip().casefold()


def _by_key(segments: Sequence[Segment], side: str) -> dict[str, Segment]:
    keyed: dict[str, Segment] = {}
    for segment in segments:
        key = name_key(segment.name)
        if key in keyed:
            raise InputError(f"the {side} has two segments named '{segment.name}'; rename one so each name says "
                             "which structure it is")
        keyed[key] = segment
    return keyed


def match_by_name(prediction: Sequence[Segment], reference: Sequence[Segment]) -> NameMatch:
    """Pair segments whose names are equal ignoring case; refuse two segmentations without a name in common."""
    for segments, side in ((prediction, "segmentation"), (reference, "reference")):
        if not segments:
            raise InputError(f"the {side} has no segments to compare")
    predicted, referenced = _by_key(prediction, "segmentation"), _by_key(reference, "reference")
    pairs = [(segment, referenced[key]) for key, segment in predicted.items() if key in referenced]
    if not pairs:
        raise NoCommonNames("no segment of the reference has the name of a segment of the segmentation "
                         f"(segmentation: {', '.join(s.name for s in prediction)}; reference: "
                         f"{', '.join(s.name for s in reference)}); name the same structures alike")
    return NameMatch(pairs=pairs,
                     only_in_prediction=[segment for key, segment in predicted.items() if key not in referenced],
                     only_in_reference=[segment for key, segment in referenced.items() if key not in predicted])
