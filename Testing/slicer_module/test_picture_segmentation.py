"""A breast ultrasound picture loaded in Slicer and segmented by the shipped 2D model, with the real worker on CPU.

Slicer loads a PNG with ITK: a grey one as a scalar volume, an RGB one as a vector volume, one slice thick, with
IJK-to-RAS diag(-1, -1, 1). slicer-core has no PNG reader, so the picture reaches the scene the same way through an
NRRD copy of the same pixels and header. The result must equal, pixel for pixel, what the core gives on the PNG file
itself (a flipped or transposed axis would show here), match the manual mask, and leave the picture untouched.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from mrml_helpers import assert_stored_on_volume_grid, mask_dice, segments_as_label_array, volume_array
from worker_helpers import core_result

from MobileUViTSegmentLib.catalog import Catalog
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationLogic
from MobileUViTSegmentSlicer.volume_files import ijkToRasArray

MODEL_ID = "breast-ultrasound"
TIMEOUT_S = 300.0
# Held-out pictures (busi_val1): one stored as RGB (Slicer makes a vector volume), one grey (a scalar volume).
PICTURES = {"benign (234)": ("vtkMRMLVectorVolumeNode", 3), "benign (301)": ("vtkMRMLScalarVolumeNode", 1)}


def load_picture_as_slicer_does(scene, picture: Path, node_class: str, tmp_path: Path):
    copy = tmp_path / f"{uuid.uuid4().hex[:8]}.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(picture)), str(copy))
    node = scene.AddNewNodeByClass(node_class, picture.stem)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(copy))
    node.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(node), f"Slicer could not read {copy}"
    return node


@pytest.mark.parametrize("case", sorted(PICTURES))
def test_a_picture_loaded_in_slicer_gets_the_cores_lesion_on_its_own_pixels(case: str, busi_dataset: Path, scene,
                                                                           real_worker, tmp_path: Path):
    picture = busi_dataset / "images" / f"{case}.png"
    node_class, components = PICTURES[case]
    volume = load_picture_as_slicer_does(scene, picture, node_class, tmp_path)
    assert volume.GetImageData().GetNumberOfScalarComponents() == components
    assert np.allclose(ijkToRasArray(volume), np.diag([-1.0, -1.0, 1.0, 1.0]))
    pixels_before = volume_array(volume).copy()

    logic = SegmentationLogic(scene, lambda: real_worker)
    segmentation = logic.segmentAndWait(volume, MODEL_ID, device="cpu", timeout=TIMEOUT_S)
    ids = logic.lastResult.segmentIds
    assert [segmentation.GetSegmentation().GetSegment(i).GetName() for i in ids] == \
        [label.name for label in Catalog().get(MODEL_ID).labels]
    assert_stored_on_volume_grid(segmentation, ids, volume)
    labels = segments_as_label_array(segmentation, ids, volume)
    assert labels.shape[0] == 1, "a picture is one slice thick"

    core = sitk.GetArrayFromImage(core_result(real_worker, picture, MODEL_ID, tmp_path, TIMEOUT_S))
    assert np.array_equal(labels[0], core)
    manual = sitk.GetArrayFromImage(sitk.ReadImage(str(busi_dataset / "masks" / f"{case}.png"))) > 0
    assert mask_dice(labels[0] > 0, manual) > 0.8  # lands on the lesion: a flipped axis would miss it
    assert np.array_equal(volume_array(volume), pixels_before), "the picture must not change"
