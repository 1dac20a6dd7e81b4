"""Running again into a segmentation the user has edited: add, replace (restorable) or fill only empty voxels.

Segments the model did not create (drawn by the user, or made by another model) must never change in any mode, and
every failure (importing, replacing, restoring) must leave every segment exactly as it was. Scripted workers write a
label map chosen per run (an intensity rule, so the expected segments can be recomputed from the volume's voxels).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from fake_workers import WorkerFactory, done_with, never_finishing, threshold_labels
from mrml_helpers import (
    TERMINOLOGY_TAG,
    scene_snapshot,
    segment_tag,
    segments_as_label_array,
    volume_array,
)
from vtk.util.numpy_support import vtk_to_numpy

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID
from MobileUViTSegmentSlicer import import_modes, result_backup
from MobileUViTSegmentSlicer.import_choice import importModeQuestion
from MobileUViTSegmentSlicer.processing_state import ProcessingState
from MobileUViTSegmentSlicer.result_backup import (
    BACKUP_REFERENCE_ROLE,
    RestoreError,
    backupNode,
    canRestoreReplacedSegments,
    restoreReplacedSegments,
)
from MobileUViTSegmentSlicer.result_import import MODEL_ID_TAG, editedModelSegmentIds, modelSegmentIds
from MobileUViTSegmentSlicer.segment_masks import SegmentWriteError
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationFailed, SegmentationLogic
from MobileUViTSegmentSlicer.volume_files import arrayToMatrix, ijkToRasArray


def second_labels(voxels: np.ndarray) -> np.ndarray:
    """A different result from :func:`threshold_labels` (other percentiles), for a second run."""
    low, high = np.percentile(voxels, [60, 85])
    return ((voxels > low).astype(np.uint8) + (voxels > high).astype(np.uint8)).astype(np.uint8)


def labelling(rule):
    """A worker that answers at once with ``rule`` applied to the input's voxels, on the input's grid."""

    def write(request: dict) -> None:
        image = sitk.ReadImage(request["input"])
        labels = sitk.GetImageFromArray(rule(sitk.GetArrayFromImage(image)))
        labels.CopyInformation(image)
        sitk.WriteImage(labels, request["output"])

    return WorkerFactory(done_with({}, write))


def run(scene, volume, rule, mode="add", output=None, model=DEFAULT_MODEL_ID) -> SegmentationLogic:
    logic = SegmentationLogic(scene, labelling(rule))
    logic.segmentAndWait(volume, model, outputSegmentationNode=output, mode=mode, timeout=30)
    return logic


def ids_of(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def mask(node, segment_id, volume) -> np.ndarray:
    return segments_as_label_array(node, [segment_id], volume) > 0


def state(node, volume) -> dict:
    """Every segment's ID (in order), properties and voxels on the volume's grid: what "exactly as it was" means."""
    segmentation = node.GetSegmentation()
    result = {}
    for segment_id in ids_of(node):
        segment = segmentation.GetSegment(segment_id)
        result[segment_id] = {"name": segment.GetName(), "color": tuple(segment.GetColor()),
                              "terminology": segment_tag(segment, TERMINOLOGY_TAG),
                              "model": segment_tag(segment, MODEL_ID_TAG), "voxels": mask(node, segment_id, volume)}
    return result


def assert_same_state(before: dict, after: dict) -> None:
    assert list(after) == list(before)
    for segment_id, item in before.items():
        for key, value in item.items():
            if key == "voxels":
                assert np.array_equal(after[segment_id][key], value), (segment_id, "voxels differ")
            else:
                assert after[segment_id][key] == value, (segment_id, key)


def paint(node, segment_id: str, voxels: np.ndarray, volume) -> None:
    """The segment holds exactly ``voxels`` (a boolean (k, j, i) array on the volume's grid), as the user paints."""
    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetDimensions(volume.GetImageData().GetDimensions())
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(labelmap.GetPointData().GetScalars())[:] = voxels.astype(np.uint8).ravel()
    labelmap.SetImageToWorldMatrix(arrayToMatrix(ijkToRasArray(volume)))
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(labelmap, node, segment_id)


def draw(node, name: str, voxels: np.ndarray, volume, color=(0.1, 0.2, 0.9), model: str = "") -> str:
    """A segment the user paints (or, with ``model``, one another model made) holding ``voxels``."""
    segment_id = node.GetSegmentation().AddEmptySegment("", name, color)
    paint(node, segment_id, voxels, volume)
    if model:
        node.GetSegmentation().GetSegment(segment_id).SetTag(MODEL_ID_TAG, model)
    return segment_id


@pytest.fixture
def edited(scene, sample_volume):
    """A first run's segments, plus a user-drawn segment and another model's segment, both overlapping them."""
    logic = run(scene, sample_volume, threshold_labels)
    node = logic.lastResult.segmentationNode
    first = threshold_labels(volume_array(sample_volume))
    user = np.zeros(first.shape, bool)
    user[: first.shape[0] // 2] = first[: first.shape[0] // 2] > 0  # overlaps both labels
    other = np.roll(first == 2, 2, axis=2)
    user_id = draw(node, "my tumour", user, sample_volume)
    other_id = draw(node, "other model's lesion", other, sample_volume, color=(0.9, 0.1, 0.1), model="other-model")
    return {"node": node, "model_ids": list(logic.lastResult.segmentIds), "user_id": user_id, "other_id": other_id,
            "first": first}


@pytest.mark.parametrize("mode", ["add", "replace", "fillEmpty"])
def test_segments_the_model_did_not_create_are_untouched_in_every_mode(scene, sample_volume, edited, mode):
    node = edited["node"]
    foreign = [edited["user_id"], edited["other_id"]]
    before = state(node, sample_volume)
    run(scene, sample_volume, second_labels, mode=mode, output=node)
    after = state(node, sample_volume)
    assert_same_state({key: before[key] for key in foreign}, {key: after[key] for key in foreign})
    assert all(after[key]["voxels"].any() for key in foreign)


def test_add_puts_new_segments_beside_and_changes_nothing_existing(scene, sample_volume, edited):
    node = edited["node"]
    before = state(node, sample_volume)
    logic = run(scene, sample_volume, second_labels, mode="add", output=node)
    after = state(node, sample_volume)
    assert_same_state(before, {key: after[key] for key in before})
    new_ids = logic.lastResult.segmentIds
    assert ids_of(node) == list(before) + new_ids
    expected = second_labels(volume_array(sample_volume))
    for value, segment_id in enumerate(new_ids, start=1):
        assert np.array_equal(after[segment_id]["voxels"], expected == value)


def test_replace_keeps_id_name_colour_of_renamed_model_segments_and_restore_brings_them_back(scene, sample_volume,
                                                                                          edited):
    node = edited["node"]
    segmentation = node.GetSegmentation()
    anterior, posterior = edited["model_ids"]
    segmentation.GetSegment(anterior).SetName("my anterior")  # the user renamed, recoloured and painted
    segmentation.GetSegment(anterior).SetColor(0.3, 0.6, 0.3)
    painted = edited["first"] == 1
    painted[5:8, 10:20, 10:20] = True
    paint(node, anterior, painted, sample_volume)
    before = state(node, sample_volume)
    assert not canRestoreReplacedSegments(node)

    logic = run(scene, sample_volume, second_labels, mode="replace", output=node)

    assert logic.lastResult.replacedSegmentIds == logic.lastResult.segmentIds == [anterior, posterior]
    assert logic.lastResult.summary() == (f"2 segments replaced in segmentation '{node.GetName()}'; the replaced "
                                          "segments can be restored.")
    after = state(node, sample_volume)
    assert list(after) == list(before)  # same IDs, same order, nothing added
    expected = second_labels(volume_array(sample_volume))
    for value, segment_id in enumerate([anterior, posterior], start=1):
        for key in ("name", "color", "terminology", "model"):
            assert after[segment_id][key] == before[segment_id][key]
        assert np.array_equal(after[segment_id]["voxels"], expected == value)
    assert after[anterior]["name"] == "my anterior"
    assert canRestoreReplacedSegments(node)

    assert restoreReplacedSegments(node) == 2
    assert_same_state(before, state(node, sample_volume))
    assert not canRestoreReplacedSegments(node) and restoreReplacedSegments(node) == 0


def test_replace_adds_a_label_the_earlier_run_lacked_and_restore_removes_it(scene, sample_volume, edited):
    node = edited["node"]
    anterior, posterior = edited["model_ids"]
    node.GetSegmentation().RemoveSegment(posterior)  # the user deleted one of the model's segments
    before = state(node, sample_volume)
    result = run(scene, sample_volume, second_labels, mode="replace", output=node).lastResult
    assert result.replacedSegmentIds == [anterior]
    added = result.addedSegmentIds
    assert len(added) == 1 and added[0] in ids_of(node) and added[0] not in before
    expected = second_labels(volume_array(sample_volume))
    assert np.array_equal(mask(node, added[0], sample_volume), expected == 2)
    assert "1 segment replaced and 1 added" in result.summary()
    assert restoreReplacedSegments(node) == 1
    assert_same_state(before, state(node, sample_volume))


def test_restore_brings_back_the_state_before_the_last_replace(scene, sample_volume, edited):
    node = edited["node"]
    run(scene, sample_volume, second_labels, mode="replace", output=node)
    before_last = state(node, sample_volume)
    run(scene, sample_volume, threshold_labels, mode="replace", output=node)
    assert len([n for n in scene.GetNodesByClass("vtkMRMLSegmentationNode") if n.GetHideFromEditors()]) == 1
    assert restoreReplacedSegments(node) == 2
    assert_same_state(before_last, state(node, sample_volume))


def test_a_model_segment_deleted_after_replace_is_restored_with_its_id(scene, sample_volume, edited):
    node = edited["node"]
    before = state(node, sample_volume)
    run(scene, sample_volume, second_labels, mode="replace", output=node)
    node.GetSegmentation().RemoveSegment(edited["model_ids"][0])
    assert restoreReplacedSegments(node) == 2
    after = state(node, sample_volume)
    assert set(after) == set(before)
    assert_same_state(before, {key: after[key] for key in before})


def test_fill_empty_never_writes_where_a_segment_is(scene, sample_volume, edited):
    node = edited["node"]
    before = state(node, sample_volume)
    occupied = np.logical_or.reduce([item["voxels"] for item in before.values()])
    result = run(scene, sample_volume, second_labels, mode="fillEmpty", output=node).lastResult
    after = state(node, sample_volume)
    assert_same_state(before, {key: after[key] for key in before})
    expected = second_labels(volume_array(sample_volume))
    for value, segment_id in enumerate(result.segmentIds, start=1):
        assert not (after[segment_id]["voxels"] & occupied).any()
        assert np.array_equal(after[segment_id]["voxels"], (expected == value) & ~occupied)
    assert any(after[segment_id]["voxels"].any() for segment_id in result.segmentIds)
    assert result.summary().endswith("only where nothing was segmented.")


def test_edited_model_segments_are_detected_by_their_voxels(scene, sample_volume, edited, tmp_path):
    node = edited["node"]
    anterior, posterior = edited["model_ids"]
    assert modelSegmentIds(node, DEFAULT_MODEL_ID) == [anterior, posterior]
    assert modelSegmentIds(node, "other-model") == [edited["other_id"]]
    assert editedModelSegmentIds(node, DEFAULT_MODEL_ID) == []
    assert "already holds the segments this model made" in importModeQuestion(node, DEFAULT_MODEL_ID)
    node.GetSegmentation().GetSegment(posterior).SetName("renamed")  # a new name is not an edit of the voxels
    assert editedModelSegmentIds(node, DEFAULT_MODEL_ID) == []

    # Saved and loaded again (tags travel in the .seg.nrrd), the segments still count as unedited.
    path = tmp_path / "saved.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(node)
    reloaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    assert storage.ReadData(reloaded)
    assert modelSegmentIds(reloaded, DEFAULT_MODEL_ID) == [anterior, posterior]
    assert editedModelSegmentIds(reloaded, DEFAULT_MODEL_ID) == []

    voxels = mask(node, posterior, sample_volume)
    voxels[tuple(axis[0] for axis in voxels.nonzero())] = False  # the user erases one voxel
    paint(node, posterior, voxels, sample_volume)
    assert editedModelSegmentIds(node, DEFAULT_MODEL_ID) == [posterior]
    assert "you have edited 1 of the segments" in importModeQuestion(node, DEFAULT_MODEL_ID)
    run(scene, sample_volume, second_labels, mode="replace", output=node)
    assert editedModelSegmentIds(node, DEFAULT_MODEL_ID) == []  # the replaced segments hold the model's voxels again


def fail_on_call(number: int, error: Exception):
    """A stand-in for writeSegmentMask that works ``number - 1`` times, then raises ``error``."""
    real = import_modes.writeSegmentMask
    calls = []

    def write(*args, **kwargs):
        calls.append(args)
        if len(calls) >= number:
            raise error
        return real(*args, **kwargs)

    return write


@pytest.mark.parametrize("with_previous_backup", [False, True], ids=["first-replace", "after-a-replace"])
def test_a_failure_while_replacing_leaves_every_segment_and_the_backup_as_they_were(scene, sample_volume, edited,
                                                                                     monkeypatch,
                                                                                     with_previous_backup):
    node = edited["node"]
    if with_previous_backup:
        run(scene, sample_volume, second_labels, mode="replace", output=node)
    before = state(node, sample_volume)
    backup_before = node.GetNodeReferenceID(BACKUP_REFERENCE_ROLE)
    nodes_before = sorted(n.GetID() for n in scene.GetNodesByClass("vtkMRMLSegmentationNode"))
    monkeypatch.setattr(import_modes, "writeSegmentMask",
                        fail_on_call(2, SegmentWriteError("The voxels of the segment 'x' could not be written.")))
    with pytest.raises(SegmentationFailed, match="could not be written"):
        run(scene, sample_volume, threshold_labels if with_previous_backup else second_labels, mode="replace",
            output=node)
    monkeypatch.undo()
    assert_same_state(before, state(node, sample_volume))
    assert node.GetNodeReferenceID(BACKUP_REFERENCE_ROLE) == backup_before
    assert sorted(n.GetID() for n in scene.GetNodesByClass("vtkMRMLSegmentationNode")) == nodes_before
    assert canRestoreReplacedSegments(node) == with_previous_backup


def test_an_unexpected_error_while_replacing_is_rolled_back_too(scene, sample_volume, edited, monkeypatch):
    node = edited["node"]
    before = state(node, sample_volume)
    monkeypatch.setattr(result_backup.PendingBackup, "commit", lambda self, added: 1 / 0)
    logic = SegmentationLogic(scene, labelling(second_labels))
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID, outputSegmentationNode=node, mode="replace")
    while logic.busy:
        logic.poll()
    monkeypatch.undo()
    assert logic.state is ProcessingState.FAILED and "could not be added to the scene" in logic.machine.error_message
    assert_same_state(before, state(node, sample_volume))
    assert not canRestoreReplacedSegments(node)
    assert not [n for n in scene.GetNodesByClass("vtkMRMLSegmentationNode") if n.GetHideFromEditors()]


def test_a_failure_while_restoring_changes_nothing_and_keeps_the_backup(scene, sample_volume, edited, monkeypatch):
    node = edited["node"]
    run(scene, sample_volume, second_labels, mode="replace", output=node)
    replaced = state(node, sample_volume)
    monkeypatch.setattr(result_backup, "writeSegmentMask",
                        fail_on_call(2, SegmentWriteError("The voxels of the segment 'x' could not be written.")))
    with pytest.raises(RestoreError, match="nothing was changed"):
        restoreReplacedSegments(node)
    monkeypatch.undo()
    assert_same_state(replaced, state(node, sample_volume))
    assert canRestoreReplacedSegments(node)
    assert restoreReplacedSegments(node) == 2


def test_cancelling_a_replace_changes_nothing(scene, sample_volume, edited):
    node = edited["node"]
    before = scene_snapshot(scene)
    logic = SegmentationLogic(scene, WorkerFactory(never_finishing()))
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID, outputSegmentationNode=node, mode="replace")
    for _ in range(3):
        logic.poll()
    logic.cancel()
    assert not logic.busy and logic.lastResult is None
    assert scene_snapshot(scene) == before


