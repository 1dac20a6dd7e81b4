"""MobileUViT Segment: lightweight segmentation networks (Mobile U-ViT and relatives) for a loaded volume.

This file holds only what Slicer requires of a scripted module: the module description, the parameter node, a thin
panel that binds the .ui to the parameter node and the Logic, the Logic facade and the self-test. Behaviour lives in
``MobileUViTSegmentSlicer`` (MRML, no Qt, tested headless) and the networks in ``MobileUViTSegmentLib`` (no Slicer),
which runs in a separate worker process so that torch never runs in Slicer's process.
"""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from MobileUViTSegmentSlicer import (
    DependencyError,
    DependencyInstaller,
    ImportedSegments,
    ModelList,
    ProcessingStateMachine,
    RestoreError,
    SegmentationLogic,
    canRestoreReplacedSegments,
    loadModelList,
    loadVolumeFile,
    restoreReplacedSegments,
)
from MobileUViTSegmentSlicer.dependencies import TORCH_REQUIREMENT
from MobileUViTSegmentSlicer.import_choice import ASK, IMPORT_MODE_CHOICES, importModeQuestion
from MobileUViTSegmentSlicer.sample_data import registerSampleData, sampleLabelPath, sampleVolumePath
from MobileUViTSegmentSlicer.segment_masks import referenceGrid, writeSegmentMask
from MobileUViTSegmentSlicer.sequence_segmentation import SequenceSegmentation, sequenceBrowserOfVolume
from MobileUViTSegmentSlicer.torch_install import TorchInstallation, installCommands
from MobileUViTSegmentSlicer.volume_files import arrayToMatrix, ijkToRasArray, imageToWorldArray
from MobileUViTSegmentSlicer.weights_import import WeightsImportError, importWeightsFile

#
# Module
#


class MobileUViTSegment(ScriptedLoadableModule):
    """Module description shown in Slicer (title, category, help and acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MobileUViT Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["MobileUViTSegment developers"]
        self.parent.helpText = _("""
Segments a loaded volume with lightweight networks (Mobile U-ViT and relatives) running locally on CPU or GPU.
<ol>
<li>Select the <b>input volume</b> and a <b>model</b>; the panel shows what the model segments, its licence and the
expected time per case.</li>
<li>Choose the <b>device</b> (Auto uses a CUDA GPU when PyTorch sees one) and the <b>output segmentation</b>
(<i>Create new segmentation</i>, or an existing one: its segments are never changed).</li>
<li>Click <b>Segment</b>. The network runs in a separate process, so Slicer stays responsive; <b>Cancel</b> stops it
and leaves the scene unchanged. The result is one named, coloured, terminology-coded segment per structure on the
input volume's grid, ready for the Segment Editor.</li>
</ol>
The first Segment click offers to install the required Python packages (PyTorch comes from the PyTorch extension).
From Python: <code>MobileUViTSegment.MobileUViTSegmentLogic().segmentAndWait(volumeNode, "hippocampus-mri")</code>.
See <a href="https://github.com/mobileuvitsegment/MobileUViTSegment">the project page</a>.
""")
        self.parent.acknowledgementText = _("""
