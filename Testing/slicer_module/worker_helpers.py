"""Real worker clients for tests: this interpreter, one PyTorch thread (the machines running the suite are shared)."""

from __future__ import annotations

import os
import sys

from MobileUViTSegmentLib.worker_client import WorkerClient
from MobileUViTSegmentSlicer.worker_launch import workerCommand

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def worker_environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **SINGLE_THREAD, **extra}


def make_worker_client(**extra_environment: str) -> WorkerClient:
    """A real worker client (started on its first request) running this interpreter with one thread."""
    return WorkerClient(workerCommand(python=sys.executable, threads=1), env=worker_environment(**extra_environment))
