"""The Logic with the real worker process and the bundled model on CPU: geometry on real volumes, errors, cancel.

"The core's own label map" is the worker run directly on the original file (no Slicer in between); the Slicer
result must agree with it voxel for voxel in physical space, whatever the direction matrix.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import torch
import vtk
from mrml_helpers import (
    assert_stored_on_volume_grid,
    compare_in_physical_space,
    rotated_ijk_to_ras,
    scene_snapshot,
    segments_as_label_array,
    volume_array,
)
from vtk.util.numpy_support import numpy_to_vtk
from worker_helpers import core_result, make_worker_client, worker_environment

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.worker_client import WorkerClient
from MobileUViTSegmentSlicer.processing_state import ProcessingState
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationFailed, SegmentationLogic
from MobileUViTSegmentSlicer.volume_files import arrayToMatrix, ijkToRasArray, loadVolumeFile, matrixToArray

TIMEOUT_S = 300.0


@pytest.fixture
def core_labels(real_worker, tmp_path):
    """The core's label map for a file: the worker on that file, read back with SimpleITK."""

    def run(path: Path) -> sitk.Image:
        return core_result(real_worker, path, DEFAULT_MODEL_ID, tmp_path, TIMEOUT_S)

    return run


def segment_with_logic(scene, volume, worker) -> tuple[slicer.vtkMRMLSegmentationNode, np.ndarray]:
    logic = SegmentationLogic(scene, lambda: worker)
    node = logic.segmentAndWait(volume, DEFAULT_MODEL_ID, device="cpu", timeout=TIMEOUT_S)
    ids = logic.lastResult.segmentIds
    assert_stored_on_volume_grid(node, ids, volume)
    return node, segments_as_label_array(node, ids, volume)


def assert_same_as_core(slicer_labels: np.ndarray, volume, core: sitk.Image) -> None:
    compared, differing = compare_in_physical_space(slicer_labels, ijkToRasArray(volume), core)
    assert compared == slicer_labels.size and differing == 0, f"{differing} of {compared} voxels differ"
    found = int((slicer_labels > 0).sum())
    assert found > 500, f"only {found} labelled voxels: the comparison would prove little"


def test_left_handed_sct_t2_result_matches_the_core_in_physical_space(scene, shared_volumes, real_worker,
                                                                      core_labels):
    path = shared_volumes / "sct_t2.nii.gz"
    itk_image = sitk.ReadImage(str(path))
    assert np.linalg.det(np.asarray(itk_image.GetDirection()).reshape(3, 3)) < 0, "expected a left-handed file"
    volume = loadVolumeFile(path, scene)
    # Slicer's reader flips an axis of left-handed files: raw arrays differ between readers on purpose.
    assert np.array_equal(sitk.GetArrayFromImage(itk_image), np.flip(volume_array(volume), axis=0))
    _, labels = segment_with_logic(scene, volume, real_worker)
    assert_same_as_core(labels, volume, core_labels(path))


def rotation_matrix(degrees: float, axis: tuple[float, float, float]) -> np.ndarray:
    transform = vtk.vtkTransform()
    transform.RotateWXYZ(degrees, *axis)
    return matrixToArray(transform.GetMatrix())[:3, :3]


