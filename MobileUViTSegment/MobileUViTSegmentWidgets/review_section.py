"""The Review section: the uncertainty overlay and review list of the last run, the measurement table, and the
comparison with a reference segmentation.

Every figure comes from ``MobileUViTSegmentSlicer`` (review_navigation, segment_statistics, segment_comparison), the
same code the headless tests run; this class only shows rows, asks for file names and reports errors.
"""

from __future__ import annotations

from typing import Callable, Optional

import qt
import slicer
from slicer.i18n import tr as _

from MobileUViTSegmentSlicer.review_navigation import ReviewItem, jumpToReviewItem, showUncertaintyOverlay
from MobileUViTSegmentSlicer.segment_comparison import compareSegmentations, writeComparisonCsv
from MobileUViTSegmentSlicer.segment_statistics import segmentStatistics, writeStatisticsCsv

from .tables import fillTable

ITEM_ROLE = qt.Qt.UserRole


class ReviewSection:
    """Binds the Review widgets of the .ui; ``currentNodes()`` gives (volume, segmentation) the panel shows."""

    def __init__(self, ui, currentNodes: Callable[[], tuple], referenceNode: Callable[[], Optional[object]]) -> None:
        self.ui = ui
        self._currentNodes = currentNodes
        self._referenceNode = referenceNode
        self._reviewItems: list[ReviewItem] = []
        self._statistics: list = []
        self._comparison: list = []
        self._review = None  # the last run's RunReview (None: no run yet, or the scene was closed)
        ui.reviewListWidget.connect("itemClicked(QListWidgetItem*)", self.onReviewItemClicked)
        ui.measureButton.connect("clicked(bool)", self.onMeasure)
        ui.exportStatisticsButton.connect("clicked(bool)", self.onExportStatistics)
        ui.compareButton.connect("clicked(bool)", self.onCompare)
        ui.exportComparisonButton.connect("clicked(bool)", self.onExportComparison)
        self.updateButtons()

    # -- after a run ---------------------------------------------------------------------------------------------

    def showRun(self, review) -> None:
        """Show what the last run produced: its review list, and its segments measured (with confidence)."""
        self._review = review
        if review is not None and review.uncertaintyVolumeNode is not None:
            showUncertaintyOverlay(slicer.mrmlScene, review.uncertaintyVolumeNode)
        self._reviewItems = list(review.items) if review else []
        self.ui.reviewListWidget.clear()
        for item in self._reviewItems:
            listItem = qt.QListWidgetItem(item.describe())
            listItem.setData(ITEM_ROLE, item.rank)
            self.ui.reviewListWidget.addItem(listItem)
        self.onMeasure()

    def onReviewItemClicked(self, listItem) -> None:
        rank = listItem.data(ITEM_ROLE)
        volume = self._currentNodes()[0]
        for item in self._reviewItems:
            if item.rank == rank:
                jumpToReviewItem(slicer.mrmlScene, item, volume)  # through the volume's transform, if any
                return

    # -- measure -------------------------------------------------------------------------------------------------

    def onMeasure(self) -> None:
        volume, segmentation = self._currentNodes()
        if volume is None or segmentation is None:
            self._statistics = []
        else:
            try:
                review = self._review
                uncertainty = review.uncertaintyFor(slicer.mrmlScene, volume) if review else None
                confidence = review.confidenceFor(segmentation) if review else {}
                self._statistics = segmentStatistics(segmentation, volume, uncertainty, confidence or None)
            except Exception as error:  # a user-facing sentence from the statistics module, or a bug
                slicer.util.errorDisplay(_("The segments could not be measured: {error}").format(error=error))
                self._statistics = []
        fillTable(self.ui.statisticsTable, self._statistics, skipFields=("segmentId", "labelValue"))
        self.updateButtons()

    def onExportStatistics(self) -> None:
        path = self._askCsvPath(_("Save segment measurements"), "segments.csv")
        if path:
            self._write(writeStatisticsCsv, self._statistics, path)

    # -- compare -------------------------------------------------------------------------------------------------

    def onCompare(self) -> None:
        volume, segmentation = self._currentNodes()
        reference = self._referenceNode()
        if volume is None or segmentation is None or reference is None:
            return
        try:
            self._comparison = compareSegmentations(segmentation, reference, volume)
        except Exception as error:
            slicer.util.errorDisplay(_("The segmentations could not be compared: {error}").format(error=error))
            self._comparison = []
        fillTable(self.ui.comparisonTable, self._comparison,
                  skipFields=("segmentId", "referenceSegmentId", "labelValue"))
        self.updateButtons()

    def onExportComparison(self) -> None:
        path = self._askCsvPath(_("Save the comparison"), "comparison.csv")
        if path:
            self._write(writeComparisonCsv, self._comparison, path)

    # -- helpers -------------------------------------------------------------------------------------------------

    def updateButtons(self) -> None:
        volume, segmentation = self._currentNodes()
        self.ui.measureButton.enabled = volume is not None and segmentation is not None
        self.ui.exportStatisticsButton.enabled = bool(self._statistics)
        self.ui.compareButton.enabled = self.ui.measureButton.enabled and self._referenceNode() is not None
        self.ui.exportComparisonButton.enabled = bool(self._comparison)

    @staticmethod
    def _write(writer, rows: list, path: str) -> None:
        """Write a CSV; a failure (an unwritable folder, a full disk) is shown, never lost in the console."""
        try:
            writer(rows, path)
        except Exception as error:  # StatisticsError/ComparisonError carry one sentence; anything else is shown too
            slicer.util.errorDisplay(_("The table could not be saved: {error}").format(error=error))

    @staticmethod
    def _askCsvPath(title: str, defaultName: str) -> str:
        return qt.QFileDialog.getSaveFileName(None, title, defaultName, "CSV (*.csv)") or ""
