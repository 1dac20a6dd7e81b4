"""Progress reporting and cooperative cancellation shared by inference, training and the worker protocol."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Optional

from .errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """One progress event: a named stage and the overall fraction done (0..1)."""

    stage: str
    fraction: float
    message: str = ""


ProgressCallback = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """Default callback."""


class CancelToken:
    """A flag that long loops check between steps; setting it from any thread stops the run at the next check."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user; nothing was written")


class StagedProgress:
    """Maps per-stage fractions onto one overall fraction, using fixed stage weights."""

    def __init__(self, weights: dict[str, float], callback: Optional[ProgressCallback] = None):
        total = sum(weights.values())
        self._callback = callback or ignore_progress
        self._starts: dict[str, float] = {}
        self._spans: dict[str, float] = {}
        start = 0.0
        for stage, weight in weights.items():
            self._starts[stage] = start
            self._spans[stage] = weight / total
            start += weight / total

    def report(self, stage: str, fraction: float = 0.0, message: str = "") -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        overall = self._starts[stage] + self._spans[stage] * fraction
        self._callback(Progress(stage, round(overall, 4), message))
