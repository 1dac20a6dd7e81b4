"""Intensity normalisation named by a model card (see :class:`~.card.IntensitySpec`)."""

from __future__ import annotations

import numpy as np

from .card import IntensitySpec


def normalize_intensity(array: np.ndarray, spec: IntensitySpec) -> np.ndarray:
    """Return a float32 copy of ``array`` (channels first) normalised as the card says."""
    array = array.astype(np.float32, copy=True)
    if spec.method == "zscore":
        # Per channel over the whole image, as nnU-Net does for MRI; a constant image is refused before this.
        for channel in array:
            std = float(channel.std())
            channel -= float(channel.mean())
            channel /= max(std, 1e-8)
        return array
    if spec.method == "window":
        lower, upper = spec.lower, spec.upper
        np.clip(array, lower, upper, out=array)
        array -= lower
        array /= upper - lower
        return array
    if spec.method == "unit":
        array /= 255.0
        return array
    raise ValueError(f"unknown intensity normalisation {spec.method!r}")
