"""What Slicer's Python lacks, and how it is installed (after consent, through the right Slicer API)."""

from __future__ import annotations

import subprocess
import types
from pathlib import Path
from typing import Optional

import pytest

from MobileUViTSegmentSlicer.dependencies import (
    REQUIREMENTS_FILE,
    SKIPPED_PACKAGES,
    MissingRequirement,
    missing_requirements,
    read_requirements,
    torch_missing,
)
from MobileUViTSegmentSlicer.dependency_installer import TORCH_EXTENSION_MESSAGE, DependencyError, DependencyInstaller

EVERYTHING = {"torch": "2.5.1", "monai": "1.4.0", "safetensors": "0.4.5", "slicerio": "1.1.2", "jsonschema": "4.23.0",
              "tqdm": "4.66.0"}


class Versions:
    """A fake ``importlib.metadata`` that installers can change."""

    def __init__(self, installed: dict[str, str]) -> None:
        self.installed = dict(installed)

    def __call__(self, name: str) -> Optional[str]:
        return self.installed.get(name)


def test_requirements_file_lists_the_worker_packages_and_nothing_slicer_ships():
    names = [line.split(">")[0].split("=")[0].split("<")[0].strip().lower() for line in read_requirements()]
    assert sorted(names) == ["jsonschema", "monai", "safetensors", "slicerio", "tqdm"]
    for shipped in ("torch", "simpleitk", "numpy", "vtk", "requests"):
        assert shipped not in names
    assert {name.lower() for name in SKIPPED_PACKAGES} == {"torch", "numpy", "simpleitk", "vtk", "requests"}


