"""Scripted stand-ins for the worker client (``WorkerClientProtocol``), for tests of the Logic's control flow.

Each ``poll()`` returns the next batch of events of a script chosen per test. The "segmenting" script really reads
the exported input file and writes a label map on its grid, so the import path is exercised for real:
:func:`threshold_labels` gives label 2 to the brightest 10 % of voxels and label 1 to the next 20 %, a rule a test
can recompute from the volume node's own voxels to check that the result lies exactly on the input grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog

Batches = Iterator[list[dict]]
Script = Callable[[dict, "FakeWorker"], Batches]


def card_labels(model_id: str = DEFAULT_MODEL_ID) -> list[dict]:
    """The ``labels`` list of a ``done`` event, built from the real card (names, colours, terminology)."""
    return [{"value": label.value, "name": label.name, "color": list(label.color),
             "terminology": label.terminology.slicer_entry()} for label in Catalog().get(model_id).labels]


def threshold_labels(voxels: np.ndarray) -> np.ndarray:
    """0/1/2 by intensity percentiles (70th, 90th): independent of axis order, so any geometry slip shows."""
    low, high = np.percentile(voxels, [70, 90])
    return ((voxels > low).astype(np.uint8) + (voxels > high).astype(np.uint8)).astype(np.uint8)


def segmenting(progress_batches: int = 3, output_transform: Optional[Callable[[sitk.Image], sitk.Image]] = None
               ) -> Script:
    """Reports progress, then writes the threshold label map onto the input's grid and reports ``done``."""

    def script(request: dict, worker: FakeWorker) -> Batches:
        yield [{"event": "ready", "version": "1", "device": "cpu", "devices": "fake worker: CPU only"}]
        for step in range(progress_batches):
            yield [{"event": "progress", "id": request["id"], "stage": "inferring",
                    "fraction": (step + 1) / (progress_batches + 1), "message": "fake"}]
        image = sitk.ReadImage(request["input"])
        labels = sitk.GetImageFromArray(threshold_labels(sitk.GetArrayFromImage(image)))
        labels.CopyInformation(image)
        if output_transform is not None:
            labels = output_transform(labels)
        sitk.WriteImage(labels, request["output"])
        yield [{"event": "done", "id": request["id"], "output": request["output"], "device": "cpu",
                "model": request["model"], "timings": {"total": 0.1}, "labels": card_labels()}]

    return script


def never_finishing() -> Script:
    """A slow worker: progress forever, never a result (for cancel tests)."""

    def script(request: dict, worker: FakeWorker) -> Batches:
        yield [{"event": "ready", "version": "1", "device": "cpu", "devices": "fake worker: CPU only"}]
        step = 0
        while True:
            step += 1
            yield [{"event": "progress", "id": request["id"], "stage": "inferring",
                    "fraction": min(step / 1000, 0.99), "message": "slow"}]

    return script


def failing(kind: str, message: str) -> Script:
    def script(request: dict, worker: FakeWorker) -> Batches:
        yield [{"event": "progress", "id": request["id"], "stage": "loading", "fraction": 0.0, "message": ""}]
        yield [{"event": "error", "id": request["id"], "kind": kind, "message": message}]

    return script


def crashing(returncode: int, stderr_line: str) -> Script:
    def script(request: dict, worker: FakeWorker) -> Batches:
        yield [{"event": "progress", "id": request["id"], "stage": "inferring", "fraction": 0.3, "message": ""}]
        worker.stderr_line = stderr_line
        yield [{"event": "exited", "returncode": returncode}]

    return script


def done_with(event_fields: dict, write: Optional[Callable[[dict], None]] = None) -> Script:
    """Reports ``done`` at once with the given fields (optionally writing some output first)."""

    def script(request: dict, worker: FakeWorker) -> Batches:
        if write is not None:
            write(request)
        yield [{"event": "done", "id": request["id"], "output": request["output"], "model": request["model"],
                "labels": card_labels(), **event_fields}]

    return script


class FakeWorker:
    """Implements ``WorkerClientProtocol``; records what the Logic sent and whether it killed the worker."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sent: list[dict] = []
        self.killed = False
        self.shut_down = False
        self.stderr_line = "no message"
        self.input_existed_when_sent: list[bool] = []
        self._batches: Optional[Batches] = None

    def send(self, request: dict) -> None:
        self.sent.append(request)
        if request.get("type") == "segment":
            self.input_existed_when_sent.append(Path(request["input"]).is_file())
            self._batches = self.script(request, self)

    def poll(self) -> list[dict]:
        if self._batches is None:
            return []
        return next(self._batches, [])

    def kill(self) -> None:
        self.killed = True
        self._batches = None

    def shutdown(self, timeout: float = 10.0) -> None:
        self.shut_down = True
        self._batches = None

    def last_error_line(self) -> str:
        return self.stderr_line


class WorkerFactory:
    """Makes a new :class:`FakeWorker` per call (as the real factory makes a new client) and keeps them all."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.workers: list[FakeWorker] = []

    def __call__(self) -> FakeWorker:
        self.workers.append(FakeWorker(self.script))
        return self.workers[-1]

    @property
    def last(self) -> FakeWorker:
        return self.workers[-1]