Methods: Tang F, Nian B, Ding J, et al. Mobile U-ViT: Revisiting large kernel and U-shaped ViT for efficient medical
image segmentation. ACM MM 2025, doi:10.1145/3746027.3755076, arXiv:2508.01064.
Tang F, Nian B, Ding J, et al. MobileUtr: Revisiting the relationship between light-weight CNN and Transformer for
efficient medical image segmentation. arXiv:2312.01740.
SRSNet: IEEE Transactions on Image Processing 2025, doi:10.1109/TIP.2025.3607624, arXiv:2312.01741.
MambaMIM: Medical Image Analysis 2025, doi:10.1016/j.media.2025.103606, arXiv:2408.08070.
Data: the bundled sample case and the hippocampus model's training data are from the Medical Segmentation Decathlon
(Simpson AL, Antonelli M, Bakas S, et al. A large annotated medical image dataset for the development and evaluation
of segmentation algorithms. arXiv:1902.09063, 2019), licensed CC BY-SA 4.0.
The module's structure follows 3D Slicer's scripted-module template, SlicerNNUnet and SlicerMONAIAuto3DSeg.
""")
        slicer.app.connect("startupCompleted()", _registerSampleData)


def _registerSampleData() -> None:
    try:
        import SampleData
    except ImportError:  # the Sample Data module is disabled
        return
    thumbnail = sampleVolumePath().parents[1] / "Icons" / "MobileUViTSegment.png"
    registerSampleData(SampleData.SampleDataLogic, thumbnail)


#
# Parameter node
#


@parameterNodeWrapper
class MobileUViTSegmentParameterNode:
    """What the panel remembers with the scene.

    inputVolume - the volume to segment.
    modelId - catalog id of the model (the model list is filled at run time, so the combo box is bound by hand).
    device - "auto" (a CUDA GPU when PyTorch sees one), "cpu" or "cuda".
    outputSegmentation - the segmentation that receives the segments; none creates a new one at import time.
    show3D - also show new results in 3D (closed surfaces).
    importMode - "ask", "replace", "add" or "fillEmpty": what a run into a segmentation holding this model's
        segments does (bound by hand: the combo box shows sentences, not the values).
    roi - segment only inside this markups ROI box; none: the whole volume.
    allFrames - when the input is a frame of a sequence, segment every frame.
    uncertainty - also compute the uncertainty map, per-segment confidence and the review list.
    tta - test-time flips (averaged probabilities, flip disagreement).
    probabilities - also add one probability volume per label.
    referenceSegmentation - what the Review section compares the result with.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelId: str = ""
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputSegmentation: vtkMRMLSegmentationNode
    show3D: bool = True
    importMode: str = ASK
    roi: vtkMRMLMarkupsROINode
    allFrames: bool = False
    uncertainty: bool = False
    tta: bool = False
    probabilities: bool = False
    referenceSegmentation: vtkMRMLSegmentationNode


#
# Widget
#


class MobileUViTSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: binds the .ui to the parameter node and the Logic, and polls the Logic from a QTimer.

    What is enabled and what the button and status say comes from the Logic's state machine
    (``ProcessingStateMachine.view``), so none of that is decided here.
    """

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[MobileUViTSegmentLogic] = None
        self._parameterNode: Optional[MobileUViTSegmentParameterNode] = None
        self._parameterNodeGuiTag = None
        self._modelList = ModelList()
        self._installer = DependencyInstaller()
        self._torchInstall = TorchInstallation()  # PyTorch in the background, the GUI stays responsive
        self._torchTimer = None
        self._pollTimer = None
        self._visible = False
        self._sequence: Optional[SequenceSegmentation] = None  # segments every frame of a 4D volume
        self._runner = None  # whichever of the Logic and the sequence driver runs (or ran) last
        self._review = None  # ReviewSection, made in setup (it needs Qt)
        self._improve = None  # ImproveSection, likewise

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MobileUViTSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MobileUViTSegmentLogic()
        self.logic.stateChanged.connect(self._onStateChanged)
        self.logic.finished.connect(self._onFinished)
        self.logic.devicesDetected.connect(self._onDevicesDetected)
        self._sequence = SequenceSegmentation(slicer.mrmlScene, self.logic)
        self._sequence.stateChanged.connect(self._onStateChanged)
        self._sequence.finished.connect(self._onSequenceFinished)
        self._runner = self.logic

        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPollTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        # qMRMLSegmentationShow3DButton is not a plain QPushButton, so connectGui cannot bind it: synced here, from
        # user clicks only (its checked state also follows whichever segmentation it shows).
        self.ui.show3DButton.connect("clicked(bool)", self.onShow3DToggled)
        for mode, text in IMPORT_MODE_CHOICES:  # bound by hand: the combo shows sentences, the node keeps the mode
            self.ui.importModeSelector.addItem(_(text), mode)
        self.ui.importModeSelector.connect("currentIndexChanged(int)", self.onImportModeSelected)
        self.ui.restoreButton.connect("clicked(bool)", self.onRestoreButton)
        self.ui.importWeightsButton.connect("clicked(bool)", self.onImportWeightsButton)

        from MobileUViTSegmentWidgets.improve_section import ImproveSection
        from MobileUViTSegmentWidgets.review_section import ReviewSection

        self._review = ReviewSection(self.ui, self._currentResultNodes, self._referenceSegmentation)
        self._improve = ImproveSection(self.ui, self._currentResultNodes, self._currentModelId,
                                       onModelsChanged=self._populateModels)

        self._populateModels()
        self.initializeParameterNode()
        self._updateView()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._pollTimer is not None:
            self._pollTimer.stop()
        if self._sequence is not None:
            self._sequence.cancel()
        if self.logic is not None:
            self.logic.shutdown()
        if self._improve is not None:
            self._improve.cleanup()
        if self._torchTimer is not None:
            self._torchTimer.stop()
        self._torchInstall.cancel()

    def enter(self) -> None:
        self._visible = True
        self.initializeParameterNode()
        self._pollTimer.start()
        if self._installer.isSatisfied():
            self.logic.startWorker()  # loads PyTorch in the worker early and reports the devices it sees

    def exit(self) -> None:
        self._visible = False
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        if not self._runner.busy:
            self._pollTimer.stop()

    def onSceneStartClose(self, caller, event) -> None:
        self._sequence.cancel()  # results must not land in a scene that is being closed
        self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if not self._runner.busy:
            self._runner.machine.reset()
        if self._review is not None:
            self._review.showRun(None)  # the last run's map and confidences went with the scene
        if self._visible:
            self.initializeParameterNode()
        self._updateView()

    # -- parameter node ------------------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            volumes = slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode")
            for index in range(volumes.GetNumberOfItems()):
                volume = volumes.GetItemAsObject(index)
                if not volume.IsA("vtkMRMLLabelMapVolumeNode"):
                    self._parameterNode.inputVolume = volume
                    break
        if not self._modelList.find(self._parameterNode.modelId) and self._modelList.defaultId:
            self._parameterNode.modelId = self._modelList.defaultId

    def setParameterNode(self, inputParameterNode: Optional[MobileUViTSegmentParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        node = self._parameterNode
        if node is not None:
            index = self.ui.modelSelector.findData(node.modelId)
            if index != self.ui.modelSelector.currentIndex:
                wasBlocked = self.ui.modelSelector.blockSignals(True)
                self.ui.modelSelector.currentIndex = index
                self.ui.modelSelector.blockSignals(wasBlocked)
            modeIndex = self.ui.importModeSelector.findData(node.importMode)
            if modeIndex != self.ui.importModeSelector.currentIndex:
                wasBlocked = self.ui.importModeSelector.blockSignals(True)
                self.ui.importModeSelector.currentIndex = modeIndex
                self.ui.importModeSelector.blockSignals(wasBlocked)
            self.ui.show3DButton.setSegmentationNode(self._currentResultNodes()[1])
        self._showModelDetails()
        self._updateView()

    # -- models --------------------------------------------------------------------------------------------------

    def _populateModels(self) -> None:
        self._modelList = loadModelList()
        combo = self.ui.modelSelector
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for choice in self._modelList.choices:
            combo.addItem(choice.title, choice.id)
        combo.blockSignals(wasBlocked)
        if self._parameterNode and not self._modelList.find(self._parameterNode.modelId):
            self._parameterNode.modelId = self._modelList.defaultId
        self._showModelDetails()

    def _showModelDetails(self) -> None:
        modelId = self._parameterNode.modelId if self._parameterNode else ""
        choice = self._modelList.find(modelId)
        self.ui.modelInfoLabel.text = choice.details if choice else (self._modelList.problem or "")

    def onModelSelected(self, index: int) -> None:
        if self._parameterNode:
            self._parameterNode.modelId = self.ui.modelSelector.itemData(index) or ""

    def onShow3DToggled(self, checked: bool) -> None:
        if self._parameterNode:
            self._parameterNode.show3D = bool(checked)

    def onImportModeSelected(self, index: int) -> None:
        if self._parameterNode:
            self._parameterNode.importMode = self.ui.importModeSelector.itemData(index) or ASK

    def _currentModelId(self) -> str:
        return self._parameterNode.modelId if self._parameterNode else ""

    def _currentResultNodes(self) -> tuple:
        """(input volume, segmentation) the Review and Improve sections work on: the chosen output segmentation, or
        the one the last run created."""
        node = self._parameterNode
        if node is None:
            return None, None
        segmentation = node.outputSegmentation or (self.logic.lastResult.segmentationNode
                                                   if self.logic and self.logic.lastResult else None)
        if segmentation is not None and not slicer.mrmlScene.IsNodePresent(segmentation):
            segmentation = None
        return node.inputVolume, segmentation

    def _referenceSegmentation(self):
        return self._parameterNode.referenceSegmentation if self._parameterNode else None

    def onImportWeightsButton(self) -> None:
        """Offline sites: check a carried weights file against the selected model's card and cache it."""
        modelId = self._currentModelId()
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), _("Weights file of {model}").format(
            model=modelId), "", "safetensors (*.safetensors)")
        if not path:
            return
        qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)  # hashing a large file takes a moment
        try:
            message = importWeightsFile(modelId, path)
        except WeightsImportError as error:
            slicer.util.errorDisplay(_("The weights file was not imported: {error}").format(error=error))
            return
        finally:
            qt.QApplication.restoreOverrideCursor()
        self.ui.statusLabel.text = message
        self._showModelDetails()

    def onRestoreButton(self) -> None:
        segmentation = self._currentResultNodes()[1]
        if segmentation is None:
            return
        question = _("Put back the segments the last replace overwrote in '{name}'? Changes made to them since then "
                     "are lost; segments you drew yourself stay as they are.").format(name=segmentation.GetName())
        if not slicer.util.confirmOkCancelDisplay(question):
            return
        try:
            restored = restoreReplacedSegments(segmentation)
        except RestoreError as error:
            slicer.util.errorDisplay(str(error))
            return
        self._updateView()  # before the message: the view rewrites the status line
        self.ui.statusLabel.text = _("{count} replaced segment(s) restored.").format(count=restored)

    # -- running -------------------------------------------------------------------------------------------------

    def _canStart(self) -> tuple[bool, str]:
        if self._torchInstall.busy:
            return False, _("Installing PyTorch in the background (Slicer stays usable): {line}").format(
                line=self._torchInstall.lastLine or _("starting"))
        node = self._parameterNode
        if node is None or not node.inputVolume:
            return False, _("Select an input volume.")
        if not node.modelId:
            if self._modelList.problem:
                return True, _("Install the required Python packages, then segment.")
            return False, _("Select a model.")
        imageData = node.inputVolume.GetImageData()
        mismatch = imageData and self._modelList.mismatchWithInput(node.modelId, imageData.GetDimensions(),
                                                                   imageData.GetNumberOfScalarComponents())
        if mismatch:
            return False, mismatch
        return True, ""

    def _updateView(self) -> None:
        view = self._runner.machine.view(*self._canStart())
        self.ui.applyButton.text = view.button_text
        self.ui.applyButton.toolTip = view.button_tooltip
        self.ui.applyButton.enabled = view.button_enabled
        for widget in (self.ui.inputVolumeSelector, self.ui.modelSelector, self.ui.deviceSelector,
                       self.ui.importWeightsButton, self.ui.outputSegmentationSelector, self.ui.importModeSelector,
                       self.ui.roiSelector, self.ui.allFramesCheckBox, self.ui.uncertaintyCheckBox,
                       self.ui.ttaCheckBox, self.ui.probabilitiesCheckBox):
            widget.enabled = view.inputs_enabled
        segmentation = self._currentResultNodes()[1]
        self.ui.restoreButton.enabled = bool(view.inputs_enabled and segmentation is not None
                                             and canRestoreReplacedSegments(segmentation))
        sequence = bool(self._parameterNode and sequenceBrowserOfVolume(self._parameterNode.inputVolume))
        self.ui.allFramesCheckBox.visible = sequence
        if sequence and self._parameterNode.allFrames:  # every frame goes to a new sequence of whole-volume results
            for widget in (self.ui.outputSegmentationSelector, self.ui.importModeSelector, self.ui.roiSelector,
                           self.ui.uncertaintyCheckBox, self.ui.ttaCheckBox, self.ui.probabilitiesCheckBox):
                widget.enabled = False
        if self._review is not None:
            self._review.updateButtons()
        if self._improve is not None:
            self._improve.updateButtons()
        self.ui.progressBar.visible = view.progress_visible
        self.ui.progressBar.value = view.progress_percent
        self.ui.statusLabel.text = view.status_text

    def onApplyButton(self) -> None:
        if self._runner.busy:
            self._runner.cancel()
            return
        if self._installer.missingTorch():
            self._startTorchInstall()
            return
        try:
            if not self._installer.ensure():
                return  # the user declined; nothing to say
        except DependencyError as error:
            slicer.util.errorDisplay(str(error))
            return
        if self._modelList.problem:
            self._populateModels()  # the packages the catalog needs may have just been installed
        node = self._parameterNode
        browser = sequenceBrowserOfVolume(node.inputVolume) if node.allFrames else None
        if browser is not None:
            self._runner = self._sequence
            self._sequence.start(browser, node.modelId, node.device)
            self._pollTimer.start()
            return
        self._runner = self.logic
        mode = node.importMode
        if mode == ASK:
            mode = self._askImportMode(node.outputSegmentation, node.modelId)
            if mode is None:
                return  # the user cancelled
        self.logic.startSegmentation(node.inputVolume, node.modelId, node.device, node.outputSegmentation,
                                     node.show3D, mode=mode, roiNode=node.roi, uncertainty=node.uncertainty,
                                     tta=node.tta, probabilities=node.probabilities)
        self._pollTimer.start()

    def _startTorchInstall(self) -> None:
        """Ask, then install PyTorch with light-the-torch in a background process (see torch_install)."""
        requirement = TORCH_REQUIREMENT.removeprefix("torch")
        question = _("MobileUViT Segment needs PyTorch ({requirement}) in Slicer's Python. Install it now, in the "
                     "background, with light-the-torch (the installer of the PyTorch extension, which picks the build "
                     "that fits your GPU driver)? It may download a few gigabytes; Slicer stays usable meanwhile and "
                     "no restart is needed.").format(requirement=requirement or "any version")
        if not slicer.util.confirmOkCancelDisplay(question):
            return
        if self._torchTimer is None:
            self._torchTimer = qt.QTimer()
            self._torchTimer.setInterval(self.POLL_INTERVAL_MS)
            self._torchTimer.connect("timeout()", self._onTorchTimer)
            self._torchInstall.progressed.connect(lambda line: self._updateView())
            self._torchInstall.finished.connect(self._onTorchInstalled)
            self._torchInstall.failed.connect(self._onTorchInstallFailed)
        self._torchInstall.start(installCommands(requirement))
        if self._torchInstall.busy:
            self._torchTimer.start()
        self._updateView()

    def _onTorchTimer(self) -> None:
        if not self._torchInstall.poll():
            self._torchTimer.stop()

    def _onTorchInstalled(self) -> None:
        self._updateView()
        self.ui.statusLabel.text = _("PyTorch is installed; click Segment.")

    def _onTorchInstallFailed(self, message: str) -> None:
        self._updateView()
        slicer.util.errorDisplay(_("{message} You can also install PyTorch from the PyTorch extension's module "
                                   "(PyTorch Utils).").format(message=message))

    def _askImportMode(self, segmentation, modelId: str) -> Optional[str]:
        """The import mode the user picks when the segmentation holds this model's segments ("add" otherwise)."""
        question = importModeQuestion(segmentation, modelId)
        if question is None:
            return "add"
        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle(_("Segmentation already holds results"))
        box.setText(question)
        buttons = {"replace": box.addButton(_("Replace"), qt.QMessageBox.AcceptRole),
                   "add": box.addButton(_("Add beside"), qt.QMessageBox.AcceptRole),
                   "fillEmpty": box.addButton(_("Fill empty"), qt.QMessageBox.AcceptRole)}
        box.addButton(qt.QMessageBox.Cancel)
        box.exec_()
        return next((mode for mode, button in buttons.items() if box.clickedButton() == button), None)

    def _onPollTimer(self) -> None:
        self._runner.poll()
        if not self._runner.busy and not self._visible:
            self._pollTimer.stop()

    def _onStateChanged(self, machine: ProcessingStateMachine) -> None:
        self._updateView()

    def _onFinished(self, imported: ImportedSegments) -> None:
        if self._sequence.busy:
            return  # one frame of a sequence run: its node is temporary, the driver reports the whole sequence
        self.ui.show3DButton.setSegmentationNode(imported.segmentationNode)
        self._review.showRun(self.logic.lastReview)
        self._updateView()

    def _onSequenceFinished(self, result) -> None:
        self.ui.show3DButton.setSegmentationNode(result.proxyNode)
        self._updateView()

    def _onDevicesDetected(self, description: str) -> None:
        self.ui.deviceInfoLabel.text = _("Detected: {description}").format(description=description)


