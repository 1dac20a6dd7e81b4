"""Installing PyTorch in the background: the commands are argument lists for the worker's interpreter, output lines
become progress, the first failing step stops it with its reason, and cancel kills it at once. Real child processes
stand in for pip and light-the-torch (nothing is downloaded)."""

from __future__ import annotations

import sys
import time

from MobileUViTSegmentSlicer.torch_install import LIGHT_THE_TORCH, TorchInstallation, installCommands


def python_step(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def run_to_end(installation: TorchInstallation, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while installation.poll():
        assert time.monotonic() < deadline, "the installation did not end"
        time.sleep(0.02)


def recorder(installation: TorchInstallation) -> dict[str, list]:
    seen: dict[str, list] = {"progress": [], "finished": [], "failed": []}
    installation.progressed.connect(seen["progress"].append)
    installation.finished.connect(lambda: seen["finished"].append(True))
    installation.failed.connect(seen["failed"].append)
    return seen


def test_the_commands_install_light_the_torch_then_torch_with_the_workers_python():
    commands = installCommands(">=2.1", python="/opt/Slicer/bin/PythonSlicer")
    assert commands == [
        ["/opt/Slicer/bin/PythonSlicer", "-m", "pip", "install", "--disable-pip-version-check", LIGHT_THE_TORCH],
        ["/opt/Slicer/bin/PythonSlicer", "-m", "light_the_torch", "install", "torch>=2.1"]]


def test_steps_run_in_order_their_lines_are_progress_and_the_end_is_reported():
    installation = TorchInstallation()
    seen = recorder(installation)
    installation.start([python_step("print('Collecting light-the-torch')"),
                        python_step("import sys; print('Downloading torch', flush=True); "
                                    "print('a warning', file=sys.stderr); print('Successfully installed torch')")])
    assert installation.busy
    run_to_end(installation)
    assert seen["progress"] == ["Collecting light-the-torch", "Downloading torch", "a warning",
                                "Successfully installed torch"]
    assert seen["finished"] == [True] and seen["failed"] == [] and not installation.busy


def test_the_first_failing_step_stops_the_installation_with_its_last_line():
    installation = TorchInstallation()
    seen = recorder(installation)
    installation.start([python_step("import sys; print('ERROR: No matching distribution found for torch'); "
                                    "sys.exit(1)"),
                        python_step("open('never-run', 'w')")])
    run_to_end(installation)
    assert seen["failed"] == ["Installing PyTorch failed: ERROR: No matching distribution found for torch."]
    assert seen["finished"] == [] and not installation.busy


def test_a_step_that_cannot_start_fails_in_one_sentence(tmp_path):
    installation = TorchInstallation()
    seen = recorder(installation)
    installation.start([[str(tmp_path / "no-such-python"), "-m", "pip"]])
    assert not installation.busy and seen["failed"][0].startswith("The PyTorch installer could not start:")


def test_cancel_kills_the_running_step_and_starts_no_other(tmp_path):
    marker = tmp_path / "second-step-ran"
    installation = TorchInstallation()
    seen = recorder(installation)
    installation.start([python_step("import time; print('downloading', flush=True); time.sleep(60)"),
                        python_step(f"open({str(marker)!r}, 'w')")])
    deadline = time.monotonic() + 20
    while not seen["progress"]:
        installation.poll()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    installation.cancel()
    assert time.monotonic() - started < 5 and not installation.busy and not installation.poll()
    assert not marker.exists() and seen["finished"] == [] and seen["failed"] == []