def test_oblique_file_result_matches_the_core_in_physical_space(scene, sample_volume_path, real_worker, core_labels,
                                                                tmp_path):
    image = sitk.ReadImage(str(sample_volume_path))
    rotation = rotation_matrix(27.0, (0.2, 0.9, 0.4))
    image.SetDirection(tuple((rotation @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel()))
    image.SetOrigin(tuple(rotation @ np.asarray(image.GetOrigin()) + np.array([4.25, -7.5, 11.0])))
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    volume = loadVolumeFile(path, scene)
    direction = ijkToRasArray(volume)[:3, :3]
    assert np.count_nonzero(np.abs(direction) > 1e-6) > 3, "the volume should be oblique"
    _, labels = segment_with_logic(scene, volume, real_worker)
    assert_same_as_core(labels, volume, core_labels(path))


def test_rotating_a_volume_ijk_to_ras_in_slicer_moves_the_result_with_it(scene, sample_volume, real_worker,
                                                                         core_labels, tmp_path):
    rotated_ijk_to_ras(sample_volume, -38.0, (0.7, -0.2, 0.5), shift=(12.0, 3.5, -6.0))
    _, labels = segment_with_logic(scene, sample_volume, real_worker)
    # The same voxels with the same rotated geometry, written independently of Slicer with SimpleITK.
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijkToRasArray(sample_volume)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(volume_array(sample_volume))
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple((lps[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(lps[:3, 3]))
    path = tmp_path / "rotated_in_slicer.nrrd"
    sitk.WriteImage(image, str(path))
    assert_same_as_core(labels, sample_volume, core_labels(path))


def add_volume(scene, voxels: np.ndarray, name: str, reference) -> slicer.vtkMRMLVolumeNode:
    """A volume from a (k, j, i[, components]) array on ``reference``'s grid."""
    components = 1 if voxels.ndim == 3 else voxels.shape[-1]
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode" if components == 1 else "vtkMRMLVectorVolumeNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(voxels.shape[2], voxels.shape[1], voxels.shape[0])
    flat = np.ascontiguousarray(voxels).reshape(-1, components) if components > 1 else voxels.ravel()
    scalars = numpy_to_vtk(flat, deep=True)
    scalars.SetNumberOfComponents(components)
    image.GetPointData().SetScalars(scalars)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(arrayToMatrix(ijkToRasArray(reference)))
    return node


def bad_volumes(scene, sample_volume) -> dict[str, slicer.vtkMRMLVolumeNode]:
    voxels = volume_array(sample_volume).astype(np.float32)
    with_nan = voxels.copy()
    with_nan[3, 4, 5] = np.nan
    return {
        "constant": add_volume(scene, np.full(voxels.shape, 7, np.int16), "constant", sample_volume),
        "nan": add_volume(scene, with_nan, "nan", sample_volume),
        "rgb": add_volume(scene, np.repeat(voxels[..., None], 3, axis=-1).astype(np.uint8), "rgb", sample_volume),
    }


def test_a_multi_frame_volume_is_refused_before_the_worker_with_one_message(scene, sample_volume):
    """Slicer's volume writer only exports 1 or 3 components, so a 4D/multi-volume node never reaches the worker."""
    voxels = volume_array(sample_volume).astype(np.float32)
    volume = add_volume(scene, np.repeat(voxels[..., None], 10, axis=-1), "4d", sample_volume)
    factory_calls = []
    logic = SegmentationLogic(scene, lambda: factory_calls.append(1))
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(volume, DEFAULT_MODEL_ID, device="cpu", timeout=TIMEOUT_S)
    assert str(raised.value) == ("'4d' has 10 components per voxel (a time series or multi-volume image); extract "
                                 "one frame, e.g. with the Sequences module, and segment that.")
    assert factory_calls == [] and scene_snapshot(scene) == before


@pytest.mark.parametrize("case, expected", [
    ("constant", "The input volume is constant (every voxel is 7); there is nothing to segment."),
    ("nan", "The input volume contains 1 NaN or infinite voxels."),
    ("rgb", "The input volume is an RGB/vector image with 3 components but this model needs a single-channel "
            "(grey) image."),
])
def test_bad_volumes_come_back_as_one_message_and_change_nothing(scene, sample_volume, real_worker, case, expected):
    volume = bad_volumes(scene, sample_volume)[case]
    logic = SegmentationLogic(scene, lambda: real_worker)
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(volume, DEFAULT_MODEL_ID, device="cpu", timeout=TIMEOUT_S)
    assert str(raised.value) == expected
    assert scene_snapshot(scene) == before


def test_an_unknown_model_comes_back_as_one_message(scene, sample_volume, real_worker):
    logic = SegmentationLogic(scene, lambda: real_worker)
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, "no-such-model", timeout=TIMEOUT_S)
    assert str(raised.value) == f"Unknown model id 'no-such-model'; known models: {', '.join(Catalog().ids())}."
    assert scene_snapshot(scene) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU, so asking for one succeeds")
def test_asking_for_a_gpu_without_one_comes_back_as_one_message(scene, sample_volume, real_worker):
    logic = SegmentationLogic(scene, lambda: real_worker)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cuda", timeout=TIMEOUT_S)
    message = str(raised.value)
    assert "no CUDA GPU" in message and "\n" not in message and message.endswith(".")


def test_corrupted_weights_come_back_as_one_message(scene, sample_volume, tmp_path):
    card = Catalog().get(DEFAULT_MODEL_ID)
    data = json.loads((card.folder / f"{card.id}.card.json").read_text(encoding="utf-8"))
    data["id"] = "corrupted-weights-test"
    (tmp_path / "corrupted-weights-test.card.json").write_text(json.dumps(data), encoding="utf-8")
    garbage = np.random.default_rng(0).integers(0, 256, card.weights.size, dtype=np.uint8).tobytes()
    (tmp_path / card.weights.file).write_bytes(garbage)
    client = make_worker_client(MOBILEUVIT_MODELS_PATH=str(tmp_path))
    logic = SegmentationLogic(scene, lambda: client)
    before = scene_snapshot(scene)
    try:
        with pytest.raises(SegmentationFailed) as raised:
            logic.segmentAndWait(sample_volume, "corrupted-weights-test", device="cpu", timeout=TIMEOUT_S)
    finally:
        logic.shutdown()
    message = str(raised.value)
    assert message.startswith(f"Weights file {tmp_path / card.weights.file} has sha256 ")
    assert message.endswith("it is corrupted or replaced, so it will not be used.") and "\n" not in message
    assert scene_snapshot(scene) == before


def test_a_crashing_worker_comes_back_as_one_message(scene, sample_volume):
    script = ("import sys; sys.stdin.readline(); sys.stderr.write('RuntimeError: simulated crash\\n'); "
              "sys.stderr.flush(); sys.exit(3)")
    logic = SegmentationLogic(scene, lambda: WorkerClient([sys.executable, "-c", script], env=worker_environment()))
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=60)
    assert str(raised.value) == ("The segmentation worker stopped unexpectedly (exit code 3): "
                                 "RuntimeError: simulated crash.")
    assert scene_snapshot(scene) == before



def test_a_hung_worker_is_stopped_with_one_message_and_the_next_run_gets_a_fresh_one(scene, sample_volume):
    hung = "import sys, time; sys.stdin.readline(); time.sleep(600)"  # takes the request, then never answers
    clients: list[WorkerClient] = []

    def factory() -> WorkerClient:
        command = [sys.executable, "-c", hung] if not clients else None
        clients.append(WorkerClient(command, env=worker_environment()) if command else make_worker_client())
        return clients[-1]

    logic = SegmentationLogic(scene, factory)
    logic.STALL_TIMEOUT_S = 2.0
    before = scene_snapshot(scene)
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=60)
    assert str(raised.value) == ("The segmentation worker sent nothing for 2 s and was stopped; the scene was not "
                                 "changed, and the next run starts a fresh worker.")
    assert scene_snapshot(scene) == before and not clients[0].running
    logic.STALL_TIMEOUT_S = SegmentationLogic.STALL_TIMEOUT_S
    node = logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, device="cpu", timeout=TIMEOUT_S)
    assert len(clients) == 2 and node.GetSegmentation().GetNumberOfSegments() == 2
    logic.shutdown()

