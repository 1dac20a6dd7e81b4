"""Imported segments carry terminology that Slicer's own DICOM SEG export turns into the card's codes.

Slicer's export (``Modules/Scripted/DICOMPlugins/DICOMSegmentationPlugin.py``, ``DICOMSegmentationExporter``, the
same code as QIICR/QuantitativeReporting's plugin) reads each segment's ``TerminologyEntry`` tag with
``vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry`` and writes category, type, type modifier,
anatomic region and its modifier as DICOM code sequences, skipping any code whose scheme, value or meaning is unset.
The tests below run that real deserializer (slicer-core) on the tags of segments imported the way the module
imports a worker result, apply the exporter's rules, and compare with every bundled card's labels.

Tag format (Slicer's developer guide, "TerminologyEntry tag", and the deserializer): 7 parts separated by ``~``:
terminology context name, category, type, type modifier, region context name, region, region modifier; each code
``CodingSchemeDesignator^CodeValue^CodeMeaning``, ``^^`` when absent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from fake_workers import card_labels
from mrml_helpers import TERMINOLOGY_TAG, segment_tag

from MobileUViTSegmentLib.card import Code, LabelSpec, load_card
from MobileUViTSegmentLib.resources import models_dir
from MobileUViTSegmentSlicer.result_import import LabelDescription, importLabelMap

BUNDLED_CARDS = sorted(models_dir().glob("*.card.json"))
GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CODES = "Anatomic codes - DICOM master list"


def code_item(code) -> dict | None:
    """A code as the exporter writes it, or None where ``isTerminologyInformationValid`` would skip it."""
    values = (code.GetCodeValue(), code.GetCodingSchemeDesignator(), code.GetCodeMeaning()) if code else (None,) * 3
    if any(value is None for value in values):
        return None
    return {"CodeValue": values[0], "CodingSchemeDesignator": values[1], "CodeMeaning": values[2]}


def exported_codes(terminology_entry: str) -> dict:
    """The code sequences Slicer's DICOM SEG export writes for a segment with this ``TerminologyEntry`` tag."""
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic().DeserializeTerminologyEntry(terminology_entry, entry)
    codes = {"SegmentedPropertyCategoryCodeSequence": code_item(entry.GetCategoryObject()),
             "SegmentedPropertyTypeCodeSequence": code_item(entry.GetTypeObject()),
             "SegmentedPropertyTypeModifierCodeSequence": code_item(entry.GetTypeModifierObject())}
    if code_item(entry.GetRegionObject()) is not None:  # the region modifier is only read under a region
        codes["AnatomicRegionSequence"] = code_item(entry.GetRegionObject())
        codes["AnatomicRegionModifierSequence"] = code_item(entry.GetRegionModifierObject())
    return {key: value for key, value in codes.items() if value is not None}


def card_codes(label: LabelSpec) -> dict:
    """The code sequences a label's card terminology declares, in the exporter's form."""

    def item(code: Code | None) -> dict | None:
        return None if code is None else {"CodeValue": code.value, "CodingSchemeDesignator": code.scheme,
                                          "CodeMeaning": code.meaning}

    terminology = label.terminology
    codes = {"SegmentedPropertyCategoryCodeSequence": item(terminology.category),
             "SegmentedPropertyTypeCodeSequence": item(terminology.type),
             "SegmentedPropertyTypeModifierCodeSequence": item(terminology.type_modifier),
             "AnatomicRegionSequence": item(terminology.anatomic_region),
             "AnatomicRegionModifierSequence": item(terminology.anatomic_region_modifier)
             if terminology.anatomic_region else None}
    return {key: value for key, value in codes.items() if value is not None}


def every_label_map(volume_path: Path, count: int, path: Path) -> Path:
    """A label map on the volume's grid holding every value 1..count (intensity bins), so no segment is empty."""
    image = sitk.ReadImage(str(volume_path))
    voxels = sitk.GetArrayFromImage(image)
    edges = np.percentile(voxels, np.linspace(40, 99, count + 1)[:-1])
    labels = sitk.GetImageFromArray(np.digitize(voxels, edges).astype(np.uint8))
    labels.CopyInformation(image)
    sitk.WriteImage(labels, str(path))
    return path


@pytest.mark.parametrize("card_path", BUNDLED_CARDS, ids=[path.name for path in BUNDLED_CARDS])
def test_imported_segments_export_to_dicom_with_the_card_codes(scene, sample_volume, sample_volume_path, tmp_path,
                                                               card_path):
    card = load_card(card_path)
    labels = [LabelDescription.fromEvent(item) for item in card_labels(card.id)]  # the worker's done-event labels
    label_map = every_label_map(sample_volume_path, len(card.labels), tmp_path / "labels.nii.gz")
    node = importLabelMap(label_map, labels, sample_volume, scene, modelId=card.id).segmentationNode
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(card.labels)
    for index, label in enumerate(card.labels):
        segment = segmentation.GetNthSegment(index)
        tag = segment_tag(segment, TERMINOLOGY_TAG)
        assert segment.GetName() == label.name
        assert exported_codes(tag) == card_codes(label)
        # The export's SegmentDescription is the category meaning; it refuses segments without category and type.
        assert {"SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"} <= set(card_codes(label))


@pytest.mark.parametrize("card_path", BUNDLED_CARDS, ids=[path.name for path in BUNDLED_CARDS])
def test_terminology_entries_are_in_slicers_canonical_seven_part_form(card_path):
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    for label in load_card(card_path).labels:
        tag = label.terminology.slicer_entry()
        parts = tag.split("~")
        assert len(parts) == 7 and parts[0] == GENERAL_ANATOMY and parts[4] == ANATOMIC_CODES
        assert all(len(parts[index].split("^")) == 3 for index in (1, 2, 3, 5, 6))
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(tag, entry)
        assert entry.GetTerminologyContextName() == GENERAL_ANATOMY and entry.GetRegionContextName() == ANATOMIC_CODES
        assert logic.SerializeTerminologyEntry(entry) == tag  # Slicer writes back exactly what we wrote


def test_anatomic_region_and_modifier_reach_the_export(tmp_path):
    card = load_card(BUNDLED_CARDS[0])
    first = card.labels[0]
    region, side = Code("SCT", "12738006", "Brain"), Code("SCT", "7771000", "Left")
    regional = dataclasses.replace(first, terminology=dataclasses.replace(
        first.terminology, anatomic_region=region, anatomic_region_modifier=side))
    codes = exported_codes(regional.terminology.slicer_entry())
    assert codes == card_codes(regional)
    assert codes["AnatomicRegionSequence"]["CodeMeaning"] == "Brain"
    assert codes["AnatomicRegionModifierSequence"]["CodeValue"] == "7771000"
