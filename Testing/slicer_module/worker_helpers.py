"""Real worker clients for tests: this interpreter, one PyTorch thread (the machines running the suite are shared)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import SimpleITK as sitk

from MobileUViTSegmentLib.worker_client import WorkerClient
from MobileUViTSegmentSlicer.worker_launch import workerCommand

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def worker_environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **SINGLE_THREAD, **extra}


def make_worker_client(**extra_environment: str) -> WorkerClient:
    """A real worker client (started on its first request) running this interpreter with one thread."""
    return WorkerClient(workerCommand(python=sys.executable, threads=1), env=worker_environment(**extra_environment))


def core_result(worker: WorkerClient, image: Path, model_id: str, folder: Path, timeout: float) -> sitk.Image:
    """The core's own label map for a file (no Slicer in between, no post-processing), read back with SimpleITK.

    Slicer-side results are compared with it: any difference comes from the way Slicer hands the volume over.
    """
    output = folder / f"core-{uuid.uuid4().hex[:6]}.nrrd"
    request_id = f"core-{uuid.uuid4().hex}"
    worker.send({"type": "segment", "id": request_id, "input": str(image), "output": str(output),
                 "model": model_id, "device": "cpu", "postprocess": None})
    event = worker.wait_for(request_id, timeout=timeout)
    assert event["event"] == "done", event
    return sitk.ReadImage(str(output))
