"""The model list the panel shows, and the bundled sample case registered with Slicer's Sample Data module."""

from __future__ import annotations

import builtins
import dataclasses
import types

import vtk

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentSlicer.model_choices import describeModel, formatTimings, loadModelList
from MobileUViTSegmentSlicer.sample_data import (
    SAMPLE_LABEL_SHA256,
    SAMPLE_VOLUME_SHA256,
    registerSampleData,
    sampleLabelPath,
    sampleVolumePath,
    sha256Of,
)


def test_the_bundled_models_are_listed_with_the_default_selected():
    models = loadModelList()
    assert models.problem is None
    assert [choice.id for choice in models.choices] == Catalog().ids()
    assert models.defaultId == DEFAULT_MODEL_ID
    choice = models.find(DEFAULT_MODEL_ID)
    card = Catalog().get(DEFAULT_MODEL_ID)
    assert choice.title == card.title
    assert card.description in choice.details
    assert card.licenses["weights"] in choice.details and card.licenses["training_data"] in choice.details
    assert "Expected time per case:" in choice.details
    assert models.find("no-such-model") is None


def test_the_model_details_name_labels_licence_and_time():
    card = Catalog().get(DEFAULT_MODEL_ID)
    lines = describeModel(card).splitlines()
    assert lines[1] == "Labels: anterior hippocampus, posterior hippocampus."
    assert lines[2].startswith("Licence of the weights: ")


def test_a_model_improved_here_says_where_it_comes_from_and_what_changed():
    card = Catalog().get(DEFAULT_MODEL_ID)
    assert "Made on this computer" not in describeModel(card)  # shipped models have no lineage
    improved = dataclasses.replace(card, id="hippocampus-mri-local-1", lineage={
        "parent": {"id": DEFAULT_MODEL_ID, "weights_sha256": "0" * 64}, "cases": ["a", "b", "c"],
        "held_out_cases": ["d"], "figures": {"before": {"mean_dice": 0.6891}, "after": {"mean_dice": 0.8342}}})
    assert describeModel(improved).splitlines()[-1] == (
        f"Made on this computer from '{DEFAULT_MODEL_ID}' with 3 corrected cases; mean Dice on 1 held-out corrected "
        "case: 0.689 before, 0.834 after.")


def test_timings_from_the_card_read_as_one_line():
    assert formatTimings({}) == "Expected time per case: not measured yet."
    assert formatTimings({"cpu_seconds_per_case": 0.53, "cpu_seconds_per_case_measured_on": "x86_64, 2 threads",
                          "gpu_seconds_per_case": 0.04}) == \
        "Expected time per case: about 0.5 s on CPU (x86_64, 2 threads); about 0.0 s on GPU."


def test_without_the_catalog_packages_the_panel_says_what_to_do(monkeypatch):
    real_import = builtins.__import__

    def without_jsonschema(name, *args, **kwargs):
        if name == "MobileUViTSegmentLib.catalog":
            raise ModuleNotFoundError("No module named 'jsonschema'", name="jsonschema")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_jsonschema)
    models = loadModelList()
    assert models.choices == [] and models.defaultId == ""
    assert models.problem == ("The model list needs the Python package 'jsonschema'; click Segment to install the "
                              "required packages.")


def test_an_unreadable_catalog_or_an_empty_one_is_reported():
    class Broken:
        def cards(self):
            raise OSError("permission denied")

    assert loadModelList(Broken()).problem == "The model catalog could not be read: permission denied."
    assert loadModelList(types.SimpleNamespace(cards=lambda: [])).problem == \
        "No models were found in the model folders."


def test_the_sample_checksums_match_the_shipped_files():
    assert sha256Of(sampleVolumePath()) == SAMPLE_VOLUME_SHA256
    assert sha256Of(sampleLabelPath()) == SAMPLE_LABEL_SHA256


