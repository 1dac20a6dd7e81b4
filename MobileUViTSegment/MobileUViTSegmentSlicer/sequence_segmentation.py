"""Segmenting every frame of a sequence (a 4D volume) into a sequence of segmentations, all or nothing.

Slicer loads a 4D volume as a ``vtkMRMLSequenceNode`` of scalar volume nodes plus a sequence browser whose proxy
volume shows the selected frame. :class:`SequenceSegmentation` segments the frames one after another through one
:class:`~.segmentation_logic.SegmentationLogic` (so the same worker, checks and import rules apply to every frame)
and builds a new sequence of segmentation nodes with the input's index name, unit, type and values. When every
frame has succeeded, that sequence is added to the scene and to the browser as a synchronized sequence, so browsing
the frames shows each frame's segmentation; before that the scene holds only the current frame's temporary nodes.

Why temporary nodes: the Logic segments volume nodes of its own scene, and a sequence's items live in the
sequence's private scene. So each frame is shown to the Logic as a hidden volume node that shares the frame's
voxels and IJK-to-RAS matrix (no resampling: every frame's segmentation lies on that frame's own grid, whatever
the other frames' geometry), and the segments go into a hidden segmentation node of ours. Both are removed in the
same ``poll`` that copies the segmentation into the result sequence, so no Qt event (rendering, a node selector
update) ever sees them, and cancelling or any failure removes them and drops the unfinished result sequence: the
scene ends exactly as it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import slicer
import vtk

from .processing_state import ProcessingState, ProcessingStateMachine
from .result_import import MODEL_ID_TAG
from .segmentation_logic import DEVICES, SegmentationFailed, SegmentationLogic
from .signals import Signal
from .volume_export import volumeProblem


class SequenceSegmentationFailed(SegmentationFailed):
    """Raised by :meth:`SequenceSegmentation.segmentSequenceAndWait`; ``str(error)`` is one sentence."""


@dataclass(frozen=True)
class SequenceProgress:
    """Where a sequence run is: ``frameNumber`` counts from 1; ``fraction`` covers the whole sequence."""

    frameNumber: int
    frameCount: int
    fraction: float
    text: str


@dataclass
class SequenceSegmentationResult:
    """What a finished run added: the sequence of segmentations and, when there is a browser, its proxy node."""

    sequenceNode: slicer.vtkMRMLSequenceNode
    browserNode: Optional[slicer.vtkMRMLSequenceBrowserNode]
    proxyNode: Optional[slicer.vtkMRMLSegmentationNode]
    inputSequenceNode: slicer.vtkMRMLSequenceNode

    @property
    def frameCount(self) -> int:
        return self.sequenceNode.GetNumberOfDataNodes()

    def summary(self) -> str:
        count = self.frameCount
        return f"{count} frame{'s' if count != 1 else ''} segmented into the sequence '{self.sequenceNode.GetName()}'."


def _isImageVolume(node: Optional[slicer.vtkMRMLNode]) -> bool:
    return (node is not None and node.IsA("vtkMRMLScalarVolumeNode")
            and not node.IsA("vtkMRMLLabelMapVolumeNode"))


def _synchronizedSequences(browserNode: slicer.vtkMRMLSequenceBrowserNode) -> list[slicer.vtkMRMLSequenceNode]:
    """The browser's sequences, its primary ("master") sequence first."""
    collection = vtk.vtkCollection()
    browserNode.GetSynchronizedSequenceNodes(collection, True)
    sequences = [collection.GetItemAsObject(index) for index in range(collection.GetNumberOfItems())]
    # "Primary" in newer Slicer versions, "master" before.
    getPrimary = getattr(browserNode, "GetPrimarySequenceNode", None) or browserNode.GetMasterSequenceNode
    primary = getPrimary()
    return sorted(sequences, key=lambda sequence: sequence is not primary)