def test_an_unknown_import_mode_is_refused_before_anything_starts(scene, sample_volume):
    factory = labelling(second_labels)
    logic = SegmentationLogic(scene, factory)
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID, mode="merge")
    assert logic.state is ProcessingState.FAILED
    assert logic.machine.error_message == "Unknown import mode 'merge'; use one of add, replace, fillEmpty."
    assert factory.workers == []


@pytest.mark.parametrize("batch", [False, True], ids=["removed", "removed-in-batch"])
def test_the_backup_is_hidden_and_goes_away_with_its_segmentation(scene, sample_volume, edited, batch):
    node = edited["node"]
    run(scene, sample_volume, second_labels, mode="replace", output=node)  # its Logic observes the scene
    backup = backupNode(node)
    assert backup is not None and scene.IsNodePresent(backup)
    assert backup.GetHideFromEditors() and backup.GetNumberOfDisplayNodes() == 0
    assert backup.GetSegmentation().GetNumberOfSegments() == 2
    if batch:
        scene.StartState(slicer.vtkMRMLScene.BatchProcessState)
    scene.RemoveNode(node)
    if batch:
        assert scene.IsNodePresent(backup)  # references may be in flux until the batch ends
        scene.EndState(slicer.vtkMRMLScene.BatchProcessState)
    assert not scene.IsNodePresent(backup)


