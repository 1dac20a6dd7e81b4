"""Uncertainty, confidence and review: the maths on arrays with known answers, the engine on the bundled sample case
(maps on the input's exact grid, labels unchanged), known answers from a constant 2D model, the worker's new fields
and the ``segment --uncertainty/--tta`` flags."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from picture_models import write_card

from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.confidence import (
    REVIEW_THRESHOLD,
    flip_disagreement,
    label_confidence,
    normalised_entropy,
    rank_slices,
    review_regions,
)
from MobileUViTSegmentLib.image_io import read_image
from MobileUViTSegmentLib.inference.engine import SegmentationOptions, Segmenter, tta_flip_axes
from MobileUViTSegmentLib.resources import sample_data_dir
from MobileUViTSegmentLib.worker import Worker

SAMPLE = sample_data_dir() / "hippocampus_046.nii.gz"


def binary_entropy_bits(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def assert_same_grid(result: sitk.Image, image: sitk.Image) -> None:
    assert result.GetSize() == image.GetSize()
    assert result.GetSpacing() == image.GetSpacing()
    assert result.GetOrigin() == image.GetOrigin()
    assert result.GetDirection() == image.GetDirection()


# --- the maths ------------------------------------------------------------------------------------------------------

def test_normalised_entropy_is_zero_for_certainty_one_for_uniform_and_the_known_value_in_between():
    probabilities = np.array([
        [1.0, 0.25, 0.5, 0.0],
        [0.0, 0.25, 0.25, 0.0],
        [0.0, 0.25, 0.25, 1.0],
        [0.0, 0.25, 0.0, 0.0],
    ], dtype=np.float32)  # (classes, voxels)
    entropy = normalised_entropy(probabilities)
    assert entropy.dtype == np.float32
    assert entropy == pytest.approx([0.0, 1.0, 1.5 / 2.0, 0.0], abs=1e-6)  # 1.5 bits of 2 possible


def test_two_class_entropy_is_the_binary_entropy_in_bits():
    p = np.array([0.5, 0.1, 0.9, 0.999], dtype=np.float32)
    entropy = normalised_entropy(np.stack([1 - p, p]))
    assert entropy == pytest.approx([binary_entropy_bits(float(v)) for v in p], abs=1e-5)


def test_disagreement_is_the_fraction_of_passes_that_differ_from_the_consensus():
    consensus = np.array([0, 1, 2, 1], np.uint8)
    passes = [np.array([0, 1, 2, 1]), np.array([0, 0, 2, 2]), np.array([0, 1, 1, 0]), np.array([0, 1, 2, 0])]
    assert flip_disagreement(passes, consensus) == pytest.approx([0.0, 0.25, 0.25, 0.75])


def test_label_confidence_averages_one_minus_uncertainty_over_each_label_and_leaves_absent_labels_out():
    uncertainty = np.array([0.0, 0.2, 0.4, 0.9, 0.5], np.float32)
    labels = np.array([0, 1, 1, 2, 0], np.uint8)
    assert label_confidence(uncertainty, labels, [1, 2, 3]) == pytest.approx({1: 0.7, 2: 0.1})


def synthetic_uncertainty() -> tuple[sitk.Image, sitk.Image]:
    """(z, y, x) = (6, 8, 10) map with two uncertain blocks and a faint one below the threshold; oblique-ish grid."""
    values = np.zeros((6, 8, 10), np.float32)
    values[1:3, 1:3, 1:3] = 0.9  # 8 voxels, total 7.2
    values[4:6, 4:8, 5:9] = 0.6  # 32 voxels, total 19.2: ranked first
    values[0, 6:8, 0:2] = REVIEW_THRESHOLD - 0.01  # never a review item
    labels = np.zeros(values.shape, np.uint8)
    labels[4:6, 4:8, 5:7] = 2  # 16 of the 32 voxels are label 2, 8 are label 1, 8 background
    labels[4:6, 4:8, 7] = 1
    labels[1:3, 1:3, 1:3] = 0
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.5, 1.0, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    return image, label_image


def test_review_ranks_connected_uncertain_regions_by_summed_uncertainty_with_their_centroid_and_slice():
    image, labels = synthetic_uncertainty()
    items = review_regions(image, labels, {1: "one", 2: "two"})
    assert [item.rank for item in items] == [1, 2]
    first, second = items
    assert (first.voxel_count, first.total_uncertainty, first.mean_uncertainty) == (32, pytest.approx(19.2),
                                                                                    pytest.approx(0.6))
    assert (first.label_value, first.label_name) == (2, "two")
    assert first.centroid_index == pytest.approx((6.5, 5.5, 4.5))  # (i, j, k) = mean of x 5..8, y 4..7, z 4..5
    expected_lps = image.TransformContinuousIndexToPhysicalPoint((6.5, 5.5, 4.5))
    assert first.centroid_lps == pytest.approx(expected_lps)
    assert first.centroid_ras == pytest.approx((-expected_lps[0], -expected_lps[1], expected_lps[2]))
    assert first.slice_index == 4  # round half to even: k = 4.5 -> 4
    assert (second.voxel_count, second.label_value, second.label_name) == (8, 0, "background")
    assert review_regions(image, labels, {1: "one", 2: "two"}, limit=1) == [first]
    assert review_regions(image, labels, {}, threshold=0.95) == []
    assert json.loads(json.dumps(first.to_json()))["centroid_ras"] == pytest.approx(list(first.centroid_ras))


def test_slices_are_ranked_by_summed_uncertainty_along_the_slowest_axis():
    image, _ = synthetic_uncertainty()
    ranking = rank_slices(image, limit=3)
    assert [k for k, _ in ranking] == [4, 5, 1]  # 16 * 0.6 = 9.6 each for k 4 and 5 (lower k first), then 3.6
    assert ranking[0][1] == pytest.approx(9.6)


# --- the engine -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    torch.set_num_threads(1)
    return Segmenter(Catalog().get(DEFAULT_MODEL_ID), torch.device("cpu"))


@pytest.fixture(scope="module")
def sample() -> sitk.Image:
    return read_image(SAMPLE)


def test_without_the_options_a_run_has_no_uncertainty_and_no_extra_timings(segmenter, sample):
    result = segmenter.segment(sample)
    assert result.uncertainty is None and result.disagreement is None
    assert result.confidence == {} and result.review == []
    assert "confidence" not in result.timings


def test_uncertainty_lands_on_the_input_grid_and_leaves_the_labels_unchanged(segmenter, sample):
    plain = segmenter.segment(sample)
    result = segmenter.segment(sample, options=SegmentationOptions(uncertainty=True))
    assert np.array_equal(sitk.GetArrayViewFromImage(result.labels), sitk.GetArrayViewFromImage(plain.labels))
    assert result.uncertainty.GetPixelID() == sitk.sitkFloat32
    assert_same_grid(result.uncertainty, sample)
    values = sitk.GetArrayViewFromImage(result.uncertainty)
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.max() > REVIEW_THRESHOLD
    assert result.disagreement is None
    assert set(result.confidence) == set(result.present_labels()) == {1, 2}
    assert all(0.5 < score <= 1.0 for score in result.confidence.values())
    # The boundary is less certain than the inside of a segment: the map says something about the labels.
    labels = sitk.GetArrayViewFromImage(result.labels)
    eroded = sitk.GetArrayFromImage(sitk.BinaryErode(result.labels > 0, [1, 1, 1]))  # a copy: the image is temporary
    assert values[eroded > 0].mean() < values[(labels > 0) & (eroded == 0)].mean()
    assert 1 <= len(result.review) <= 10
    size = sample.GetSize()
    for item in result.review:
        index = sample.TransformPhysicalPointToContinuousIndex(item.centroid_lps)
        assert all(-0.5 <= value <= extent - 0.5 for value, extent in zip(index, size))
        assert 0 <= item.slice_index < size[2]
        assert item.label_value in (0, 1, 2) and item.mean_uncertainty >= REVIEW_THRESHOLD
    totals = [item.total_uncertainty for item in result.review]
    assert totals == sorted(totals, reverse=True)


def test_a_resampled_and_reoriented_input_gets_its_maps_on_its_own_grid(segmenter, sample):
    image = sitk.Resample(sample, [30, 40, 33], sitk.Transform(), sitk.sitkLinear, sample.GetOrigin(),
                          (1.2, 1.2, 1.15), sample.GetDirection(), 0.0, sitk.sitkFloat32)
    image = sitk.PermuteAxes(image, [2, 0, 1])  # an orientation other than the card's: reoriented, then resampled
    result = segmenter.segment(image, options=SegmentationOptions(tta=True))
    for output in (result.labels, result.uncertainty, result.disagreement):
        assert_same_grid(output, image)
    assert set(result.confidence) == {1, 2}


def test_tta_flips_along_the_trained_mirror_axes_and_reports_their_disagreement(segmenter, sample):
    assert tta_flip_axes(segmenter.card) == (0,)  # the card records left-right mirroring only
    unrecorded = dataclasses.replace(segmenter.card, training={})
    assert tta_flip_axes(unrecorded) == (0, 1, 2)
    result = segmenter.segment(sample, options=SegmentationOptions(tta=True))
    assert_same_grid(result.disagreement, sample)
    disagreement = sitk.GetArrayViewFromImage(result.disagreement)
    assert set(np.unique(disagreement).tolist()) <= {0.0, 0.5}  # two passes, the input needs no resampling
    assert (disagreement > 0).any()
    assert all(score > 0.5 for score in result.confidence.values())


def test_a_constant_single_logit_model_has_the_binary_entropy_of_its_probability_everywhere(tmp_path: Path):
    bias = 1.0
    segmenter = Segmenter(load_card(write_card(tmp_path, head_bias=bias)), torch.device("cpu"))
    picture = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (40, 50)).astype(np.uint8))
    picture.SetSpacing((0.3, 0.4))
    picture.SetOrigin((5.0, -2.0))
    result = segmenter.segment(picture, options=SegmentationOptions(tta=True))
    expected = binary_entropy_bits(1 / (1 + math.exp(-bias)))
    assert_same_grid(result.uncertainty, picture)
    assert sitk.GetArrayViewFromImage(result.uncertainty) == pytest.approx(expected, abs=1e-4)
    assert not sitk.GetArrayViewFromImage(result.disagreement).any()  # flips of a constant agree
    assert result.confidence == pytest.approx({1: 1 - expected}, abs=1e-4)
    assert expected > REVIEW_THRESHOLD  # so the whole picture is one uncertain region
    [item] = result.review
    assert (item.voxel_count, item.label_value, item.label_name, item.slice_index) == (2000, 1, "lesion", 0)
    assert item.centroid_lps == pytest.approx((5.0 + 24.5 * 0.3, -2.0 + 19.5 * 0.4, 0.0))


# --- the worker and the command line --------------------------------------------------------------------------------

def worker_events(worker: Worker, request: dict) -> list[dict]:
    worker.output.seek(0)
    worker.output.truncate()
    worker.handle(json.loads(json.dumps(request)))
    return [json.loads(line) for line in worker.output.getvalue().splitlines()]


@pytest.fixture(scope="module")
def worker() -> Worker:
    return Worker(io.StringIO())


def test_the_worker_writes_the_maps_and_reports_confidence_and_review_when_asked(worker, sample, tmp_path: Path):
    request = {"type": "segment", "id": "u1", "input": str(SAMPLE), "output": str(tmp_path / "labels.nrrd"),
               "model": DEFAULT_MODEL_ID, "device": "cpu", "uncertainty": str(tmp_path / "uncertainty.nrrd"),
               "disagreement": str(tmp_path / "disagreement.nrrd"), "tta": True}
    done = worker_events(worker, request)[-1]
    assert done["event"] == "done", done
    assert done["uncertainty"] == request["uncertainty"] and done["disagreement"] == request["disagreement"]
    for name in ("uncertainty", "disagreement"):
        written = sitk.ReadImage(request[name])
        assert written.GetPixelID() == sitk.sitkFloat32
        assert_same_grid(written, sample)
    assert set(done["confidence"]) == {"1", "2"} and all(0.5 < v <= 1 for v in done["confidence"].values())
    first = done["review"][0]
    assert first["rank"] == 1 and len(first["centroid_ras"]) == 3 and isinstance(first["slice_index"], int)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["disagreement.nrrd", "labels.nrrd",
                                                                "uncertainty.nrrd"]


def test_an_old_request_gets_the_old_done_event_and_a_lone_disagreement_is_refused(worker, tmp_path: Path):
    request = {"type": "segment", "id": "o1", "input": str(SAMPLE), "output": str(tmp_path / "labels.nrrd"),
               "model": DEFAULT_MODEL_ID, "device": "cpu"}
    done = worker_events(worker, request)[-1]
    assert done["event"] == "done"
    assert set(done) == {"event", "id", "output", "device", "labels", "model", "timings", "notes"}
    refused = worker_events(worker, {**request, "id": "o2", "output": str(tmp_path / "other.nrrd"),
                                     "disagreement": str(tmp_path / "d.nrrd")})
    assert [event["event"] for event in refused] == ["error"]
    assert refused[0]["kind"] == "ProtocolError" and "tta" in refused[0]["message"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["labels.nrrd"]


def test_segment_uncertainty_and_tta_write_the_maps_beside_the_output_and_print_the_review(tmp_path: Path, capsys):
    output = tmp_path / "case.seg.nrrd"
    assert main(["segment", str(SAMPLE), "-o", str(output), "--uncertainty", "--tta", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "confidence: anterior hippocampus 0." in printed and "review 1: " in printed
    sample = read_image(SAMPLE)
    for name in ("case_uncertainty.nii.gz", "case_disagreement.nii.gz"):
        assert_same_grid(sitk.ReadImage(str(tmp_path / name)), sample)
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    assert main(["segment", str(SAMPLE), "-o", str(quiet / "case.nii.gz"), "--uncertainty", "--quiet",
                 "--threads", "1"]) == 0
    assert capsys.readouterr().out == ""
    assert sorted(path.name for path in quiet.iterdir()) == ["case.nii.gz", "case_uncertainty.nii.gz"]


def test_an_uncertainty_map_that_would_overwrite_an_input_is_refused_before_any_work(tmp_path: Path, capsys):
    source = tmp_path / "case_uncertainty.nii.gz"
    source.write_bytes(SAMPLE.read_bytes())
    assert main(["segment", str(source), "-o", str(tmp_path / "case.nii.gz"), "--uncertainty"]) != 0
    assert "would overwrite an input" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["case_uncertainty.nii.gz"]


def test_the_overlay_montage_gets_an_uncertainty_row_on_a_fixed_scale(tmp_path):
    from MobileUViTSegmentLib.overlay import render_overlay_montage

    card = Catalog().get(DEFAULT_MODEL_ID)
    image = read_image(sample_data_dir() / "hippocampus_046.nii.gz")
    labels = sitk.Cast(read_image(sample_data_dir() / "hippocampus_046_label.nii.gz"), sitk.sitkUInt8)
    certain = sitk.Image(image.GetSize(), sitk.sitkFloat32)
    certain.CopyInformation(image)
    render_overlay_montage(image, labels, card, tmp_path / "plain.png", reference=labels)
    render_overlay_montage(image, labels, card, tmp_path / "certain.png", reference=labels, uncertainty=certain)
    render_overlay_montage(image, labels, card, tmp_path / "unsure.png", reference=labels, uncertainty=certain + 1.0)
    plain, zero, one = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{name}.png")))
                        for name in ("plain", "certain", "unsure"))
    rows = plain.shape[0] // 2
    assert zero.shape[0] == 3 * rows and np.array_equal(zero[:2 * rows], plain)
    assert zero[2 * rows:].max() == 0  # 0 is black ...
    bottom = one[2 * rows:]  # ... and 1 white (tiles narrower than their cell leave black margins)
    assert set(np.unique(bottom)) == {0, 255} and (bottom == 255).mean() > 0.9


# --- probability maps ----------------------------------------------------------------------------------------------

def test_probability_maps_are_the_softmax_behind_the_label_map_on_the_input_grid(segmenter, sample):
    result = segmenter.segment(sample, options=SegmentationOptions(probabilities=True, postprocess=False))
    assert set(result.probabilities) == {1, 2} and result.uncertainty is None  # only what was asked for
    maps = {value: sitk.GetArrayFromImage(image) for value, image in result.probabilities.items()}
    for value, image in result.probabilities.items():
        assert image.GetPixelID() == sitk.sitkFloat32
        assert_same_grid(image, sample)
        assert maps[value].min() >= 0.0 and maps[value].max() <= 1.0
    background = 1.0 - maps[1] - maps[2]
    assert background.min() >= -1e-5  # the three probabilities of a voxel sum to 1
    stacked = np.stack([background, maps[1], maps[2]])
    labels = sitk.GetArrayViewFromImage(result.labels)
    decided = np.sort(stacked, axis=0)[-1] - np.sort(stacked, axis=0)[-2] > 1e-4  # leave exact ties aside
    assert np.array_equal(stacked.argmax(0)[decided], labels[decided])  # the label map is their argmax
    assert (maps[1][labels == 1] > 1 / 3).all() and (maps[2][labels == 2] > 1 / 3).all()


def test_the_worker_and_segment_write_one_probability_map_per_label(worker, sample, tmp_path: Path):
    folder = tmp_path / "maps"
    folder.mkdir()
    request = {"type": "segment", "id": "p1", "input": str(SAMPLE), "output": str(tmp_path / "labels.nrrd"),
               "model": DEFAULT_MODEL_ID, "device": "cpu", "probabilities": str(folder)}
    done = worker_events(worker, request)[-1]
    assert done["event"] == "done", done
    assert done["probabilities"] == {str(value): str(folder / f"probability_{value}.nrrd") for value in (1, 2)}
    for path in done["probabilities"].values():
        assert_same_grid(sitk.ReadImage(path), sample)
    refused = worker_events(worker, {**request, "id": "p2", "probabilities": str(tmp_path / "missing")})
    assert [event["event"] for event in refused] == ["error"] and refused[0]["kind"] == "ProtocolError"

    output = tmp_path / "cli" / "case.nii.gz"
    output.parent.mkdir()
    assert main(["segment", str(SAMPLE), "-o", str(output), "--probabilities", "--quiet", "--threads", "1"]) == 0
    assert sorted(path.name for path in output.parent.iterdir()) == [
        "case.nii.gz", "case_probability_1.nii.gz", "case_probability_2.nii.gz"]
