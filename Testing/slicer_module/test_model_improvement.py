"""Learning from corrections, Slicer side: marking cases, exporting them for the model, and the background run.

Real MRML nodes (slicer-core), real hippocampus cases, and a real ``finetune`` process (this interpreter, a few
steps): the new model must reach the catalog the panel lists, with figures before and after, and the user's nodes must
not change; a cancelled run must leave neither a model nor a temporary file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
import slicer
from mrml_helpers import scene_snapshot
from worker_helpers import worker_environment

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.resources import models_dir
from MobileUViTSegmentSlicer.corrected_cases import CorrectedCase, caseProblem, exportCorrectedCase, improvementProblem
from MobileUViTSegmentSlicer.model_choices import loadModelList
from MobileUViTSegmentSlicer.model_improvement import (
    TEMPORARY_PREFIX,
    ModelImprovement,
    ModelImprovementError,
    correctedCases,
    markCorrected,
    removePartialModel,
)
from MobileUViTSegmentSlicer.result_import import removeNodeWithDependents
from MobileUViTSegmentSlicer.volume_files import loadVolumeFile

PARENT = "hippocampus-mri"
TERMINOLOGY_TAG = slicer.vtkSegment.GetTerminologyEntryTagName()


def load_case(scene, image: Path, label: Path, name: str, by_terminology: bool = False):
    """A volume and a segmentation made from a reference label file: label 1 named as the model names it, label 2
    named by name too, or (``by_terminology``) left as 'Label_2' with the model's terminology instead."""
    volume = loadVolumeFile(image, scene, name)
    labels = loadVolumeFile(label, scene, f"{name}-labels", labelMap=True)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, segmentation)
    removeNodeWithDependents(scene, labels)
    card = Catalog().get(PARENT)
    inner = segmentation.GetSegmentation()
    inner.GetNthSegment(0).SetName(card.labels[0].name)
    second = inner.GetNthSegment(1)
    if by_terminology:
        second.SetTag(TERMINOLOGY_TAG, card.labels[1].terminology.slicer_entry())
    else:
        second.SetName(card.labels[1].name)
    return volume, segmentation


def our_temporary_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{TEMPORARY_PREFIX}*"))


@pytest.fixture
def hippocampus_cases(scene, hippocampus_dataset: Path):
    """Three real cases the bundled model never trained on (from its validation split), marked corrected."""
    split = json.loads((models_dir() / f"{PARENT}.split.json").read_text(encoding="utf-8"))
    cases = []
    for index, name in enumerate(split["validation"][:3]):
        volume, segmentation = load_case(scene, hippocampus_dataset / "imagesTr" / f"{name}.nii.gz",
                                         hippocampus_dataset / "labelsTr" / f"{name}.nii.gz", name,
                                         by_terminology=index == 1)
        markCorrected(segmentation, volume)
        cases.append((volume, segmentation))
    return cases


def improvement(scene) -> ModelImprovement:
    return ModelImprovement(scene, device="cpu", threads=2, python=sys.executable, environment=worker_environment())


def test_marked_segmentations_are_the_corrected_cases_until_unmarked(scene, sample_volume_path, sample_label_path):
    volume, segmentation = load_case(scene, sample_volume_path, sample_label_path, "sample")
    assert correctedCases(scene) == []
    markCorrected(segmentation, volume)
    assert [(case.segmentationNode, case.volumeNode) for case in correctedCases(scene)] == [(segmentation, volume)]
    markCorrected(segmentation, volume, corrected=False)
    assert correctedCases(scene) == []


def test_a_case_is_exported_with_the_models_label_values_on_the_volumes_grid(scene, sample_volume_path,
                                                                          sample_label_path, tmp_path: Path):
    volume, segmentation = load_case(scene, sample_volume_path, sample_label_path, "sample", by_terminology=True)
    markCorrected(segmentation, volume)
    before = scene_snapshot(scene)
    exported = exportCorrectedCase(correctedCases(scene)[0], Catalog().get(PARENT), tmp_path, "sample")
    assert scene_snapshot(scene) == before  # nothing added, nothing modified
    label, reference = sitk.ReadImage(str(exported.label)), sitk.ReadImage(str(sample_label_path))
    on_reference_grid = sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 255)
    assert (sitk.GetArrayFromImage(on_reference_grid) == sitk.GetArrayFromImage(reference)).all()
    image = sitk.ReadImage(str(exported.image))
    assert image.GetSize() == label.GetSize() and image.GetOrigin() == pytest.approx(label.GetOrigin())


def test_a_case_missing_a_label_is_refused_before_anything_starts(scene, sample_volume_path, sample_label_path,
                                                                 local_models: Path):
    volume, segmentation = load_case(scene, sample_volume_path, sample_label_path, "sample")
    second = segmentation.GetSegmentation().GetNthSegment(1)
    second.SetName("something else")
    other_volume, other = load_case(scene, sample_volume_path, sample_label_path, "other")
    for pair in ((segmentation, volume), (other, other_volume)):
        markCorrected(*pair)
    temporary = our_temporary_folders()
    runner = improvement(scene)
    with pytest.raises(ModelImprovementError) as raised:
        runner.start(PARENT)
    assert str(raised.value).startswith("The corrected case 'sample' has no segment for 'posterior hippocampus'")
    assert not runner.busy and our_temporary_folders() == temporary and not local_models.exists()


