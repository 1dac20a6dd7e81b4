"""The Improve section: mark the reviewed segmentation as corrected, and fine-tune the model on the marked cases.

The work is :class:`~MobileUViTSegmentSlicer.model_improvement.ModelImprovement` (a background ``finetune`` process,
tested headless); this class polls it from its own QTimer, shows progress, and asks the catalog to refresh the model
selector when the new model exists. The original model is never changed, and cancelling keeps nothing.
"""

from __future__ import annotations

from typing import Callable

import qt
import slicer
from slicer.i18n import tr as _

from MobileUViTSegmentSlicer.corrected_cases import correctedCases, improvementProblem, isCorrected, markCorrected
from MobileUViTSegmentSlicer.model_improvement import ModelImprovement, ModelImprovementError

POLL_INTERVAL_MS = 250


class ImproveSection:
    """Binds the Improve widgets of the .ui; ``currentNodes()`` gives (volume, segmentation) the panel shows."""

    def __init__(self, ui, currentNodes: Callable[[], tuple], currentModelId: Callable[[], str],
                 onModelsChanged: Callable[[], None]) -> None:
        self.ui = ui
        self._currentNodes = currentNodes
        self._currentModelId = currentModelId
        self._onModelsChanged = onModelsChanged
        self.improvement = ModelImprovement(slicer.mrmlScene)
        self.improvement.progressed.connect(self._onProgress)
        self.improvement.finished.connect(self._onFinished)
        self.improvement.failed.connect(self._onFailed)
        self.improvement.cancelled.connect(self._onCancelled)
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._onTimer)
        ui.markCorrectedButton.connect("clicked(bool)", self.onMarkCorrected)
        ui.improveButton.connect("clicked(bool)", self.onImprove)
        ui.improveProgressBar.visible = False
        self.updateButtons()

    def cleanup(self) -> None:
        self._timer.stop()
        self.improvement.cancel()  # a half-trained model is never kept

    # -- marking -------------------------------------------------------------------------------------------------

    def onMarkCorrected(self) -> None:
        volume, segmentation = self._currentNodes()
        if volume is None or segmentation is None:
            return
        markCorrected(segmentation, volume, corrected=not isCorrected(segmentation))
        self.updateButtons()

    # -- improving -----------------------------------------------------------------------------------------------

    def onImprove(self) -> None:
        if self.improvement.busy:
            self.improvement.cancel()
            return
        modelId = self._currentModelId()
        cases = correctedCases(slicer.mrmlScene)
        problem = improvementProblem(cases, modelId)
        if problem:
            self.ui.improveStatusLabel.text = problem
            return
        question = _("Fine-tune '{model}' on {count} corrected cases? This takes minutes; a new model is made and "
                     "'{model}' itself is not changed.").format(model=modelId, count=len(cases))
        if not slicer.util.confirmOkCancelDisplay(question):
            return
        try:
            newModelId = self.improvement.start(modelId, cases)
        except ModelImprovementError as error:
            self.ui.improveStatusLabel.text = str(error)
            return
        self.ui.improveStatusLabel.text = _("Making '{model}'...").format(model=newModelId)
        self.ui.improveProgressBar.value = 0
        self.ui.improveProgressBar.visible = True
        self._timer.start()
        self.updateButtons()

    def _onTimer(self) -> None:
        self.improvement.poll()
        if not self.improvement.busy:
            self._timer.stop()
            self.updateButtons()

    def _onProgress(self, progress) -> None:
        self.ui.improveProgressBar.value = int(round(100 * progress.fraction))
        loss = f" (loss {progress.loss:.3f})" if progress.loss is not None else ""
        self.ui.improveStatusLabel.text = f"{progress.message or progress.stage}{loss}"

    def _onFinished(self, result) -> None:
        self.ui.improveProgressBar.visible = False
        self.ui.improveStatusLabel.text = result.summary()
        self._onModelsChanged()  # the new model joins the selector

    def _onFailed(self, message: str) -> None:
        self.ui.improveProgressBar.visible = False
        self.ui.improveStatusLabel.text = message

    def _onCancelled(self) -> None:
        self.ui.improveProgressBar.visible = False
        self.ui.improveStatusLabel.text = _("Stopped; nothing was kept.")

    # -- helpers -------------------------------------------------------------------------------------------------

    def updateButtons(self) -> None:
        volume, segmentation = self._currentNodes()
        busy = self.improvement.busy
        self.ui.markCorrectedButton.enabled = volume is not None and segmentation is not None and not busy
        self.ui.markCorrectedButton.text = (_("Unmark as corrected") if segmentation is not None
                                            and isCorrected(segmentation) else _("Mark as corrected"))
        cases = correctedCases(slicer.mrmlScene)
        self.ui.correctedCasesLabel.text = _("{count} corrected case(s) marked in the scene.").format(count=len(cases))
        self.ui.improveButton.text = _("Stop improving") if busy else _("Improve model")
        self.ui.improveButton.enabled = busy or improvementProblem(cases, self._currentModelId()) is None
