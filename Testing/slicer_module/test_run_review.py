"""The Logic's review path: asking the worker for uncertainty, importing the map beside the segments, the review list
and per-segment confidence in ``lastReview``, with scripted workers (fast, exact) and the real model on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from fake_workers import WorkerFactory, done_with, segmenting, threshold_labels
from mrml_helpers import segments_as_label_array, volume_array
from test_roi_segmentation import roi_around_voxels

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentSlicer.processing_state import ProcessingState
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationLogic
from MobileUViTSegmentSlicer.volume_files import ijkToRasArray

TIMEOUT_S = 300.0


def review_entry(rank: int, label_value: int, slice_index: int) -> dict:
    return {"rank": rank, "label_value": label_value, "label_name": f"label {label_value}", "voxel_count": 40 - rank,
            "mean_uncertainty": 0.7 - rank / 100, "total_uncertainty": 30.0 - rank, "centroid_index": [1, 2, 3],
            "centroid_lps": [-1.0, -2.0, 3.0], "centroid_ras": [1.0, 2.0, 3.0], "slice_index": slice_index}


def write_labels_and_map(request: dict) -> None:
    """Threshold labels, and as the uncertainty map the voxel's k index / 100 (so misplacement shows)."""
    image = sitk.ReadImage(request["input"])
    voxels = sitk.GetArrayFromImage(image)
    labels = sitk.GetImageFromArray(threshold_labels(voxels))
    labels.CopyInformation(image)
    sitk.WriteImage(labels, request["output"])
    k = np.indices(voxels.shape)[0].astype(np.float32) / 100.0
    uncertainty = sitk.GetImageFromArray(k)
    uncertainty.CopyInformation(image)
    sitk.WriteImage(uncertainty, request["uncertainty"])


REVIEWED_DONE = {"confidence": {"1": 0.91, "2": 0.83}, "review": [review_entry(2, 2, 7), review_entry(1, 1, 4)]}


def test_uncertainty_and_flips_are_asked_only_when_wanted(scene, sample_volume):
    factory = WorkerFactory(segmenting(progress_batches=0))
    logic = SegmentationLogic(scene, factory)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10)
    plain = factory.last.sent[-1]
    assert "uncertainty" not in plain and "tta" not in plain
    assert not logic.lastReview.assessed and logic.lastReview.uncertaintyVolumeNode is None

    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10, tta=True)
    asked = factory.last.sent[-1]
    assert asked["tta"] is True
    # The map goes into the run's own private folder, beside the exported input.
    assert Path(asked["uncertainty"]).parent == Path(asked["input"]).parent


def test_the_uncertainty_map_lands_on_the_input_grid_with_review_and_confidence(scene, sample_volume):
    factory = WorkerFactory(done_with({**REVIEWED_DONE, "uncertainty": "written"}, write=write_labels_and_map))
    logic = SegmentationLogic(scene, factory)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10, uncertainty=True)
    review = logic.lastReview
    node = review.uncertaintyVolumeNode
    assert node is not None and scene.IsNodePresent(node)
    assert np.allclose(ijkToRasArray(node), ijkToRasArray(sample_volume))
    k = np.indices(volume_array(sample_volume).shape)[0] / 100.0
    assert np.allclose(volume_array(node), k, atol=1e-6)
    assert [item.rank for item in review.items] == [1, 2]
    segment_ids = logic.lastResult.segmentIds
    assert review.confidenceBySegmentId == {segment_ids[0]: 0.91, segment_ids[1]: 0.83}
    assert review.confidenceByLabelValue == {1: 0.91, 2: 0.83}
    assert not Path(factory.last.sent[-1]["uncertainty"]).parent.exists()  # private folder removed


def test_a_missing_uncertainty_map_costs_the_overlay_not_the_segments(scene, sample_volume):
    def labels_only(request: dict) -> None:
        image = sitk.ReadImage(request["input"])
        labels = sitk.GetImageFromArray(threshold_labels(sitk.GetArrayFromImage(image)))
        labels.CopyInformation(image)
        sitk.WriteImage(labels, request["output"])

    factory = WorkerFactory(done_with({**REVIEWED_DONE, "uncertainty": "claimed"}, write=labels_only))
    logic = SegmentationLogic(scene, factory)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10, uncertainty=True)
    assert logic.state is ProcessingState.DONE
    assert len(logic.lastResult.segmentIds) == 2
    assert logic.lastReview.uncertaintyVolumeNode is None
    assert "uncertainty map was not added" in logic.lastReview.problem
    assert "uncertainty map was not added" in logic.machine.summary
    assert len(logic.lastReview.items) == 2  # the list still helps without the overlay


