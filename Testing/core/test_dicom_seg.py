"""DICOM SEG output: frames on the source slices (by position), references, card terminology; refusals.

There is no DICOM series in the shared data, so the tests write one from a real volume (the bundled sample case,
given an oblique direction, and the shared brain1 volume with its left-handed direction) as an MR Image Storage
series with shuffled file names, then read the SEG back with pydicom/highdicom.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

hd = pytest.importorskip("highdicom", reason="highdicom is not installed (pip install highdicom)")
pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: E402

from MobileUViTSegmentLib.card import Code  # noqa: E402
from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog  # noqa: E402
from MobileUViTSegmentLib.cli import main  # noqa: E402
from MobileUViTSegmentLib.dicom_seg import build_dicom_seg, read_source_series, write_dicom_seg  # noqa: E402
from MobileUViTSegmentLib.errors import OutputError  # noqa: E402
from MobileUViTSegmentLib.image_io import read_image  # noqa: E402
from MobileUViTSegmentLib.resources import sample_data_dir  # noqa: E402

SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"
SAMPLE_LABELS = sample_data_dir() / "hippocampus_046_label.nii.gz"
SHARED = Path(os.environ.get("MOBILEUVIT_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
BRAIN = SHARED / "volumes" / "brain1_image.nrrd"
BRAIN_LABELS = SHARED / "volumes" / "brain1_label.nrrd"


@pytest.fixture(scope="module")
def card():
    return Catalog().get(DEFAULT_MODEL_ID)


def oblique(image: sitk.Image) -> sitk.Image:
    """``image`` with a rotated (oblique, right-handed) direction and a non-zero origin; voxels unchanged."""
    rotation = sitk.VersorTransform((0.3, -0.2, 1.0), 0.4).GetMatrix()
    copy = sitk.Image(image)
    copy.SetDirection((np.reshape(rotation, (3, 3)) @ np.reshape(image.GetDirection(), (3, 3))).ravel().tolist())
    copy.SetOrigin((12.5, -40.25, 7.0))
    return copy


def write_series(image: sitk.Image, folder: Path, seed: int = 0) -> dict:
    """Write ``image`` as an MR series (one file per slice, shuffled names); SOP instance UID -> slice index."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    voxels = np.rint(sitk.GetArrayFromImage(image)).astype(np.int16)
    direction = np.reshape(image.GetDirection(), (3, 3))
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    slices = voxels.shape[0]
    names = rng.permutation(slices)
    instance_numbers = rng.permutation(slices) + 1
    uids = {}
    for index in range(slices):
        dataset = Dataset()
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
        dataset.SOPClassUID = MRImageStorage
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.FrameOfReferenceUID = frame_of_reference
        dataset.Modality, dataset.Manufacturer = "MR", "test"
        dataset.PatientName, dataset.PatientID = "Test^Dicom", "T1"
        dataset.PatientBirthDate, dataset.PatientSex = "", "O"
        dataset.StudyDate, dataset.StudyTime, dataset.StudyID, dataset.AccessionNumber = "20260101", "120000", "1", ""
        dataset.ReferringPhysicianName = ""
        dataset.SeriesNumber, dataset.InstanceNumber = 7, int(instance_numbers[index])
        dataset.ImagePositionPatient = [f"{value:.6f}" for value in image.TransformIndexToPhysicalPoint((0, 0, index))]
        dataset.ImageOrientationPatient = [f"{value:.8f}" for value in (*direction[:, 0], *direction[:, 1])]
        dataset.PixelSpacing = [f"{image.GetSpacing()[1]:.8f}", f"{image.GetSpacing()[0]:.8f}"]
        dataset.SliceThickness = f"{image.GetSpacing()[2]:.8f}"
        dataset.Rows, dataset.Columns = voxels.shape[1], voxels.shape[2]
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 1
        dataset.PixelData = voxels[index].tobytes()
        dataset.save_as(folder / f"IM{names[index]:04d}_{generate_uid()[-6:]}.dcm", enforce_file_format=True)
        uids[dataset.SOPInstanceUID] = index
    return {"uids": uids, "study": study, "series": series, "frame_of_reference": frame_of_reference}


def decoded_labels(seg, reference: sitk.Image) -> np.ndarray:
    """The SEG's frames painted back into ``reference``'s grid by each frame's ImagePositionPatient."""
    labels = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint8)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        position = [float(value) for value in item.PlanePositionSequence[0].ImagePositionPatient]
        index = reference.TransformPhysicalPointToContinuousIndex(position)
        assert np.allclose(index[:2], 0, atol=1e-3) and abs(index[2] - round(index[2])) < 1e-3
        segment = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        target = labels[int(round(index[2]))]
        assert not np.any(target[frame > 0]), "segments overlap in a BINARY SEG of a label map"
        target[frame > 0] = segment
    return labels


