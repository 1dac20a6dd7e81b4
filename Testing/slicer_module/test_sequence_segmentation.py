"""Segmenting every frame of a 4D volume (a sequence of scalar volumes with a browser) against real MRML nodes.

The 4D volume has three frames of different geometry built from the bundled sample case: the case itself, a copy
whose voxels and IJK-to-RAS are flipped along i and shifted (same anatomy, different grid and position), and a
cropped copy (different size). Fake workers (which label voxels by intensity percentiles, so any geometry slip shows)
cover control flow, cancel and failure; the real worker with the bundled model runs the whole sequence once.

The Sequences logic is registered on the scene, as in Slicer, so the browser creates and updates proxy nodes
headless, and the tests check that browsing a frame shows that frame's segmentation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import slicer
import vtk
from fake_workers import (
    WorkerFactory,
    card_labels,
    failing,
    never_finishing,
    segmenting,
    threshold_labels,
)
from mrml_helpers import (
    assert_stored_on_volume_grid,
    mask_dice,
    scene_snapshot,
    segments_as_label_array,
    volume_array,
)
from vtk.util.numpy_support import numpy_to_vtk

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID
from MobileUViTSegmentSlicer.processing_state import ProcessingState
from MobileUViTSegmentSlicer.result_import import MODEL_ID_TAG
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationLogic
from MobileUViTSegmentSlicer.sequence_segmentation import (
    SequenceProgress,
    SequenceSegmentation,
    SequenceSegmentationFailed,
    sequenceBrowserOfVolume,
)
from MobileUViTSegmentSlicer.volume_files import arrayToMatrix, ijkToRasArray, loadVolumeFile

INDEX_VALUES = ("0", "1.5", "3")
CARD_NAMES = [label["name"] for label in card_labels()]
CROP = (slice(3, 35), slice(5, 44), slice(None))  # (k, j, i) of the cropped frame


# -- building the 4D volume -------------------------------------------------------------------------------------

def volume_from_array(voxels: np.ndarray, ijk_to_ras: np.ndarray) -> slicer.vtkMRMLScalarVolumeNode:
    """A volume node outside any scene (a carrier the sequence copies) with these (k, j, i) voxels."""
    image = vtk.vtkImageData()
    image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(voxels).ravel(), deep=True))
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(arrayToMatrix(ijk_to_ras))
    return node


def frame_variants(voxels: np.ndarray, ijk_to_ras: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(voxels, IJK-to-RAS) of the three frames; each frame's voxels map to the same anatomy as the original."""
    width = voxels.shape[2]
    flip_i = np.eye(4)
    flip_i[0, 0], flip_i[0, 3] = -1.0, width - 1.0  # i' = (width - 1) - i
    shift = np.eye(4)
    shift[:3, 3] = (4.0, -7.5, 2.25)
    crop = np.eye(4)
    crop[:3, 3] = (0, CROP[1].start, CROP[0].start)  # (i, j, k) of the first kept voxel
    return [(voxels, ijk_to_ras),
            (voxels[:, :, ::-1], shift @ ijk_to_ras @ flip_i),
            (voxels[CROP], ijk_to_ras @ crop)]


def same_anatomy_labels(labels: np.ndarray) -> list[np.ndarray]:
    """The original frame's (k, j, i) labels as the three frames index them (see :func:`frame_variants`)."""
    return [labels, labels[:, :, ::-1], labels[CROP]]


def add_sequence(scene, frames, name: str = "Perfusion", with_browser: bool = True):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    for (voxels, ijk_to_ras), value in zip(frames, INDEX_VALUES):
        sequence.SetDataNodeAtValue(volume_from_array(voxels, ijk_to_ras), value)
    browser = None
    if with_browser:
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    return sequence, browser


@pytest.fixture
def sequences_logic(scene) -> Iterator[slicer.vtkSlicerSequencesLogic]:
    """Registered on the scene as in Slicer: browsers then make and update their proxy nodes."""
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)
    yield logic
    logic.SetMRMLScene(None)


@pytest.fixture
def sample_frames(sample_volume):
    return frame_variants(volume_array(sample_volume), ijkToRasArray(sample_volume))


@pytest.fixture
def four_d(scene, sequences_logic, sample_volume, sample_frames):
    """(sequence, browser) of the three frames; the sample volume node stays in the scene as an unrelated node."""
    return add_sequence(scene, sample_frames)


def per_request(*scripts):
    """A fake-worker script that behaves like ``scripts[n]`` for the n-th segment request (the last one repeats)."""
    calls = []

    def script(request, worker):
        calls.append(request)
        return scripts[min(len(calls), len(scripts)) - 1](request, worker)

    return script


