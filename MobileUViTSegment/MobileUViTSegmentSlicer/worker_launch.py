"""How the Logic starts a worker: which Python runs it, with which arguments and environment.

Inside Slicer, ``sys.executable`` is the Slicer application itself (running it with ``-m`` would open another Slicer),
so the worker must run with ``PythonSlicer``, which sits next to it (or is on PATH, as Slicer's launcher sets it).
Outside Slicer (tests, scripts) the running interpreter is a Python interpreter and is used directly. Either way the
worker is started from an argument list, never through a shell.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

from MobileUViTSegmentLib.worker_client import WorkerClient, default_command


class WorkerLaunchError(Exception):
    """No Python interpreter could be found to run the worker; the message is one sentence for the user."""


def _pythonSlicerName(platform: str) -> str:
    return "PythonSlicer.exe" if platform.startswith("win") else "PythonSlicer"


def pythonExecutable(executable: str = sys.executable, which: Callable[[str], Optional[str]] = shutil.which,
                     platform: str = sys.platform) -> str:
    """The interpreter that runs the worker: PythonSlicer beside the application, on PATH, or this Python."""
    name = _pythonSlicerName(platform)
    here = Path(executable).parent
    # Linux and Windows: bin/SlicerApp-real beside bin/PythonSlicer; macOS: Contents/MacOS/Slicer, Contents/bin/.
    for candidate in (here / name, here.parent / "bin" / name):
        if candidate.is_file():
            return str(candidate)
    found = which(name)
    if found:
        return found
    if Path(executable).name.lower().startswith("python"):
        return executable
    raise WorkerLaunchError(f"PythonSlicer was not found next to {executable} or on PATH, so the segmentation "
                            "worker cannot be started; reinstall 3D Slicer.")


def workerCommand(python: Optional[str] = None, threads: Optional[int] = None) -> list[str]:
    """The worker's argument list; ``threads`` limits PyTorch's CPU threads (default: PyTorch's own choice)."""
    command = default_command(python or pythonExecutable())
    if threads:
        command += ["--threads", str(int(threads))]
    return command


def workerEnvironment() -> Optional[dict[str, str]]:
    """Inside Slicer, the environment Slicer started with (what PythonSlicer expects); elsewhere None (inherit)."""
    try:
        import slicer

        environment = slicer.util.startupEnvironment()
    except Exception:  # no application (tests, PythonSlicer): the current environment is the right one
        return None
    return dict(environment) if environment else None


def defaultWorkerFactory(threads: Optional[int] = None,
                         extraEnvironment: Optional[dict[str, str]] = None) -> Callable[[], WorkerClient]:
    """A factory that makes a fresh (not yet started) worker client each time the Logic needs one."""

    def create() -> WorkerClient:
        environment = workerEnvironment()
        if extraEnvironment:
            environment = {**(environment if environment is not None else os.environ), **extraEnvironment}
        return WorkerClient(workerCommand(threads=threads), env=environment)

    return create
