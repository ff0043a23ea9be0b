"""The LibCST fast path (codemods/fastmeta.py, fastwalk.py) and the public LibCST path give the same result.

The fast path reads LibCST internals; it is chosen only when a probe finds them as expected.
Both paths must convert every test notebook to the same text with the same reported lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, ScopeProvider

from nbllm.config import get_spec
from nbllm.convert.codemods import fastmeta, fastwalk
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


def test_the_walk_probe_accepts_this_libcst() -> None:
    assert fastwalk.WALK, "fastwalk's probe rejected this LibCST: its walks are not tested here"


@pytest.mark.parametrize(("name", "cells"), _notebooks(), ids=lambda v: v if isinstance(v, str) else "")
def test_libcst_and_fast_transformer_walks_agree(name: str, cells: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _convert(cells, "ernie")
    monkeypatch.setattr(fastwalk, "TRANSFORM", False)
    assert _convert(cells, "ernie") == fast


class _Hooks(cst.CSTTransformer):
    """Records every hook call and renames one name (so some nodes change, most do not)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.calls.append(("visit", type(node).__name__))
        return True

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        self.calls.append(("visit_attr", attribute))

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        self.calls.append(("leave_attr", attribute))

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode | cst.RemovalSentinel:
        self.calls.append(("leave", type(original_node).__name__))
        if isinstance(updated_node, cst.Name) and updated_node.value == "a":
            return updated_node.with_changes(value="renamed")
        if isinstance(original_node, cst.Pass):
            return cst.RemoveFromParent()
        return updated_node


def test_fast_walks_call_the_same_hooks_and_build_the_same_tree() -> None:
    masked = prepare([(i, t, None) for i, t in enumerate(POOL)])
    codes = [fastwalk._SAMPLE, *(c.masked for c in masked if c.skip is None)]
    for code in codes:
        tree = cst.parse_module(code)
        public = _Hooks()
        expected = tree.visit(public)
        seen = fastwalk._Calls()
        tree.visit(seen)
        with fastwalk.fast_visits():
            fast = _Hooks()
            got = tree.visit(fast)
            again = fastwalk._Calls()
            tree.visit(again)
        assert fast.calls == public.calls
        assert again.calls == seen.calls
        assert got.code == expected.code
        assert got.deep_equals(expected)
    assert cst.CSTNode.visit is fastwalk._LIBCST_VISIT[0], "fast_visits() left its walk installed"


def test_a_transformer_that_changes_nothing_gets_the_same_tree_back() -> None:
    tree = cst.parse_module(fastwalk._SAMPLE)
    with fastwalk.fast_visits():
        assert tree.visit(cst.CSTTransformer()) is tree


def _scopes(tree: cst.Module) -> list[tuple[str, str, int, list[str], int]]:
    """Per node: its scope's kind and name, assignment count, assigned names and access count."""
    scopes = MetadataWrapper(tree, unsafe_skip_copy=True).resolve(ScopeProvider)
    return [(type(node).__name__, type(scope).__name__, scope._assignment_count,
             sorted(a.name for a in scope.assignments), sum(1 for _ in scope.accesses)) if scope else (type(node).__name__,)
            for node, scope in scopes.items()]  # type: ignore[misc]


def test_scope_resolution_is_the_same_in_a_fast_walk() -> None:
    assert fastwalk._SCOPE_LEAVE_AS_READ, "ScopeVisitor.on_leave changed: its stand-in is not tested here"
    masked = prepare([(i, t, None) for i, t in enumerate(POOL)])
    for code in [fastwalk._SAMPLE, *(c.masked for c in masked if c.skip is None)]:
        tree = cst.parse_module(code)
        public = _scopes(tree)
        with fastwalk.fast_visits():
            assert _scopes(tree) == public
