"""A long-lived worker process that segments files on request: Slicer's Logic talks to it so torch never runs in
Slicer's GUI process.

Protocol: JSON lines. Requests arrive on stdin, events leave on stdout (stdout carries nothing else; logs and
warnings go to stderr). Started with ``python -m MobileUViTSegmentLib worker``.

Requests::

    {"type": "segment", "id": "r1", "input": "/tmp/in.nrrd", "output": "/tmp/labels.nrrd",
     "model": "hippocampus-mri", "device": "auto", "postprocess": null,
     "uncertainty": "/tmp/uncertainty.nrrd", "disagreement": "/tmp/disagreement.nrrd", "tta": true}
    {"type": "ping", "id": "p1"}
    {"type": "shutdown"}

Events::

    {"event": "ready", "version": "...", "device": "cpu", "devices": "no CUDA GPU detected; CPU only"}
    {"event": "progress", "id": "r1", "stage": "inferring", "fraction": 0.42, "message": "..."}
    {"event": "done", "id": "r1", "output": "/tmp/labels.nrrd", "device": "cpu", "timings": {...},
     "labels": [{"value": 1, "name": "...", "color": [r, g, b], "terminology": "<Slicer TerminologyEntry>"}],
     "uncertainty": "/tmp/uncertainty.nrrd", "disagreement": "/tmp/disagreement.nrrd",
     "confidence": {"1": 0.93, "2": 0.91},
     "review": [{"rank": 1, "label_value": 2, "label_name": "...", "voxel_count": 86, "mean_uncertainty": 0.6,
                 "total_uncertainty": 51.4, "centroid_index": [i, j, k], "centroid_lps": [x, y, z],
                 "centroid_ras": [x, y, z], "slice_index": 26}, ...]}
    {"event": "error", "id": "r1", "kind": "InputError", "message": "one clear sentence"}
    {"event": "pong", "id": "p1"}

Optional request fields (a request without them behaves exactly as before, and its ``done`` event has none of the
fields they add): ``"uncertainty"``, a path where the float32 uncertainty map (normalised entropy in [0, 1], on the
input's exact grid) is written atomically; ``"tta": true``, test-time flips (probabilities averaged over mirrored
passes; see ``inference.engine.tta_flip_axes``); ``"disagreement"``, a path for the flip-disagreement map (needs
``"tta": true``). With ``"uncertainty"`` or ``"tta"`` the ``done`` event adds ``"confidence"`` (label value as a
string -> score in [0, 1]; labels the run did not find are absent) and ``"review"`` (the most uncertain regions, rank
1 first), plus the paths written. Definitions: ``MobileUViTSegmentLib.confidence``. ``"probabilities"``, a folder
(it must exist): one float32 map per label, ``probability_<value>.nrrd`` (the softmax or sigmoid of that label on the
input's exact grid, before post-processing); the ``done`` event adds ``"probabilities": {"1": path, ...}``.

Cancelling is killing the process: the output is written atomically, so a killed worker leaves no partial file,
and the client starts a fresh worker for the next run. Loaded models are cached between requests.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any, Optional

import torch

from .card import ModelCard
from .catalog import Catalog
from .devices import describe_devices, resolve_device
from .errors import ModelError, SegmentationError
from .image_io import read_image, write_image
from .inference.engine import SegmentationOptions, Segmenter
from .outputs import write_result
from .progress import Progress, ProgressCallback

PROTOCOL_VERSION = "1"


class ProtocolError(Exception):
    """A request the worker cannot make sense of; reported as a ``ProtocolError`` event."""


class Worker:
    def __init__(self, output: IO[str], catalog: Optional[Catalog] = None):
        self.output = output
        self.catalog = catalog or Catalog()
        self.segmenters: dict[tuple[str, str], Segmenter] = {}

    def emit(self, event: str, **fields: Any) -> None:
        self.output.write(json.dumps({"event": event, **fields}) + "\n")
        self.output.flush()

    def card(self, model: str) -> ModelCard:
        """The model's card; an id the catalog did not know when the worker started is looked up afresh once.

        A long-lived worker (the Slicer panel keeps one) must see models made after it started: ``finetune`` puts a
        new ``<parent>-local-<n>`` into the local models folder while the worker is idle.
        """
        try:
            return self.catalog.get(model)
        except ModelError:
            self.catalog = Catalog(self.catalog.folders)  # the same folders, read again
            return self.catalog.get(model)

    def segmenter(self, model: str, device: torch.device, progress: Optional[ProgressCallback] = None) -> Segmenter:
        card = self.card(model)
        key = (str(card.weights_path), card.weights.sha256, str(device))
        if key not in self.segmenters:
            self.segmenters[key] = Segmenter(card, device, progress=progress)  # progress: a first-use download
        return self.segmenters[key]

    def segment(self, request: dict) -> None:
        request_id = request.get("id", "")
        started = time.perf_counter()

        def progress(update: Progress) -> None:
            self.emit("progress", id=request_id, stage=update.stage, fraction=update.fraction,
                      message=update.message)

        tta = bool(request.get("tta", False))
        if request.get("disagreement") and not tta:
            raise ProtocolError('"disagreement" needs "tta": true (it compares the test-time flip passes)')
        probability_folder = Path(request["probabilities"]) if request.get("probabilities") else None
        if probability_folder is not None and not probability_folder.is_dir():
            raise ProtocolError(f'"probabilities" must name an existing folder, not {probability_folder}')
        self.emit("progress", id=request_id, stage="loading", fraction=0.0, message="loading the model")
        device = resolve_device(request.get("device", "auto"))
        segmenter = self.segmenter(request["model"], device, progress)
        image = read_image(request["input"])
        options = SegmentationOptions(postprocess=request.get("postprocess"),
                                      uncertainty=bool(request.get("uncertainty")), tta=tta,
                                      probabilities=probability_folder is not None)
        result = segmenter.segment(image, options=options, progress=progress, name="the input volume")
        extra: dict[str, Any] = {}
        for field_name, map_image in (("uncertainty", result.uncertainty), ("disagreement", result.disagreement)):
            if request.get(field_name) and map_image is not None:
                write_image(map_image, Path(request[field_name]))
                extra[field_name] = request[field_name]
        if probability_folder is not None:
            written = {str(value): str(probability_folder / f"probability_{value}.nrrd")
                       for value in result.probabilities}
            for value, map_image in result.probabilities.items():
                write_image(map_image, Path(written[str(value)]))
            extra["probabilities"] = written
        write_result(result.labels, result.card, Path(request["output"]))
        if options.assesses_confidence:
            extra["confidence"] = {str(value): score for value, score in result.confidence.items()}
            extra["review"] = [item.to_json() for item in result.review]
        labels = [{"value": label.value, "name": label.name, "color": list(label.color),
                   "terminology": label.terminology.slicer_entry()} for label in result.card.labels]
        self.emit("done", id=request_id, output=request["output"], device=result.device, labels=labels,
                  model=result.card.id, timings={**result.timings, "total": round(time.perf_counter() - started, 3)},
                  notes=result.notes, **extra)

    def handle(self, request: dict) -> bool:
        """Handle one request; return False when the worker should stop."""
        kind = request.get("type")
        if kind == "shutdown":
            return False
        if kind == "ping":
            self.emit("pong", id=request.get("id", ""))
            return True
        if kind != "segment":
            self.emit("error", id=request.get("id", ""), kind="ProtocolError", message=f"unknown request {kind!r}")
            return True
        try:
            self.segment(request)
        except SegmentationError as error:
            self.emit("error", id=request.get("id", ""), kind=type(error).__name__, message=str(error))
        except KeyError as error:
            self.emit("error", id=request.get("id", ""), kind="ProtocolError", message=f"request lacks {error}")
        except ProtocolError as error:
            self.emit("error", id=request.get("id", ""), kind="ProtocolError", message=str(error))
        except Exception as error:  # a bug: report it, keep serving, keep the traceback on stderr
            traceback.print_exc(file=sys.stderr)
            self.emit("error", id=request.get("id", ""), kind=type(error).__name__,
                      message=f"internal error: {error}")
        return True


def serve(input_stream: IO[str] = sys.stdin, output_stream: IO[str] = sys.stdout) -> int:
    worker = Worker(output_stream)
    worker.emit("ready", version=PROTOCOL_VERSION, device=str(resolve_device("auto")), devices=describe_devices())
    for line in input_stream:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError:
            worker.emit("error", id="", kind="ProtocolError", message="request is not JSON")
            continue
        if not worker.handle(request):
            break
    return 0