def test_a_new_segmentation_in_replace_mode_simply_gets_the_segments(scene, sample_volume):
    result = run(scene, sample_volume, threshold_labels, mode="replace").lastResult
    assert result.createdNode and result.replacedSegmentIds == [] and len(result.segmentIds) == 2
    assert not canRestoreReplacedSegments(result.segmentationNode)


def save_and_reload_scene(scene, folder) -> slicer.vtkMRMLScene:
    """What File > Save and a later File > Load do: every storable node written, the .mrml committed, then read."""
    folder.mkdir()
    nodes = [*scene.GetNodesByClass("vtkMRMLStorableNode")]
    for node in nodes:
        if node.GetStorageNode() is None:
            node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
        storage.SetFileName(str(folder / f"{node.GetID()}.{storage.GetDefaultWriteFileExtension()}"))
        assert storage.WriteData(node), node.GetName()
    scene.SetURL(str(folder / "scene.mrml"))
    assert scene.Commit()
    reloaded = slicer.vtkMRMLScene()
    reloaded.segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()  # kept alive with the scene
    reloaded.segmentations_logic.SetMRMLScene(reloaded)
    reloaded.SetURL(str(folder / "scene.mrml"))
    assert reloaded.Import()
    return reloaded


def test_a_replaced_result_can_be_restored_after_saving_and_reloading_the_scene(scene, sample_volume, edited,
                                                                              tmp_path):
    node = edited["node"]
    before = state(node, sample_volume)
    run(scene, sample_volume, second_labels, mode="replace", output=node)
    reloaded = save_and_reload_scene(scene, tmp_path / "saved")
    try:
        volume = reloaded.GetFirstNodeByName(sample_volume.GetName())
        visible = [candidate for candidate in reloaded.GetNodesByClass("vtkMRMLSegmentationNode")
                   if not candidate.GetHideFromEditors()]
        assert len(visible) == 1  # the backup stays hidden after loading
        loaded = visible[0]
        assert canRestoreReplacedSegments(loaded)
        assert restoreReplacedSegments(loaded) == 2
        after = state(loaded, volume)
        for item in (*before.values(), *after.values()):  # .seg.nrrd keeps colours to 6 digits
            item["color"] = tuple(round(channel, 4) for channel in item["color"])
        assert_same_state(before, after)
    finally:
        reloaded.Clear(1)
