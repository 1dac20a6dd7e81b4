"""Every real volume of the shared data set goes through export and import onto its own grid.

A scripted worker labels voxels by intensity percentile (no network, so even the 512 x 512 x 48 CT is quick). As
intensities travel with their voxels, any flip, permutation or shift between the input and the result shows up:
the result must equal the same rule applied to the volume node's own voxels, and, in physical space, the rule
applied to the original file as SimpleITK reads it (Slicer's reader flips left-handed files; the result must not
care).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from fake_workers import WorkerFactory, segmenting, threshold_labels
from mrml_helpers import assert_stored_on_volume_grid, compare_in_physical_space, segments_as_label_array, volume_array

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID
from MobileUViTSegmentSlicer.segmentation_logic import SegmentationLogic
from MobileUViTSegmentSlicer.volume_files import ijkToRasArray, loadVolumeFile

VOLUMES = ["brain1_image.nrrd", "lung1_image.nrrd", "sct_t2.nii.gz", "totalseg_example_ct_sm.nii.gz",
           "totalseg_example_mr_sm.nii.gz"]


@pytest.mark.parametrize("file_name", VOLUMES)
def test_a_real_volume_gets_its_result_on_its_own_grid(scene, shared_volumes, file_name):
    path = shared_volumes / file_name
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared data")
    volume = loadVolumeFile(path, scene)
    logic = SegmentationLogic(scene, WorkerFactory(segmenting(progress_batches=1)))
    node = logic.segmentAndWait(volume, DEFAULT_MODEL_ID, timeout=120)
    ids = logic.lastResult.segmentIds
    assert_stored_on_volume_grid(node, ids, volume)
    labels = segments_as_label_array(node, ids, volume)
    assert np.array_equal(labels, threshold_labels(volume_array(volume)))

    original = sitk.ReadImage(str(path))
    expected = sitk.GetImageFromArray(threshold_labels(sitk.GetArrayFromImage(original)))
    expected.CopyInformation(original)
    step = 2 if labels.size > 4_000_000 else 1
    compared, differing = compare_in_physical_space(labels, ijkToRasArray(volume), expected, step=step)
    assert differing == 0 and compared == labels[::step, ::step, ::step].size
    assert 0 < (labels > 0).mean() < 0.5