def test_inside_a_roi_slices_are_numbered_in_the_volume_and_the_map_is_zero_outside(scene, sample_volume):
    factory = WorkerFactory(done_with({**REVIEWED_DONE, "uncertainty": "written"}, write=write_labels_and_map))
    logic = SegmentationLogic(scene, factory)
    roi = roi_around_voxels(scene, sample_volume, (5, 10, 6), (20, 30, 25))
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10, uncertainty=True, roiNode=roi)
    review = logic.lastReview
    assert [item.sliceIndex for item in review.items] == [4 + 6, 7 + 6]
    voxels = volume_array(review.uncertaintyVolumeNode)  # (k, j, i)
    block = voxels[6:26, 10:31, 5:21]
    assert np.allclose(block, (np.indices(block.shape)[0] / 100.0), atol=1e-6)
    outside = np.ones(voxels.shape, bool)
    outside[6:26, 10:31, 5:21] = False
    assert np.all(voxels[outside] == 0)


def test_the_real_model_gives_a_map_review_and_confidences(scene, sample_volume, real_worker):
    logic = SegmentationLogic(scene, lambda: real_worker)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=TIMEOUT_S, uncertainty=True)
    review = logic.lastReview
    voxels = volume_array(review.uncertaintyVolumeNode)
    assert voxels.shape == volume_array(sample_volume).shape
    assert 0.0 <= voxels.min() and voxels.max() <= 1.0 and voxels.max() > 0.1
    names = {label.name for label in Catalog().get(DEFAULT_MODEL_ID).labels}
    assert review.items and all(item.labelName in names | {"background"} for item in review.items)
    assert set(review.confidenceBySegmentId) == set(logic.lastResult.segmentIds)
    assert all(0.0 < score <= 1.0 for score in review.confidenceBySegmentId.values())


def test_the_review_applies_only_to_the_runs_own_volume_and_segmentation(scene, sample_volume, tmp_path):
    """The panel measures the nodes selected now: another volume must not get this run's map, another segmentation
    (whose segment IDs may well be the same) not its confidences, and a deleted map is never used."""
    factory = WorkerFactory(done_with({**REVIEWED_DONE, "uncertainty": "written"}, write=write_labels_and_map))
    logic = SegmentationLogic(scene, factory)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10, uncertainty=True)
    review, segmentation = logic.lastReview, logic.lastResult.segmentationNode
    assert review.uncertaintyFor(scene, sample_volume) is review.uncertaintyVolumeNode
    assert review.confidenceFor(segmentation) == review.confidenceBySegmentId

    other_volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "same size, other patient")
    other_volume.SetAndObserveImageData(sample_volume.GetImageData())
    plain = SegmentationLogic(scene, WorkerFactory(segmenting(progress_batches=0)))
    other_segmentation = plain.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10)
    assert review.uncertaintyFor(scene, other_volume) is None
    assert review.confidenceFor(other_segmentation) == {} and review.confidenceFor(None) == {}

    scene.RemoveNode(review.uncertaintyVolumeNode)
    assert review.uncertaintyFor(scene, sample_volume) is None


def write_labels_and_probabilities(request: dict) -> None:
    """Threshold labels, and as the probability of label v the value v / 10 everywhere (so mixing them up shows)."""
    image = sitk.ReadImage(request["input"])
    labels = sitk.GetImageFromArray(threshold_labels(sitk.GetArrayFromImage(image)))
    labels.CopyInformation(image)
    sitk.WriteImage(labels, request["output"])
    for value in (1, 2):
        probability = sitk.Image(image.GetSize(), sitk.sitkFloat32) + value / 10.0
        probability.CopyInformation(image)
        sitk.WriteImage(probability, str(Path(request["probabilities"]) / f"probability_{value}.nrrd"))


def test_probability_maps_become_one_volume_per_label_on_the_input_grid(scene, sample_volume):
    paths = {"1": "claimed", "2": "claimed"}
    factory = WorkerFactory(done_with({"probabilities": paths}, write=write_labels_and_probabilities))
    logic = SegmentationLogic(scene, factory)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=10, probabilities=True)
    assert Path(factory.last.sent[-1]["probabilities"]).parent == Path(factory.last.sent[-1]["input"]).parent
    review = logic.lastReview
    assert review.uncertaintyVolumeNode is None and review.problem == ""
    names = [label.name for label in Catalog().get(DEFAULT_MODEL_ID).labels]
    assert sorted(review.probabilityVolumeNodes) == [1, 2]
    for value, node in review.probabilityVolumeNodes.items():
        assert node.GetName() == f"{sample_volume.GetName()} {names[value - 1]} probability"
        assert np.allclose(ijkToRasArray(node), ijkToRasArray(sample_volume))
        assert np.allclose(volume_array(node), value / 10.0)
    assert not Path(factory.last.sent[-1]["probabilities"]).exists()  # the private folder is gone


def test_the_real_model_gives_probability_maps_that_agree_with_its_segments(scene, sample_volume, real_worker):
    logic = SegmentationLogic(scene, lambda: real_worker)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=TIMEOUT_S, probabilities=True)
    maps = {value: volume_array(node) for value, node in logic.lastReview.probabilityVolumeNodes.items()}
    assert sorted(maps) == [1, 2]
    labels = segments_as_label_array(logic.lastResult.segmentationNode, logic.lastResult.segmentIds, sample_volume)
    for value, probability in maps.items():
        assert 0.0 <= probability.min() and probability.max() <= 1.0
        assert probability[labels == value].mean() > 0.7 and probability[labels == 0].mean() < 0.1