def test_the_sample_is_registered_with_a_file_uri_and_its_checksum(tmp_path):
    calls = []
    logic = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kwargs: calls.append(kwargs))
    registerSampleData(logic, tmp_path / "icon.png")
    (call,) = calls
    assert call["uris"] == sampleVolumePath().as_uri() and call["uris"].startswith("file://")
    assert call["checksums"] == f"SHA256:{SAMPLE_VOLUME_SHA256}"
    assert call["fileNames"] == "hippocampus_046.nii.gz" and call["category"] == "MobileUViT Segment"
    assert call["thumbnailFileName"] == str(tmp_path / "icon.png")


def test_a_picture_given_to_a_3d_model_is_refused_before_running_and_the_2d_models_are_named(scene):
    models = loadModelList()
    picture = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "benign (301)")
    pixels = vtk.vtkImageData()
    pixels.SetDimensions(562, 471, 1)  # how Slicer loads a PNG: one slice thick
    pixels.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    picture.SetAndObserveImageData(pixels)
    dimensions = picture.GetImageData().GetDimensions()

    three_d = Catalog().get(DEFAULT_MODEL_ID)
    assert three_d.input.spatial_dims == 3
    picture_models = [card for card in Catalog().cards() if card.input.spatial_dims == 2]
    assert picture_models, "the bundled catalog has a 2D model (breast-ultrasound)"
    named = ", ".join(f"'{card.title}'" for card in picture_models)
    message = models.mismatchWithInput(DEFAULT_MODEL_ID, dimensions)
    assert message == (f"'{three_d.title}' needs a 3D volume, and the input is a single slice (a picture); choose a "
                       f"2D model: {named}.")
    for card in picture_models:
        assert models.mismatchWithInput(card.id, dimensions) is None
    assert models.mismatchWithInput(DEFAULT_MODEL_ID, (35, 51, 36)) is None  # a volume suits both kinds
    assert models.mismatchWithInput("no-such-model", dimensions) is None  # "Select a model" covers that


def test_without_a_2d_model_the_refusal_says_none_is_installed():
    only_3d = [card for card in Catalog().cards() if card.input.spatial_dims == 3]
    models = loadModelList(types.SimpleNamespace(cards=lambda: only_3d))
    assert models.mismatchWithInput(DEFAULT_MODEL_ID, (256, 256, 1)).endswith("; no 2D model is installed.")


def test_a_grey_volume_given_to_a_colour_endoscopy_model_is_refused_before_running_and_the_3d_models_are_named(
        scene):
    """A CT colonography picked for a polyp model of colonoscopy frames; an ultrasound model still takes a sweep."""
    ultrasound = next(card for card in Catalog().cards() if card.input.spatial_dims == 2 and card.modality == "US")
    endoscopy = dataclasses.replace(ultrasound, id="endoscopy", title="Endoscopy frames", modality="ES")
    cards = Catalog().cards() + [endoscopy]
    models = loadModelList(types.SimpleNamespace(cards=lambda: cards))
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT colonography")
    voxels = vtk.vtkImageData()
    voxels.SetDimensions(512, 512, 48)
    voxels.AllocateScalars(vtk.VTK_SHORT, 1)
    ct.SetAndObserveImageData(voxels)
    dimensions, components = ct.GetImageData().GetDimensions(), ct.GetImageData().GetNumberOfScalarComponents()

    named = ", ".join(f"'{card.title}'" for card in cards if card.input.spatial_dims == 3)
    assert models.mismatchWithInput("endoscopy", dimensions, components) == (
        f"'Endoscopy frames' segments colour photographs one at a time, and the input is a grey volume of 48 slices; "
        f"choose a 3D model: {named}.")
    assert models.mismatchWithInput(ultrasound.id, dimensions, components) is None  # a grey ultrasound sweep
    assert models.mismatchWithInput("endoscopy", dimensions, 3) is None  # colour frames stacked: a video
    assert models.mismatchWithInput("endoscopy", (562, 471, 1), 1) is None  # one grey picture is still taken
