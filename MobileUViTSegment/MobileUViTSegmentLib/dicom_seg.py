"""DICOM Segmentation (SEG) output that references the DICOM series it was computed from.

A result segmented from a DICOM series folder can go back to a PACS or a viewer as a DICOM SEG (highdicom,
``BINARY``): same study, a new series that references every source instance, one segment per card label with the
card's name, colour (as recommended display CIELab), SNOMED CT terminology (category, type and type modifier,
anatomic region and its modifier when the card has them) and the model as the segmentation algorithm (AUTOMATIC;
name = model id, version = card version, family = Artificial Intelligence, architecture as a parameter).

Frames are matched to the source slices by *position*: each source instance's ImagePositionPatient is mapped into
the label map's grid, so file names and file order never matter, and a series whose geometry does not match the
label map (another orientation, pixel spacing or matrix) is refused rather than written misaligned.

Every card label is described in the Segment Sequence, even when the model found nothing for it, so segment number
always equals the card's label value; frames without any segmented pixel are omitted (highdicom's
``omit_empty_frames``), so an empty segment is described but has no frames. When no label was found at all, every
(empty) frame is written, because a SEG must hold at least one frame.

highdicom and pydicom are imported lazily: the rest of the command line works without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from .card import Code, LabelSpec, ModelCard
from .errors import InputError, OutputError
from .image_io import atomic_output

DICOM_SEG_SUFFIX = ".dcm"
MANUFACTURER = "MobileUViTSegment"
POSITION_TOLERANCE = 0.01  # voxels; larger offsets mean the slice is not on the label map's grid
DIRECTION_TOLERANCE = 1e-4
SPACING_TOLERANCE = 1e-3  # relative


def _require_highdicom():
    try:
        import highdicom
    except ImportError as error:
        raise OutputError("DICOM SEG output needs the highdicom package; install it with: pip install highdicom") \
            from error
    return highdicom


def series_files(folder: Path) -> list[Path]:
    """The files of the one DICOM series in ``folder``: exactly the files :func:`image_io.read_image` reads."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) if folder.is_dir() else ()
    if len(series_ids) != 1:
        raise InputError(f"{folder} must hold exactly one DICOM series to write a DICOM SEG referencing it")
    return [Path(name) for name in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])]


def read_source_series(folder: Path) -> list:
    """The series' pydicom datasets (headers only: a SEG references the images, it does not copy their pixels)."""
    import pydicom

    datasets = []
    for path in series_files(folder):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as error:
            raise InputError(f"DICOM file {path} cannot be read: {error}") from error
        if int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
            raise InputError(f"{path.name} is a multi-frame DICOM image; DICOM SEG output supports series of "
                             "single-frame images only")
        missing = [key for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                                   "FrameOfReferenceUID", "StudyInstanceUID", "SeriesInstanceUID")
                   if key not in dataset]
        if missing:
            raise InputError(f"{path.name} lacks {', '.join(missing)}, which a DICOM SEG referencing it needs")
        datasets.append(dataset)
    return datasets


def check_source(folder: Path) -> None:
    """Check, before the network runs, what a DICOM SEG of the series in ``folder`` needs (highdicom, headers)."""
    _require_highdicom()
    read_source_series(folder)


def slice_indices(datasets: list, labels: sitk.Image) -> list[int]:
    """For each source dataset, the label map slice at its ImagePositionPatient.

    Raises :class:`OutputError` when a slice is not on the label map's grid, so frames can never be misaligned.
    """
    size = labels.GetSize()
    direction = np.asarray(labels.GetDirection(), dtype=float).reshape(3, 3)
    spacing = labels.GetSpacing()
    indices = []
    for dataset in datasets:
        orientation = np.asarray(dataset.ImageOrientationPatient, dtype=float)
        row_spacing, column_spacing = (float(value) for value in dataset.PixelSpacing)
        same_plane = (np.allclose(orientation[:3], direction[:, 0], atol=DIRECTION_TOLERANCE)
                      and np.allclose(orientation[3:], direction[:, 1], atol=DIRECTION_TOLERANCE)
                      and np.isclose(column_spacing, spacing[0], rtol=SPACING_TOLERANCE)
                      and np.isclose(row_spacing, spacing[1], rtol=SPACING_TOLERANCE)
                      and (int(dataset.Columns), int(dataset.Rows)) == tuple(size[:2]))
        index = np.asarray(labels.TransformPhysicalPointToContinuousIndex(
            [float(value) for value in dataset.ImagePositionPatient]))
        slice_index = int(round(index[2]))
        if not same_plane or np.abs(index - [0, 0, slice_index]).max() > POSITION_TOLERANCE \
                or not 0 <= slice_index < size[2]:
            raise OutputError(f"the DICOM slice {dataset.SOPInstanceUID} does not lie on the result's voxel grid; "
                              "the DICOM SEG is not written")
        indices.append(slice_index)
    if sorted(indices) != list(range(size[2])):
        raise OutputError(f"the {len(datasets)} DICOM slices do not cover the result's {size[2]} slices one to one; "
                          "the DICOM SEG is not written")
    return indices


