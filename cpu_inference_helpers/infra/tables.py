"""Fixed-width text tables for the command-line reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def text_table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]], text_columns: int = 2) -> list[str]:
    """The lines of a fixed-width table: a header, a rule, one line per row.

    Args:
        columns: (header, format string) per column, e.g. ("ms", "{:.1f}").
        rows: one sequence of values per row, formatted with the column's format string.
        text_columns: how many leading columns are text (left-aligned); the rest are right-aligned.
    """
    header = [name for name, _ in columns]
    cells = [[fmt.format(value) for (_, fmt), value in zip(columns, row, strict=True)] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *cells, strict=True)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) if i < text_columns else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()

    return [line(header), line(["-" * width for width in widths]), *(line(row) for row in cells)]
