"""The LibCST fast path (codemods/fastmeta.py) and the public LibCST path give the same result.

The fast path reads LibCST internals; it is chosen only when a probe finds them as expected.
Both paths must convert every test notebook to the same text with the same reported lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbllm.config import get_spec
from nbllm.convert.codemods import fastmeta
from nbllm.convert.codemods.base import Target
from nbllm.convert.pipeline import prepare, run_codemods
from nbllm.modelmap import ModelMap
from tests.test_convert_idempotent import POOL

ROOT = Path(__file__).parents[1]


def _notebooks() -> list[tuple[str, list[str]]]:
    cases = []
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        nb = json.loads(path.read_text("utf-8"))
        cells = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                 for c in nb["cells"] if c["cell_type"] == "code"]
        cases.append((path.name, cells))
    cases.append(("pool", POOL))
    return cases


def _convert(cells: list[str], to: str) -> tuple[dict[int, str], list[tuple[str, str, int | None, int | None]]]:
    spec = get_spec(to)
    outcome = run_codemods(prepare([(i, t, None) for i, t in enumerate(cells)]), Target(spec, ModelMap(spec)))
    return outcome.new_sources, [(i.kind, i.message, i.cell, i.line) for i in outcome.items]


@pytest.mark.parametrize(("name", "cells"), _notebooks(), ids=lambda v: v if isinstance(v, str) else "")
def test_fast_and_public_paths_agree(name: str, cells: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert fastmeta.FAST, "the probe rejected this LibCST's internals: the fast path is not tested here"
    fast = _convert(cells, "ernie")
    monkeypatch.setattr(fastmeta, "FAST", False)
    public = _convert(cells, "ernie")
    assert public == fast


def test_the_public_path_is_chosen_when_asked() -> None:
    code = "from nbllm.convert.codemods import fastmeta; print(fastmeta.FAST)"
    out = subprocess.run([sys.executable, "-c", code], env={"NBLLM_LIBCST_PUBLIC": "1", "PATH": ""},
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