def _concept(code: Code):
    highdicom = _require_highdicom()
    return highdicom.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def segment_description(label: LabelSpec, card: ModelCard):
    """The Segment Sequence item of one card label (number = label value)."""
    highdicom = _require_highdicom()
    from pydicom.sr.codedict import codes

    terminology = label.terminology
    algorithm = highdicom.AlgorithmIdentificationSequence(
        name=card.id, family=codes.cid7162.ArtificialIntelligence, version=card.version, source=MANUFACTURER,
        parameters={"architecture": card.architecture})
    description = highdicom.seg.SegmentDescription(
        segment_number=label.value, segment_label=label.name,
        segmented_property_category=_concept(terminology.category),
        segmented_property_type=_concept(terminology.type),
        algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        anatomic_regions=[_concept(terminology.anatomic_region)] if terminology.anatomic_region else None,
        display_color=highdicom.color.CIELabColor.from_rgb(*label.color))
    # Modifiers live inside the item they modify (PS3.3 C.8.20.4 / Code Sequence Macro); highdicom has no argument.
    if terminology.type_modifier:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _concept(terminology.type_modifier)]
    if terminology.anatomic_region and terminology.anatomic_region_modifier:
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
            _concept(terminology.anatomic_region_modifier)]
    return description


def build_dicom_seg(labels: sitk.Image, card: ModelCard, datasets: list, *, software_version: Optional[str] = None):
    """A highdicom ``Segmentation`` of ``labels`` (on the series' grid) referencing the source ``datasets``."""
    highdicom = _require_highdicom()
    if labels.GetDimension() == 2:
        labels = sitk.JoinSeries([labels])
    voxels = sitk.GetArrayFromImage(labels)  # (slices, rows, columns): a DICOM frame is (rows, columns)
    known = {label.value for label in card.labels}
    unknown = sorted(set(np.unique(voxels).tolist()) - known - {0})
    if unknown:
        raise OutputError(f"the result holds label values {unknown} that model {card.id} does not define")
    indices = slice_indices(datasets, labels)
    order = sorted(range(len(datasets)), key=indices.__getitem__)  # sources along the slice axis
    sources = [datasets[position] for position in order]
    frames = voxels[[indices[position] for position in order]].astype(np.uint8)
    first = sources[0]
    series_number = int(getattr(first, "SeriesNumber", 0) or 0) + 100  # Slicer's convention for derived series
    # Device serial number (Type 1 in Enhanced General Equipment): the weights' sha256 prefix names the exact model.
    return highdicom.seg.Segmentation(
        source_images=sources, pixel_array=frames,
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(label, card) for label in card.labels],
        series_instance_uid=highdicom.UID(), series_number=series_number, sop_instance_uid=highdicom.UID(),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=card.id,
        software_versions=software_version or card.version, device_serial_number=card.weights.sha256[:16] or "0",
        series_description=f"{card.title} ({card.id} {card.version})"[:64],
        content_description=f"Automatic segmentation by {card.id}"[:64],
        omit_empty_frames=bool(frames.any()))


def write_dicom_seg(labels: sitk.Image, card: ModelCard, source: Path, path: Path) -> None:
    """Write ``labels`` (segmented from the DICOM series folder ``source``) as a DICOM SEG file, atomically."""
    segmentation = build_dicom_seg(labels, card, read_source_series(Path(source)),
                                   software_version=_package_version())
    with atomic_output(path) as temporary:
        segmentation.save_as(temporary)


def _package_version() -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("MobileUViTSegment")
    except PackageNotFoundError:
        return None