def _browserOf(sequenceNode: slicer.vtkMRMLSequenceNode,
               scene: slicer.vtkMRMLScene) -> Optional[slicer.vtkMRMLSequenceBrowserNode]:
    """The first browser of the scene that browses ``sequenceNode``, or None."""
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(index)
        if browser.IsSynchronizedSequenceNode(sequenceNode, True):
            return browser
    return None


def sequenceBrowserOfVolume(volumeNode: Optional[slicer.vtkMRMLNode]) -> Optional[slicer.vtkMRMLSequenceBrowserNode]:
    """The browser whose proxy ``volumeNode`` is (the volume shows a frame of a 4D sequence), or None.

    The panel offers "segment every frame" only for such a volume.
    """
    scene = volumeNode.GetScene() if volumeNode is not None else None
    if scene is None:
        return None
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(index)
        if browser.GetSequenceNode(volumeNode) is not None:
            return browser
    return None


def _frameDescription(sequenceNode: slicer.vtkMRMLSequenceNode, index: int) -> str:
    """``"frame 3 of 10 (time = 2.5 s)"``: what a user reads in progress and error messages."""
    value = sequenceNode.GetNthIndexValue(index)
    name, unit = sequenceNode.GetIndexName(), sequenceNode.GetIndexUnit()
    where = f"{name} = {value} {unit}".strip() if name else f"index value {value}"
    return f"frame {index + 1} of {sequenceNode.GetNumberOfDataNodes()} ({where})"


def _lowerFirst(sentence: str) -> str:
    """Lower-case the first letter of a sentence that continues another (but not of "GPU", "'Name'", ...)."""
    if len(sentence) > 1 and sentence[0].isupper() and not sentence[1].isupper():
        return sentence[0].lower() + sentence[1:]
    return sentence


def _removeWithDependents(scene: slicer.vtkMRMLScene, node: Optional[slicer.vtkMRMLNode]) -> None:
    """Remove ``node`` and its display and storage nodes (RemoveNode alone leaves those behind)."""
    if node is None or not scene.IsNodePresent(node):
        return
    dependentIds = []
    if node.IsA("vtkMRMLDisplayableNode"):
        dependentIds = [node.GetNthDisplayNodeID(index) for index in range(node.GetNumberOfDisplayNodes())]
    if node.IsA("vtkMRMLStorableNode"):
        dependentIds.append(node.GetStorageNodeID())
    scene.RemoveNode(node)
    for nodeId in filter(None, dependentIds):
        dependent = scene.GetNodeByID(nodeId)
        if dependent is not None:
            scene.RemoveNode(dependent)


def _placeBesideInSubjectHierarchy(node: slicer.vtkMRMLNode, referenceNode: Optional[slicer.vtkMRMLNode],
                                   scene: slicer.vtkMRMLScene) -> None:
    # Only an existing hierarchy: GetSubjectHierarchyNode() would create one in a scene that has none.
    shNode = scene.GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    referenceItem = shNode.GetItemByDataNode(referenceNode) if shNode is not None and referenceNode else 0
    if not referenceItem:
        return
    parentItem = shNode.GetItemParent(referenceItem)
    item = shNode.GetItemByDataNode(node)
    if item:
        shNode.SetItemParent(item, parentItem)
    else:
        shNode.CreateItem(parentItem, node)


def _defaultSequencesLogic():
    """Slicer's Sequences logic inside the application; None headless (then a registered logic or none is used)."""
    try:
        return slicer.modules.sequences.logic()
    except AttributeError:
        return None


@dataclass
class _FrameRun:
    """The nodes that exist in the scene only while one frame is segmented."""

    index: int
    volumeNode: slicer.vtkMRMLScalarVolumeNode
    segmentationNode: slicer.vtkMRMLSegmentationNode


