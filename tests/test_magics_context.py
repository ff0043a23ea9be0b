"""Notebook context in a real shell: what the provider receives for each reference form."""

from __future__ import annotations

import sys

import IPython
import pandas as pd
import pytest

from tests.fakes.openai_server import Answer, FakeOpenAIServer
from tests.magics_shell import Shell

# IPython records each cell's printed text only from version 9 on; before it --cells has inputs only.
records_text = pytest.mark.skipif(int(IPython.__version__.split(".")[0]) < 9, reason="IPython < 9 keeps no text outputs")

pytestmark = pytest.mark.timeout(120)


def sent(server: FakeOpenAIServer) -> str:
    return server.chat_requests[-1].json["messages"][-1]["content"]


def test_variables_and_literal_braces(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("city = 'Hangzhou'\nsizes = [1, 2, 3]")
    assert ipy.run("%%llm\nWhere is {city}? Sum {sizes}. Keep {{city}} as is.").error is None
    assert sent(ernie) == "Where is Hangzhou? Sum [1, 2, 3]. Keep {city} as is."


def test_json_in_a_prompt_is_sent_untouched(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    prompt = 'Validate {"a": 1, "b": {"c": [1, 2]}} and { x } and {1}'
    assert ipy.run(f"%%llm\n{prompt}").error is None
    assert sent(ernie) == prompt


def test_in_and_out_by_number_and_relative(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    n = ipy.run("6 * 7").result.execution_count
    assert ipy.run(f"%%llm\nCell {{In[{n}]}} gave {{Out[{n}]}}; before this: {{In[-1]}}").error is None
    assert sent(ernie) == "Cell 6 * 7 gave 42; before this: 6 * 7"


def test_err_is_the_last_traceback_as_text(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    failing = ipy.run("def f():\n    return 1 / 0\nf()")
    assert isinstance(failing.error, ZeroDivisionError)
    assert ipy.run("%%llm\nWhy? {Err}").error is None
    text = sent(ernie)
    assert text.startswith("Why? ") and "\x1b[" not in text
    assert "return 1 / 0" in text and text.rstrip().endswith("ZeroDivisionError: division by zero")


def test_err_before_any_error_is_a_context_error(ipy: Shell, ernie: FakeOpenAIServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("last_value", "last_exc", "last_type", "last_traceback"):
        monkeypatch.delattr(sys, name, raising=False)
    cell = ipy.run("%%llm\n{Err}")
    assert type(cell.error).__name__ == "ContextError"
    assert ernie.chat_requests == []


def test_with_adds_variables_as_context(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.ns["df"] = pd.DataFrame({"price": range(500)})
    ipy.ns["note"] = "n" * 10_000
    assert ipy.run("%%llm --with df,note\nWhat do you see?").error is None
    text = sent(ernie)
    assert text.startswith("Variables from my notebook:\n\nVariable `df` (DataFrame, 500 rows × 1 columns):\n")
    assert "499" in text and "250" not in text.split("`note`")[0]
    assert "Variable `note` (str, 10000 chars):" in text and "[cut: 6000 more characters]" in text
    assert text.endswith("My request:\n\nWhat do you see?")


@records_text
def test_cells_adds_recent_inputs_and_their_text_output(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("print('hello from cell')")
    ipy.run("[1, 2]")
    assert ipy.run("%%llm --cells 2\nWhat happened?").error is None
    text = sent(ernie)
    assert "```python\nprint('hello from cell')\n```\nOutput:\n```\nhello from cell\n```" in text
    assert "```python\n[1, 2]\n```\nOutput:\n```\n[1, 2]\n```" in text
    assert "--cells" not in text  # the running cell is not part of its own context


@records_text
def test_cells_show_an_earlier_llm_answer_once(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ernie.enqueue(Answer(["alpha ", "beta ", "gamma"], chunk_delay=0.15))
    # the shell's own publisher records every in-place update of the answer in its history
    first = ipy.shell.run_cell("%%llm\nfirst question", store_history=True)
    assert first.error_in_exec is None
    assert ipy.run("%%llm --cells 1\nand then?").error is None
    text = sent(ernie)
    assert text.count("alpha") == 1 and "alpha beta gamma" in text


def test_fix_asks_about_the_last_error(ipy: Shell, ernie: FakeOpenAIServer) -> None:
    ipy.run("int('x')")
    cell = ipy.run("%llm fix")
    assert cell.error is None
    text = sent(ernie)
    assert text.startswith("Explain the error below from my Jupyter notebook")
    assert "ValueError: invalid literal for int() with base 10: 'x'" in text
    assert cell.final_answer()["text/markdown"].startswith("echo: Explain the error")