def code_of(item) -> tuple[str, str, str]:
    return item.CodingSchemeDesignator, item.CodeValue, item.CodeMeaning


def triple(code: Code) -> tuple[str, str, str]:
    return code.scheme, code.value, code.meaning


def assert_references_series(seg, written: dict) -> None:
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == written["study"]
    assert seg.FrameOfReferenceUID == written["frame_of_reference"]
    assert seg.SeriesInstanceUID != written["series"]
    (referenced_series,) = seg.ReferencedSeriesSequence
    assert referenced_series.SeriesInstanceUID == written["series"]
    assert {item.ReferencedSOPInstanceUID for item in referenced_series.ReferencedInstanceSequence} == \
        set(written["uids"])


def assert_frames_reference_their_slices(seg, written: dict, reference: sitk.Image) -> None:
    """Each frame's source instance is the slice at the frame's position (positions, not file order)."""
    for item in seg.PerFrameFunctionalGroupsSequence:
        (source,) = item.DerivationImageSequence[0].SourceImageSequence
        position = [float(value) for value in item.PlanePositionSequence[0].ImagePositionPatient]
        index = reference.TransformPhysicalPointToContinuousIndex(position)
        assert written["uids"][source.ReferencedSOPInstanceUID] == int(round(index[2]))


def test_segments_carry_the_card_names_colours_codes_and_algorithm(tmp_path, card):
    image, labels = sitk.ReadImage(str(SAMPLE)), sitk.ReadImage(str(SAMPLE_LABELS))
    write_series(image, tmp_path / "series")
    labels.CopyInformation(read_image(tmp_path / "series"))  # axis-aligned: the series grid is the file's grid
    seg = build_dicom_seg(labels, card, read_source_series(tmp_path / "series"))
    assert [item.SegmentNumber for item in seg.SegmentSequence] == [label.value for label in card.labels]
    for item, label in zip(seg.SegmentSequence, card.labels):
        terminology = label.terminology
        assert item.SegmentLabel == label.name
        assert code_of(item.SegmentedPropertyCategoryCodeSequence[0]) == triple(terminology.category)
        (segment_type,) = item.SegmentedPropertyTypeCodeSequence
        assert code_of(segment_type) == triple(terminology.type)
        assert [code_of(code) for code in segment_type.SegmentedPropertyTypeModifierCodeSequence] == \
            [triple(terminology.type_modifier)]
        assert "AnatomicRegionSequence" not in item  # the hippocampus card declares none
        assert item.SegmentAlgorithmType == "AUTOMATIC" and item.SegmentAlgorithmName == card.id
        (algorithm,) = item.SegmentationAlgorithmIdentificationSequence
        assert algorithm.AlgorithmName == card.id and algorithm.AlgorithmVersion == card.version
        assert code_of(algorithm.AlgorithmFamilyCodeSequence[0]) == ("DCM", "123110", "Artificial Intelligence")
        rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
        assert np.allclose(rgb, label.color, atol=1.5)


def test_anatomic_region_and_its_modifier_are_written_inside_the_region_item(tmp_path, card):
    region, side = Code("SCT", "12738006", "Brain"), Code("SCT", "7771000", "Left")
    first = card.labels[0]
    regional = dataclasses.replace(first, terminology=dataclasses.replace(
        first.terminology, anatomic_region=region, anatomic_region_modifier=side))
    regional_card = dataclasses.replace(card, labels=(regional, *card.labels[1:]))
    image = sitk.ReadImage(str(SAMPLE))
    write_series(image, tmp_path / "series")
    series_grid = read_image(tmp_path / "series")
    labels = sitk.Image(series_grid.GetSize(), sitk.sitkUInt8)  # nothing found
    labels.CopyInformation(series_grid)
    seg = build_dicom_seg(labels, regional_card, read_source_series(tmp_path / "series"))
    (anatomy,) = seg.SegmentSequence[0].AnatomicRegionSequence
    assert code_of(anatomy) == triple(region)
    assert [code_of(code) for code in anatomy.AnatomicRegionModifierSequence] == [triple(side)]
    assert "AnatomicRegionSequence" not in seg.SegmentSequence[1]
    # Nothing found: both segments are still described, and every (empty) frame is written (a SEG needs frames).
    assert len(seg.SegmentSequence) == 2 and not seg.pixel_array.any()


