"""Installing PyTorch into Slicer's Python in a background process, so the GUI never freezes for those minutes.

Why not the PyTorch extension's ``installTorch``: it runs the installer in the foreground and Slicer stops
responding until the download (gigabytes with CUDA) is done. It installs with ``light-the-torch``, which picks the
PyTorch build that matches the NVIDIA driver (CPU when there is none); this module runs that same tool, the same way
(``python -m light_the_torch install torch<requirement>``, after ``pip install light-the-torch``), as a child process
of the interpreter the worker uses, and reports its output lines as progress. Only the worker process imports
PyTorch, and it is started after the installation, so Slicer needs no restart.

Steps run one after another; the first that fails stops the installation with its last output line as the reason.
Cancelling kills the running step (pip leaves nothing half-installed that a second run would not repair).
"""

from __future__ import annotations

import queue
import subprocess
import threading
from typing import Any, Callable, Optional

from .messages import as_sentence
from .signals import Signal
from .worker_launch import pythonExecutable, workerEnvironment

LIGHT_THE_TORCH = "light-the-torch>=0.5"


def installCommands(requirement: str, python: Optional[str] = None) -> list[list[str]]:
    """The argument lists that install PyTorch meeting ``requirement`` (e.g. ">=2.1"), never a shell."""
    python = python or pythonExecutable()
    return [[python, "-m", "pip", "install", "--disable-pip-version-check", LIGHT_THE_TORCH],
            [python, "-m", "light_the_torch", "install", f"torch{requirement}"]]


class TorchInstallation:
    """One background installation; :meth:`poll` (from a QTimer) drains its output and advances it.

    Signals: ``progressed(str)`` (a line of installer output), ``finished()``, ``failed(str)`` (one sentence).
    """

    def __init__(self, environment: Optional[dict[str, str]] = None,
                 popen: Callable[..., Any] = subprocess.Popen) -> None:
        self.environment = environment
        self._popen = popen
        self.progressed = Signal("str: the installer's latest output line")
        self.finished = Signal("(): PyTorch is installed; the next worker can use it")
        self.failed = Signal("str: why the installation stopped, one sentence")
        self._steps: list[list[str]] = []
        self._process: Optional[Any] = None
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        self._lastLine = ""

    @property
    def busy(self) -> bool:
        return self._process is not None

    @property
    def lastLine(self) -> str:
        return self._lastLine

    def start(self, commands: list[list[str]]) -> None:
        """Run ``commands`` (see :func:`installCommands`) one after another in the background."""
        if self.busy:
            raise RuntimeError("PyTorch is already being installed.")
        self._steps = [list(command) for command in commands]
        self._startNextStep()

    def _startNextStep(self) -> None:
        command = self._steps.pop(0)
        environment = self.environment if self.environment is not None else workerEnvironment()
        try:
            self._process = self._popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=environment)
        except OSError as error:
            self._process = None
            self.failed.emit(as_sentence(f"the PyTorch installer could not start: {error}"))
            return
        self._lines = queue.Queue()
        threading.Thread(target=self._readLines, args=(self._process.stdout, self._lines), daemon=True).start()

    @staticmethod
    def _readLines(stream: Any, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line.rstrip())
        lines.put(None)  # end of output

    def poll(self) -> bool:
        """Handle the output so far (never blocks); returns whether the installation is still running."""
        if self._process is None:
            return False
        ended = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            if line.strip():
                self._lastLine = line.strip()
                self.progressed.emit(self._lastLine)
        if not ended:
            return True
        returncode = self._process.wait()
        self._process = None
        if returncode != 0:
            self._steps = []
            reason = self._lastLine or f"the installer ended with exit code {returncode}"
            self.failed.emit(as_sentence(f"installing PyTorch failed: {reason}"))
            return False
        if self._steps:
            self._startNextStep()
            return self._process is not None
        self.finished.emit()
        return False

    def cancel(self) -> None:
        """Stop the running step now; nothing more is started."""
        process, self._process, self._steps = self._process, None, []
        if process is not None:
            process.kill()
            process.wait()
