"""Errors a user can act on.

Every failure the user can cause (a bad file, an unknown model id, corrupted weights) raises a subclass of
:class:`SegmentationError` whose message is one complete sentence. The command line prints that sentence and exits
non-zero; the Slicer panel shows it. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SegmentationError(Exception):
    """Base of all user-facing errors; ``str(error)`` is the one line shown to the user."""

    exit_code = 2


class InputError(SegmentationError):
    """The input image cannot be segmented (missing, unreadable, wrong shape, empty, NaN, ...)."""


class OutputError(SegmentationError):
    """The output cannot be written where the user asked."""


class ModelError(SegmentationError):
    """The requested model does not exist or its card is invalid."""


class WeightsError(SegmentationError):
    """The weights file is missing, has the wrong size or sha256, or does not fit the architecture."""


class DatasetError(SegmentationError):
    """A training or evaluation dataset folder is not in the documented layout."""


class Cancelled(SegmentationError):
    """The user cancelled the run; nothing was written."""

    exit_code = 130
