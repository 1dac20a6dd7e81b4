"""Rows of dataclasses into a QTableWidget: the statistics and comparison tables share this one filler."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import qt


def formatCell(value: Any) -> str:
    """Numbers to a readable precision; NaN (an undefined metric, e.g. HD95 of an empty segment) as a dash."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (tuple, list)):
        return ", ".join(formatCell(item) for item in value)
    return str(value)


def fillTable(table: qt.QTableWidget, rows: Sequence[Any], skipFields: Sequence[str] = ()) -> None:
    """One row per dataclass instance, one column per field (its name, underscores as spaces, as the header)."""
    table.clear()
    if not rows:
        table.setRowCount(0)
        table.setColumnCount(0)
        return
    fields = [field.name for field in dataclasses.fields(rows[0]) if field.name not in skipFields]
    table.setColumnCount(len(fields))
    table.setHorizontalHeaderLabels([_header(name) for name in fields])
    table.setRowCount(len(rows))
    for rowIndex, row in enumerate(rows):
        for columnIndex, name in enumerate(fields):
            table.setItem(rowIndex, columnIndex, qt.QTableWidgetItem(formatCell(getattr(row, name))))
    table.resizeColumnsToContents()


def _header(fieldName: str) -> str:
    words = []
    for index, character in enumerate(fieldName):  # camelCase and snake_case alike
        if character.isupper() and index:
            words.append(" ")
        words.append(" " if character == "_" else character.lower())
    return "".join(words).replace("  ", " ").strip()
