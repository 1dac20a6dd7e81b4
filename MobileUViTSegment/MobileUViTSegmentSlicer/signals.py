"""A minimal signal/slot object for the Logic's notifications.

Why not Qt signals: the Logic runs (and is tested) without Qt, and PythonQt cannot declare custom signals on plain
Python objects anyway; SlicerNNUnet uses the same pattern for the same reason.
"""

from __future__ import annotations

from typing import Any, Callable

Slot = Callable[..., Any]


class Signal:
    """Calls every connected slot, in connection order, with the arguments given to :meth:`emit`.

    Example::

        finished = Signal()
        finished.connect(lambda node: print(node.GetName()))
        finished.emit(segmentationNode)
    """

    def __init__(self, description: str = "") -> None:
        self.description = description
        self._slots: list[Slot] = []

    def connect(self, slot: Slot) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def disconnect(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        # A copy, so that a slot may disconnect itself while being called.
        for slot in list(self._slots):
            slot(*args)

    def __len__(self) -> int:
        return len(self._slots)
