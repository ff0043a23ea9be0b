"""Rows in, prompts out: ``{column}`` templates filled from dicts, named tuples, DataFrame rows or strings.

A template is a ``str.format`` string (``{{`` and ``}}`` are literal braces, ``{price:.2f}``
formats). A plain string row fills ``{text}``. A DataFrame is read a slice at a time, so a large
frame is never copied whole into Python objects. Values are inserted once and never read as a
template themselves. A field may index a column (``{tags[0]}``) or read a public attribute
(``{author.name}``), never a ``_private`` or ``__dunder__`` one: those lead from a value to the
process's modules (``{text.__class__...}``), and a template can come from a file or a colleague
(docs/batch.md#how-a-run-works).
"""

from __future__ import annotations

import _string  # str.format's own field-name parser
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from nbllm.errors import ContextError

CHUNK = 1_000  # DataFrame rows turned into dicts at a time


def template_fields(template: str) -> list[str]:
    """The column names a template uses, in order, once each (``{a.b}`` and ``{a[0]}`` use ``a``;
    fields nested in a format spec, ``{price:.{digits}f}``, count too)."""
    if not isinstance(template, str):
        hint = " (the rows go second)" if not isinstance(template, (bytes, type(None))) else ""
        raise ContextError(f"The prompt template comes first and is a str, e.g. 'Label: {{text}}', not "
                           f"{type(template).__name__}{hint}.")
    names: list[str] = []
    for field in _fields(template, template):
        try:
            name, lookups = _string.formatter_field_name_split(field)
            rest = list(lookups)
        except ValueError as exc:
            raise ContextError(f"The prompt template {template[:80]!r} is not valid: {exc} in {{{field}}}. Write "
                               "literal braces as {{ and }}.") from None
        if not isinstance(name, str) or not name or name.isdigit():
            raise ContextError(f"The prompt template {template[:80]!r} has a field without a column name "
                               f"({{{field}}}); name a column, e.g. {{review}}, or write literal braces as {{{{ }}}}.")
        hidden = next((str(key) for is_attr, key in rest if is_attr and str(key).startswith("_")), None)
        if hidden is not None:
            raise ContextError(f"The prompt template {template[:80]!r} reads {hidden!r} in {{{field}}}: a "
                               "template may index a column or read its public attributes, never a _private one. "
                               "Put the text you need in a column of its own.")
        if name not in names:
            names.append(name)
    return names


def _fields(template: str, whole: str, depth: int = 0) -> Iterator[str]:
    """Every replacement field of a template, those nested in format specs included."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ContextError(f"The prompt template {whole[:80]!r} is not valid: {exc}. Write literal braces "
                           "as {{ and }}.") from None
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        yield field
        if spec and "{" in spec and depth < 2:
            yield from _fields(spec, whole, depth + 1)


def row_mapping(row: Any, where: str = "a row") -> Mapping[str, Any]:
    """The columns of one row, whatever shape it has."""
    if isinstance(row, str):
        return {"text": row}
    if isinstance(row, Mapping):
        return row
    if hasattr(row, "_asdict"):  # namedtuple, typing.NamedTuple, DataFrame.itertuples rows
        return row._asdict()
    if hasattr(row, "to_dict") and hasattr(row, "index"):  # a pandas Series (DataFrame.iterrows rows)
        return row.to_dict()
    if is_dataclass(row) and not isinstance(row, type):
        return asdict(row)
    raise ContextError(f"{where[0].upper()}{where[1:]} ({type(row).__name__}) has no column names: give rows as dicts, named "
                       "tuples, DataFrame rows or plain strings (filled in as {text}).")


def fill(template: str, row: Any, fields: list[str], where: str = "this row") -> str:
    """The prompt of one row; a column the row lacks, or a value its format does not fit, is a
    clear error naming the row and the field."""
    columns = row_mapping(row, where)
    missing = [name for name in fields if name not in columns]
    if missing:
        have = ", ".join(map(str, list(columns)[:12])) or "none"
        raise ContextError(f"The prompt names {{{missing[0]}}}, which {where} does not have (its columns: {have}).")
    try:
        return template.format_map(columns)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ContextError(f"The prompt template {template[:80]!r} could not be filled from {where} "
                           f"({type(exc).__name__}: {exc}); a format such as {{price:.2f}} needs a value of "
                           "its kind in every row (None and NaN are not numbers).") from None


def is_frame(rows: Any) -> bool:
    return type(rows).__name__ == "DataFrame" and hasattr(rows, "iloc") and hasattr(rows, "columns")


def is_series(rows: Any) -> bool:
    return type(rows).__name__ == "Series" and hasattr(rows, "iloc") and hasattr(rows, "index")


def iter_rows(rows: Any) -> Iterator[Any]:
    """Each row in order; DataFrames and Series a slice at a time."""
    if is_frame(rows):
        for start in range(0, len(rows), CHUNK):
            yield from rows.iloc[start : start + CHUNK].to_dict("records")
    elif is_series(rows):
        for start in range(0, len(rows), CHUNK):
            yield from rows.iloc[start : start + CHUNK].tolist()
    elif isinstance(rows, (str, bytes, Mapping)):
        raise ContextError("nbllm.map takes many rows (a list, a DataFrame, any iterable), not a single "
                           f"{type(rows).__name__}; wrap one row in a list.")
    elif isinstance(rows, Iterable):
        yield from rows
    else:
        raise ContextError(f"nbllm.map needs rows to iterate over, got {type(rows).__name__}.")