def driver_with(scene, sequences_logic, script) -> tuple[SequenceSegmentation, WorkerFactory]:
    factory = WorkerFactory(script)
    return SequenceSegmentation(scene, SegmentationLogic(scene, factory), sequences_logic), factory


def poll_until(driver: SequenceSegmentation, condition, limit: int = 2000) -> None:
    for _ in range(limit):
        if condition():
            return
        driver.poll()
    raise AssertionError("the condition was never met")


def browse_labels(browser, result_sequence, frame: int, segment_count: int) -> tuple[np.ndarray, object]:
    """Select ``frame`` in the browser; the proxy segmentation's labels on the proxy volume's grid, and that volume."""
    browser.SetSelectedItemNumber(frame)
    volume = browser.GetProxyNode(browser.GetMasterSequenceNode())
    segmentation = browser.GetProxyNode(result_sequence)
    ids = [segmentation.GetSegmentation().GetNthSegmentID(index) for index in range(segment_count)]
    assert_stored_on_volume_grid(segmentation, ids, volume)
    return segments_as_label_array(segmentation, ids, volume), volume


def assert_frame_segmentations_on_frame_grids(result_sequence, input_sequence) -> None:
    """Every item of the result: the card's segments, stored on exactly that input frame's grid."""
    assert result_sequence.GetNumberOfDataNodes() == input_sequence.GetNumberOfDataNodes()
    for index in range(input_sequence.GetNumberOfDataNodes()):
        assert result_sequence.GetNthIndexValue(index) == input_sequence.GetNthIndexValue(index)
        item, frame = result_sequence.GetNthDataNode(index), input_sequence.GetNthDataNode(index)
        segmentation = item.GetSegmentation()
        ids = [segmentation.GetNthSegmentID(number) for number in range(segmentation.GetNumberOfSegments())]
        assert [segmentation.GetSegment(segment_id).GetName() for segment_id in ids] == CARD_NAMES
        assert_stored_on_volume_grid(item, ids, frame)


def assert_only_additions(scene, before: dict, browser) -> set[str]:
    """Every node that was there is unchanged; returns the classes of the added nodes.

    The one exception is the input's proxy volume: adding a sequence to a browser makes the Sequences logic copy
    the selected frame into every proxy again, which changes its modification time but not its content.
    """
    after = scene_snapshot(scene)
    input_proxy = browser.GetProxyNode(browser.GetMasterSequenceNode())
    for entries in (before, after):
        entries["nodes"][input_proxy.GetID()].pop("mtime")
    assert {node_id: after["nodes"][node_id] for node_id in before["nodes"]} == before["nodes"], (
        "a node that was there before was changed or removed")
    frame = browser.GetMasterSequenceNode().GetNthDataNode(browser.GetSelectedItemNumber())
    assert np.array_equal(volume_array(input_proxy), volume_array(frame))
    assert np.array_equal(ijkToRasArray(input_proxy), ijkToRasArray(frame))
    return {entry["class"] for node_id, entry in after["nodes"].items() if node_id not in before["nodes"]}


# -- fake workers: the result, browsing, progress -----------------------------------------------------------------

def test_every_frame_is_segmented_on_its_own_grid_and_browsing_shows_its_segmentation(scene, sequences_logic,
                                                                                     four_d):
    sequence, browser = four_d
    before = scene_snapshot(scene)
    driver, factory = driver_with(scene, sequences_logic, segmenting())
    result_sequence = driver.segmentSequenceAndWait(browser, DEFAULT_MODEL_ID, device="cpu", timeout=60)

    assert driver.state is ProcessingState.DONE
    assert len(factory.workers) == 1 and len(factory.last.sent) == 3, "one worker, one request per frame"
    assert (result_sequence.GetIndexName(), result_sequence.GetIndexUnit(), result_sequence.GetIndexType()) == (
        "time", "s", slicer.vtkMRMLSequenceNode.NumericIndex)
    assert result_sequence.GetAttribute(MODEL_ID_TAG) == DEFAULT_MODEL_ID
    assert_frame_segmentations_on_frame_grids(result_sequence, sequence)
    assert browser.IsSynchronizedSequenceNode(result_sequence, True)
    proxy = browser.GetProxyNode(result_sequence)
    assert driver.lastResult.proxyNode is proxy and proxy.GetNumberOfDisplayNodes() == 1
    assert not proxy.GetHideFromEditors()

    added = assert_only_additions(scene, before, browser)
    assert {"vtkMRMLSequenceNode", "vtkMRMLSegmentationNode"} <= added <= {
        "vtkMRMLSequenceNode", "vtkMRMLSegmentationNode", "vtkMRMLSegmentationDisplayNode",
        "vtkMRMLSegmentationStorageNode"}, added
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1, "a temporary node was left"

    # Browsing: each frame shows its own segmentation, equal to the intensity rule on that frame's voxels.
    for frame in (2, 0, 1):
        labels, volume = browse_labels(browser, result_sequence, frame, len(CARD_NAMES))
        assert np.array_equal(ijkToRasArray(volume), ijkToRasArray(sequence.GetNthDataNode(frame)))
        assert np.array_equal(labels, threshold_labels(volume_array(volume))), f"frame {frame}"


