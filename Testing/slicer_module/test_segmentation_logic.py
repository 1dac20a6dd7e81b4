"""The Logic's control flow with scripted workers: results, progress, cancel and errors, on real MRML scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_workers import (
    FakeWorker,
    WorkerFactory,
    crashing,
    done_with,
    failing,
    never_finishing,
    segmenting,
    threshold_labels,
)
from mrml_helpers import (
    assert_stored_on_volume_grid,
    scene_snapshot,
    segment_summary,
    segments_as_label_array,
    volume_array,
)

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID
from MobileUViTSegmentSlicer.processing_state import ProcessingState
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationFailed, SegmentationLogic


class Recorder:
    """Collects what the Logic's signals emit."""

    def __init__(self, logic: SegmentationLogic) -> None:
        self.states: list[ProcessingState] = []
        self.stages: list[str] = []
        self.finished = []
        self.failed: list[str] = []
        self.devices: list[str] = []
        logic.stateChanged.connect(self._on_state)
        logic.finished.connect(self.finished.append)
        logic.failed.connect(self.failed.append)
        logic.devicesDetected.connect(self.devices.append)

    def _on_state(self, machine) -> None:
        if not self.states or self.states[-1] is not machine.state:
            self.states.append(machine.state)
        if machine.state is ProcessingState.RUNNING and machine.stage not in self.stages:
            self.stages.append(machine.stage)


def poll_until(logic: SegmentationLogic, state: ProcessingState, limit: int = 50) -> None:
    for _ in range(limit):
        if logic.poll() is state:
            return
    raise AssertionError(f"the Logic never reached {state} (it is {logic.state})")


def one_sentence(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message and message[0].isupper() \
        and message.endswith(".")


def test_segment_and_wait_creates_a_new_segmentation_on_the_input_grid(scene, sample_volume):
    factory = WorkerFactory(segmenting())
    logic = SegmentationLogic(scene, factory)
    recorder = Recorder(logic)
    node = logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=30)
    request = factory.last.sent[0]
    assert (request["type"], request["model"], request["device"], request["postprocess"]) == (
        "segment", DEFAULT_MODEL_ID, "cpu", None)
    assert factory.last.input_existed_when_sent == [True]
    assert not Path(request["input"]).parent.exists(), "the private temporary folder must be removed"
    ids = logic.lastResult.segmentIds
    assert_stored_on_volume_grid(node, ids, sample_volume)
    expected = threshold_labels(volume_array(sample_volume))
    assert np.array_equal(segments_as_label_array(node, ids, sample_volume), expected)
    assert recorder.states == [ProcessingState.STARTING, ProcessingState.RUNNING, ProcessingState.IMPORTING,
                               ProcessingState.DONE]
    assert recorder.stages == ["inferring"] and recorder.devices == ["fake worker: CPU only"]
    assert [item.segmentationNode for item in recorder.finished] == [node] and recorder.failed == []
    assert logic.machine.status_text().startswith("Done in 0:0")


def test_progress_is_reported_without_blocking(scene, sample_volume):
    logic = SegmentationLogic(scene, WorkerFactory(segmenting(progress_batches=3)))
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID)
    assert logic.state is ProcessingState.STARTING  # returned at once
    logic.poll()  # ready
    fractions = []
    for _ in range(3):
        assert logic.poll() is ProcessingState.RUNNING
        fractions.append(logic.machine.fraction)
    assert fractions == sorted(fractions) and fractions[0] > 0
    assert logic.poll() is ProcessingState.DONE


