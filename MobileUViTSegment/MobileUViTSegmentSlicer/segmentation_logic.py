"""The Logic: runs segmentations in a worker process and puts the results into the scene, without any Qt.

Slicer's GUI thread never runs torch: the volume is written to a private temporary folder, a worker process
(:mod:`MobileUViTSegmentLib.worker`) segments it, and :meth:`SegmentationLogic.poll`, called from a QTimer by the
panel or in a loop by :meth:`SegmentationLogic.segmentAndWait`, drains the worker's events without blocking. Nothing
touches the scene until the worker reports ``done``; the import then happens inside that one ``poll`` call. So
cancelling (killing the worker) or any failure leaves the scene exactly as it was.

Into a segmentation that already holds segments the result goes in an import mode (``"add"``, ``"replace"``,
``"fillEmpty"``; :mod:`.import_modes`), and with a markups ROI only the block of the volume inside it is sent to the
worker and changed (:mod:`.roi_crop`). The panel asks which mode only when it matters (:func:`modelSegmentIds`,
:func:`editedModelSegmentIds`) and restores a replaced result with :func:`restoreReplacedSegments`.

Collaborators are injected (SlicerNNUnet style) so tests can replace them: the scene, and a factory that makes worker
clients (anything with the :class:`WorkerClientProtocol` methods).
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol

import slicer

from .import_modes import ImportMode, importModeProblem
from .messages import message_for_crash, message_for_exception, message_from_error_event
from .processing_state import ProcessingState, ProcessingStateMachine
from .result_backup import BackupCleanup
from .result_import import (
    ImportedSegments,
    LabelDescription,
    ResultImportError,
    importLabelMap,
    outputSegmentationProblem,
)
from .roi_crop import RoiError, VoxelBox, roiVoxelBox
from .run_review import RunReview, reviewFromEvent
from .signals import Signal
from .volume_export import (
    PROBABILITY_FOLDER_NAME,
    UNCERTAINTY_FILE_NAME,
    VolumeExportError,
    WorkerFiles,
    exportVolumeForWorker,
    volumeProblem,
)
from .worker_launch import WorkerLaunchError, defaultWorkerFactory

DEVICES = ("auto", "cpu", "cuda")


class WorkerClientProtocol(Protocol):
    """What the Logic needs from a worker client (``MobileUViTSegmentLib.worker_client.WorkerClient`` has it)."""

    def send(self, request: dict) -> None: ...

    def poll(self) -> list[dict]: ...

    def kill(self) -> None: ...

    def shutdown(self, timeout: float = 10.0) -> None: ...

    def last_error_line(self) -> str: ...


WorkerFactory = Callable[[], WorkerClientProtocol]


class SegmentationFailed(Exception):
    """Raised by :meth:`SegmentationLogic.segmentAndWait`; ``str(error)`` is the one sentence the panel shows."""


@dataclass
class _Run:
    requestId: str
    inputVolumeNode: slicer.vtkMRMLScalarVolumeNode
    modelId: str
    outputSegmentationNode: Optional[slicer.vtkMRMLSegmentationNode]
    show3D: bool
    files: WorkerFiles
    mode: str = ImportMode.ADD.value
    region: Optional[VoxelBox] = None  # the block of the volume sent to the worker; None: the whole volume
    uncertainty: bool = False  # the worker also writes an uncertainty map into the run's private folder
    probabilities: bool = False  # ... and one probability map per label into a folder there

    @property
    def uncertaintyPath(self) -> Path:
        return self.files.folder / UNCERTAINTY_FILE_NAME

    @property
    def probabilityFolder(self) -> Path:
        return self.files.folder / PROBABILITY_FOLDER_NAME


class SegmentationLogic:
    """Segment volume nodes with a model of the catalog; usable from Slicer's Python console without the panel.

    Example (Slicer's Python console)::

        import MobileUViTSegment
        logic = MobileUViTSegment.MobileUViTSegmentLogic()
        volume = slicer.util.getNode("hippocampus_046")
        segmentation = logic.segmentAndWait(volume, "hippocampus-mri", device="cpu")

    Non-blocking use (what the panel does)::

        logic.stateChanged.connect(lambda machine: print(machine.status_text()))
        logic.startSegmentation(volume, "hippocampus-mri")
        # ... call logic.poll() periodically (a QTimer); logic.cancel() stops the run and changes nothing.

    Signals: ``stateChanged(ProcessingStateMachine)`` on every state or progress change (and on every poll while
    busy, so the elapsed time stays current), ``finished(ImportedSegments)``, ``failed(message)``,
    ``devicesDetected(description)`` when a worker reports what hardware it sees.
    """

    POLL_INTERVAL_S = 0.05
    # A worker reports progress at least once per sliding window (seconds apart even for the largest network on a
    # CPU) and while it downloads weights; one that sends nothing for this long is hung and is stopped.
    STALL_TIMEOUT_S = 300.0

    def __init__(self, scene: slicer.vtkMRMLScene, workerFactory: Optional[WorkerFactory] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scene = scene
        self.workerFactory: WorkerFactory = workerFactory or defaultWorkerFactory()
        self.machine = ProcessingStateMachine(clock)
        self._clock = clock
        self._lastWorkerEventAt = clock()
        self.stateChanged = Signal("ProcessingStateMachine: state, stage or progress changed")
        self.finished = Signal("ImportedSegments: the result is in the scene")
        self.failed = Signal("str: one sentence saying what went wrong")
        self.devicesDetected = Signal("str: the devices the worker's PyTorch sees")
        self.devicesDescription: Optional[str] = None
        self.lastResult: Optional[ImportedSegments] = None
        self.lastReview: RunReview = RunReview()  # of the last successful run
        self._worker: Optional[WorkerClientProtocol] = None
        self._run: Optional[_Run] = None
        # Unique per Logic, so that two Logics sharing one worker never take each other's events.
        self._requestPrefix = f"segment-{uuid.uuid4().hex[:8]}"
        self._requestNumbers = itertools.count(1)
        # Backups of replaced segments live in the scene; this removes one when its segmentation is deleted. It stays
        # installed after shutdown(), which the panel also calls when the scene is closed and then goes on using it.
        self._backupCleanup = BackupCleanup(scene)

    # -- state ---------------------------------------------------------------------------------------------------

    @property
    def state(self) -> ProcessingState:
        return self.machine.state

    @property
    def busy(self) -> bool:
        return self.machine.busy

    @property
    def hasWorker(self) -> bool:
        return self._worker is not None

    def _changed(self) -> None:
        self.stateChanged.emit(self.machine)

    # -- worker --------------------------------------------------------------------------------------------------

    def _ensureWorker(self) -> WorkerClientProtocol:
        if self._worker is None:
            self._worker = self.workerFactory()
        return self._worker

    def _discardWorker(self, kill: bool) -> None:
        worker, self._worker = self._worker, None
        if worker is not None and kill:
            worker.kill()

    def startWorker(self) -> None:
        """Start a worker ahead of time (it loads PyTorch, then reports the devices it sees through ``poll``)."""
        if self._worker is not None:
            return
        try:
            self._ensureWorker().send({"type": "ping", "id": "warm-up"})
        except Exception:  # a failing start is reported when a segmentation is asked for
            self._discardWorker(kill=True)

    # -- running -------------------------------------------------------------------------------------------------

    def startSegmentation(self, inputVolumeNode: Optional[slicer.vtkMRMLScalarVolumeNode], modelId: str,
                          device: str = "auto",
                          outputSegmentationNode: Optional[slicer.vtkMRMLSegmentationNode] = None,
                          show3D: bool = False, mode: str = ImportMode.ADD.value,
                          roiNode: Optional[slicer.vtkMRMLMarkupsROINode] = None, uncertainty: bool = False,
                          tta: bool = False, probabilities: bool = False) -> None:
        """Start segmenting ``inputVolumeNode`` with ``modelId``; returns at once.

        :param device: ``"auto"`` (a CUDA GPU when the worker's PyTorch sees one), ``"cpu"`` or ``"cuda"``.
        :param outputSegmentationNode: segmentation that receives the new segments; None creates a new one when the
            result arrives.
        :param show3D: also build the closed-surface representation so the result shows in 3D views.
        :param mode: how the result goes into an output segmentation that already holds segments: ``"add"`` (new
            segments beside), ``"replace"`` (the segments this model made earlier; restorable) or ``"fillEmpty"``
            (new segments only where nothing is segmented). Segments the model did not make are never changed.
        :param roiNode: a markups ROI: only the block of the volume inside it is segmented and changed.
        :param uncertainty: also import the uncertainty map (normalised entropy) as a volume beside the input, and
            keep the review list and per-segment confidence in :attr:`lastReview`.
        :param tta: test-time flips (probabilities averaged over mirrored passes; slower); implies ``uncertainty``.
        :param probabilities: also import one probability map per label ("<volume> <label> probability", 0..1).

        User errors (no volume, unusable output node, ...) do not raise: the state becomes FAILED and ``failed``
        is emitted with one sentence. Calling it while a run is active is a programming error (RuntimeError).
        """
        if self.busy:
            raise RuntimeError("A segmentation is already running; cancel it or wait for it to finish.")
        self.machine.start()
        self._changed()
        problem = (volumeProblem(inputVolumeNode)
                   or (None if modelId else "Select a model.")
                   or (None if device in DEVICES else f"Unknown device '{device}'; use one of {', '.join(DEVICES)}.")
                   or importModeProblem(mode)
                   or outputSegmentationProblem(outputSegmentationNode, inputVolumeNode))
        if problem:
            self._fail(problem)
            return
        try:
            region = roiVoxelBox(roiNode, inputVolumeNode) if roiNode is not None else None
        except RoiError as error:
            self._fail(str(error))
            return
        try:
            files = exportVolumeForWorker(inputVolumeNode, box=region)
        except VolumeExportError as error:
            self._fail(str(error))
            return
        self._lastWorkerEventAt = self._clock()
        requestId = f"{self._requestPrefix}-{next(self._requestNumbers)}"
        run = _Run(requestId, inputVolumeNode, modelId, outputSegmentationNode, show3D, files,
                   ImportMode(mode).value, region, uncertainty or tta, probabilities)
        self._run = run
        request = {"type": "segment", "id": requestId, "input": str(files.inputPath), "output": str(files.outputPath),
                   "model": modelId, "device": device, "postprocess": None}
        if run.uncertainty:
            request.update(uncertainty=str(run.uncertaintyPath), tta=bool(tta))
        if run.probabilities:
            try:
                run.probabilityFolder.mkdir()
            except OSError as error:
                self._fail(message_for_exception("the folder for the probability maps could not be made", error))
                return
            request["probabilities"] = str(run.probabilityFolder)
        try:
            self._ensureWorker().send(request)
        except WorkerLaunchError as error:
            self._discardWorker(kill=True)
            self._fail(str(error))
        except Exception as error:  # WorkerCrashed, OSError from Popen: the worker could not be started
            self._discardWorker(kill=True)
            self._fail(message_for_exception("the segmentation worker could not be started", error))

    def poll(self) -> ProcessingState:
        """Handle every event the worker sent since the last call (never blocks); returns the state."""
        if self._worker is not None:
            for event in self._worker.poll():
                self._lastWorkerEventAt = self._clock()
                self._handle(event)
        if self.busy and self._run is not None and self._clock() - self._lastWorkerEventAt > self.STALL_TIMEOUT_S:
            self._discardWorker(kill=True)  # hung: the next run starts a fresh worker
            self._fail(f"The segmentation worker sent nothing for {self.STALL_TIMEOUT_S:g} s and was stopped; the "
                       "scene was not changed, and the next run starts a fresh worker.")
        if self.busy:
            self._changed()  # the elapsed time moves on even without events
        return self.state

    def cancel(self) -> None:
        """Stop the running segmentation now; the scene is left exactly as it was before the run."""
        if not self.busy or self.state is ProcessingState.CANCELLING:
            return
        self.machine.request_cancel()
        self._changed()
        self._discardWorker(kill=True)  # the next run starts a fresh worker
        self._endRun()
        self.machine.finish_cancel()
        self._changed()

    def segmentAndWait(self, inputVolumeNode: slicer.vtkMRMLScalarVolumeNode, modelId: str, device: str = "auto",
                       outputSegmentationNode: Optional[slicer.vtkMRMLSegmentationNode] = None, show3D: bool = False,
                       timeout: float = 600.0, mode: str = ImportMode.ADD.value,
                       roiNode: Optional[slicer.vtkMRMLMarkupsROINode] = None, uncertainty: bool = False,
                       tta: bool = False, probabilities: bool = False) -> slicer.vtkMRMLSegmentationNode:
        """Segment and block until the result is in the scene (scripts, tests); returns the segmentation node.

        ``mode``, ``roiNode``, ``uncertainty``, ``tta`` and ``probabilities`` as for :meth:`startSegmentation`.

        Raises :class:`SegmentationFailed` with one sentence when the run fails or exceeds ``timeout`` seconds (then
        it is cancelled and the scene is unchanged).
        """
        self.startSegmentation(inputVolumeNode, modelId, device, outputSegmentationNode, show3D, mode=mode,
                               roiNode=roiNode, uncertainty=uncertainty, tta=tta, probabilities=probabilities)
        deadline = time.monotonic() + timeout
        while self.busy:
            self.poll()
            if not self.busy:
                break
            if time.monotonic() > deadline:
                self.cancel()
                raise SegmentationFailed(f"The segmentation did not finish within {timeout:g} s and was cancelled; "
                                         "the scene was not changed.")
            time.sleep(self.POLL_INTERVAL_S)
        if self.state is ProcessingState.FAILED:
            raise SegmentationFailed(self.machine.error_message)
        return self.lastResult.segmentationNode

    def shutdown(self) -> None:
        """Cancel any run and stop the worker (module cleanup, scene close, end of a script)."""
        self.cancel()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown()

    # -- events --------------------------------------------------------------------------------------------------

    def _handle(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "ready":
            self.devicesDescription = str(event.get("devices", ""))
            self.devicesDetected.emit(self.devicesDescription)
            return
        if kind == "exited":
            lastLine = self._worker.last_error_line() if self._worker is not None else ""
            self._discardWorker(kill=False)
            if self._run is not None:
                self._fail(message_for_crash(event.get("returncode"), lastLine))
            return
        if self._run is None or event.get("id") != self._run.requestId:
            return  # a pong, or an event of a run that was cancelled
        if kind == "progress":
            self.machine.report_progress(str(event.get("stage", "")), float(event.get("fraction", 0.0)),
                                         str(event.get("message", "")))
            self._changed()
        elif kind == "error":
            self._fail(message_from_error_event(event))
        elif kind == "done":
            self._importResult(event)

    def _importResult(self, event: dict) -> None:
        run = self._run
        self.machine.begin_import()
        self._changed()
        for node, role in ((run.inputVolumeNode, "input volume"), (run.outputSegmentationNode, "output segmentation")):
            if node is not None and not self.scene.IsNodePresent(node):
                self._fail(f"The {role} was removed from the scene during the segmentation; nothing was added.")
                return
        try:
            labels = [LabelDescription.fromEvent(item) for item in event.get("labels", [])]
            # Our own output path, not the event's: the Logic only ever reads files inside its private folder.
            imported = importLabelMap(run.files.outputPath, labels, run.inputVolumeNode,
                                      self.scene, run.outputSegmentationNode, str(event.get("model") or run.modelId),
                                      run.show3D, mode=run.mode, region=run.region)
        except ResultImportError as error:
            self._fail(str(error))
            return
        except Exception as error:  # a bug here must still not leave the panel stuck or show a traceback
            self._fail(message_for_exception("the result could not be added to the scene", error))
            return
        review = RunReview()
        if run.uncertainty or run.probabilities:  # after the segments: a map that fails costs the map, not them
            try:
                review = reviewFromEvent(event, imported, run.inputVolumeNode, self.scene,
                                         run.uncertaintyPath if run.uncertainty else None, run.region,
                                         run.probabilityFolder if run.probabilities else None,
                                         {label.value: label.name for label in labels})
            except Exception as error:  # noqa: BLE001  (a malformed review must not undo the segments)
                review = RunReview(problem=message_for_exception("the review list could not be read", error)
                                   .rstrip("."))
        self._endRun()
        self.lastResult = imported
        self.lastReview = review
        notes = " ".join(f"Note: {note[0].upper()}{note[1:]}." for note in
                         [*event.get("notes", []), *([review.problem] if review.problem else [])])
        self.machine.succeed(f"{imported.summary()} {notes}".strip())
        self._changed()
        self.finished.emit(imported)

    def _fail(self, message: str) -> None:
        self._endRun()
        self.machine.fail(message)
        self._changed()
        self.failed.emit(message)

    def _endRun(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.files.remove()