def test_a_sequence_node_without_a_browser_gets_a_result_sequence_only(scene, sequences_logic, sample_frames):
    sequence, _ = add_sequence(scene, sample_frames, with_browser=False)
    driver, _ = driver_with(scene, sequences_logic, segmenting(progress_batches=1))
    result_sequence = driver.segmentSequenceAndWait(sequence, DEFAULT_MODEL_ID, device="cpu", timeout=60)
    assert driver.lastResult.browserNode is None and driver.lastResult.proxyNode is None
    assert scene.IsNodePresent(result_sequence)
    assert_frame_segmentations_on_frame_grids(result_sequence, sequence)
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_a_sequence_node_with_a_browser_adds_the_result_to_that_browser(scene, sequences_logic, four_d):
    sequence, browser = four_d
    driver, _ = driver_with(scene, sequences_logic, segmenting(progress_batches=1))
    result_sequence = driver.segmentSequenceAndWait(sequence, DEFAULT_MODEL_ID, device="cpu", timeout=60)
    assert driver.lastResult.browserNode is browser
    assert browser.IsSynchronizedSequenceNode(result_sequence, True)


def test_progress_counts_frames(scene, sequences_logic, four_d):
    _, browser = four_d
    driver, _ = driver_with(scene, sequences_logic, segmenting(progress_batches=2))
    reports: list[SequenceProgress] = []
    driver.progress.connect(reports.append)
    driver.segmentSequenceAndWait(browser, DEFAULT_MODEL_ID, device="cpu", timeout=60)
    assert sorted({report.frameNumber for report in reports}) == [1, 2, 3]
    assert all(report.frameCount == 3 for report in reports)
    fractions = [report.fraction for report in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert "frame 2 of 3 (time = 1.5 s)" in next(report.text for report in reports if report.frameNumber == 2)
    name = driver.lastResult.sequenceNode.GetName()
    assert name == "Perfusion segmentation"
    assert driver.machine.summary == f"3 frames segmented into the sequence '{name}'."


# -- cancel and failure: all or nothing ---------------------------------------------------------------------------

def test_cancel_in_the_second_frame_leaves_the_scene_exactly_as_before(scene, sequences_logic, four_d):
    _, browser = four_d
    before = scene_snapshot(scene)
    driver, factory = driver_with(scene, sequences_logic, per_request(segmenting(1), never_finishing()))
    driver.start(browser, DEFAULT_MODEL_ID, device="cpu")
    poll_until(driver, lambda: driver.machine.stage == "segmenting frame 2 of 3" and driver.logic.busy)
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1, "the frame's temporary node"

    driver.cancel()
    assert driver.state is ProcessingState.IDLE and not driver.logic.busy
    assert factory.last.killed
    assert scene_snapshot(scene) == before
    assert browser.GetNumberOfSynchronizedSequenceNodes() == 0  # only the primary sequence, as before
    assert "the scene was not changed" in driver.machine.summary
    driver.poll()  # polling after a cancel does nothing
    assert scene_snapshot(scene) == before


def test_a_failing_frame_is_named_and_nothing_is_added(scene, sequences_logic, four_d):
    _, browser = four_d
    before = scene_snapshot(scene)
    driver, _ = driver_with(scene, sequences_logic,
                            per_request(segmenting(1), failing("InputError", "the input volume is constant")))
    messages: list[str] = []
    driver.failed.connect(messages.append)
    with pytest.raises(SequenceSegmentationFailed) as raised:
        driver.segmentSequenceAndWait(browser, DEFAULT_MODEL_ID, device="cpu", timeout=60)
    assert str(raised.value) == messages[0] == (
        "Frame 2 of 3 (time = 1.5 s) failed, so nothing was added to the scene: the input volume is constant.")
    assert len(messages) == 1 and driver.state is ProcessingState.FAILED
    assert scene_snapshot(scene) == before


def test_a_crashing_worker_in_the_last_frame_leaves_no_trace_and_the_driver_can_run_again(scene, sequences_logic,
                                                                                          four_d):
    _, browser = four_d
    before = scene_snapshot(scene)
    driver, _ = driver_with(scene, sequences_logic,
                            per_request(segmenting(1), segmenting(1), failing("RuntimeError", "boom"), segmenting(1)))
    with pytest.raises(SequenceSegmentationFailed, match=r"^Frame 3 of 3 \(time = 3 s\) failed.*internal error"):
        driver.segmentSequenceAndWait(browser, DEFAULT_MODEL_ID, device="cpu", timeout=60)
    assert scene_snapshot(scene) == before
    driver.segmentSequenceAndWait(browser, DEFAULT_MODEL_ID, device="cpu", timeout=60)
    assert driver.state is ProcessingState.DONE and driver.lastResult.frameCount == 3


def test_a_run_that_exceeds_the_timeout_is_cancelled_without_a_trace(scene, sequences_logic, four_d):
    _, browser = four_d
    before = scene_snapshot(scene)
    driver, factory = driver_with(scene, sequences_logic, per_request(segmenting(1), never_finishing()))
    with pytest.raises(SequenceSegmentationFailed, match="within 0.3 s and the run was cancelled"):
        driver.segmentSequenceAndWait(browser, DEFAULT_MODEL_ID, device="cpu", timeout=0.3)
    assert factory.last.killed and driver.state is ProcessingState.IDLE
    assert scene_snapshot(scene) == before


# -- refusals -----------------------------------------------------------------------------------------------------

def refusal(scene, sequences_logic, input_node, model_id: str = DEFAULT_MODEL_ID) -> str:
    before = scene_snapshot(scene)
    driver, factory = driver_with(scene, sequences_logic, segmenting())
    messages: list[str] = []
    driver.failed.connect(messages.append)
    driver.start(input_node, model_id, device="cpu")
    assert driver.state is ProcessingState.FAILED and not factory.workers, "nothing may start"
    assert scene_snapshot(scene) == before
    assert len(messages) == 1 and messages[0].endswith(".") and "\n" not in messages[0]
    return messages[0]


def test_refuses_a_sequence_of_segmentations(scene, sequences_logic):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "Contours")
    sequence.SetDataNodeAtValue(slicer.vtkMRMLSegmentationNode(), "0")
    assert refusal(scene, sequences_logic, sequence) == (
        "The sequence 'Contours' holds vtkMRMLSegmentationNode items, not image volumes; select a sequence of "
        "image volumes (a 4D volume).")