def test_a_worker_command_that_does_not_exist_comes_back_as_one_message(scene, sample_volume, tmp_path):
    missing = str(tmp_path / "PythonSlicer")
    logic = SegmentationLogic(scene, lambda: WorkerClient([missing, "-m", "MobileUViTSegmentLib", "worker"]))
    with pytest.raises(SegmentationFailed) as raised:
        logic.segmentAndWait(sample_volume, DEFAULT_MODEL_ID, timeout=60)
    assert str(raised.value).startswith("The segmentation worker could not be started: ")
    assert "\n" not in str(raised.value)


def test_cancel_kills_the_real_worker_and_leaves_scene_unchanged(scene, sample_volume):
    existing = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    existing.GetSegmentation().AddEmptySegment("keep me", "keep me", (0.2, 0.4, 0.6))
    clients: list[WorkerClient] = []

    def factory() -> WorkerClient:
        clients.append(make_worker_client())
        return clients[-1]

    logic = SegmentationLogic(scene, factory)
    before = scene_snapshot(scene)
    logic.startSegmentation(sample_volume, DEFAULT_MODEL_ID, "cpu", outputSegmentationNode=existing)
    process = clients[0].process
    for _ in range(int(TIMEOUT_S / 0.05)):  # wait for the worker's first progress report, then cancel
        if logic.poll() is ProcessingState.RUNNING:
            break
        time.sleep(0.05)
    assert logic.state is ProcessingState.RUNNING, logic.machine.status_text()
    folder = Path(logic._run.files.folder)
    logic.cancel()
    assert process.poll() is not None, "the worker process must be gone"
    assert not folder.exists()
    assert scene_snapshot(scene) == before
    assert logic.state is ProcessingState.IDLE

