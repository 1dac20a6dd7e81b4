"""The processing state machine decides the panel's button, enabled inputs, progress and status line (no Qt)."""

from __future__ import annotations

import pytest

from MobileUViTSegmentSlicer.processing_state import (
    InvalidTransition,
    ProcessingState,
    ProcessingStateMachine,
    format_elapsed,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def machine(clock: Clock) -> ProcessingStateMachine:
    return ProcessingStateMachine(clock)


def test_idle_panel_offers_segment_only_when_inputs_allow_it(machine):
    ready = machine.view(can_start=True)
    blocked = machine.view(can_start=False, reason="Select an input volume.")
    assert (ready.button_text, ready.button_enabled, ready.inputs_enabled) == ("Segment", True, True)
    assert (blocked.button_text, blocked.button_enabled, blocked.button_tooltip) == (
        "Segment", False, "Select an input volume.")
    assert blocked.status_text == "Select an input volume."  # the reason is shown, not only in a tooltip
    assert ready.status_text == "Select an input volume and a model, then click Segment."
    assert not ready.progress_visible


def test_button_turns_into_cancel_while_running_and_inputs_lock(machine, clock):
    machine.start()
    starting = machine.view()
    assert (starting.button_text, starting.button_enabled, starting.inputs_enabled) == ("Cancel", True, False)
    assert starting.status_text == "Starting the segmentation worker… 0:00"
    clock.now += 7
    machine.report_progress("inferring", 0.42, "running mobileuvit_s on cpu")
    running = machine.view(can_start=False)  # a running job can always be cancelled
    assert (running.button_text, running.button_enabled, running.progress_percent) == ("Cancel", True, 42)
    assert running.status_text == "Running the network (42%)… 0:07"
    assert running.progress_visible


def test_status_line_names_each_worker_stage_and_unknown_ones(machine):
    machine.start()
    for stage, label in [("loading", "Loading the model"), ("restoring", "Mapping the result onto the input grid"),
                         ("postprocessing", "Cleaning up the result"), ("calibrating", "Calibrating")]:
        machine.report_progress(stage, 0.5)
        assert machine.status_text().startswith(f"{label} (50%)")


def test_import_then_done_reports_summary_and_elapsed_time(machine, clock):
    machine.start()
    machine.report_progress("inferring", 0.9)
    clock.now += 65
    machine.begin_import()
    importing = machine.view()
    assert (importing.button_enabled, importing.inputs_enabled, importing.progress_percent) == (False, False, 100)
    assert importing.status_text == "Creating the segments… 1:05"
    machine.succeed("2 segments added to new segmentation 'x'.")
    clock.now += 30  # time after the end does not count
    done = machine.view()
    assert done.status_text == "Done in 1:05. 2 segments added to new segmentation 'x'."
    assert (done.button_text, done.button_enabled, done.inputs_enabled) == ("Segment", True, True)


def test_failure_shows_the_message_and_allows_a_new_run(machine):
    machine.start()
    machine.fail("The input volume is constant.")
    assert machine.state is ProcessingState.FAILED
    assert machine.view().status_text == "Failed: The input volume is constant."
    machine.start()
    assert machine.state is ProcessingState.STARTING
    assert machine.error_message == ""


def test_validation_failure_before_any_run_goes_straight_to_failed(machine):
    machine.fail("Select a model.")
    assert machine.state is ProcessingState.FAILED
    assert machine.elapsed_seconds() == 0


def test_cancel_passes_through_cancelling_back_to_idle(machine, clock):
    machine.start()
    machine.report_progress("inferring", 0.3)
    clock.now += 3
    machine.request_cancel()
    cancelling = machine.view()
    assert (cancelling.button_text, cancelling.button_enabled, cancelling.inputs_enabled) == (
        "Cancelling…", False, False)
    machine.finish_cancel()
    assert machine.state is ProcessingState.IDLE and not machine.busy
    assert machine.view().status_text == "Cancelled after 0:03; the scene was not changed."


@pytest.mark.parametrize("steps, forbidden", [
    ([], lambda m: m.report_progress("inferring", 0.1)),      # no progress before a start
    ([], lambda m: m.begin_import()),
    (["start"], lambda m: m.succeed("x")),                     # no success without an import
    (["start", "begin_import"], lambda m: m.request_cancel()),  # importing is one step: no cancel in the middle
    (["start"], lambda m: m.start()),                          # no second start while busy
    (["start", "request_cancel"], lambda m: m.report_progress("inferring", 0.1)),
], ids=["progress-when-idle", "import-when-idle", "succeed-without-import", "cancel-while-importing",
        "start-while-busy", "progress-while-cancelling"])
def test_transitions_outside_the_diagram_are_refused(machine, steps, forbidden):
    for step in steps:
        getattr(machine, step)()
    with pytest.raises(InvalidTransition):
        forbidden(machine)


def test_reset_clears_the_last_outcome_only_when_not_busy(machine):
    machine.start()
    with pytest.raises(InvalidTransition):
        machine.reset()
    machine.fail("boom")
    machine.reset()
    assert machine.state is ProcessingState.IDLE
    assert machine.status_text() == "Select an input volume and a model, then click Segment."


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3600, "1:00:00"),
                                           (3725, "1:02:05"), (-1, "0:00")])
def test_elapsed_time_reads_like_a_stopwatch(seconds, text):
    assert format_elapsed(seconds) == text
