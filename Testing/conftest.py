"""Shared pytest set-up: import path, thread count, and where the shared real data lives.

Tests on real data find it through ``MOBILEUVIT_DATA`` (default ``<repository>/../shared/data``) and skip with a
clear reason when it is absent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
MODULE_DIR = REPOSITORY / "MobileUViTSegment"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # the suite runs from a checkout, installed or not

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("MOBILEUVIT_TEST_THREADS", "2")))


def shared_data_dir() -> Path:
    return Path(os.environ.get("MOBILEUVIT_DATA", REPOSITORY.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder} (set MOBILEUVIT_DATA)")
    return folder


@pytest.fixture(scope="session")
def hippocampus_dataset(shared_data: Path) -> Path:
    folder = shared_data / "hippocampus"
    if not (folder / "dataset.json").is_file():
        pytest.skip(f"hippocampus data not found in {folder}")
    return folder


@pytest.fixture(scope="session")
def busi_dataset(shared_data: Path) -> Path:
    folder = shared_data / "busi"
    if not (folder / "images").is_dir():
        pytest.skip(f"BUSI not found in {folder}")
    return folder


@pytest.fixture(scope="session")
def shared_volumes(shared_data: Path) -> Path:
    folder = shared_data / "volumes"
    if not folder.is_dir():
        pytest.skip(f"volumes not found in {folder}")
    return folder


@pytest.fixture
def local_models(tmp_path: Path, monkeypatch) -> Path:
    """A local models folder of the test's own (``finetune``'s default output), empty and not yet created."""
    from MobileUViTSegmentLib.resources import LOCAL_MODELS_VARIABLE

    folder = tmp_path / "local-models"
    monkeypatch.setenv(LOCAL_MODELS_VARIABLE, str(folder))
    return folder


@pytest.fixture(autouse=True, scope="session")
def isolated_local_models(tmp_path_factory) -> Iterator[Path]:
    """Point the per-user local models folder (``finetune``'s output) at a temporary one for the whole suite.

    Otherwise a developer's own fine-tuned models would join the catalog the tests see, and a test that fine-tunes
    without its own folder would write into the developer's real one. Worker processes inherit the variable.
    """
    from MobileUViTSegmentLib.resources import LOCAL_MODELS_VARIABLE

    folder = tmp_path_factory.mktemp("local-models")
    previous = os.environ.get(LOCAL_MODELS_VARIABLE)
    os.environ[LOCAL_MODELS_VARIABLE] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(LOCAL_MODELS_VARIABLE, None)
    else:
        os.environ[LOCAL_MODELS_VARIABLE] = previous
