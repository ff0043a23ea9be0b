"""Tables for every front end: aligned text for terminals, HTML for notebooks.

One renderer serves the CLI (``nbllm providers``, ``check``), the magics (``%llm providers``,
``check``, compare mode) and anything else that lists rows. Text columns are measured in
terminal cells, where a wide character (Chinese, Japanese, Korean, full-width forms) takes two,
so provider names and answers in Chinese line up. A ``Table`` shown with IPython's ``display``
renders as HTML in a notebook and as the text table in a terminal.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def cell_width(text: str) -> int:
    """Terminal columns a string takes: wide and full-width characters count two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain, left-aligned text table with two spaces between columns."""
    all_rows = [list(headers), *[list(r) for r in rows]]
    widths = [max(cell_width(r[i]) for r in all_rows) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell + " " * (w - cell_width(cell)) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in all_rows
    )


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table as HTML, every cell escaped."""
    def line(cells: Sequence[str], tag: str) -> str:
        return "<tr>" + "".join(f'<{tag} style="text-align:left">{html.escape(c)}</{tag}>' for c in cells) + "</tr>"

    body = "".join(line(r, "td") for r in rows)
    return f"<table><thead>{line(headers, 'th')}</thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class Table:
    """Rows with headers that show as HTML where the frontend can, as aligned text elsewhere."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]

    def __str__(self) -> str:
        return text_table(self.headers, self.rows)

    def _repr_html_(self) -> str:
        return html_table(self.headers, self.rows)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def bundle(self) -> dict[str, str]:
        """The MIME bundle to publish: HTML with the text table as its fallback."""
        return {"text/html": self._repr_html_(), "text/plain": str(self)}
