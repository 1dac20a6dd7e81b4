"""Which images a model takes: the rules shared by the engine and the Slicer panel.

``input_checks`` refuses a mismatched image with a sentence, and the panel greys out Segment for it before a run
starts; both ask the functions here, so they cannot drift apart. No third-party import: the panel reads it before the
extension's Python packages are installed.
"""

from __future__ import annotations

from collections.abc import Sequence

# DICOM modalities whose images are colour photographs: endoscopy and external-camera photography.
COLOUR_PHOTOGRAPHY = frozenset({"ES", "XC"})


def is_picture(size: Sequence[int]) -> bool:
    """A 2D image, or a 3D one a single slice thick along its third axis (how Slicer loads a PNG or a frame)."""
    return len(size) == 2 or (len(size) == 3 and size[2] == 1)


def fits_model_dims(spatial_dims: int, size: Sequence[int]) -> bool:
    """False only for a picture given to a 3D model; 2D models take pictures, and volumes slice by slice."""
    return not (spatial_dims == 3 and is_picture(size))


def is_grey_volume(size: Sequence[int], components: int) -> bool:
    """A stack of more than one slice with one value per voxel: a CT, an MR, a grey ultrasound sweep."""
    return components == 1 and not is_picture(size)


def fits_model_modality(modality: str, size: Sequence[int], components: int) -> bool:
    """False only for a grey volume given to a model of colour photographs.

    A 2D model runs slice by slice on a volume, which suits a grey ultrasound sweep for an ultrasound model. Colour
    endoscopy never comes as a grey stack, so a grey volume offered to such a model is a CT or MR picked by mistake
    (a CT colonography for the colon-polyp model, say), and its slices would give confident nonsense. A single grey
    picture is still taken: it is repeated to three channels.
    """
    return not (modality in COLOUR_PHOTOGRAPHY and is_grey_volume(size, components))
