"""Which image shapes a model of each dimensionality takes: one rule, shared by the engine and the Slicer panel.

``input_checks.check_compatible`` refuses a mismatched image with a sentence, and the panel greys out Segment for it
before a run starts; both ask :func:`fits_model_dims`, so they cannot drift apart. No third-party import: the panel
reads it before the extension's Python packages are installed.
"""

from __future__ import annotations

from collections.abc import Sequence


def is_picture(size: Sequence[int]) -> bool:
    """A 2D image, or a 3D one a single slice thick along its third axis (how Slicer loads a PNG or a frame)."""
    return len(size) == 2 or (len(size) == 3 and size[2] == 1)


def fits_model_dims(spatial_dims: int, size: Sequence[int]) -> bool:
    """False only for a picture given to a 3D model; 2D models take pictures, and volumes slice by slice."""
    return not (spatial_dims == 3 and is_picture(size))
