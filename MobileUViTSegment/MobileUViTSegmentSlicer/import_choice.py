"""Whether a run into an existing segmentation should ask the user how to merge, and the question to ask.

The panel offers the choice (replace the model's segments, add beside them, fill only empty voxels) only when it
matters: the chosen segmentation already holds segments this model created. The question says when the user has
edited them since, because then "replace" throws work away (it can still be restored).
"""

from __future__ import annotations

from typing import Optional

import slicer

from .result_import import editedModelSegmentIds, modelSegmentIds

# (mode, text shown in the panel's combo box); "ask" is the panel's own default, not an import mode.
IMPORT_MODE_CHOICES = (
    ("ask", "Ask when it holds this model's segments"),
    ("replace", "Replace the model's segments"),
    ("add", "Add new segments beside them"),
    ("fillEmpty", "Fill only where nothing is segmented"),
)
ASK = "ask"


def importModeQuestion(segmentationNode: Optional[slicer.vtkMRMLSegmentationNode], modelId: str) -> Optional[str]:
    """The question for the user, or None when a run adds to the segmentation without asking."""
    if segmentationNode is None or not modelId:
        return None
    own = modelSegmentIds(segmentationNode, modelId)
    if not own:
        return None
    segmentation = segmentationNode.GetSegmentation()
    edited = editedModelSegmentIds(segmentationNode, modelId)
    names = ", ".join(segmentation.GetSegment(segmentId).GetName() for segmentId in (edited or own))
    if edited:
        state = f"you have edited {len(edited)} of the segments this model made ({names})"
    else:
        state = f"it already holds the segments this model made ({names})"
    return (f"'{segmentationNode.GetName()}': {state}. Replace only the model's segments (the previous ones can be "
            "restored), add the new result beside them, or fill only where nothing is segmented? Segments you drew "
            "yourself are never changed.")
