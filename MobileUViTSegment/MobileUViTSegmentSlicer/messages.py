"""Turning whatever went wrong into the one sentence the panel shows (never a traceback).

The worker already reports user errors as one lower-case clause (``"the input volume is constant ..."``); these
helpers make that a sentence, and describe a crashed worker from the last line it wrote to stderr.
"""

from __future__ import annotations

import re
from typing import Optional

# Error kinds the core raises on purpose (MobileUViTSegmentLib.errors); anything else is a bug in the worker.
USER_ERROR_KINDS = frozenset({"SegmentationError", "InputError", "OutputError", "ModelError", "WeightsError",
                              "DatasetError", "Cancelled", "ProtocolError"})

_MISSING_MODULE = re.compile(r"No module named '([^'.]+)")


def as_sentence(text: str) -> str:
    """One line, capitalised, ending with a full stop."""
    line = " ".join(str(text).split())
    if not line:
        return "An unknown error occurred."
    line = line[0].upper() + line[1:]
    return line if line[-1] in ".!?" else line + "."


def message_from_error_event(event: dict) -> str:
    """The sentence for a worker ``error`` event."""
    kind = str(event.get("kind", ""))
    message = str(event.get("message", "")).strip()
    if kind in USER_ERROR_KINDS:
        return as_sentence(message or kind)
    return as_sentence(f"the segmentation failed because of an internal error in the worker ({kind}): "
                       f"{message.removeprefix('internal error: ')}")


def message_for_crash(returncode: Optional[int], last_error_line: str) -> str:
    """The sentence for a worker that exited while a run was outstanding."""
    missing = _MISSING_MODULE.search(last_error_line or "")
    if missing:
        package = missing.group(1)
        hint = ("install the PyTorch extension from the Extensions Manager" if package == "torch"
                else "click Segment again to install the required Python packages")
        return as_sentence(f"the segmentation worker cannot start because the Python package '{package}' is "
                           f"missing; {hint}")
    detail = last_error_line.strip() if last_error_line and last_error_line != "no message" else "no message"
    return as_sentence(f"the segmentation worker stopped unexpectedly (exit code {returncode}): {detail}")


def message_for_exception(prefix: str, error: BaseException) -> str:
    """``prefix`` plus the exception's own first line, as one sentence."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return as_sentence(f"{prefix}: {text}")
