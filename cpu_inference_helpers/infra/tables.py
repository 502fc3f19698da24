"""Tables for the reports: fixed-width text for the terminal, Markdown for the files, HTML in Jupyter."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 2) -> str:
    """A Markdown table: the first `text_columns` columns left-aligned, the rest right-aligned.

    Cells are written with `str`; a `|` inside one is escaped so that it cannot split the row.
    """
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    align = ["---" if index < text_columns else "---:" for index in range(len(header))]
    return "\n".join([line(header), "| " + " | ".join(align) + " |", *(line(row) for row in rows)])


@dataclass(frozen=True)
class Table:
    """A table that prints as fixed-width text (`str`, `print`) and renders as an HTML table in Jupyter.

    In JupyterLab a wide text table wraps into noise at a normal window width; its HTML form scrolls
    sideways instead. `notes` follow the table (e.g. the fallbacks that happened).
    """

    columns: Sequence[tuple[str, str]]
    rows: Sequence[Sequence[Any]]
    text_columns: int = 2
    notes: Sequence[str] = ()

    def __str__(self) -> str:
        return "\n".join([*text_table(self.columns, self.rows, self.text_columns), *self.notes])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        def cell(tag: str, text: str, index: int) -> str:
            align = "left" if index < self.text_columns else "right"
            return f'<{tag} style="text-align:{align}; white-space:nowrap">{html.escape(text)}</{tag}>'

        head = "".join(cell("th", name, i) for i, (name, _) in enumerate(self.columns))
        body = "".join(
            "<tr>" + "".join(cell("td", fmt.format(value), i)
                             for i, ((_, fmt), value) in enumerate(zip(self.columns, row, strict=True))) + "</tr>"
            for row in self.rows
        )
        notes = "".join(f"<p>{html.escape(note)}</p>" for note in self.notes)
        return (f'<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
                f"</div>{notes}")