def test_result_goes_into_an_existing_segmentation_without_touching_its_segments(scene, sample_volume):
    existing = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    existing.SetReferenceImageGeometryParameterFromVolumeNode(sample_volume)
    existing.GetSegmentation().AddEmptySegment("anterior hippocampus", "anterior hippocampus", (1, 0, 0))
    user_before = segment_summary(existing)
    logic = SegmentationLogic(scene, WorkerFactory(segmenting()))
    node = logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, outputSegmentationNode=existing, timeout=30)
    assert node is existing
    after = segment_summary(existing)
    assert after[:1] == user_before
    assert [item["name"] for item in after[1:]] == ["anterior hippocampus (2)", "posterior hippocampus"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


@pytest.mark.parametrize("use_existing_output", [False, True], ids=["new-output", "existing-output"])
def test_cancel_leaves_scene_unchanged(scene, sample_volume, use_existing_output):
    output = None
    if use_existing_output:
        output = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
        output.GetSegmentation().AddEmptySegment("keep me", "keep me", (0, 1, 0))
    factory = WorkerFactory(never_finishing())
    logic = SegmentationLogic(scene, factory)
    recorder = Recorder(logic)
    before = scene_snapshot(scene)
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID, outputSegmentationNode=output)
    poll_until(logic, ProcessingState.RUNNING)
    folder = Path(factory.last.sent[0]["input"]).parent
    assert folder.is_dir()
    logic.cancel()
    assert scene_snapshot(scene) == before
    assert factory.last.killed and not folder.exists()
    assert logic.state is ProcessingState.IDLE and not logic.busy
    assert recorder.states[-2:] == [ProcessingState.CANCELLING, ProcessingState.IDLE]
    assert logic.machine.status_text().startswith("Cancelled after")
    assert recorder.finished == [] and recorder.failed == []
    logic.poll()  # nothing arrives from the killed worker any more
    assert scene_snapshot(scene) == before


def test_after_a_cancel_the_next_run_uses_a_fresh_worker(scene, sample_volume):
    factory = WorkerFactory(never_finishing())
    logic = SegmentationLogic(scene, factory)
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID)
    poll_until(logic, ProcessingState.RUNNING)
    logic.cancel()
    factory.script = segmenting()
    node = logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert len(factory.workers) == 2 and factory.workers[0].killed and not factory.workers[1].killed
    assert node.GetSegmentation().GetNumberOfSegments() == 2


def test_a_successful_run_keeps_its_worker_for_the_next_one(scene, sample_volume):
    factory = WorkerFactory(segmenting())
    logic = SegmentationLogic(scene, factory)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert len(factory.workers) == 1 and len(factory.last.sent) == 2
    assert factory.last.sent[0]["id"] != factory.last.sent[1]["id"]


@pytest.mark.parametrize("kind, message, expected", [
    ("InputError", "the input volume is constant (every voxel is 7); there is nothing to segment",
     "The input volume is constant (every voxel is 7); there is nothing to segment."),
    ("WeightsError", "weights file x.safetensors has sha256 abc..., expected def...; it is corrupted",
     "Weights file x.safetensors has sha256 abc..., expected def...; it is corrupted."),
    ("ModelError", "unknown model id 'nope'; known models: hippocampus-mri",
     "Unknown model id 'nope'; known models: hippocampus-mri."),
    ("ZeroDivisionError", "internal error: division by zero",
     "The segmentation failed because of an internal error in the worker (ZeroDivisionError): division by zero."),
])
def test_worker_errors_become_one_message_and_leave_scene_unchanged(scene, sample_volume, kind, message, expected):
    logic = SegmentationLogic(scene, WorkerFactory(failing(kind, message)))
    recorder = Recorder(logic)
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert str(raised.value) == expected and one_sentence(expected)
    assert recorder.failed == [expected]
    assert logic.state is ProcessingState.FAILED and logic.machine.status_text() == f"Failed: {expected}"
    assert scene_snapshot(scene) == before


@pytest.mark.parametrize("stderr_line, expected", [
    ("RuntimeError: CUDA out of memory", "The segmentation worker stopped unexpectedly (exit code -9): "
                                         "RuntimeError: CUDA out of memory."),
    ("ModuleNotFoundError: No module named 'torch'", "The segmentation worker cannot start because the Python "
     "package 'torch' is missing; install the PyTorch extension from the Extensions Manager."),
    ("ModuleNotFoundError: No module named 'monai.networks'", "The segmentation worker cannot start because the "
     "Python package 'monai' is missing; click Segment again to install the required Python packages."),
])
def test_a_worker_crash_becomes_one_message_and_leaves_scene_unchanged(scene, sample_volume, stderr_line, expected):
    factory = WorkerFactory(crashing(-9, stderr_line))
    logic = SegmentationLogic(scene, factory)
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert str(raised.value) == expected
    assert not logic.hasWorker  # the dead worker is dropped; the next run starts another
    assert scene_snapshot(scene) == before


def test_a_worker_that_cannot_start_becomes_one_message(scene, sample_volume):
    class Unstartable(FakeWorker):
        def send(self, request: dict) -> None:
            raise FileNotFoundError(2, "No such file or directory: '/opt/Slicer/bin/PythonSlicer'")

    logic = SegmentationLogic(scene, lambda: Unstartable(never_finishing()))
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert str(raised.value).startswith("The segmentation worker could not be started: ")
    assert one_sentence(str(raised.value)) and scene_snapshot(scene) == before


