"""Property tests: code with no OpenAI use is never changed, and masking always round-trips."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import hypothesmith
import libcst as cst
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nbllm.config import get_spec
from nbllm.convert import convert_paths
from nbllm.convert.cells import CodeCell, mask_cell, restore_text
from nbllm.convert.codemods.base import Target, new_context
from nbllm.convert.pipeline import _passes, prepare, run_codemods
from nbllm.modelmap import ModelMap
from tests.convert_fixtures.helpers import notebook_json, write_notebook

SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.filter_too_much])


def _parses(code: str) -> bool:
    try:
        cst.parse_module(code)
    except Exception:
        return False
    return True


@SLOW
@given(hypothesmith.from_grammar())
def test_every_codemod_leaves_code_without_openai_alone(code: str) -> None:
    """Each pass, run even when its text trigger would skip it, returns the module unchanged."""
    assume("openai" not in code.lower() and _parses(code))
    assume(cst.parse_module(code).code == code)  # libcst itself re-renders a few odd whitespace layouts
    spec = get_spec("ernie")
    target = Target(spec, ModelMap(spec))
    for keep_v0 in (False, True):
        target.keep_v0 = keep_v0
        context = new_context(target)
        for command in _passes(target):
            assert command(context).transform_module(cst.parse_module(code)).code == code
        assert context.scratch["nbllm"].events == []


@SLOW
@given(hypothesmith.from_grammar())
def test_pipeline_reports_no_change_for_code_without_openai(code: str) -> None:
    """The whole pipeline (masking, join, split) finds nothing to change."""
    assume("openai" not in code.lower() and _parses(code))
    spec = get_spec("qwen")
    outcome = run_codemods(prepare([(0, code, None), (1, "x = 1\n", None)]), Target(spec, ModelMap(spec)))
    assert outcome.new_sources == {}


def test_libcst_rendering_noise_never_reaches_a_cell() -> None:
    """A layout libcst does not round-trip (found by hypothesmith) still leaves the cell unchanged."""
    odd = "\nA\nA\n   \t\r\n\t"
    assert cst.parse_module(odd).code != odd
    spec = get_spec("ernie")
    cells = prepare([(0, odd, None), (1, "from openai import OpenAI\nclient = OpenAI()\n", None)])
    outcome = run_codemods(cells, Target(spec, ModelMap(spec)))
    assert list(outcome.new_sources) == [1]


MAGIC_LINES = st.sampled_from(["%pip install -q pandas", "!ls -la", "x = !pwd", "%time f()", "df?", "??len",
                               "%env FOO=bar", "!echo a \\", "  continued", "%matplotlib inline", "print(1)",
                               "y = 2", "if y:", "    z = 3", "    %time g()", "", "# comment"])


@settings(max_examples=200, deadline=None)
@given(st.lists(MAGIC_LINES, max_size=12), st.booleans())
def test_masking_round_trips_byte_for_byte(lines: list[str], final_newline: bool) -> None:
    """Whatever mix of magics and Python a cell holds, unmasking gives the exact original text."""
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    cell = CodeCell(index=0, text=text)
    mask_cell(cell, "c0ffee00")
    if cell.skip is None:
        assert restore_text(cell, cell.masked) == text


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(hypothesmith.from_grammar(), min_size=1, max_size=3), st.sampled_from([1, 2]))
def test_notebooks_without_openai_are_byte_identical(cells: list[str], indent: int) -> None:
    """Notebooks of random valid Python are never written, whatever their style."""
    assume(all("openai" not in c.lower() for c in cells))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nb.ipynb"
        data = write_notebook(path, notebook_json(cells), indent=indent)
        batch = convert_paths([path], "ernie")
        assert batch.results[0].status == "unchanged"
        assert path.read_bytes() == data
        assert json.loads(data)["cells"][0]["source"] == cells[0]
