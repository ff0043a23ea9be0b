"""Cell join/mask/split: IPython syntax must parse as Python and come back byte for byte."""

from __future__ import annotations

import libcst as cst
import pytest

from nbllm.convert.cells import CodeCell, join, mask_cell, restore_text, separator, split, unmask
from tests.convert_fixtures.helpers import convert_cells, dedent


def masked(text: str, index: int = 3) -> CodeCell:
    cell = CodeCell(index=index, text=text)
    mask_cell(cell, "feedbeef")
    return cell


@pytest.mark.parametrize("text", [
    "%pip install -q openai\nimport openai\n",
    "!pip install -qU \\\n    langchain \\\n    openai\nx = 1\n",
    "files = !ls -la\nout, err = %sx echo hi\n",
    "if True:\n    %time f()\n    !echo hi\n",
    "openai.OpenAI?\n??openai\nprint(1)",
    "%%time\nx = 1\n",
    "%%capture cap\n%pip install openai\n",
    "%env OPENAI_API_KEY=abc\n%load_ext autoreload\n%autoreload 2\n",
])
def test_masked_cells_parse_and_restore_byte_for_byte(text: str) -> None:
    """Every IPython form is replaced by a placeholder that parses and unmasks to the same bytes."""
    cell = masked(text)
    assert cell.skip is None and cell.masks
    cst.parse_module(cell.masked)
    assert restore_text(cell, cell.masked) == text


def test_python_that_looks_like_magic_is_not_masked() -> None:
    """A % at a continuation line and a ! inside a triple-quoted string stay Python."""
    text = 'x = (10\n% 3)\ndoc = """\n!not a shell line\n%not a magic\n"""\n'
    cell = masked(text)
    assert cell.masks == {} and cell.masked == text


def test_non_python_cell_magics_are_skipped() -> None:
    """%%bash and %%writefile bodies are not Python: the cell is skipped with a reason."""
    assert masked("%%bash\necho $OPENAI_API_KEY\n").skip == "%%bash cell (not Python)"
    assert masked("\n%%writefile helper.py\nimport openai\n").skip == "%%writefile cell (not Python)"


def test_join_and_split_keep_every_cell() -> None:
    """Separators survive the round trip; a missing one is detected instead of shifting cells."""
    cells = [masked("a = 1\n", 0), masked("b = 2", 1), masked("%ls\n", 2)]
    code = join(cells, "0123abcd")
    parts = split(code, "0123abcd", 3)
    assert parts is not None
    assert [restore_text(c, p) for c, p in zip(cells, parts, strict=True)] == ["a = 1\n", "b = 2", "%ls\n"]
    broken = code.replace(separator("0123abcd") + "\n", "", 1)
    assert split(broken, "0123abcd", 3) is None


def test_unmask_refuses_a_lost_placeholder() -> None:
    """If a codemod dropped a masked line, restoring fails instead of losing the magic."""
    cell = masked("%pip install openai\nx = 1\n")
    assert unmask("x = 1\n", cell.masks) is None


def test_unparseable_cell_is_left_and_the_rest_converted() -> None:
    """Case 29: a cell with a syntax error is reported; its neighbours are still converted."""
    out, items = convert_cells("from openai import OpenAI\n", "def broken(:\n    pass\n", "client = OpenAI()\n")
    assert out[1] == "def broken(:\n    pass\n"
    assert out[0] == "from openai import OpenAI\n"
    assert out[2] == dedent("""
        import os
        client = OpenAI(base_url="https://qianfan.baidubce.com/v2", api_key=os.environ["QIANFAN_API_KEY"])
    """)