@pytest.mark.parametrize("case", ["oblique sample", "brain1"])
def test_frames_lie_on_the_source_slices_and_decode_to_the_label_map(tmp_path, card, case):
    if case == "brain1":
        if not BRAIN.exists():
            pytest.skip(f"shared volume {BRAIN} is absent")
        image, labels = sitk.ReadImage(str(BRAIN)), sitk.ReadImage(str(BRAIN_LABELS))  # left-handed direction
        labels = sitk.Cast(labels > 0, sitk.sitkUInt8) + sitk.Cast(labels > 1, sitk.sitkUInt8)  # two card labels
    else:
        image = oblique(sitk.ReadImage(str(SAMPLE)))
        labels = sitk.ReadImage(str(SAMPLE_LABELS))
    labels.CopyInformation(image)
    labels = sitk.Cast(labels, sitk.sitkUInt8)
    assert sitk.GetArrayViewFromImage(labels).any()
    written = write_series(image, tmp_path / "series", seed=3)
    series_grid = read_image(tmp_path / "series")  # the grid the engine would segment (slices sorted by GDCM)
    on_series_grid = sitk.Resample(labels, series_grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    output = tmp_path / "result.dcm"
    write_dicom_seg(on_series_grid, card, tmp_path / "series", output)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no partial file left

    seg = hd.seg.segread(output)
    assert_references_series(seg, written)
    assert_frames_reference_their_slices(seg, written, image)
    assert np.array_equal(decoded_labels(seg, image), sitk.GetArrayFromImage(labels))
    # Frames of a segment are only those with segmented pixels; every labelled slice of every segment has one.
    frame_count = sum(len(np.unique(np.nonzero(sitk.GetArrayViewFromImage(labels) == label.value)[0]))
                      for label in card.labels)
    assert seg.NumberOfFrames == frame_count


def test_a_label_map_off_the_series_grid_is_refused_and_nothing_is_written(tmp_path, card):
    image = sitk.ReadImage(str(SAMPLE))
    write_series(image, tmp_path / "series")
    labels = sitk.Cast(read_image(tmp_path / "series") > 0, sitk.sitkUInt8)
    labels.SetOrigin([value + 0.5 for value in labels.GetOrigin()])  # half a voxel off
    with pytest.raises(OutputError, match="does not lie on the result's voxel grid"):
        write_dicom_seg(labels, card, tmp_path / "series", tmp_path / "result.dcm")
    assert not (tmp_path / "result.dcm").exists()


def test_cli_refuses_dcm_output_for_a_non_dicom_input_before_loading_the_model(tmp_path, capsys):
    output = tmp_path / "result.dcm"
    code = main(["segment", str(SAMPLE), "-o", str(output), "--model", "no-such-model"])
    error = capsys.readouterr().err
    assert code != 0 and not output.exists()
    assert error.strip().splitlines() == [
        "mobileuvit-segment: error: cannot write result.dcm: DICOM SEG output (.dcm) needs a DICOM series folder "
        "as input, and hippocampus_046.nii.gz is not one"]


def test_cli_refuses_dcm_format_for_a_batch_with_a_non_dicom_input(tmp_path, capsys):
    write_series(sitk.ReadImage(str(SAMPLE)), tmp_path / "series")
    code = main(["segment", str(tmp_path / "series"), str(SAMPLE), "-o", str(tmp_path / "out"), "--format", "dcm"])
    error = capsys.readouterr().err
    assert code != 0 and not (tmp_path / "out").exists()
    assert "needs a DICOM series folder as input, and hippocampus_046.nii.gz is not one" in error


def test_cli_segments_a_dicom_series_into_a_dicom_seg_of_that_series(tmp_path, card, capsys):
    image = sitk.ReadImage(str(SAMPLE))
    written = write_series(image, tmp_path / "series", seed=5)
    dcm, nifti = tmp_path / "result.dcm", tmp_path / "result.nii.gz"
    assert main(["segment", str(tmp_path / "series"), "-o", str(dcm), "--quiet"]) == 0
    seg = hd.seg.segread(dcm)
    assert_references_series(seg, written)
    assert_frames_reference_their_slices(seg, written, image)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == [label.name for label in card.labels]
    decoded = decoded_labels(seg, image)
    assert set(np.unique(decoded)) == {0, 1, 2}  # the model finds both parts of the hippocampus
    # The same labels as the label-map output of the same run, voxel for voxel (mapped by position).
    assert main(["segment", str(tmp_path / "series"), "-o", str(nifti), "--quiet"]) == 0
    labels = sitk.Resample(sitk.ReadImage(str(nifti)), image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert np.array_equal(decoded, sitk.GetArrayFromImage(labels))
