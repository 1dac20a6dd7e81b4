"""Bringing a model's weights file in from the panel, for a site whose machines cannot download it.

Why a separate process: checking a file against its card is the core's ``weights import`` (size and sha256, then an
atomic copy into the per-user cache), and the core's weights module loads PyTorch, which Slicer's own process never
does. So the panel runs ``python -m MobileUViTSegmentLib weights import MODEL FILE`` with the worker's interpreter
(PythonSlicer inside Slicer), as an argument list (never a shell), and turns its one-line error into a sentence. The
file the user picked is only read; a file that is not the card's never enters the cache.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Optional

from .messages import as_sentence
from .worker_launch import pythonExecutable, workerEnvironment

TIMEOUT_S = 600.0  # hashing a few hundred megabytes on a slow disk
ERROR_PREFIX = "mobileuvit-segment: error: "


class WeightsImportError(Exception):
    """The file was not imported; the message is one sentence for the user."""


def importWeightsFile(modelId: str, path: os.PathLike | str, python: Optional[str] = None,
                      environment: Optional[dict[str, str]] = None,
                      run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """Check ``path`` against ``modelId``'s card and copy it into the weights cache; returns what was done.

    Raises :class:`WeightsImportError` (one sentence) when the model is unknown, the file is missing or is not the
    card's (size or sha256), or the import process cannot run.
    """
    if not modelId:
        raise WeightsImportError("Select the model whose weights file this is.")
    source = Path(path)
    if not source.is_file():
        raise WeightsImportError(f"The weights file {source} does not exist.")
    command = [python or pythonExecutable(), "-m", "MobileUViTSegmentLib", "weights", "import", modelId, str(source)]
    try:
        completed = run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                        env=environment if environment is not None else workerEnvironment())
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WeightsImportError(as_sentence(f"the weights import could not run: {error}")) from error
    if completed.returncode != 0:
        lines = [line for line in (completed.stderr or "").splitlines() if line.strip()]
        last = lines[-1] if lines else f"the import process ended with exit code {completed.returncode}"
        raise WeightsImportError(as_sentence(last.removeprefix(ERROR_PREFIX)))
    lines = [line for line in (completed.stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else f"Weights of {modelId} imported."
