"""Fixtures for the Slicer-side tests: real MRML scenes (slicer-core), sample and shared volumes, worker commands.

Workers started by these tests use one PyTorch thread (see worker_helpers).

Why this folder is not called ``Testing/slicer``: pytest puts ``Testing/`` on ``sys.path`` (for the root
conftest), and the ``slicer`` package of slicer-core extends its ``__path__`` with every ``slicer`` folder found on
``sys.path`` and imports all modules in it, so a ``Testing/slicer`` folder would be imported as part of ``slicer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core vtk)")

from worker_helpers import make_worker_client  # noqa: E402

from MobileUViTSegmentLib.worker_client import WorkerClient  # noqa: E402
from MobileUViTSegmentSlicer.sample_data import sampleLabelPath, sampleVolumePath  # noqa: E402
from MobileUViTSegmentSlicer.volume_files import loadVolumeFile  # noqa: E402


@pytest.fixture
def scene() -> Iterator[slicer.vtkMRMLScene]:
    """A fresh scene with the Segmentations logic registered (which segmentation nodes need)."""
    mrml_scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(mrml_scene)
    yield mrml_scene
    mrml_scene.Clear(1)
    del logic


@pytest.fixture(scope="session")
def sample_volume_path() -> Path:
    return sampleVolumePath()


@pytest.fixture(scope="session")
def sample_label_path() -> Path:
    return sampleLabelPath()


@pytest.fixture
def sample_volume(scene, sample_volume_path):
    return loadVolumeFile(sample_volume_path, scene)


@pytest.fixture(scope="session")
def real_worker() -> Iterator[WorkerClient]:
    """One real worker for the whole session (the model stays loaded between tests); never cancelled by tests."""
    client = make_worker_client()
    yield client
    client.shutdown()