def test_invalid_inputs_fail_before_any_worker_starts(scene, sample_volume):
    factory = WorkerFactory(segmenting())
    logic = SegmentationLogic(scene, factory)
    moved = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "moved")
    moved.SetAndObserveTransformNodeID(scene.AddNewNodeByClass("vtkMRMLLinearTransformNode").GetID())
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    cases = [
        ((None, DEFAULT_MODEL_ID), {}, "Select an input volume."),
        ((empty, DEFAULT_MODEL_ID), {}, "'empty' has no voxels; load an image into it first."),
        ((sample_volume, ""), {}, "Select a model."),
        ((sample_volume, DEFAULT_MODEL_ID), {"device": "tpu"}, "Unknown device 'tpu'; use one of auto, cpu, cuda."),
        ((sample_volume, DEFAULT_MODEL_ID), {"outputSegmentationNode": moved},
         "The output segmentation 'moved' is under a different transform than the input volume; choose another "
         "segmentation or create a new one."),
    ]
    before = scene_snapshot(scene)
    for args, kwargs, expected in cases:
        with pytest.raises(SegmentationFailed) as raised:
            logic.segmentAndWait(*args, timeout=5, **kwargs)
        assert str(raised.value) == expected
    assert factory.workers == []
    assert scene_snapshot(scene) == before


def test_events_of_other_requests_are_ignored(scene, sample_volume):
    def script(request, worker):
        yield [{"event": "done", "id": "someone-else", "output": "/etc/passwd", "labels": []},
               {"event": "error", "id": "someone-else", "kind": "InputError", "message": "not yours"},
               {"event": "pong", "id": "warm-up"}]
        yield from segmenting(progress_batches=1)(request, worker)

    logic = SegmentationLogic(scene, WorkerFactory(script))
    node = logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert node.GetSegmentation().GetNumberOfSegments() == 2


def test_segment_and_wait_gives_up_after_the_timeout_and_changes_nothing(scene, sample_volume):
    factory = WorkerFactory(never_finishing())
    logic = SegmentationLogic(scene, factory)
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed, match=r"did not finish within 0.2 s and was cancelled"):
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=0.2)
    assert factory.last.killed and logic.state is ProcessingState.IDLE
    assert scene_snapshot(scene) == before


def test_starting_twice_while_busy_is_refused(scene, sample_volume):
    logic = SegmentationLogic(scene, WorkerFactory(never_finishing()))
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID)
    with pytest.raises(RuntimeError, match="already running"):
        logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID)
    logic.cancel()


def test_an_input_removed_during_the_run_adds_nothing(scene, sample_volume):
    logic = SegmentationLogic(scene, WorkerFactory(segmenting()))
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID)
    poll_until(logic, ProcessingState.RUNNING)
    scene.RemoveNode(sample_volume)
    before = scene_snapshot(scene)
    poll_until(logic, ProcessingState.FAILED)
    assert logic.machine.error_message == ("The input volume was removed from the scene during the segmentation; "
                                           "nothing was added.")
    assert scene_snapshot(scene) == before


def test_a_result_that_cannot_be_imported_becomes_one_message(scene, sample_volume):
    logic = SegmentationLogic(scene, WorkerFactory(done_with({})))  # "done" but no file written
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert str(raised.value).startswith("The worker's result could not be read: the file ")
    assert one_sentence(str(raised.value)) and scene_snapshot(scene) == before


def test_warm_start_reports_the_devices_and_is_reused(scene, sample_volume):
    factory = WorkerFactory(segmenting())
    logic = SegmentationLogic(scene, factory)
    recorder = Recorder(logic)
    logic.startWorker()
    logic.startWorker()  # idempotent
    assert len(factory.workers) == 1 and factory.last.sent == [{"type": "ping", "id": "warm-up"}]
    logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=30)
    assert len(factory.workers) == 1 and recorder.devices == ["fake worker: CPU only"]
    assert logic.devicesDescription == "fake worker: CPU only"


def test_shutdown_cancels_and_stops_the_worker(scene, sample_volume):
    factory = WorkerFactory(never_finishing())
    logic = SegmentationLogic(scene, factory)
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID)
    logic.shutdown()
    assert factory.last.killed and not logic.busy and not logic.hasWorker
    logic.startWorker()
    logic.shutdown()
    assert factory.last.shut_down
