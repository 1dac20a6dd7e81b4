"""The processing state machine that decides what the panel shows, in plain Python so that tests drive it without Qt.

States and the transitions between them::

    IDLE ──start──▶ STARTING ──progress──▶ RUNNING ──done──▶ IMPORTING ──▶ DONE
                       │ │                   │ │                  └──────▶ FAILED
                       │ └──cancel──┐        │ └──cancel──┐
                       │            ▼        │            ▼
                       └──error──▶ FAILED ◀──┘error    CANCELLING ──▶ IDLE

DONE and FAILED accept a new start; a validation error before anything was started goes straight to FAILED. The panel
reads :meth:`ProcessingStateMachine.view`: one immutable :class:`PanelView` with the button text (Segment ↔ Cancel),
what is enabled, the progress bar and the status line (stage and elapsed time).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable, Optional


class ProcessingState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    IMPORTING = "importing"
    DONE = "done"
    FAILED = "failed"


BUSY_STATES = frozenset({ProcessingState.STARTING, ProcessingState.RUNNING, ProcessingState.CANCELLING,
                         ProcessingState.IMPORTING})

_ALLOWED: dict[ProcessingState, frozenset[ProcessingState]] = {
    ProcessingState.IDLE: frozenset({ProcessingState.STARTING, ProcessingState.FAILED}),
    ProcessingState.STARTING: frozenset({ProcessingState.RUNNING, ProcessingState.IMPORTING,
                                         ProcessingState.CANCELLING, ProcessingState.FAILED}),
    ProcessingState.RUNNING: frozenset({ProcessingState.RUNNING, ProcessingState.IMPORTING,
                                        ProcessingState.CANCELLING, ProcessingState.FAILED}),
    ProcessingState.IMPORTING: frozenset({ProcessingState.DONE, ProcessingState.FAILED}),
    ProcessingState.CANCELLING: frozenset({ProcessingState.IDLE}),
    ProcessingState.DONE: frozenset({ProcessingState.STARTING, ProcessingState.FAILED, ProcessingState.IDLE}),
    ProcessingState.FAILED: frozenset({ProcessingState.STARTING, ProcessingState.FAILED, ProcessingState.IDLE}),
}

# What the worker's stage names mean to a user (see MobileUViTSegmentLib.inference.engine and .weights_cache).
STAGE_LABELS = {
    "loading": "Loading the model",
    "downloading weights": "Downloading the model's weights (first use)",
    "preparing": "Preparing the image",
    "inferring": "Running the network",
    "restoring": "Mapping the result onto the input grid",
    "postprocessing": "Cleaning up the result",
}


class InvalidTransition(RuntimeError):
    """A programming error: the Logic asked for a transition the diagram above does not have."""


def format_elapsed(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``), the way a stopwatch shows it."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class PanelView:
    """Everything the panel needs to show for one state; the Widget copies it onto its widgets and decides nothing."""

    button_text: str
    button_tooltip: str
    button_enabled: bool
    inputs_enabled: bool
    progress_visible: bool
    progress_percent: int
    status_text: str


class ProcessingStateMachine:
    """Current state of one segmentation run, with its stage, progress fraction, elapsed time and outcome.

    ``clock`` is injectable so that tests control the elapsed time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.state = ProcessingState.IDLE
        self.stage = ""
        self.fraction = 0.0
        self.message = ""
        self.error_message = ""
        self.summary = ""
        self._started_at: Optional[float] = None
        self._ended_at: Optional[float] = None

    @property
    def busy(self) -> bool:
        return self.state in BUSY_STATES

    def _go(self, target: ProcessingState) -> None:
        if target not in _ALLOWED[self.state]:
            raise InvalidTransition(f"cannot go from {self.state.value} to {target.value}")
        self.state = target

    def start(self) -> None:
        self._go(ProcessingState.STARTING)
        self._started_at, self._ended_at = self._clock(), None
        self.stage, self.fraction, self.message = "starting", 0.0, "starting the segmentation worker"
        self.error_message = self.summary = ""

    def report_progress(self, stage: str, fraction: float, message: str = "") -> None:
        self._go(ProcessingState.RUNNING)
        self.stage, self.message = stage, message
        self.fraction = min(max(float(fraction), 0.0), 1.0)

    def begin_import(self) -> None:
        self._go(ProcessingState.IMPORTING)
        self.stage, self.fraction, self.message = "importing", 1.0, "creating the segments"

    def succeed(self, summary: str) -> None:
        self._go(ProcessingState.DONE)
        self._ended_at = self._clock()
        self.summary = summary

    def fail(self, message: str) -> None:
        self._go(ProcessingState.FAILED)
        if self._started_at is None:
            self._started_at = self._clock()
        self._ended_at = self._clock()
        self.error_message = message

    def request_cancel(self) -> None:
        self._go(ProcessingState.CANCELLING)

    def finish_cancel(self) -> None:
        self._go(ProcessingState.IDLE)
        self._ended_at = self._clock()
        self.summary = f"Cancelled after {format_elapsed(self.elapsed_seconds())}; the scene was not changed."

    def reset(self) -> None:
        """Forget the last outcome (a new scene, for instance); only when nothing is running."""
        self._go(ProcessingState.IDLE)
        self.summary = self.error_message = ""
        self._started_at = self._ended_at = None

    def elapsed_seconds(self) -> float:
        if self._started_at is None:
            return 0.0
        end = self._ended_at if self._ended_at is not None else self._clock()
        return end - self._started_at

    def status_text(self) -> str:
        elapsed = format_elapsed(self.elapsed_seconds())
        state = self.state
        if state is ProcessingState.IDLE:
            return self.summary or "Select an input volume and a model, then click Segment."
        if state is ProcessingState.STARTING:
            return f"Starting the segmentation worker… {elapsed}"
        if state is ProcessingState.RUNNING:
            label = STAGE_LABELS.get(self.stage, self.stage.capitalize() or "Running")
            return f"{label} ({round(self.fraction * 100)}%)… {elapsed}"
        if state is ProcessingState.CANCELLING:
            return f"Cancelling… {elapsed}"
        if state is ProcessingState.IMPORTING:
            return f"Creating the segments… {elapsed}"
        if state is ProcessingState.DONE:
            return f"Done in {elapsed}. {self.summary}".rstrip()
        return f"Failed: {self.error_message}"

    def view(self, can_start: bool = True, reason: str = "") -> PanelView:
        """What the panel shows now; ``can_start``/``reason`` say whether the inputs allow a new run."""
        state = self.state
        if state in (ProcessingState.STARTING, ProcessingState.RUNNING):
            button = ("Cancel", "Stop the segmentation; the scene stays as it was before.", True)
        elif state is ProcessingState.CANCELLING:
            button = ("Cancelling…", "Stopping the segmentation worker.", False)
        elif state is ProcessingState.IMPORTING:
            button = ("Cancel", "The result is being added to the scene; this takes a moment.", False)
        else:
            button = ("Segment", reason if not can_start else "Segment the input volume with the selected model.",
                      can_start)
        return PanelView(
            button_text=button[0],
            button_tooltip=button[1],
            button_enabled=button[2],
            inputs_enabled=not self.busy,
            progress_visible=self.busy or state is ProcessingState.DONE,
            progress_percent=round(self.fraction * 100),
            # Why Segment is greyed out (a picture for a 3D model, PyTorch still installing) belongs where the eye is,
            # not only in the button's tooltip.
            status_text=reason if reason and not can_start and not self.busy else self.status_text(),
        )