def test_requirements_file_skips_comments_blank_lines_and_pip_options(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\n\nmonai>=1.4  # trailing\n--index-url https://example.org\n-r other.txt\ntqdm\n")
    assert read_requirements(path) == ["monai>=1.4", "tqdm"]


def test_missing_requirements_reports_absent_and_too_old_packages():
    versions = Versions({"monai": "1.3.2", "tqdm": "4.66.0"})
    missing = missing_requirements(["monai>=1.4", "tqdm>=4.60", "safetensors>=0.4"], versions)
    assert missing == [MissingRequirement("monai>=1.4", "1.3.2"), MissingRequirement("safetensors>=0.4", None)]
    assert [item.describe() for item in missing] == ["monai>=1.4 (version 1.3.2 is installed)",
                                                     "safetensors>=0.4 (not installed)"]


def test_requirements_for_other_platforms_and_local_versions_are_met():
    versions = Versions({"torch": "2.6.0+cu124"})
    assert missing_requirements(["pywin32>=300; sys_platform == 'nonexistent-os'"], versions) == []
    assert torch_missing(versions) is None
    assert torch_missing(Versions({"torch": "2.0.1"})) == MissingRequirement("torch>=2.1", "2.0.1")


def test_a_malformed_requirement_is_reported():
    with pytest.raises(ValueError, match="invalid requirement"):
        missing_requirements(["monai >>= 1"], Versions({}))


def test_the_real_environment_is_checked_without_importing_anything():
    installer = DependencyInstaller()
    assert installer.requirementsPath == REQUIREMENTS_FILE
    assert installer.isSatisfied(), [item.describe() for item in installer.missing()]  # this venv has them all


class FakePackaging:
    """``slicer.packaging`` of Slicer 5.12+ (pip_ensure asks for consent itself)."""

    def __init__(self, versions: Versions, decline: bool = False, fail: bool = False) -> None:
        self.versions, self.decline, self.fail = versions, decline, fail
        self.calls: list[dict] = []

    def load_requirements(self, path: Path) -> list[str]:
        return read_requirements(path)

    def pip_ensure(self, requirements, skip_packages=None, requester=None, **kwargs) -> None:
        self.calls.append({"requirements": list(requirements), "skip_packages": skip_packages,
                           "requester": requester})
        if self.decline:
            raise RuntimeError("User declined package installation")
        if self.fail:
            raise subprocess.CalledProcessError(1, "pip install")
        self.versions.installed.update({k: v for k, v in EVERYTHING.items() if k != "torch"})


class FakeUtil:
    """``slicer.util`` of older Slicer (confirmation dialog + blocking pip_install)."""

    def __init__(self, versions: Versions, agree: bool = True) -> None:
        self.versions, self.agree = versions, agree
        self.confirmations: list[str] = []
        self.installs: list[list[str]] = []

    def confirmOkCancelDisplay(self, text: str, windowTitle: str = "") -> bool:
        self.confirmations.append(text)
        return self.agree

    def pip_install(self, requirements: list[str]) -> None:
        self.installs.append(list(requirements))
        self.versions.installed.update({k: v for k, v in EVERYTHING.items() if k != "torch"})


class FakePyTorchLogic:
    def __init__(self, versions: Versions, decline: bool = False) -> None:
        self.versions, self.decline = versions, decline
        self.calls: list[dict] = []

    def installTorch(self, askConfirmation: bool = False, torchVersionRequirement: Optional[str] = None):
        self.calls.append({"askConfirmation": askConfirmation, "torchVersionRequirement": torchVersionRequirement})
        if self.decline:
            return None
        self.versions.installed["torch"] = "2.5.1"
        return types.SimpleNamespace(__version__="2.5.1")


def make_installer(versions: Versions, packaging: Optional[FakePackaging] = None, util: Optional[FakeUtil] = None,
                   pytorch: Optional[FakePyTorchLogic] = None) -> DependencyInstaller:
    slicer_module = types.SimpleNamespace(util=util or FakeUtil(versions))
    if packaging is not None:
        slicer_module.packaging = packaging
    return DependencyInstaller(slicerModule=slicer_module, versionOf=versions, pyTorchLogicFactory=lambda: pytorch)


def test_nothing_is_installed_or_asked_when_everything_is_there():
    versions = Versions(EVERYTHING)
    packaging = FakePackaging(versions)
    assert make_installer(versions, packaging=packaging).ensure()
    assert packaging.calls == []


def test_slicer_5_12_installs_torch_first_then_pip_ensure_with_skipped_packages():
    versions = Versions({})
    packaging, pytorch = FakePackaging(versions), FakePyTorchLogic(versions)
    assert make_installer(versions, packaging=packaging, pytorch=pytorch).ensure()
    assert pytorch.calls == [{"askConfirmation": True, "torchVersionRequirement": ">=2.1"}]
    assert packaging.calls == [{"requirements": read_requirements(), "skip_packages": list(SKIPPED_PACKAGES),
                                "requester": "MobileUViT Segment"}]


def test_older_slicer_asks_then_uses_pip_install_for_the_missing_packages_only():
    versions = Versions({"torch": "2.5.1", "tqdm": "4.66.0", "jsonschema": "4.23.0"})
    util = FakeUtil(versions)
    assert make_installer(versions, util=util).ensure()
    assert len(util.confirmations) == 1 and "monai>=1.4 (not installed)" in util.confirmations[0]
    assert util.installs == [["monai>=1.4", "safetensors>=0.4", "slicerio>=1.1"]]


def test_declining_installs_nothing_and_returns_false():
    versions = Versions({"torch": "2.5.1"})
    util = FakeUtil(versions, agree=False)
    assert not make_installer(versions, util=util).ensure()
    assert util.installs == []
    packaging = FakePackaging(versions, decline=True)
    assert not make_installer(versions, packaging=packaging).ensure()


def test_declining_torch_stops_before_any_package():
    versions = Versions({})
    packaging = FakePackaging(versions)
    pytorch = FakePyTorchLogic(versions, decline=True)
    assert not make_installer(versions, packaging=packaging, pytorch=pytorch).ensure()
    assert packaging.calls == []


def test_without_the_pytorch_extension_the_user_is_told_to_install_it():
    versions = Versions({k: v for k, v in EVERYTHING.items() if k != "torch"})
    with pytest.raises(DependencyError) as raised:
        make_installer(versions, packaging=FakePackaging(versions), pytorch=None).ensure()
    assert str(raised.value) == TORCH_EXTENSION_MESSAGE


def test_a_failed_pip_run_becomes_one_message():
    versions = Versions({"torch": "2.5.1"})
    with pytest.raises(DependencyError, match=r"pip exit code 1\); see the Python console"):
        make_installer(versions, packaging=FakePackaging(versions, fail=True)).ensure()


def test_packages_still_missing_after_installation_are_named():
    versions = Versions({"torch": "2.5.1"})

    class NoOpPackaging(FakePackaging):
        def pip_ensure(self, requirements, skip_packages=None, requester=None, **kwargs) -> None:
            self.calls.append({})

    with pytest.raises(DependencyError, match=r"still missing after the installation: monai>=1\.4 \(not installed\)"):
        make_installer(versions, packaging=NoOpPackaging(versions)).ensure()