#
# Logic
#


class MobileUViTSegmentLogic(ScriptedLoadableModuleLogic, SegmentationLogic):
    """The module's Logic: ``SegmentationLogic`` (MobileUViTSegmentSlicer) on Slicer's scene, plus the parameter node.

    Usable from Slicer's Python console without the panel::

        logic = MobileUViTSegment.MobileUViTSegmentLogic()
        segmentation = logic.segmentAndWait(slicer.util.getNode("hippocampus_046"), "hippocampus-mri", "cpu")

    ``startSegmentation`` / ``poll`` / ``cancel`` are the non-blocking equivalents (see SegmentationLogic).
    """

    def __init__(self, scene=None, workerFactory=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SegmentationLogic.__init__(self, scene or slicer.mrmlScene, workerFactory)

    def getParameterNode(self) -> MobileUViTSegmentParameterNode:
        return MobileUViTSegmentParameterNode(super().getParameterNode())


#
# Test
#


def _dice(first: np.ndarray, second: np.ndarray) -> float:
    total = int(first.sum()) + int(second.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(first, second).sum()) / total


class MobileUViTSegmentTest(ScriptedLoadableModuleTest):
    """Segments the bundled sample case on CPU with the default model, through the real worker.

    Checks the segment names and colours against the model card, that the result lies on the input volume's exact
    grid, and a mean Dice of at least ``MINIMUM_MEAN_DICE`` against the bundled manual reference.
    """

    MINIMUM_MEAN_DICE = 0.8
    TIMEOUT_S = 600.0
    _logic: Optional[MobileUViTSegmentLogic] = None

    @classmethod
    def tearDownClass(cls) -> None:
        if cls._logic is not None:
            cls._logic.shutdown()  # stop the worker process
            cls._logic = None

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SegmentsSampleCaseOntoItsGrid()
        self.setUp()
        self.test_SampleCaseMatchesManualReference()
        self.setUp()
        self.test_ReviewThenReplaceKeepsTheUsersWork()
        self.tearDownClass()

    def _segmentSampleCase(self):
        from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog

        if MobileUViTSegmentTest._logic is None:
            MobileUViTSegmentTest._logic = MobileUViTSegmentLogic()  # one worker for both tests
        volume = loadVolumeFile(sampleVolumePath(), slicer.mrmlScene)
        self.delayDisplay("Segmenting the sample case on CPU")
        segmentation = self._logic.segmentAndWait(volume, DEFAULT_MODEL_ID, device="cpu", timeout=self.TIMEOUT_S)
        card = Catalog().get(DEFAULT_MODEL_ID)
        return volume, segmentation, card

    def _labelMapOfSegments(self, segmentation, segmentIds, volume) -> np.ndarray:
        labelMap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        exported = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation, segmentIds, labelMap, volume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        self.assertTrue(exported, "the segments could not be exported to a label map")
        self.assertTrue(np.array_equal(ijkToRasArray(labelMap), ijkToRasArray(volume)))
        self.assertEqual(labelMap.GetImageData().GetDimensions(), volume.GetImageData().GetDimensions())
        return slicer.util.arrayFromVolume(labelMap).copy()

    def test_SegmentsSampleCaseOntoItsGrid(self) -> None:
        volume, segmentation, card = self._segmentSampleCase()
        segments = segmentation.GetSegmentation()
        self.assertEqual([segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())],
                         [label.name for label in card.labels])
        for index, label in enumerate(card.labels):
            color = segments.GetNthSegment(index).GetColor()
            self.assertTrue(np.allclose(color, label.color_float), f"colour of {label.name}: {color}")
        # The reference geometry and every stored labelmap are the input volume's grid (to 1e-9 mm: Slicer stores the
        # reference geometry as text with 16 significant digits).
        expected = slicer.vtkSegmentationConverter.SerializeImageGeometry(arrayToMatrix(ijkToRasArray(volume)),
                                                                          volume.GetImageData())
        geometryName = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
        self.assertEqual(segments.GetConversionParameter(geometryName), expected)
        volumeExtent = volume.GetImageData().GetExtent()
        for index in range(segments.GetNumberOfSegments()):
            stored = segmentation.GetBinaryLabelmapInternalRepresentation(segments.GetNthSegmentID(index))
            self.assertLess(np.abs(imageToWorldArray(stored) - ijkToRasArray(volume)).max(), 1e-9)
            extent = stored.GetExtent()
            self.assertTrue(all(volumeExtent[2 * a] <= extent[2 * a] and extent[2 * a + 1] <= volumeExtent[2 * a + 1]
                                for a in range(3)), f"stored extent {extent} is outside {volumeExtent}")
        self.delayDisplay("Names, colours and geometry are as expected")

    def test_SampleCaseMatchesManualReference(self) -> None:
        volume, segmentation, card = self._segmentSampleCase()
        segments = segmentation.GetSegmentation()
        ids = [segments.GetNthSegmentID(i) for i in range(segments.GetNumberOfSegments())]
        predicted = self._labelMapOfSegments(segmentation, ids, volume)
        reference = slicer.util.arrayFromVolume(loadVolumeFile(sampleLabelPath(), slicer.mrmlScene, labelMap=True))
        scores = {label.name: _dice(predicted == index + 1, reference == label.value)
                  for index, label in enumerate(card.labels)}
        meanDice = float(np.mean(list(scores.values())))
        logging.info(f"Dice against the manual reference: {scores} (mean {meanDice:.3f})")
        self.assertGreaterEqual(meanDice, self.MINIMUM_MEAN_DICE,
                                f"mean Dice {meanDice:.3f} < {self.MINIMUM_MEAN_DICE} (per label: {scores})")
        self.delayDisplay(f"Mean Dice {meanDice:.3f}")

    def test_ReviewThenReplaceKeepsTheUsersWork(self) -> None:
        """A run with uncertainty, the reviewer's edits, a second run replacing only the model's segments, and a
        restore that brings the edited state back; the segment the reviewer drew never changes."""
        from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID

        volume, segmentation, card = self._segmentSampleCase()
        logic = MobileUViTSegmentTest._logic
        review = logic.lastReview
        self.assertIsNone(review.uncertaintyVolumeNode)  # not asked for
        logic.segmentAndWait(volume, DEFAULT_MODEL_ID, device="cpu", outputSegmentationNode=segmentation,
                             timeout=self.TIMEOUT_S, mode="replace", uncertainty=True)
        review = logic.lastReview
        self.assertIsNotNone(review.uncertaintyVolumeNode)
        self.assertTrue(review.items and set(review.confidenceBySegmentId) == set(logic.lastResult.segmentIds))
        self.delayDisplay(f"Review list: {review.items[0].describe()}")

        segments = segmentation.GetSegmentation()
        modelIds = [segments.GetNthSegmentID(i) for i in range(segments.GetNumberOfSegments())]
        edited = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, modelIds[0], volume).copy()
        edited[:, :, : edited.shape[2] // 2] = 0  # the reviewer erases half of the first segment
        writeSegmentMask(segmentation, modelIds[0], edited > 0, referenceGrid(volume))
        drawn = np.zeros_like(edited)
        drawn[5:9, 5:9, 5:9] = 1
        userId = segments.AddEmptySegment("", "my finding")
        writeSegmentMask(segmentation, userId, drawn > 0, referenceGrid(volume))

        logic.segmentAndWait(volume, DEFAULT_MODEL_ID, device="cpu", outputSegmentationNode=segmentation,
                             timeout=self.TIMEOUT_S, mode="replace")
        self.assertEqual([segments.GetNthSegmentID(i) for i in range(segments.GetNumberOfSegments())],
                         [*modelIds, userId])  # replaced in place, nothing added
        self.assertTrue(np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, userId, volume),
                                       drawn))
        self.assertGreater(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, modelIds[0], volume).sum(),
                           edited.sum())
        self.assertTrue(canRestoreReplacedSegments(segmentation))
        self.assertEqual(restoreReplacedSegments(segmentation), len(modelIds))
        self.assertTrue(np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, modelIds[0], volume),
                                       edited))
        self.assertTrue(np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, userId, volume),
                                       drawn))
        self.delayDisplay("Replace touched only the model's segments; restore brought the edited state back")