@dataclass
class _SequenceRun:
    inputSequenceNode: slicer.vtkMRMLSequenceNode
    browserNode: Optional[slicer.vtkMRMLSequenceBrowserNode]
    modelId: str
    device: str
    resultSequenceNode: slicer.vtkMRMLSequenceNode  # not in the scene until every frame has succeeded
    frame: Optional[_FrameRun] = None
    frameFraction: float = 0.0  # the Logic's progress within the current frame
    outcome: Optional[tuple[str, object]] = None  # ("finished", ImportedSegments) or ("failed", message)


class SequenceSegmentation:
    """Segment every frame of a sequence (4D volume) with one model; usable from Slicer's Python console.

    Example (Slicer's Python console)::

        logic = MobileUViTSegment.MobileUViTSegmentLogic()
        driver = SequenceSegmentation(slicer.mrmlScene, logic)
        browser = slicer.util.getNode("SequenceBrowser")
        resultSequence = driver.segmentSequenceAndWait(browser, "hippocampus-mri", device="cpu")

    Non-blocking use: :meth:`start`, then call :meth:`poll` periodically (a QTimer) until :attr:`busy` is False;
    :meth:`cancel` stops and leaves the scene as it was. Signals: ``progress(SequenceProgress)`` ("frame 3 of 10"),
    ``stateChanged(ProcessingStateMachine)``, ``finished(SequenceSegmentationResult)``, ``failed(message)``.

    The Logic is borrowed for the whole run: its own signals fire once per frame, for the temporary nodes.
    """

    POLL_INTERVAL_S = SegmentationLogic.POLL_INTERVAL_S

    def __init__(self, scene: slicer.vtkMRMLScene, logic: Optional[SegmentationLogic] = None,
                 sequencesLogic=None, clock: Callable[[], float] = time.monotonic) -> None:
        """
        :param logic: the Logic that segments each frame (tests pass one with a fake worker).
        :param sequencesLogic: a ``vtkSlicerSequencesLogic``, used to create the result's proxy node when the
            scene has no Sequences logic observing its browsers; by default Slicer's own, when running in Slicer.
        """
        self.scene = scene
        self.logic = logic or SegmentationLogic(scene)
        self.sequencesLogic = sequencesLogic if sequencesLogic is not None else _defaultSequencesLogic()
        self.machine = ProcessingStateMachine(clock)
        self.progress = Signal("SequenceProgress: the frame being segmented and the overall fraction")
        self.stateChanged = Signal("ProcessingStateMachine: state, stage or progress changed")
        self.finished = Signal("SequenceSegmentationResult: the sequence of segmentations is in the scene")
        self.failed = Signal("str: one sentence saying what went wrong (and which frame)")
        self.lastResult: Optional[SequenceSegmentationResult] = None
        self._run: Optional[_SequenceRun] = None

    # -- state ---------------------------------------------------------------------------------------------------

    @property
    def state(self) -> ProcessingState:
        return self.machine.state

    @property
    def busy(self) -> bool:
        return self.machine.busy

    def _changed(self) -> None:
        self.stateChanged.emit(self.machine)

    # -- checks --------------------------------------------------------------------------------------------------

    def _resolveInput(self, inputNode: Optional[slicer.vtkMRMLNode]):
        """(sequence, browser or None, problem or None) for a browser or sequence node."""
        if inputNode is None:
            return None, None, "Select a sequence or a sequence browser (a 4D volume)."
        if inputNode.IsA("vtkMRMLSequenceBrowserNode"):
            sequences = _synchronizedSequences(inputNode)
            volumes = [sequence for sequence in sequences
                       if sequence.GetNumberOfDataNodes() and _isImageVolume(sequence.GetNthDataNode(0))]
            chosen = volumes[0] if volumes else (sequences[0] if sequences else None)
            if chosen is None:
                return None, None, (f"The sequence browser '{inputNode.GetName()}' browses no sequence; select a "
                                    "4D volume.")
            return chosen, inputNode, None
        if inputNode.IsA("vtkMRMLSequenceNode"):
            return inputNode, _browserOf(inputNode, self.scene), None
        return None, None, (f"'{inputNode.GetName()}' is not a sequence or a sequence browser; select a 4D volume "
                            "(to segment a single volume, use the Segment button).")

    @staticmethod
    def _sequenceProblem(sequenceNode: slicer.vtkMRMLSequenceNode) -> Optional[str]:
        name = sequenceNode.GetName()
        count = sequenceNode.GetNumberOfDataNodes()
        if count == 0:
            return f"The sequence '{name}' has no frames; load or record a 4D volume first."
        for index in range(count):
            frame = sequenceNode.GetNthDataNode(index)
            if not _isImageVolume(frame):
                kind = frame.GetClassName() if frame is not None else "empty"
                return (f"The sequence '{name}' holds {kind} items, not image volumes; select a sequence of image "
                        "volumes (a 4D volume).")
            problem = volumeProblem(frame)
            if problem:
                return f"The {_frameDescription(sequenceNode, index)} of '{name}' cannot be segmented: {problem}"
        return None

    # -- running -------------------------------------------------------------------------------------------------

    def start(self, inputNode: Optional[slicer.vtkMRMLNode], modelId: str, device: str = "auto") -> None:
        """Start segmenting every frame of ``inputNode`` (a sequence browser or a sequence node); returns at once.

        A browser's first sequence of image volumes (its primary one if that qualifies) is segmented; for a
        sequence node, the first browser of the scene that browses it receives the result (without one, the
        result is only the new sequence node). User errors do not raise: the state becomes FAILED and ``failed``
        is emitted with one sentence. Starting while this driver or its Logic runs is a RuntimeError.
        """
        if self.busy or self.logic.busy:
            raise RuntimeError("A segmentation is already running; cancel it or wait for it to finish.")
        self.machine.start()
        self._changed()
        sequenceNode, browserNode, problem = self._resolveInput(inputNode)
        problem = (problem
                   or (None if modelId else "Select a model.")
                   or (None if device in DEVICES else f"Unknown device '{device}'; use one of {', '.join(DEVICES)}.")
                   or self._sequenceProblem(sequenceNode))
        if problem:
            self._fail(problem)
            return
        result = slicer.vtkMRMLSequenceNode()  # outside the scene until the end: nothing to undo before that
        result.CopySequenceIndex(sequenceNode)
        result.SetName(self.scene.GenerateUniqueName(f"{sequenceNode.GetName()} segmentation"))
        result.SetAttribute(MODEL_ID_TAG, modelId)
        self._run = _SequenceRun(sequenceNode, browserNode, modelId, device, result)
        self.logic.finished.connect(self._onFrameFinished)
        self.logic.failed.connect(self._onFrameFailed)
        self.logic.stateChanged.connect(self._onFrameStateChanged)
        self._startFrame(0)

    def poll(self) -> ProcessingState:
        """Advance the run (never blocks): poll the Logic; store a finished frame and start the next one."""
        run = self._run
        if run is None:
            return self.state
        if run.frame is not None and run.outcome is None:
            self.logic.poll()
            self._reportProgress()
        self._advance()
        return self.state

    def cancel(self) -> None:
        """Stop now; everything built so far is removed and the scene is left exactly as it was before."""
        if not self.busy or self.state is ProcessingState.CANCELLING:
            return
        self.machine.request_cancel()
        self._changed()
        if self.logic.busy:
            self.logic.cancel()
        self._endRun()
        self.machine.finish_cancel()
        self._changed()

    def segmentSequenceAndWait(self, inputNode: slicer.vtkMRMLNode, modelId: str, device: str = "auto",
                               timeout: float = 3600.0) -> slicer.vtkMRMLSequenceNode:
        """Segment every frame and block until the result is in the scene; returns the new sequence node.

        Raises :class:`SequenceSegmentationFailed` with one sentence when a frame fails or the whole run exceeds
        ``timeout`` seconds (then it is cancelled); either way the scene is unchanged.
        """
        self.start(inputNode, modelId, device)
        deadline = time.monotonic() + timeout
        while self.busy:
            self.poll()
            if not self.busy:
                break
            if time.monotonic() > deadline:
                self.cancel()
                raise SequenceSegmentationFailed(f"The sequence was not segmented within {timeout:g} s and the run "
                                                 "was cancelled; the scene was not changed.")
            time.sleep(self.POLL_INTERVAL_S)
        if self.state is ProcessingState.FAILED:
            raise SequenceSegmentationFailed(self.machine.error_message)
        return self.lastResult.sequenceNode

    # -- frames --------------------------------------------------------------------------------------------------

    def _startFrame(self, index: int) -> None:
        run = self._run
        if not self.scene.IsNodePresent(run.inputSequenceNode):
            self._fail("The input sequence was removed from the scene during the segmentation; nothing was added.")
            return
        frame = run.inputSequenceNode.GetNthDataNode(index)
        label = f"{run.inputSequenceNode.GetName()} frame {index + 1}"
        volume = self.scene.AddNewNodeByClass(frame.GetClassName(), self.scene.GenerateUniqueName(label))
        volume.SetHideFromEditors(True)
        matrix = vtk.vtkMatrix4x4()
        frame.GetIJKToRASMatrix(matrix)
        volume.SetIJKToRASMatrix(matrix)
        volume.SetAndObserveImageData(frame.GetImageData())  # shared, read only: the Logic only exports it
        segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                    self.scene.GenerateUniqueName(f"{label} segmentation"))
        segmentation.SetHideFromEditors(True)
        run.frame = _FrameRun(index, volume, segmentation)
        run.outcome, run.frameFraction = None, 0.0
        self._reportProgress()
        self.logic.startSegmentation(volume, run.modelId, run.device, outputSegmentationNode=segmentation)
        self._advance()  # a frame the Logic refused at once (failed is emitted synchronously)

    def _onFrameFinished(self, imported) -> None:
        if self._run is not None and self._run.frame is not None:
            self._run.outcome = ("finished", imported)

    def _onFrameFailed(self, message: str) -> None:
        if self._run is not None and self._run.frame is not None:
            self._run.outcome = ("failed", message)

    def _onFrameStateChanged(self, machine: ProcessingStateMachine) -> None:
        if self._run is not None and machine.busy:
            self._run.frameFraction = machine.fraction

    def _advance(self) -> None:
        """Act on the current frame's outcome, if it has one (the Logic's signals only record it)."""
        run = self._run
        if run is None or run.frame is None or run.outcome is None:
            return
        kind, detail = run.outcome
        index = run.frame.index
        description = _frameDescription(run.inputSequenceNode, index)
        if kind == "failed":
            self._fail(f"{description[0].upper()}{description[1:]} failed, so nothing was added to the scene: "
                       f"{_lowerFirst(str(detail))}")
            return
        try:
            self._storeFrame(run, detail)
        except Exception as error:  # a bug here must still leave the scene as it was
            self._fail(f"The segmentation of {description} could not be stored in the result sequence: {error}")
            return
        if index + 1 < run.inputSequenceNode.GetNumberOfDataNodes():
            self._startFrame(index + 1)
        else:
            self._finish()

    def _storeFrame(self, run: _SequenceRun, imported) -> None:
        """Copy the frame's segmentation into the result sequence and remove the frame's temporary nodes."""
        frame = run.frame
        node = frame.segmentationNode
        node.SetAttribute(MODEL_ID_TAG, run.modelId)
        value = run.inputSequenceNode.GetNthIndexValue(frame.index)
        if run.resultSequenceNode.SetDataNodeAtValue(node, value) is None:
            raise RuntimeError(f"no item could be added at index value {value}")
        if getattr(imported, "createdNode", False):  # the Logic made its own node after all
            _removeWithDependents(self.scene, imported.segmentationNode)
        self._removeFrameNodes()

    def _removeFrameNodes(self) -> None:
        run = self._run
        frame, run.frame = run.frame, None
        run.outcome = None
        if frame is not None:
            _removeWithDependents(self.scene, frame.segmentationNode)
            _removeWithDependents(self.scene, frame.volumeNode)

    def _reportProgress(self) -> None:
        run = self._run
        if run is None or run.frame is None or not self.busy:
            return
        count = run.inputSequenceNode.GetNumberOfDataNodes()
        fraction = (run.frame.index + run.frameFraction) / count
        description = _frameDescription(run.inputSequenceNode, run.frame.index)
        self.machine.report_progress(f"segmenting frame {run.frame.index + 1} of {count}", fraction, description)
        self.progress.emit(SequenceProgress(run.frame.index + 1, count, fraction, f"Segmenting {description}"))
        self._changed()

    def _finish(self) -> None:
        """Every frame succeeded: add the result sequence to the scene and to the browser (all or nothing)."""
        run = self._run
        self.machine.begin_import()
        self._changed()
        try:
            proxy = self._addResultToScene(run)
        except Exception as error:
            self._fail(f"The sequence of segmentations could not be added to the scene: {error}")
            return
        result = SequenceSegmentationResult(run.resultSequenceNode, run.browserNode, proxy, run.inputSequenceNode)
        self._endRun()
        self.lastResult = result
        self.machine.succeed(result.summary())
        self._changed()
        self.finished.emit(result)

    def _addResultToScene(self, run: _SequenceRun) -> Optional[slicer.vtkMRMLSegmentationNode]:
        sequence, browser = run.resultSequenceNode, run.browserNode
        if browser is not None and not self.scene.IsNodePresent(browser):
            raise RuntimeError("the sequence browser was removed from the scene during the segmentation")
        self.scene.AddNode(sequence)
        proxy = None
        try:
            _placeBesideInSubjectHierarchy(sequence, run.inputSequenceNode, self.scene)
            if browser is None:
                return None
            browser.AddSynchronizedSequenceNode(sequence)  # a registered Sequences logic makes the proxy here
            if browser.GetProxyNode(sequence) is None and self.sequencesLogic is not None:
                self.sequencesLogic.UpdateProxyNodesFromSequences(browser)
            proxy = browser.GetProxyNode(sequence)
            if proxy is not None:
                if proxy.GetNumberOfDisplayNodes() == 0:
                    proxy.CreateDefaultDisplayNodes()
                inputProxy = browser.GetProxyNode(run.inputSequenceNode)
                transform = inputProxy.GetParentTransformNode() if inputProxy is not None else None
                proxy.SetAndObserveTransformNodeID(transform.GetID() if transform is not None else None)
                _placeBesideInSubjectHierarchy(proxy, inputProxy, self.scene)
            # Edits made to a frame's segmentation (Segment Editor) are kept in that frame's item.
            browser.SetSaveChanges(sequence, True)
            return proxy
        except BaseException:
            if browser is not None and browser.IsSynchronizedSequenceNode(sequence, True):
                proxy = browser.GetProxyNode(sequence)
                browser.RemoveSynchronizedSequenceNode(sequence.GetID())
            _removeWithDependents(self.scene, proxy)
            _removeWithDependents(self.scene, sequence)
            raise

    def _fail(self, message: str) -> None:
        self._endRun()
        self.machine.fail(message)
        self._changed()
        self.failed.emit(message)

    def _endRun(self) -> None:
        """Forget the run: temporary nodes out of the scene, the unfinished result sequence dropped."""
        self.logic.finished.disconnect(self._onFrameFinished)
        self.logic.failed.disconnect(self._onFrameFailed)
        self.logic.stateChanged.disconnect(self._onFrameStateChanged)
        if self._run is not None:
            self._removeFrameNodes()
        self._run = None
