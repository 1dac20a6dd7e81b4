"""The client side of the worker protocol (see :mod:`.worker`): start, talk to, and kill a worker process.

Pure Python (no Qt, no Slicer), so Slicer's Logic, tests and scripts share it. A reader thread turns the worker's
stdout into events on a queue; the owner drains them with :meth:`WorkerClient.poll` (Slicer calls it from a QTimer,
so the GUI thread never blocks) or waits with :meth:`WorkerClient.wait_for`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

PACKAGE_PARENT = Path(__file__).resolve().parents[1]


class WorkerCrashed(RuntimeError):
    """The worker process ended while a request was outstanding."""


def kill_process_tree(process: subprocess.Popen) -> None:
    """Kill ``process`` and its children (it was started as the leader of its own group/session)."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        if process.poll() is None:
            process.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def default_command(python: Optional[str] = None) -> list[str]:
    return [python or sys.executable, "-m", "MobileUViTSegmentLib", "worker"]


class WorkerClient:
    """One worker process. Started lazily; killing it is how a run is cancelled.

    Example::

        client = WorkerClient()
        client.send({"type": "segment", "id": "r1", "input": "in.nrrd", "output": "out.nrrd",
                     "model": "hippocampus-mri"})
        done = client.wait_for("r1", timeout=600)
    """

    def __init__(self, command: Optional[Sequence[str]] = None, env: Optional[dict[str, str]] = None):
        self.command = list(command or default_command())
        self.env = dict(os.environ if env is None else env)
        # The worker imports MobileUViTSegmentLib from this checkout / Slicer module folder.
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), self.env.get("PYTHONPATH")]))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.process: Optional[subprocess.Popen] = None
        self.events: queue.Queue = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=50)
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.events = queue.Queue()
        self.stderr_tail.clear()
        # An argument list, never a shell; its own process group (session) so that cancelling kills the whole tree:
        # Slicer's PythonSlicer is a launcher whose child is the real Python.
        platform_options = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
                            if sys.platform == "win32" else {"start_new_session": True})
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, encoding="utf-8", env=self.env,
                                        bufsize=1, **platform_options)
        stderr_reader = threading.Thread(target=self._read_stderr, args=(self.process,), daemon=True)
        # Each reader binds this process's queue: a reader of a killed worker can never post into a later one's.
        stdout_reader = threading.Thread(target=self._read_stdout, args=(self.process, self.events, stderr_reader),
                                         daemon=True)
        self._threads = [stderr_reader, stdout_reader]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self, process: subprocess.Popen, events: queue.Queue, stderr_reader: threading.Thread) -> None:
        try:
            for line in process.stdout:
                line = line.strip()
                if not line:
                    continue
                try:
                    events.put(json.loads(line))
                except json.JSONDecodeError:
                    self.stderr_tail.append(line)
        except (OSError, ValueError):  # the stream was closed under us by kill()
            pass
        stderr_reader.join(timeout=5)  # so last_error_line() is complete when "exited" arrives
        events.put({"event": "exited", "returncode": process.wait()})

    def _read_stderr(self, process: subprocess.Popen) -> None:
        try:
            for line in process.stderr:
                self.stderr_tail.append(line.rstrip())
        except (OSError, ValueError):
            pass

    def send(self, request: dict) -> None:
        self.start()
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise WorkerCrashed(f"the worker process is gone: {self.last_error_line()}") from error

    def poll(self) -> list[dict]:
        """All events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def wait_for(self, request_id: str, timeout: Optional[float] = None, on_event=None) -> dict:
        """Block until ``request_id`` is done or failed; return that event. Raises on timeout or crash."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError(f"the worker did not finish within {timeout} s") from None
            if on_event is not None:
                on_event(event)
            if event.get("event") == "exited":
                raise WorkerCrashed(f"the worker process ended (exit code {event['returncode']}): "
                                    f"{self.last_error_line()}")
            if event.get("id") == request_id and event.get("event") in ("done", "error"):
                return event

    def last_error_line(self) -> str:
        for line in reversed(self.stderr_tail):
            if line.strip():
                return line.strip()
        return "no message"

    def kill(self) -> None:
        """Stop the worker and every process it started, now (cancel); the next request starts a fresh one."""
        if self.process is None:
            return
        if self.process.poll() is None:
            kill_process_tree(self.process)
        self.process.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self.process = None

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask the worker to exit, killing it if it does not within ``timeout`` seconds."""
        if self.running:
            try:
                self.send({"type": "shutdown"})
                self.process.wait(timeout=timeout)
            except (WorkerCrashed, subprocess.TimeoutExpired):
                pass
        self.kill()