def test_improving_a_model_from_corrected_cases_adds_a_new_model_and_leaves_the_nodes_alone(
        scene, hippocampus_cases, local_models: Path):
    before = scene_snapshot(scene)
    temporary = our_temporary_folders()
    runner = improvement(scene)
    progress = []
    runner.progressed.connect(lambda event: progress.append((event.stage, event.fraction, event.loss)))
    model_id = runner.start(PARENT, steps=2)
    assert model_id == "hippocampus-mri-local-1" and runner.temporaryFolder.is_dir()
    result = runner.waitForResult(timeout=600)

    assert result.modelId == model_id and result.parentModelId == PARENT
    assert 0 < result.meanDiceBefore <= 1 and 0 < result.meanDiceAfter <= 1
    assert len(result.after["dice_per_case"]) == 1  # a quarter of three cases, at least one, is held out
    assert "held-out corrected case" in result.summary()
    assert any(stage == "training" and loss is not None for stage, _, loss in progress)
    assert [fraction for _, fraction, _ in progress][-1] == 1.0
    models = loadModelList()
    assert models.find(model_id) is not None and models.find(PARENT) is not None
    card = Catalog().get(model_id)
    assert card.parent_id == PARENT and len(card.lineage["cases"]) == 2
    assert card.lineage["figures"]["after"]["mean_dice"] == result.meanDiceAfter
    assert scene_snapshot(scene) == before  # the user's nodes are unchanged
    assert our_temporary_folders() == temporary


def test_cancelling_an_improvement_leaves_no_model_and_no_temporary_files(scene, hippocampus_cases,
                                                                          local_models: Path):
    temporary = our_temporary_folders()
    runner = improvement(scene)
    losses = []
    runner.progressed.connect(lambda event: losses.append(event.loss) if event.loss is not None else None)
    cancelled = []
    runner.cancelled.connect(lambda: cancelled.append(True))
    model_id = runner.start(PARENT, steps=200)
    deadline = time.monotonic() + 300
    while not losses and runner.poll():  # cancel once the first training steps are done (checkpoints exist)
        assert time.monotonic() < deadline, "the run never reached its first training step"
        time.sleep(0.1)
    assert runner.busy
    runner.cancel()
    assert cancelled == [True] and not runner.busy
    assert loadModelList().find(model_id) is None
    assert not local_models.exists() or not list(local_models.iterdir())
    assert our_temporary_folders() == temporary


def test_the_slicer_side_does_not_import_torch():
    """Slicer's own process never loads PyTorch: every Slicer-side module, imported as the panel imports them."""
    modules = sorted(path.stem for path in (Path(__file__).resolve().parents[2] / "MobileUViTSegment" /
                                            "MobileUViTSegmentSlicer").glob("*.py") if path.stem != "__init__")
    assert {"model_improvement", "segment_statistics", "segment_comparison", "run_review"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module('MobileUViTSegmentSlicer.' + name)\n"
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    module_dir = Path(__file__).resolve().parents[2] / "MobileUViTSegment"
    completed = subprocess.run([sys.executable, "-c", code], cwd=module_dir, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_the_panel_says_why_it_cannot_improve_yet():
    one = [CorrectedCase(None, None)]
    assert improvementProblem(one * 2, "") == "Select the model to improve."
    assert "no case is marked" in improvementProblem([], DEFAULT_MODEL_ID)
    assert "only one case is marked" in improvementProblem(one, DEFAULT_MODEL_ID)
    assert improvementProblem(one * 2, DEFAULT_MODEL_ID) is None


def write_model_files(folder: Path, model_id: str, command: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}.card.json").write_text(json.dumps({"id": model_id, "lineage": {"command": command}}),
                                                  encoding="utf-8")
    (folder / f"{model_id}.safetensors").write_bytes(b"weights")


def test_a_stopped_run_removes_only_the_model_files_it_wrote(tmp_path):
    models, ours = tmp_path / "models", tmp_path / "run-folder"
    write_model_files(models, "x-local-1", f"finetune --cases {tmp_path / 'other-run' / 'cases.json'}")
    (models / ".x-local-1.safetensors.tmp").write_bytes(b"half")
    removePartialModel(models, "x-local-1", ours)  # another run saved x-local-1 first: its model stays
    assert (models / "x-local-1.card.json").is_file() and (models / "x-local-1.safetensors").is_file()

    write_model_files(models, "x-local-2", f"finetune --cases {ours / 'cases.json'}")
    (models / ".x-local-2.safetensors.tmp").write_bytes(b"half")
    removePartialModel(models, "x-local-2", ours)  # this run's own half-finished model goes
    assert sorted(path.name for path in models.iterdir()) == [".x-local-1.safetensors.tmp", "x-local-1.card.json",
                                                               "x-local-1.safetensors"]


def test_a_segmentation_marked_with_another_volume_is_refused_not_resampled(scene, sample_volume_path,
                                                                           sample_label_path, hippocampus_dataset):
    """Marking uses the volume selected in the panel; a segmentation drawn on another case must not become that
    case's training labels."""
    volume, segmentation = load_case(scene, sample_volume_path, sample_label_path, "sample")
    split = json.loads((models_dir() / f"{PARENT}.split.json").read_text(encoding="utf-8"))
    name = split["validation"][0]
    other_volume = loadVolumeFile(hippocampus_dataset / "imagesTr" / f"{name}.nii.gz", scene, name)
    assert other_volume.GetImageData().GetDimensions() != volume.GetImageData().GetDimensions()
    assert caseProblem(CorrectedCase(segmentation, volume)) is None
    problem = caseProblem(CorrectedCase(segmentation, other_volume))
    assert problem == ("The corrected segmentation 'sample segmentation' was drawn on another grid than the volume "
                       f"'{name}' it is marked with; mark it again with the volume it belongs to.")