def test_refuses_an_empty_sequence_and_a_browser_without_sequences(scene, sequences_logic):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "Nothing")
    assert refusal(scene, sequences_logic, sequence) == (
        "The sequence 'Nothing' has no frames; load or record a 4D volume first.")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "Idle browser")
    assert "browses no sequence" in refusal(scene, sequences_logic, browser)


def test_refuses_an_empty_model_id_a_plain_volume_and_no_input(scene, sequences_logic, four_d, sample_volume):
    _, browser = four_d
    assert refusal(scene, sequences_logic, browser, model_id="") == "Select a model."
    assert "is not a sequence or a sequence browser" in refusal(scene, sequences_logic, sample_volume)
    assert refusal(scene, sequences_logic, None).startswith("Select a sequence")


# -- the real worker ----------------------------------------------------------------------------------------------

def test_real_model_segments_every_frame_of_a_4d_volume(scene, sequences_logic, four_d, real_worker,
                                                        sample_label_path):
    sequence, browser = four_d
    before = scene_snapshot(scene)
    driver = SequenceSegmentation(scene, SegmentationLogic(scene, lambda: real_worker), sequences_logic)
    result_sequence = driver.segmentSequenceAndWait(browser, DEFAULT_MODEL_ID, device="cpu", timeout=300)

    assert_frame_segmentations_on_frame_grids(result_sequence, sequence)
    assert [result_sequence.GetNthIndexValue(index) for index in range(3)] == list(INDEX_VALUES)
    assert_only_additions(scene, before, browser)

    carrier_scene = slicer.vtkMRMLScene()  # the reference labels, outside the scene under test
    reference = volume_array(loadVolumeFile(sample_label_path, carrier_scene, labelMap=True))
    for frame, expected in enumerate(same_anatomy_labels(reference)):
        labels, _ = browse_labels(browser, result_sequence, frame, len(CARD_NAMES))
        assert labels.shape == expected.shape
        for value in (1, 2):
            score = mask_dice(labels == value, expected == value)
            assert score > 0.7, f"frame {frame}, label {value}: Dice {score:.3f}"


def test_the_proxy_volume_of_a_browsed_sequence_leads_to_its_browser(scene, sequences_logic, four_d, sample_volume):
    sequence, browser = four_d
    proxy = browser.GetProxyNode(sequence)
    assert proxy is not None and proxy.IsA("vtkMRMLScalarVolumeNode")
    assert sequenceBrowserOfVolume(proxy) is browser
    assert sequenceBrowserOfVolume(sample_volume) is None  # a plain volume: the panel offers no "every frame"
    assert sequenceBrowserOfVolume(None) is None
