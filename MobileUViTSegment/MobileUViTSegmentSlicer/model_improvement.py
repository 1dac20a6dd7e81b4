"""Improve a model from the reviewer's corrections: ``finetune`` in a background process, followed without blocking.

The reviewer marks corrected segmentations (:func:`markCorrected`); :class:`ModelImprovement` exports those cases
into a private temporary folder (volume + label map on the volume's exact grid, labels mapped to the model's values,
see :mod:`.corrected_cases`) and runs ``python -m MobileUViTSegmentLib finetune ... --progress-json`` with the same
interpreter as the segmentation worker (PythonSlicer inside Slicer), so Slicer's process never imports torch.
:meth:`ModelImprovement.poll` drains the process's JSON progress lines; :meth:`ModelImprovement.cancel` kills it and
removes everything the run wrote. On success the new model (``<parent>-local-<n>``, with a card recording its lineage
and Dice before/after on held-out corrected cases) is in the local models folder and so in the model selector; the
original model is never modified. The user's nodes are never changed, apart from the corrected mark itself.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import slicer

from MobileUViTSegmentLib.worker_client import WorkerClient

from .corrected_cases import (
    CorrectedCase,
    CorrectedCaseError,
    correctedCases,
    exportCorrectedCase,
    fileSafeNames,
    isCorrected,
    markCorrected,
    writeCaseList,
)
from .messages import as_sentence, message_for_crash
from .signals import Signal
from .worker_launch import WorkerLaunchError, pythonExecutable, workerEnvironment

__all__ = ["CorrectedCase", "CorrectedCaseError", "ImprovementProgress", "ImprovementResult", "ModelImprovement",
           "ModelImprovementError", "correctedCases", "isCorrected", "markCorrected"]

TEMPORARY_PREFIX = "MobileUViTSegment-improve-"


class ModelImprovementError(Exception):
    """The improvement cannot start or did not finish; the message is one sentence for the user."""


@dataclass
class ImprovementProgress:
    stage: str = "starting"
    fraction: float = 0.0
    message: str = ""
    loss: Optional[float] = None
    step: Optional[int] = None
    steps: Optional[int] = None


@dataclass(frozen=True)
class ImprovementResult:
    modelId: str
    cardPath: Path
    parentModelId: str
    before: dict = field(default_factory=dict)  # mean_dice, dice_per_label, dice_per_case on the held-out cases
    after: dict = field(default_factory=dict)

    @property
    def meanDiceBefore(self) -> float:
        return float(self.before["mean_dice"])

    @property
    def meanDiceAfter(self) -> float:
        return float(self.after["mean_dice"])

    def summary(self) -> str:
        cases = len(self.after.get("dice_per_case", {}))
        return (f"New model '{self.modelId}' saved: mean Dice on {cases} held-out corrected case"
                f"{'s' if cases != 1 else ''} {self.meanDiceBefore:.3f} with '{self.parentModelId}', "
                f"{self.meanDiceAfter:.3f} after fine-tuning.")


@dataclass
class _Run:
    parentModelId: str
    modelId: str
    modelsFolder: Path
    folder: Path
    process: Any


class ModelImprovement:
    """Fine-tune a catalog model on corrected cases in a background process.

    Example (Slicer's Python console)::

        from MobileUViTSegmentSlicer.model_improvement import ModelImprovement, markCorrected
        markCorrected(getNode("hippocampus_046 segmentation"), getNode("hippocampus_046"))
        improvement = ModelImprovement(slicer.mrmlScene)
        improvement.finished.connect(lambda result: print(result.summary()))
        improvement.start("hippocampus-mri")          # every case marked corrected in the scene
        # ... call improvement.poll() from a QTimer; improvement.cancel() stops it and leaves nothing behind

    Signals: ``progressed(ImprovementProgress)``, ``finished(ImprovementResult)``, ``failed(message)``,
    ``cancelled()``.
    """

    POLL_INTERVAL_S = 0.1

    def __init__(self, scene: slicer.vtkMRMLScene, modelsFolder: Optional[Path] = None, device: str = "auto",
                 threads: Optional[int] = None, python: Optional[str] = None,
                 environment: Optional[dict[str, str]] = None,
                 processFactory: Optional[Callable[[list[str], Optional[dict[str, str]]], Any]] = None) -> None:
        self.scene = scene
        self.modelsFolder = Path(modelsFolder) if modelsFolder is not None else None
        self.device = device
        self.threads = threads
        self.python = python
        self.environment = environment
        self.processFactory = processFactory or (lambda command, env: WorkerClient(command, env=env))
        self.progressed = Signal("ImprovementProgress: stage, overall fraction, message, loss")
        self.finished = Signal("ImprovementResult: the new model is in the catalog")
        self.failed = Signal("str: one sentence saying what went wrong")
        self.cancelled = Signal("(): the run was stopped and nothing was kept")
        self.progress = ImprovementProgress()
        self.lastResult: Optional[ImprovementResult] = None
        self.lastError: Optional[str] = None
        self._run: Optional[_Run] = None

    @property
    def busy(self) -> bool:
        return self._run is not None

    @property
    def temporaryFolder(self) -> Optional[Path]:
        """The running improvement's private folder (exported cases, scratch files), removed when it ends."""
        return self._run.folder if self._run else None

    # -- starting ------------------------------------------------------------------------------------------------

    def start(self, parentModelId: str, cases: Optional[list[CorrectedCase]] = None,
              heldOutCases: Optional[list[CorrectedCase]] = None, steps: Optional[int] = None,
              learningRate: Optional[float] = None, newModelId: Optional[str] = None) -> str:
        """Export the cases and start fine-tuning; returns the new model's id at once.

        :param cases: corrected cases to learn from; default every case marked corrected in the scene.
        :param heldOutCases: corrected cases to measure on (never trained on); default: the core holds out a
            quarter of ``cases`` (at least one).
        :param steps: optimisation steps (default: the core's).

        Raises :class:`ModelImprovementError` (nothing started, nothing written) when the model or a case cannot be
        used; calling it while a run is active is a programming error (RuntimeError).
        """
        if self.busy:
            raise RuntimeError("A model improvement is already running; cancel it or wait for it to finish.")
        from MobileUViTSegmentLib.catalog import Catalog, model_files_exist, next_local_model_id  # no torch
        from MobileUViTSegmentLib.errors import SegmentationError
        from MobileUViTSegmentLib.resources import LOCAL_MODELS_VARIABLE, local_models_dir

        cases = list(cases if cases is not None else correctedCases(self.scene))
        heldOutCases = list(heldOutCases or [])
        if not cases:
            raise ModelImprovementError("No case is marked as corrected; review a segmentation, correct it and mark "
                                        "it as corrected first.")
        if not heldOutCases and len(cases) < 2:
            raise ModelImprovementError("At least two corrected cases are needed: one to learn from and one, held "
                                        "out, to measure the improvement on.")
        catalog = Catalog()
        try:
            card = catalog.get(parentModelId)
        except SegmentationError as error:
            raise ModelImprovementError(as_sentence(str(error))) from error
        modelsFolder = self.modelsFolder or local_models_dir()
        modelId = newModelId or next_local_model_id(card.id, modelsFolder, catalog)
        if modelId in catalog.ids() or model_files_exist(modelsFolder, modelId):
            raise ModelImprovementError(f"A model with id '{modelId}' already exists; choose another id.")
        folder = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX))
        try:
            arguments = self._exportCases(card, cases, heldOutCases, folder)
            command = [self.python or pythonExecutable(), "-m", "MobileUViTSegmentLib", "finetune",
                       "--model", card.id, *arguments, "-o", str(modelsFolder), "--new-id", modelId,
                       "--work-dir", str(folder / "work"), "--device", self.device, "--progress-json"]
            if steps:
                command += ["--steps", str(int(steps))]
            if learningRate:
                command += ["--learning-rate", repr(float(learningRate))]
            if self.threads:
                command += ["--threads", str(int(self.threads))]
            environment = self.environment if self.environment is not None else workerEnvironment()
            # The process must see the same local models folder (the parent may live there) as this one.
            environment = {**(environment if environment is not None else os.environ),
                           LOCAL_MODELS_VARIABLE: str(local_models_dir())}
            process = self.processFactory(command, environment)
            self._run = _Run(card.id, modelId, modelsFolder, folder, process)
            process.start()
        except CorrectedCaseError as error:
            self._run = None
            shutil.rmtree(folder, ignore_errors=True)
            raise ModelImprovementError(str(error)) from error
        except (WorkerLaunchError, OSError) as error:
            self._cleanUp(keepModel=False)
            shutil.rmtree(folder, ignore_errors=True)
            raise ModelImprovementError(as_sentence(f"the fine-tuning process could not be started: {error}")) \
                from error
        except BaseException:  # a bug: still leave nothing behind
            self._cleanUp(keepModel=False)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.progress = ImprovementProgress(message=f"Starting to improve '{card.id}' into '{modelId}'.")
        self.lastResult, self.lastError = None, None
        self.progressed.emit(self.progress)
        return modelId

    def _exportCases(self, card: Any, cases: list[CorrectedCase], heldOutCases: list[CorrectedCase],
                     folder: Path) -> list[str]:
        names = fileSafeNames(cases + heldOutCases)
        exported = [exportCorrectedCase(case, card, folder / "cases", name)
                    for case, name in zip(cases + heldOutCases, names)]
        arguments = ["--cases", str(writeCaseList(exported[:len(cases)], folder / "cases.json"))]
        if heldOutCases:
            arguments += ["--held-out", str(writeCaseList(exported[len(cases):], folder / "held_out.json"))]
        return arguments

    # -- following -----------------------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Handle every line the process wrote since the last call (never blocks); returns whether it still runs."""
        if self._run is None:
            return False
        for event in self._run.process.poll():
            kind = event.get("event")
            if kind == "progress":
                self.progress = ImprovementProgress(
                    stage=str(event.get("stage", "")), fraction=float(event.get("fraction", 0.0)),
                    message=as_sentence(event.get("message", "")) if event.get("message") else "",
                    loss=event.get("loss"), step=event.get("step"), steps=event.get("steps"))
                self.progressed.emit(self.progress)
            elif kind == "done":
                run = self._run
                self._finish()
                self.lastResult = ImprovementResult(str(event["model_id"]), Path(event["card"]), run.parentModelId,
                                                    dict(event.get("before") or {}), dict(event.get("after") or {}))
                self.finished.emit(self.lastResult)
                return False
            elif kind == "error":  # the process cleaned up after itself (its writes are atomic)
                self._fail(as_sentence(str(event.get("message") or "the fine-tuning failed")), processCleanedUp=True)
                return False
            elif kind == "exited":
                self._fail(message_for_crash(event.get("returncode"), self._run.process.last_error_line())
                           .replace("segmentation worker", "fine-tuning process"))
                return False
        return True

    def waitForResult(self, timeout: float = 3600.0) -> ImprovementResult:
        """Block until the run ends (scripts, tests); raises :class:`ModelImprovementError` when it fails."""
        deadline = time.monotonic() + timeout
        while self.poll():
            if time.monotonic() > deadline:
                self.cancel()
                raise ModelImprovementError(f"The model improvement did not finish within {timeout:g} s and was "
                                            "cancelled; no model was saved.")
            time.sleep(self.POLL_INTERVAL_S)
        if self.lastResult is None:
            raise ModelImprovementError(self.lastError or "The model improvement was cancelled; no model was saved.")
        return self.lastResult

    def cancel(self) -> None:
        """Stop the run now and remove everything it wrote (exported cases, scratch files, a half-saved model)."""
        if self._run is None:
            return
        self._cleanUp(keepModel=False)
        self.cancelled.emit()

    def _finish(self) -> None:
        self._cleanUp(keepModel=True)

    def _fail(self, message: str, processCleanedUp: bool = False) -> None:
        # After an "error" event the model files under this id, if any, are not ours: another run that took the same
        # id first (finetune refuses to save over it) must keep its model.
        self._cleanUp(keepModel=processCleanedUp)
        self.lastError = message
        self.failed.emit(message)

    def _cleanUp(self, keepModel: bool) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        run.process.kill()
        shutil.rmtree(run.folder, ignore_errors=True)
        if not keepModel:
            removePartialModel(run.modelsFolder, run.modelId, run.folder)


def removePartialModel(folder: Path, modelId: str, runFolder: Optional[Path] = None) -> None:
    """Remove what a killed ``finetune`` may have left for ``modelId``: the card first (so a half model is never
    listed), then the weights, then its hidden temporary files.

    With ``runFolder`` (the run's private folder, which the card's recorded command names) a card is removed only
    when this run wrote it, and weights only together with such a card, so a model another run saved under the same
    id is never deleted. Weights a killed run left without a card are never listed by the catalog.
    """
    card = folder / f"{modelId}.card.json"
    if runFolder is not None:
        try:
            recorded = json.loads(card.read_text(encoding="utf-8")).get("lineage", {}).get("command", "")
            ours = str(runFolder) in str(recorded)
        except (OSError, ValueError, AttributeError):
            ours = False
        if card.is_file() and not ours:
            return
    if runFolder is None or card.is_file():
        card.unlink(missing_ok=True)
        (folder / f"{modelId}.safetensors").unlink(missing_ok=True)
    for leftover in folder.glob(f".{modelId}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
