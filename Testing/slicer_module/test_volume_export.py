"""Exporting a volume node for the worker: exact geometry, a private temporary folder, an untouched scene."""

from __future__ import annotations

import stat

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from mrml_helpers import rotated_ijk_to_ras, scene_snapshot, volume_array

from MobileUViTSegmentSlicer import volume_export
from MobileUViTSegmentSlicer.volume_export import VolumeExportError, exportVolumeForWorker, volumeProblem
from MobileUViTSegmentSlicer.volume_files import VolumeFileError, ijkToRasArray

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def itk_ijk_to_lps(image: sitk.Image) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def test_export_keeps_an_oblique_geometry_and_the_voxels_exactly(sample_volume):
    rotated_ijk_to_ras(sample_volume, 23.456, (0.3, 0.5, 0.8), shift=(3.3, -2.1, 7.7))
    files = exportVolumeForWorker(sample_volume)
    try:
        written = sitk.ReadImage(str(files.inputPath))
        assert np.allclose(itk_ijk_to_lps(written), RAS_TO_LPS @ ijkToRasArray(sample_volume), rtol=0, atol=1e-12)
        assert np.array_equal(sitk.GetArrayFromImage(written), volume_array(sample_volume))
        assert files.outputPath.parent == files.folder and not files.outputPath.exists()
    finally:
        files.remove()


def test_export_handles_anisotropic_spacing(scene):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    image = vtk.vtkImageData()
    image.SetDimensions(7, 5, 3)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    volume.SetAndObserveImageData(image)
    slicer.util.updateVolumeFromArray(volume, np.arange(105, dtype=np.float32).reshape(3, 5, 7))
    volume.SetSpacing(0.3125, 0.7, 6.5)
    volume.SetOrigin(-12.5, 30.25, 100.0)
    files = exportVolumeForWorker(volume)
    try:
        written = sitk.ReadImage(str(files.inputPath))
        assert written.GetSpacing() == pytest.approx((0.3125, 0.7, 6.5), abs=1e-12)
        assert np.allclose(itk_ijk_to_lps(written), RAS_TO_LPS @ ijkToRasArray(volume), atol=1e-12)
        assert np.array_equal(sitk.GetArrayFromImage(written), volume_array(volume))
    finally:
        files.remove()


def test_export_leaves_the_scene_and_the_node_untouched(scene, sample_volume):
    before = scene_snapshot(scene)
    modified_since_read = sample_volume.GetModifiedSinceRead()
    files = exportVolumeForWorker(sample_volume)
    files.remove()
    assert scene_snapshot(scene) == before  # no storage node added, no modification time changed
    assert sample_volume.GetModifiedSinceRead() == modified_since_read


def test_export_folder_is_private_and_removed_afterwards(sample_volume, tmp_path):
    files = exportVolumeForWorker(sample_volume, parentFolder=tmp_path)
    assert files.folder.parent == tmp_path
    assert files.folder.name.startswith(volume_export.TEMPORARY_PREFIX)
    assert stat.S_IMODE(files.folder.stat().st_mode) == 0o700
    assert files.inputPath.is_file()
    files.remove()
    assert not files.folder.exists()


def test_a_failed_write_leaves_no_folder_and_one_sentence(sample_volume, tmp_path, monkeypatch):
    def failing_write(node, path, compress=False):
        raise VolumeFileError(f"the volume '{node.GetName()}' could not be written to {path}")

    monkeypatch.setattr(volume_export, "writeVolumeFile", failing_write)
    with pytest.raises(VolumeExportError) as raised:
        exportVolumeForWorker(sample_volume, parentFolder=tmp_path)
    message = str(raised.value)
    assert message.startswith("The volume 'hippocampus_046' could not be written") and message.endswith(".")
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_volume_problems_are_named_before_anything_is_written(scene, sample_volume):
    assert volumeProblem(sample_volume) is None
    assert volumeProblem(None) == "Select an input volume."
    label_map = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    label_map.SetAndObserveImageData(sample_volume.GetImageData())
    assert volumeProblem(label_map) == "'labels' is a label map; select an image volume."
    no_voxels = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no voxels")
    assert volumeProblem(no_voxels) == "'no voxels' has no voxels; load an image into it first."
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", "a model")
    assert volumeProblem(model) == "'a model' is not a scalar volume; select an image volume."
    with pytest.raises(VolumeExportError, match="has no voxels"):
        exportVolumeForWorker(no_voxels)
