"""The real ``MobileUViTSegment.py`` under the application harness: module description, parameter node, Logic
facade, and its ``ScriptedLoadableModuleTest`` run against real MRML nodes, the real worker and the bundled model.

Slicer registers that test class with CTest through ``slicer_add_python_unittest``, which loads it with unittest's
loader; this file does the same, so each ``test_*`` method of the self-test shows up here as its own result.
"""

from __future__ import annotations

import io
import os
import unittest

import pytest
import slicer
from slicer_application_harness import QtUnavailable, SlicerApplicationHarness
from worker_helpers import SINGLE_THREAD

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID

SELF_TEST_METHODS = ["test_SegmentsSampleCaseOntoItsGrid", "test_SampleCaseMatchesManualReference",
                     "test_ReviewThenReplaceKeepsTheUsersWork"]


@pytest.fixture(scope="module")
def harness():
    saved = {name: os.environ.get(name) for name in SINGLE_THREAD}
    os.environ.update(SINGLE_THREAD)  # the self-test's worker inherits this environment
    try:
        with SlicerApplicationHarness() as application:
            yield application
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def module(harness):
    return harness.import_module()


def test_the_test_folder_is_not_part_of_the_slicer_package():
    testing = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")
    assert not [path for path in slicer.__path__ if os.path.abspath(path).startswith(testing)]
    assert not hasattr(slicer, "make_worker_client")


def test_module_describes_itself_as_slicer_shows_it(harness, module):
    parent = harness.create_module(module).parent
    assert parent.title == "MobileUViT Segment"
    assert parent.categories == ["Segmentation"]
    assert parent.contributors and all(parent.contributors)
    for usage in ("input volume", "Segment", "Cancel", "Create new segmentation", "segmentAndWait"):
        assert usage in parent.helpText
    for citation in ("10.1145/3746027.3755076", "arXiv:2508.01064", "arXiv:2312.01740", "10.1109/TIP.2025.3607624",
                     "arXiv:2312.01741", "10.1016/j.media.2025.103606", "arXiv:2408.08070", "arXiv:1902.09063",
                     "CC BY-SA 4.0"):
        assert citation in parent.acknowledgementText, citation
    assert ("startupCompleted()", module._registerSampleData) in harness.app.connections
    assert slicer.selfTests["MobileUViTSegment"].__self__.moduleName == "MobileUViTSegment"


def test_parameter_node_keeps_its_values_in_the_scene(harness, module, sample_volume_path):
    logic = module.MobileUViTSegmentLogic()
    assert logic.scene is slicer.mrmlScene and logic.moduleName == "MobileUViTSegment"
    parameters = logic.getParameterNode()
    assert (parameters.inputVolume, parameters.modelId, parameters.device, parameters.outputSegmentation,
            parameters.show3D) == (None, "", "auto", None, True)
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "input")
    output = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "output")
    parameters.inputVolume, parameters.modelId, parameters.device = volume, DEFAULT_MODEL_ID, "cpu"
    parameters.outputSegmentation, parameters.show3D = output, False
    again = logic.getParameterNode()  # a new wrapper over the same singleton node in the scene
    assert again.parameterNode is parameters.parameterNode
    assert again.parameterNode.GetAttribute("ModuleName") == "MobileUViTSegment"
    assert (again.inputVolume, again.modelId, again.device, again.outputSegmentation, again.show3D) == (
        volume, DEFAULT_MODEL_ID, "cpu", output, False)
    with pytest.raises(ValueError):
        again.device = "tpu"
    with pytest.raises(TypeError):
        again.inputVolume = output
    slicer.mrmlScene.Clear()


def test_the_widget_imports_and_only_its_setup_needs_qt(module):
    widget = module.MobileUViTSegmentWidget()
    assert widget.logic is None and widget._installer.isSatisfied()
    with pytest.raises(QtUnavailable):
        widget.setup()


@pytest.fixture(scope="module")
def self_test_results(module) -> dict[str, str]:
    """Run the module's own test class as CTest does (unittest's loader); per method: "" or the failure text."""
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(module.MobileUViTSegmentTest)
    assert sorted(test._testMethodName for test in suite) == sorted(SELF_TEST_METHODS)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    outcome = {name: "" for name in SELF_TEST_METHODS}
    for test, text in result.failures + result.errors:
        outcome[getattr(test, "_testMethodName", str(test))] = text
    return outcome


@pytest.mark.parametrize("method", SELF_TEST_METHODS)
def test_module_self_test_passes(self_test_results, method):
    assert self_test_results[method] == "", self_test_results[method]
