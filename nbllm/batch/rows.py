"""Rows in, prompts out: ``{column}`` templates filled from dicts, named tuples, DataFrame rows or strings.

A template is a ``str.format`` string (``{{`` and ``}}`` are literal braces, ``{price:.2f}``
formats). A plain string row fills ``{text}``. A DataFrame is read a slice at a time, so a large
frame is never copied whole into Python objects.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from nbllm.errors import ContextError

CHUNK = 1_000  # DataFrame rows turned into dicts at a time


def template_fields(template: str) -> list[str]:
    """The column names a template uses, in order, once each (``{a.b}`` and ``{a[0]}`` use ``a``)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ContextError(f"The prompt template {template[:80]!r} is not valid: {exc}. Write literal braces "
                           "as {{ and }}.") from exc
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".", 1)[0].split("[", 1)[0]
        if not name or name.isdigit():
            raise ContextError(f"The prompt template {template[:80]!r} has a field without a column name "
                               f"({{{field}}}); name a column, e.g. {{review}}, or write literal braces as {{{{ }}}}.")
        if name not in names:
            names.append(name)
    return names


def row_mapping(row: Any) -> Mapping[str, Any]:
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
    raise ContextError(f"A row of type {type(row).__name__} has no column names: give rows as dicts, named "
                       "tuples, DataFrame rows or plain strings (filled in as {text}).")


def fill(template: str, row: Any, fields: list[str]) -> str:
    """The prompt of one row; a column the row lacks is a clear error naming it."""
    columns = row_mapping(row)
    missing = [name for name in fields if name not in columns]
    if missing:
        have = ", ".join(map(str, list(columns)[:12])) or "none"
        raise ContextError(f"The prompt names {{{missing[0]}}}, which this row does not have (its columns: {have}).")
    return template.format_map(columns)


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
