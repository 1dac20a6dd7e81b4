"""One-sentence messages for the panel, and the small signal object the Logic notifies through."""

from __future__ import annotations

import pytest

from MobileUViTSegmentSlicer.messages import as_sentence, message_for_crash, message_from_error_event
from MobileUViTSegmentSlicer.signals import Signal


@pytest.mark.parametrize("text, sentence", [
    ("the input volume is empty", "The input volume is empty."),
    ("Already a sentence.", "Already a sentence."),
    ("  two\nlines  ", "Two lines."),
    ("", "An unknown error occurred."),
])
def test_as_sentence_gives_one_capitalised_line_with_a_full_stop(text, sentence):
    assert as_sentence(text) == sentence


def test_error_events_of_unknown_kinds_are_called_internal_errors():
    event = {"event": "error", "kind": "KeyError", "message": "internal error: 'spacing'"}
    assert message_from_error_event(event) == ("The segmentation failed because of an internal error in the worker "
                                               "(KeyError): 'spacing'.")
    assert message_from_error_event({"kind": "ProtocolError", "message": "request lacks 'model'"}) == \
        "Request lacks 'model'."


def test_a_crash_without_stderr_still_says_what_happened():
    assert message_for_crash(-11, "no message") == \
        "The segmentation worker stopped unexpectedly (exit code -11): no message."


def test_signal_calls_slots_in_connection_order_once_each():
    calls = []
    signal = Signal("int")
    first = lambda value: calls.append(("first", value))  # noqa: E731
    signal.connect(first)
    signal.connect(lambda value: calls.append(("second", value)))
    signal.connect(first)  # connecting twice does not call twice
    signal.emit(7)
    assert calls == [("first", 7), ("second", 7)] and len(signal) == 2
    signal.disconnect(first)
    signal.emit(8)
    assert calls[-1] == ("second", 8) and len(calls) == 3


def test_a_slot_may_disconnect_itself_while_being_called():
    signal, calls = Signal(), []

    def once():
        calls.append("once")
        signal.disconnect(once)

    signal.connect(once)
    signal.connect(lambda: calls.append("always"))
    signal.emit()
    signal.emit()
    assert calls == ["once", "always", "always"]
