"""Helpers for the converter tests: run the codemods on cells, build notebook files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from nbllm.config import get_spec
from nbllm.convert.codemods.base import Target
from nbllm.convert.pipeline import prepare, run_codemods
from nbllm.convert.result import Item
from nbllm.modelmap import ModelMap

FIXTURES = Path(__file__).parent


def dedent(code: str) -> str:
    return textwrap.dedent(code).lstrip("\n")


def convert_cells(*cells: str, to: str = "ernie", keep_v0: bool = False,
                  models: dict[str, str] | None = None) -> tuple[list[str], list[Item]]:
    """Run the codemods on code cells (dedented); return every cell's text afterwards and the items."""
    spec = get_spec(to)
    target = Target(spec, ModelMap(spec, models or {}), keep_v0=keep_v0)
    texts = [dedent(c) for c in cells]
    prepared = prepare([(i, t, None) for i, t in enumerate(texts)])
    outcome = run_codemods(prepared, target)
    return [outcome.new_sources.get(i, t) for i, t in enumerate(texts)], outcome.items


def convert_one(code: str, **kw: Any) -> str:
    out, _ = convert_cells(code, **kw)
    return out[0]


def kinds(items: list[Item], warning: bool = True) -> list[str]:
    return sorted({i.kind for i in items if i.warning == warning})


def notebook_json(sources: list[str | list[str]], *, cell_type: str = "code", **meta: Any) -> dict[str, Any]:
    cells = []
    for n, src in enumerate(sources):
        cells.append({"cell_type": cell_type, "execution_count": None, "id": f"c{n}", "metadata": {},
                      "outputs": [], "source": src})
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                        "name": "python3"}, **meta},
            "nbformat": 4, "nbformat_minor": 5}


def write_notebook(path: Path, nb: dict[str, Any], *, indent: int = 1, ensure_ascii: bool = False,
                   newline: bool = True) -> bytes:
    text = json.dumps(nb, indent=indent, ensure_ascii=ensure_ascii) + ("\n" if newline else "")
    path.write_text(text, encoding="utf-8")
    return path.read_bytes()


def lines(code: str) -> list[str]:
    """nbformat's list-of-lines form of a source."""
    return dedent(code).splitlines(keepends=True)
