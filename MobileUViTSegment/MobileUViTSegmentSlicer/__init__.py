"""The Slicer side of MobileUViTSegment that needs MRML but not Qt, so it is tested against real MRML nodes.

* :mod:`.segmentation_logic`: the Logic (start, poll, cancel, segment-and-wait) driving a worker process;
* :mod:`.volume_export` / :mod:`.volume_files`: volume node → private temporary file with exact geometry;
* :mod:`.result_import`: worker label map → named, coloured, terminology-coded segments on the input's grid;
* :mod:`.import_modes` / :mod:`.model_segments` / :mod:`.result_backup`: add, replace (restorable) or fill only
  empty voxels, never touching segments the model did not make; :mod:`.roi_crop`: segment inside a markups ROI;
* :mod:`.sequence_segmentation`: every frame of a sequence (4D volume) → a browsable sequence of segmentations;
* :mod:`.processing_state`: the idle/starting/running/cancelling/importing/done/failed machine behind the panel;
* :mod:`.dependencies` / :mod:`.dependency_installer`: what Slicer's Python lacks, and installing it after consent;
* :mod:`.model_choices`, :mod:`.worker_launch`, :mod:`.messages`, :mod:`.signals`: small helpers.

Names follow Slicer's camelCase where code takes or returns MRML nodes (the Slicer boundary) and PEP 8 in the
plain-Python modules (state machine, dependencies, messages, signals).
"""

from .dependency_installer import DependencyError, DependencyInstaller
from .import_modes import IMPORT_MODES, ImportMode
from .model_choices import ModelChoice, ModelList, loadModelList
from .model_segments import editedModelSegmentIds, modelSegmentIds
from .processing_state import PanelView, ProcessingState, ProcessingStateMachine
from .result_backup import RestoreError, canRestoreReplacedSegments, restoreReplacedSegments
from .result_import import ImportedSegments, LabelDescription, ResultImportError, importLabelMap
from .roi_crop import RoiError, VoxelBox, roiProblem, roiVoxelBox
from .segmentation_logic import SegmentationFailed, SegmentationLogic, WorkerClientProtocol
from .sequence_segmentation import (
    SequenceProgress,
    SequenceSegmentation,
    SequenceSegmentationFailed,
    SequenceSegmentationResult,
)
from .signals import Signal
from .volume_export import WorkerFiles, exportVolumeForWorker, volumeProblem
from .volume_files import loadVolumeFile, writeVolumeFile
from .worker_launch import defaultWorkerFactory, pythonExecutable, workerCommand

__all__ = [
    "IMPORT_MODES",
    "DependencyError",
    "DependencyInstaller",
    "ImportMode",
    "ImportedSegments",
    "LabelDescription",
    "ModelChoice",
    "ModelList",
    "PanelView",
    "ProcessingState",
    "ProcessingStateMachine",
    "RestoreError",
    "ResultImportError",
    "RoiError",
    "SegmentationFailed",
    "SegmentationLogic",
    "SequenceProgress",
    "SequenceSegmentation",
    "SequenceSegmentationFailed",
    "SequenceSegmentationResult",
    "Signal",
    "VoxelBox",
    "WorkerClientProtocol",
    "WorkerFiles",
    "canRestoreReplacedSegments",
    "defaultWorkerFactory",
    "editedModelSegmentIds",
    "exportVolumeForWorker",
    "importLabelMap",
    "loadModelList",
    "loadVolumeFile",
    "modelSegmentIds",
    "pythonExecutable",
    "restoreReplacedSegments",
    "roiProblem",
    "roiVoxelBox",
    "volumeProblem",
    "workerCommand",
    "writeVolumeFile",
]
