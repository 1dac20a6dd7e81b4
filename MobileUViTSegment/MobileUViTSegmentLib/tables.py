"""Result rows as CSV files and as plain-text tables, formatted one way for the command line and the Slicer panel.

A CSV cell is empty where a number is unknown or undefined (``None`` or NaN: an empty segment has no mean
intensity, an empty mask no HD95), so spreadsheets read the column as numbers rather than text such as "nan".
Floats are written with :data:`CSV_DECIMALS` decimals: exact to 1e-3 mm³ for volumes in mL, and more than enough
for Dice or intensities, without the 17-digit noise of ``repr``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from typing import Any

from .image_io import write_text_atomically

CSV_DECIMALS = 6


def csv_cell(value: Any) -> str:
    """One CSV cell: empty for None/NaN, integers as they are, floats with :data:`CSV_DECIMALS` decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{CSV_DECIMALS}f}"
    return str(value)


def write_csv_atomically(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV (header + rows) so a crash leaves either the previous file or the complete new one."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    write_text_atomically(path, buffer.getvalue())


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, the first left-aligned and the others right-aligned (numbers)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(width) if index == 0 else str(cell).rjust(width)
                         for index, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def rounded(value: Any, decimals: int) -> str:
    """A number for a printed table: ``decimals`` decimals, "-" where it is unknown or undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{decimals}f}"
