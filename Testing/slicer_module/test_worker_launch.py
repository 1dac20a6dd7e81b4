"""Which interpreter runs the worker, with which arguments: PythonSlicer inside Slicer, this Python outside."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from MobileUViTSegmentSlicer import worker_launch
from MobileUViTSegmentSlicer.worker_launch import WorkerLaunchError, pythonExecutable, workerCommand


def no_which(name: str) -> None:
    return None


def make_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_inside_slicer_pythonslicer_beside_the_application_is_used(tmp_path):
    application = make_file(tmp_path / "Slicer-5.12" / "bin" / "SlicerApp-real")
    python_slicer = make_file(tmp_path / "Slicer-5.12" / "bin" / "PythonSlicer")
    assert pythonExecutable(str(application), no_which, "linux") == str(python_slicer)


def test_on_windows_the_exe_is_found(tmp_path):
    application = make_file(tmp_path / "Slicer" / "bin" / "SlicerApp-real.exe")
    python_slicer = make_file(tmp_path / "Slicer" / "bin" / "PythonSlicer.exe")
    assert pythonExecutable(str(application), no_which, "win32") == str(python_slicer)


def test_on_macos_pythonslicer_is_in_the_bundle_bin_folder(tmp_path):
    application = make_file(tmp_path / "Slicer.app" / "Contents" / "MacOS" / "Slicer")
    python_slicer = make_file(tmp_path / "Slicer.app" / "Contents" / "bin" / "PythonSlicer")
    assert pythonExecutable(str(application), no_which, "darwin") == str(python_slicer)


def test_pythonslicer_on_path_is_used_when_not_beside_the_application(tmp_path):
    application = make_file(tmp_path / "opt" / "SlicerApp-real")
    assert pythonExecutable(str(application), lambda name: f"/usr/local/bin/{name}", "linux") == \
        "/usr/local/bin/PythonSlicer"


def test_outside_slicer_the_running_python_is_used():
    assert pythonExecutable(sys.executable, no_which, sys.platform) == sys.executable


def test_the_slicer_application_itself_is_never_used_as_the_worker(tmp_path):
    application = make_file(tmp_path / "bin" / "SlicerApp-real")
    with pytest.raises(WorkerLaunchError, match="PythonSlicer was not found next to .*; reinstall 3D Slicer"):
        pythonExecutable(str(application), no_which, "linux")


def test_worker_command_is_an_argument_list_with_optional_threads():
    assert workerCommand("/x/PythonSlicer") == ["/x/PythonSlicer", "-m", "MobileUViTSegmentLib", "worker"]
    assert workerCommand("/x/python", threads=2)[-2:] == ["--threads", "2"]


def test_outside_slicer_the_worker_inherits_the_environment():
    assert worker_launch.workerEnvironment() is None  # slicer-core has no application: no startup environment


def test_default_factory_makes_a_fresh_unstarted_client_each_time():
    factory = worker_launch.defaultWorkerFactory(threads=1, extraEnvironment={"MOBILEUVIT_TEST_MARKER": "1"})
    first, second = factory(), factory()
    assert first is not second and not first.running
    assert first.command == [sys.executable, "-m", "MobileUViTSegmentLib", "worker", "--threads", "1"]
    assert first.env["MOBILEUVIT_TEST_MARKER"] == "1"
