"""Tables for the ``edgefleet`` commands: one list of columns, two renderings.

A table is a tuple of :class:`Column` (a header and a function from a row to its cell) and a list of rows (plain
dicts). On a terminal it renders as a rich table; anywhere else (a pipe, a file, a CI log) as plain text aligned like
``kubectl get``: one line per row, no wrapping, no colour, cells never folded to the width of a narrow log. A command
adds a column by appending a :class:`Column` to its list (``status.DEPLOYMENT_COLUMNS``), so both renderings and
every caller pick it up.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

Row = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: its header, its cell for a row, and optionally a rich style for the cell on a terminal."""

    header: str
    cell: Callable[[Row], str]
    style: Callable[[Row], str | None] | None = None
    max_width: int | None = None
    """Cut longer cells (with an ellipsis) in both renderings; None: never cut."""
    when: Callable[[Mapping[str, Any]], bool] | None = None
    """Whether the column is shown, from the rendering options (e.g. NAMESPACE only with ``-A``)."""


def shown(columns: Sequence[Column], options: Mapping[str, Any]) -> list[Column]:
    """The columns that ``options`` shows (pure)."""
    return [c for c in columns if c.when is None or c.when(options)]


def _cut(text: str, limit: int | None) -> str:
    text = " ".join(text.split())  # one line per row, whatever a message holds
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def plain(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    """Render like ``kubectl get``: headers, then one line per row, columns padded to their widest cell (pure).

    >>> cols = [Column("NAME", lambda r: r["n"]), Column("PHASE", lambda r: r["p"])]
    >>> print(plain(cols, [{"n": "weld-defect-classifier", "p": "Healthy"}, {"n": "vib", "p": "Paused"}]))
    NAME                     PHASE
    weld-defect-classifier   Healthy
    vib                      Paused
    """
    cells = [[c.header for c in columns]] + [[_cut(c.cell(r), c.max_width) or "-" for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    return "\n".join(lines)


def rich_table(columns: Sequence[Column], rows: Sequence[Row], title: str | None = None) -> Table:
    """The same table for a terminal (pure)."""
    table = Table(box=box.SIMPLE_HEAVY, title=title, title_justify="left")
    texts = [[_cut(c.cell(r), c.max_width) or "-" for c in columns] for r in rows]
    for i, column in enumerate(columns):
        if column.max_width is None:  # names, counts, revisions: kept whole, never squeezed
            width = max([len(column.header), *(len(t[i]) for t in texts)])
            table.add_column(column.header, no_wrap=True, min_width=width)
        else:  # free text (a message) takes what is left and wraps
            table.add_column(column.header, overflow="fold", ratio=1)
    for row, cells in zip(rows, texts, strict=True):
        styled = []
        for column, text in zip(columns, cells, strict=True):
            style = column.style(row) if column.style is not None else None
            styled.append(f"[{style}]{escape(text)}[/{style}]" if style else escape(text))
        table.add_row(*styled)
    return table


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether output goes to a terminal (rich tables, live redraws) rather than a pipe or a log."""
    return (stream or sys.stdout).isatty()


def console() -> Console:
    """A console that never folds cells to a guessed width when the output is not a terminal."""
    if is_terminal():
        return Console()
    return Console(width=10_000, no_color=True, highlight=False, soft_wrap=True)


def print_table(
    columns: Sequence[Column], rows: Sequence[Row], title: str | None = None, out: TextIO | None = None
) -> None:
    """Print the table the way the output wants it: rich on a terminal, plain text elsewhere."""
    stream = out or sys.stdout
    if is_terminal(stream):
        Console(file=stream).print(rich_table(columns, rows, title))
    else:
        stream.write(plain(columns, rows) + "\n")


def emit(view: RenderableType | str) -> None:
    """Print a view from :func:`render`: plain text as it is (no markup parsing), rich renderables on the terminal."""
    if isinstance(view, str):
        print(view, flush=True)
    else:
        console().print(view)


def render(columns: Sequence[Column], rows: Sequence[Row], title: str | None = None) -> RenderableType | str:
    """A renderable for a terminal, or the plain text for anything else."""
    return rich_table(columns, rows, title) if is_terminal() else plain(columns, rows)


__all__ = ["Column", "Row", "console", "emit", "is_terminal", "plain", "print_table", "render", "rich_table", "shown"]
